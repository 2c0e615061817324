"""Moved to `xloader._decoder`; this path stays for code that still imports it."""

from xloader._decoder import ImageDecoder

__all__ = ["ImageDecoder"]
