"""`TarShards`: a source over the tar shards `xloader.pack` wrote, read by byte range.

# NOTE [ Packed samples decode as their files ]
A packed member holds the original file's bytes, unchanged, and its index row keeps the packed
source's order. Loading sample `i` reads those bytes at the offset in the index (one `os.pread`,
or a slice of a cached block: NOTE [ Block reads ]), then runs the packed source's own steps:
`ImageDecoder.decode_bytes` (NOTE [ One sample's path ]), the transform with the
(seed, epoch, i) stream, and for masks `decode_mask`, `checked_index_map`, `resize_nearest` and
`transform_with_mask`. So with the same options and seed, every batch equals the folder source's
bit for bit, for any worker count: nothing here depends on which process reads, or in what
order. Each member's CRC-32 is checked after the read, so a shard changed after packing is an
error naming the shard and the key, never a silently different pixel.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from xloader import storage
from xloader._checks import check_choice, check_int
from xloader.decoding import decode_image, decode_mask
from xloader.errors import BadImageError, DatasetError
from xloader.shards._block_order import block_bounds, block_order
from xloader.shards._index import member_extension, read_index
from xloader.shards._reader import ShardReader
from xloader.shards.pack import parse_size
from xloader.sources._base import ImageSource, class_target
from xloader.sources._index import SampleIndex
from xloader.sources._mask_values import MaskValues
from xloader.sources._masks import (
    check_mask_interpolation,
    checked_index_map,
    mask_format,
    resize_nearest,
    transform_with_mask,
)
from xloader.sources.image_folder import LABEL_MODES  # a packed ImageManifest has one class per row

__all__ = ["TarShards"]


class _AsPacked:
    """The default of `TarShards` options: the value the packed source had."""

    def __repr__(self) -> str:
        return "AS_PACKED"


AS_PACKED: Any = _AsPacked()


class TarShards(ImageSource):
    """The samples of a dataset packed with `xloader.pack` / `xloader pack`, read from its shards.

    Sample `i` is sample `i` of the packed source, loaded the same way (NOTE [ Packed samples
    decode as their files ]): with the same options, transform and seed, `Batches`, the Keras
    and the torch adapters give the same batches as the folder source did, bit for bit. A packed
    `ImageFolder` or `ImageManifest` gives `x` (H, W, C) uint8 images and `y` by `label_mode`;
    a packed `ImageMaskFolder` gives `x` and its mask `y` by `mask_mode` and `mask_dtype`.

    Every option defaults to the packed source's value (saved in the index); pass one to
    change it. Each read is one `os.pread` of the member's bytes (or of a whole block with
    `order="block"`: NOTE [ Block reads ]), and each member's CRC-32 is checked.

    Args:
        path: the folder `pack` wrote (it holds `xloader-index.npz` and `shard-*.tar`), local
            or an fsspec URL of a copy of it (`s3://bucket/packed`; NOTE [ Remote storage ]).
        image_size: (height, width), or None to keep file sizes.
        transform: an albumentations `Compose` (or any `xloader.transforms.Transform`); not
            saved by `pack`, so None unless given.
        color_mode: "rgb", "rgba" or "grayscale".
        interpolation: the image resize filter (masks always use nearest).
        keep_aspect_ratio: crop to the aspect ratio of `image_size` first (class sources).
        label_mode: class sources: "int", "categorical", "binary", "input" or None (a source
            packed without labels: "input" or None).
        mask_dtype, mask_mode, num_classes, mask_values: image+mask sources, as in
            `ImageMaskFolder`.
        max_pixels: refuse images that declare more pixels (NOTE [ Pixel limit ]).
        downscale_on_decode: decode JPEGs at a reduced size where exact enough, as in
            `ImageFolder` (class sources).
        on_bad_file: "raise" (default) or "skip", as in `ImageFolder`; damaged members count
            as bad files.
        order: what a loader with `shuffle=True` does: "random" (default), the full
            permutation every source gets; "block" (NOTE [ Block order ]): blocks of about
            `block_size` bytes of neighbouring samples are shuffled and mixed `window` blocks at
            a time, for storage where long sequential reads are much cheaper than many small
            ones (one read per block and worker process). Both are pure functions of
            (seed, epoch), the same for any worker count.
        block_size: the block order's read size, in bytes of one shard: an int, or a string
            such as "4MB" (10**6 bytes per MB) or "4MiB" (2**20), as `pack`'s `shard_size`.
        window: the block order's mixing width, in blocks. Each process caches up to
            `2 * window * block_size` bytes of blocks (NOTE [ Block reads ]).
        storage_options: fsspec options for a URL `path` (e.g. `{"endpoint_url": ...}`).

    Raises:
        FileNotFoundError: `path`, its index or one of its shards does not exist.
        DatasetError: the index is unreadable, or a shard is shorter than when it was packed
            (naming the shard and the first sample key it cuts; `on_bad_file="skip"` leaves
            those samples out instead).
        BadImageError: when a sample is loaded, a member that cannot be read in full, whose
            CRC-32 differs, or that cannot be decoded; the message names shard and key.

    Example:
        >>> xl.pack(xl.ImageFolder("data/train", image_size=None), "packed/train")  # doctest: +SKIP
        >>> train = xl.TarShards("packed/train", image_size=(224, 224), transform=aug)  # doctest: +SKIP
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        image_size: tuple[int, int] | None = AS_PACKED,
        transform: object = None,
        color_mode: str = AS_PACKED,
        interpolation: str = AS_PACKED,
        keep_aspect_ratio: bool = AS_PACKED,
        label_mode: str | None = AS_PACKED,
        mask_dtype: str = AS_PACKED,
        mask_mode: str = AS_PACKED,
        num_classes: int | None = AS_PACKED,
        mask_values: dict[int, int] | None = AS_PACKED,
        max_pixels: int | None = AS_PACKED,
        downscale_on_decode: bool = AS_PACKED,
        on_bad_file: str = "raise",
        order: str = "random",
        block_size: int | str = "4MB",
        window: int = 16,
        storage_options: dict[str, Any] | None = None,
    ):
        super().__init__(transform)
        self.root = os.fspath(path)
        self._mounts = storage.mount(self.root, storage_options=storage_options)  # NOTE [ Remote storage ]
        meta, columns = read_index(self.root)
        packed = meta["options"]

        def option(name: str, value: Any, default: Any = None) -> Any:
            return packed.get(name, default) if value is AS_PACKED else value

        self.kind: str = meta["kind"]
        self.packed_from: str = meta["source"]
        self.class_names: list[str] | None = meta["class_names"]
        size = option("image_size", image_size)
        self._configure_images(
            self.root,
            image_size=tuple(size) if isinstance(size, list) else size,  # JSON keeps tuples as lists
            color_mode=option("color_mode", color_mode),
            interpolation=option("interpolation", interpolation),
            keep_aspect_ratio=option("keep_aspect_ratio", keep_aspect_ratio),
            max_pixels=option("max_pixels", max_pixels),
            downscale_on_decode=option("downscale_on_decode", downscale_on_decode, False),  # not in older indexes
        )
        if self.kind == "masks":
            self._configure_masks(
                option("mask_mode", mask_mode),
                option("mask_dtype", mask_dtype),
                option("num_classes", num_classes),
                option("mask_values", mask_values),
            )
        else:
            self.label_mode = option("label_mode", label_mode)
            check_choice("label_mode", self.label_mode, LABEL_MODES if "labels" in columns else ("input", None))
            if self.label_mode == "binary" and len(self.class_names or ()) != 2:
                raise DatasetError(
                    f"label_mode='binary' needs exactly 2 classes, but {self.root!r} has {self.class_names}. "
                    "Use label_mode='int' or 'categorical'."
                )
            self.has_targets = self.label_mode is not None
            self.y_is_image = self.label_mode == "input"
        check_choice("order", order, ("random", "block"))
        self.order = order
        self.block_size = parse_size(block_size, "block_size")
        self.window = check_int("window", window, 1)
        self._shards: list[dict[str, Any]] = meta["shards"]
        self._key_width: int = meta["key_width"]
        count = len(columns["shard"])
        self._index = SampleIndex(**columns, position=np.arange(count, dtype=np.int64))  # position: the key
        self._reader = ShardReader(
            [self._shard_path(n) for n in range(len(self._shards))], 2 * self.window * self.block_size
        )
        self.skipped: list[tuple[str, str]] = []
        check_choice("on_bad_file", on_bad_file, ("raise", "skip"))
        if on_bad_file == "raise":
            self._check_shard_sizes()
        self._find_blocks()
        self._apply_bad_file_policy(on_bad_file)
        if self.skipped:  # rows were left out: blocks are cut again from the rows left
            self._find_blocks()

    def _configure_masks(self, mode: object, dtype: object, num_classes: object, values: Any) -> None:
        check_mask_interpolation(self.transform)
        if self.keep_aspect_ratio:
            raise ValueError(f"keep_aspect_ratio=True is for class sources; {self.root!r} holds images and masks.")
        self.mask_format = mask_format(mode, dtype, num_classes, modes=("index", "one_hot"))
        self.mask_dtype, self.num_classes = self.mask_format.dtype, self.mask_format.num_classes
        # A dict from the caller, or the [[stored, class], ...] pairs the index saves (JSON has no int keys).
        self.mask_values = MaskValues.of(None if values is None else dict(values))
        self.label_mode = None
        self.has_targets = True

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
                start, block = self._reader.block(block_number, self._block_spans(block_number))[shard]
                data = block[offset - start : offset - start + size]
            else:
                data = self._reader.read(shard, offset, size)
        except OSError as error:
            raise _bad(member, f"cannot read the shard ({error.strerror or error})") from None
        if len(data) != size:
            reason = (
                f"the shard is truncated: the member is bytes {offset:,} to {offset + size:,}, but only "
                f"{len(data):,} of its {size:,} bytes are in the file. Copy the shard again or pack again"
            )
            raise _bad(member, reason)
        if zlib.crc32(data) != crc:
            raise _bad(member, "the shard is corrupted: the member's CRC-32 differs from the one packed. Pack again")
        return data

    def _member_spans(self) -> tuple[np.ndarray, np.ndarray]:
        """Each sample's first member byte and the end of its last member in its shard (int64)."""
        rows = self._index
        starts, ends = rows.offset, rows.offset + rows.size
        if "mask_size" in rows.columns:
            has_mask = rows.mask_size >= 0
            starts = np.where(has_mask, np.minimum(starts, rows.mask_offset), starts)
            ends = np.where(has_mask, np.maximum(ends, rows.mask_offset + rows.mask_size), ends)
        return starts, ends

    def _find_blocks(self) -> None:
        """Cut the rows into blocks (NOTE [ Block order ]) and forget cached blocks."""
        self._reader.close()
        if self.order == "block":
            self._starts, self._ends = self._member_spans()
            sizes = np.array([shard["bytes"] for shard in self._shards], np.int64)
            self._bounds = block_bounds(self._index.shard, self._starts, sizes, self.block_size)

    def _block_of(self, index: int) -> int:
        return int(np.searchsorted(self._bounds, index, side="right")) - 1

    def _block_spans(self, block: int) -> dict[int, tuple[int, int]]:
        """{shard: (first byte, end)} of the members of block `block` (one shard)."""
        first, stop = int(self._bounds[block]), int(self._bounds[block + 1])
        shard = int(self._index.shard[first])
        return {shard: (int(self._starts[first:stop].min()), int(self._ends[first:stop].max()))}

    @property
    def blocks(self) -> int:
        """How many blocks `order="block"` reads (NOTE [ Block order ]); 0 with `order="random"`."""
        return len(self._bounds) - 1 if self.order == "block" else 0

    def _image_bytes(self, index: int) -> bytes:
        row = self._index
        return self._read(
            index, self.describe(index), int(row.offset[index]), int(row.size[index]), int(row.crc32[index])
        )

    def _mask(self, index: int, image_shape: tuple[int, ...]) -> np.ndarray:
        """As `ImageMaskFolder._mask`, from the mask member: the index map in `mask_format.work_dtype`."""
        row = self._index
        size = int(row.mask_size[index])
        if size < 0:
            return np.zeros(image_shape[:2], self.mask_format.work_dtype)
        member = self._member(index, "mask." + member_extension(row.masks[index]))
        data = self._read(index, member, int(row.mask_offset[index]), size, int(row.mask_crc32[index]))
        mask = decode_mask(data, member, max_pixels=self.max_pixels)
        return checked_index_map(mask, member, self.describe(index), image_shape, self.mask_format, self.mask_values)

    # --- the Source protocol -----------------------------------------------------------------

    def __repr__(self) -> str:
        return (
            f"TarShards({self.root!r}, {len(self)} samples in {len(self._shards)} shards, packed from "
            f"{self.packed_from}, image_size={self.image_size})"
        )

    @property
    def shards(self) -> list[str]:
        """The shard files, in order."""
        return [self._shard_path(number) for number in range(len(self._shards))]

    @property
    def reads(self) -> int:
        """How many reads of shard bytes this process has made (one per member, or per block and
        shard with `order="block"`: NOTE [ Block reads ])."""
        return self._reader.reads

    @property
    def filenames(self) -> list[str]:
        """The packed files' paths relative to the packed source's folder, in index order."""
        return self._index.files.tolist()

    @property
    def filepaths(self) -> list[str]:
        """Each sample's image member, `<shard>:<key>.<ext>`, in index order (as `describe`)."""
        return [self.describe(index) for index in range(len(self))]

    @property
    def labels(self) -> np.ndarray | None:
        """Class index of every sample, int64, in index order; None if packed without labels."""
        return self._index.labels.copy() if "labels" in self._index.columns else None

    def paths_of(self, indices: Sequence[int]) -> list[str]:
        """The byte ranges (`storage.byte_range`) the samples at `indices` read from remote
        shards, so `Batches` fetches a batch's ranges together (`SupportsPaths`); [] locally.
        With `order="block"`, the spans of their blocks not cached in this thread yet."""
        if not storage.is_url(self.root):
            return []
        rows, ranges = self._index, []
        if self.order == "block":
            blocks = sorted({self._block_of(index) for index in indices})
            for block in blocks:
                if not self._reader.cached(block):
                    spans = self._block_spans(block)
                    ranges += [storage.byte_range(self._shard_path(s), a, b - a) for s, (a, b) in spans.items()]
            return ranges
        for index in indices:
            shard = self._shard_path(int(rows.shard[index]))
            ranges.append(storage.byte_range(shard, int(rows.offset[index]), int(rows.size[index])))
            if "mask_size" in rows.columns and rows.mask_size[index] >= 0:
                ranges.append(storage.byte_range(shard, int(rows.mask_offset[index]), int(rows.mask_size[index])))
        return ranges

    def describe(self, index: int) -> str:
        """`<shard>:<key>.<ext>`: the image member of sample `index`."""
        return self._member(index, member_extension(self._index.files[index]))

    def epoch_order(self, seed: int, epoch: int) -> np.ndarray | None:
        """With `order="block"`, the block order of `epoch` (`SupportsEpochOrder`); else None."""
        if self.order != "block":
            return None
        return block_order(seed, epoch, self._bounds, window=self.window)

    def _target(self, index: int) -> np.ndarray:
        return class_target(self.label_mode, self._index.labels[index], len(self.class_names or ()))

    def load(
        self, index: int, *, seed: int, epoch: int, with_targets: bool, defer_normalize: bool = False
    ) -> tuple[Any, np.ndarray | None]:
        """Sample `index`, as the packed source's `load` (NOTE [ Packed samples decode as their files ])."""
        member = self.describe(index)
        if self.kind != "masks" or not with_targets:
            return self._finish(
                self.decoder.decode_bytes(self._image_bytes(index), member),
                index,
                seed=seed,
                epoch=epoch,
                with_targets=with_targets,
                defer_normalize=defer_normalize,
            )
        image = decode_image(self._image_bytes(index), member, self.color_mode, max_pixels=self.max_pixels)
        mask = resize_nearest(self._mask(index, image.shape), self.image_size)
        return transform_with_mask(
            self,
            self.decoder.resize(image),
            mask,
            self.mask_format,
            seed=seed,
            epoch=epoch,
            index=index,
            defer_normalize=defer_normalize,
        )

    def _finish(
        self, image: np.ndarray, index: int, *, seed: int, epoch: int, with_targets: bool, defer_normalize: bool
    ) -> tuple[Any, np.ndarray | None]:
        """The decoded, resized image through the transform, with its target: `ImageSource.load`'s steps."""
        data = self._transform({"image": image}, seed=seed, epoch=epoch, index=index, defer_normalize=defer_normalize)
        image = data["image"]  # with defer_normalize, possibly a NormalizedImage (NOTE in _fused_normalize.py)
        if not (with_targets and self.has_targets):
            return image, None
        if self.label_mode == "input":
            return image, image  # batched into separate arrays: y is a copy
        return image, self._target(index)


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


def _bad(member: str, reason: str) -> BadImageError:
    return BadImageError(f"cannot read {member}: {reason}.", path=member, reason=reason)
