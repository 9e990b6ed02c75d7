"""`bitnet.train` is `bitnet.training.train` (moved there in issue #22; this public name keeps working)."""

import sys

from bitnet.training import train as _module

sys.modules[__name__] = _module
