"""`bitnet.inference` is `bitnet.deploy.inference` (moved there in issue #22; this public name keeps working)."""

import sys

from bitnet.deploy import inference as _module

sys.modules[__name__] = _module
