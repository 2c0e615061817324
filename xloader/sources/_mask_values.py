"""Moved to `xloader._targets`; this path stays for code that still imports it."""

from xloader._targets import MaskValues

__all__ = ["MaskValues"]
