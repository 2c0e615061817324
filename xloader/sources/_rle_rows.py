"""Moved to `xloader._targets`; this path stays for code that still imports it."""

from xloader._targets import decode_rows, runs_text, runs_to_pixels

__all__ = ["decode_rows", "runs_text", "runs_to_pixels"]
