"""Packed shards: `pack` writes WebDataset tar shards plus one index; `TarShards` reads them back
by byte range, with the batches of the source that was packed (NOTE [ Shard index format ])."""

from xloader.shards._index import is_packed
from xloader.shards.pack import PackResult, pack
from xloader.shards.tar_shards import TarShards

__all__ = ["PackResult", "TarShards", "is_packed", "pack"]
