"""Moved to `xloader.index._walk`; this path is that module (so setting `_fastlist` on it works)."""

import sys

from xloader.index import _walk

sys.modules[__name__] = _walk
