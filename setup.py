"""The one compiled part of xloader, optional: NOTE [ Listing a directory in C ] (xloader/index/_fastlist.c).

Without a C compiler, or on Windows, the build skips it and xloader lists files in Python: the
same result, slower (about 2.5 times a bare os.scandir walk instead of 1.05 times)."""

import sys

from setuptools import Extension, setup

fast_listing = Extension("xloader.index._fastlist", ["xloader/index/_fastlist.c"], optional=True)
setup(ext_modules=[fast_listing] if sys.platform.startswith(("linux", "darwin", "freebsd")) else [])
