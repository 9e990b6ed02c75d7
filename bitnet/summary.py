"""`bitnet.summary` is `bitnet.deploy.summary` (moved there in issue #22; this public name keeps working)."""

import sys

from bitnet.deploy import summary as _module

sys.modules[__name__] = _module
