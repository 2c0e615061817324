"""Reading the members of packed shards for `TarShards`: byte ranges, CRC checks, blocks, and
the errors that name the shard and the sample key (NOTE [ Packed samples decode as their files ]
in xloader/shards/tar_shards.py)."""

from __future__ import annotations

import hashlib
import os
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from xloader import storage
from xloader.cache import files_key
from xloader.errors import BadImageError, DatasetError
from xloader.index._sample_index import SampleIndex
from xloader.shards._block_order import block_bounds
from xloader.shards._index import member_extension
from xloader.shards._reader import ShardReader

__all__ = ["PackedMembers"]


class PackedMembers:
    """The shard-reading half of `TarShards`: where each sample's members lie, and reading them.

    Needs `root`, `order`, `block_size`, `_shards` (the index's shard list), `_key_width`,
    `_index` (a `SampleIndex` with `shard`, `offset`, `size`, `crc32`, and `mask_*` for masks)
    and `_reader` (a `ShardReader`).
    """

    root: str
    order: str
    block_size: int
    window: int
    _shards: list[dict[str, Any]]
    _key_width: int
    _index: SampleIndex
    _reader: ShardReader
    _bounds: np.ndarray

    def describe(self, index: int) -> str:
        """`<shard>:<key>.<ext>`, the image member of sample `index` (`TarShards.describe`)."""
        raise NotImplementedError

    def _check_shard_sizes(self) -> None:
        """Raise if a shard is missing or shorter than it was when packed, naming the first cut key."""
        index = self._index
        for number, shard in enumerate(self._shards):
            path = self._shard_path(number)
            size = _size(path)
            if size is None or size >= shard["bytes"]:
                continue
            ends = self._member_spans()[1]
            cut = np.flatnonzero((index.shard == number) & (ends > size))
            first = self.key(int(cut[0])) if len(cut) else "none"
            raise DatasetError(
                f"shard {path} is truncated: {size:,} bytes, but {shard['bytes']:,} were packed; sample key {first} "
                f"and {max(len(cut) - 1, 0)} more after it are cut. Copy the shard again or pack again, or pass "
                "on_bad_file='skip' to leave those samples out."
            )

    def key(self, index: int) -> str:
        """The WebDataset key of sample `index`: its position when packed, zero-padded."""
        return f"{int(self._index.position[index]):0{self._key_width}d}"

    def _version(self, index: int) -> bytes | None:
        """16 bytes naming the packed bytes of sample `index`, for the decoded cache (NOTE [ Decoded
        cache ]): its shard's identity (path, size, mtime and inode; a URL's size and ETag) and its
        members' offsets, sizes and CRC-32s, so a re-packed or changed shard is decoded again.
        A URL that was not listed (http has no listing) is named by its path and the size the
        index packed: the CRC-32s, checked on every read, say which bytes the entry holds.
        None if the shard is missing (the read then raises the error naming it)."""
        row = self._index
        number = int(row.shard[index])
        path = self._shard_path(number)
        shard = files_key((path,))
        if shard is None and storage.is_url(path):
            shard = f"{path}\0packed={self._shards[number]['bytes']}".encode()
        if shard is None:
            return None
        place = [row.offset[index], row.size[index], row.crc32[index]]
        place += [number for _, *member in self._mask_members(index) for number in member]
        return hashlib.blake2b(shard + ",".join(str(int(x)) for x in place).encode(), digest_size=16).digest()

    def _mask_members(self, index: int) -> list[tuple[str, int, int, int]]:
        """(name, offset, size, CRC-32) of each mask member of sample `index`, in merge order:
        none or one for image+mask shards, one per mask file for a packed `MultiMaskFolder`."""
        row = self._index
        if "multi" in row.columns:
            parts = row.multi
            paths, offsets, sizes, crcs = (parts.columns[c] for c in ("paths", "offset", "size", "crc32"))
            return [
                (
                    self._member(index, f"mask{k}.{member_extension(paths[j])}"),
                    int(offsets[j]),
                    int(sizes[j]),
                    int(crcs[j]),
                )
                for k, j in enumerate(parts.span(index))
            ]
        if "mask_size" in row.columns and row.mask_size[index] >= 0:
            name = self._member(index, "mask." + member_extension(row.masks[index]))
            return [(name, int(row.mask_offset[index]), int(row.mask_size[index]), int(row.mask_crc32[index]))]
        return []

    # --- reading -----------------------------------------------------------------------------

    def _shard_path(self, number: int) -> str:
        return os.path.join(self.root, self._shards[number]["name"])

    def close(self) -> None:
        """Close the shard files this process opened (they reopen on the next load)."""
        self._reader.close()

    def _member(self, index: int, suffix: str) -> str:
        return f"{self._shard_path(int(self._index.shard[index]))}:{self.key(index)}.{suffix}"

    def _read(self, index: int, member: str, offset: int, size: int, crc: int) -> bytes:
        shard = int(self._index.shard[index])
        try:
            if self.order == "block":  # NOTE [ Block reads ]
                block_number = self._block_of(index)
                start, block = self._reader.block(block_number, *self._block_span(block_number))
                data = block[offset - start : offset - start + size]
            else:
                data = self._reader.read(shard, offset, size)
        except OSError as error:
            raise bad_member(member, f"cannot read the shard ({error.strerror or error})") from None
        if len(data) != size:
            reason = (
                f"the shard is truncated: the member is bytes {offset:,} to {offset + size:,}, but only "
                f"{len(data):,} of its {size:,} bytes are in the file. Copy the shard again or pack again"
            )
            raise bad_member(member, reason)
        if zlib.crc32(data) != crc:
            raise bad_member(
                member, "the shard is corrupted: the member's CRC-32 differs from the one packed. Pack again"
            )
        return data

    def _member_spans(self) -> tuple[np.ndarray, np.ndarray]:
        """Each sample's first member byte and the end of its last member in its shard (int64)."""
        rows = self._index
        starts, ends = rows.offset, rows.offset + rows.size
        if "mask_size" in rows.columns:
            has_mask = rows.mask_size >= 0
            starts = np.where(has_mask, np.minimum(starts, rows.mask_offset), starts)
            ends = np.where(has_mask, np.maximum(ends, rows.mask_offset + rows.mask_size), ends)
        if "multi" in rows.columns:  # mask members follow their image: only the ends move
            parts = rows.multi
            starts_of_rows, filled = parts.offsets[:-1], parts.offsets[1:] > parts.offsets[:-1]
            part_ends = parts.columns["offset"] + parts.columns["size"]
            if filled.any():
                ends = ends.copy()
                ends[filled] = np.maximum(ends[filled], np.maximum.reduceat(part_ends, starts_of_rows[filled]))
        return starts, ends

    def _find_blocks(self) -> None:
        """Cut the rows into blocks (NOTE [ Block order ]) and forget cached blocks."""
        self._reader.close()
        if self.order == "block":
            self._starts, self._ends = self._member_spans()
            sizes = np.array([shard["bytes"] for shard in self._shards], np.int64)
            self._bounds = block_bounds(self._index.shard, self._starts, sizes, self.block_size)
            if len(self._bounds) > 1:  # a block may end past its stretch: the cache holds 2 windows of the largest
                firsts = self._bounds[:-1]
                largest = int((np.maximum.reduceat(self._ends, firsts) - self._starts[firsts]).max())
                self._reader.cache_bytes = 2 * self.window * max(largest, self.block_size)

    def _block_of(self, index: int) -> int:
        return int(np.searchsorted(self._bounds, index, side="right")) - 1

    def _block_span(self, block: int) -> tuple[int, int, int]:
        """(shard, first byte, end) of the members of block `block` (NOTE [ Block order ])."""
        first, stop = int(self._bounds[block]), int(self._bounds[block + 1])
        return int(self._index.shard[first]), int(self._starts[first]), int(self._ends[first:stop].max())

    @property
    def blocks(self) -> int:
        """How many blocks `order="block"` reads (NOTE [ Block order ]); 0 with `order="random"`."""
        return len(self._bounds) - 1 if self.order == "block" else 0

    def _image_bytes(self, index: int) -> bytes:
        row = self._index
        return self._read(
            index, self.describe(index), int(row.offset[index]), int(row.size[index]), int(row.crc32[index])
        )

    def _ranges(self, indices: Sequence[int]) -> list[str]:
        """The byte ranges (`storage.byte_range`) of the members of the samples at `indices`, for
        `storage.prefetch`. With `order="block"`: none; the GETs of their blocks that this process
        neither holds nor fetches are started here instead (NOTE [ Block reads ])."""
        rows, ranges = self._index, list[str]()
        if self.order == "block":
            for block in sorted({self._block_of(index) for index in indices}):
                self._reader.start(block, *self._block_span(block))
            return ranges
        for index in indices:
            shard = self._shard_path(int(rows.shard[index]))
            ranges.append(storage.byte_range(shard, int(rows.offset[index]), int(rows.size[index])))
            for _, offset, size, _ in self._mask_members(index):
                ranges.append(storage.byte_range(shard, offset, size))
        return ranges

    @property
    def shards(self) -> list[str]:
        """The shard files, in order."""
        return [self._shard_path(number) for number in range(len(self._shards))]

    @property
    def reads(self) -> int:
        """How many reads of shard bytes this process has made (one per member, or per block and
        shard with `order="block"`: NOTE [ Block reads ])."""
        return self._reader.reads


def _size(path: str) -> int | None:
    """A shard's size in bytes (a URL's as listed; None over http, which has no listing).

    Raises:
        FileNotFoundError: the shard does not exist.
    """
    if storage.is_url(path):
        listed = storage.identity(path)
        if listed is not None or not storage.isfile(path):
            return listed[0] if listed is not None else _missing(path)
        return None
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return _missing(path)


def _missing(path: str) -> int:
    raise FileNotFoundError(f"shard {path} of a packed dataset does not exist. Copy it back, or pack again.")


def bad_member(member: str, reason: str) -> BadImageError:
    return BadImageError(f"cannot read {member}: {reason}.", path=member, reason=reason)
