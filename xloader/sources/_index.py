"""Moved to `xloader.index._sample_index`; this path stays for code that still imports it."""

from xloader.index._sample_index import Ragged, SampleIndex, positions

__all__ = ["Ragged", "SampleIndex", "positions"]
