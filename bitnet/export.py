"""`bitnet.export` is `bitnet.deploy.export` (moved there in issue #22; this public name keeps working)."""

import sys

from bitnet.deploy import export as _module

sys.modules[__name__] = _module
