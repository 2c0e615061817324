"""`TarShards`: a source over the tar shards `xloader.pack` wrote, read by byte range.

# NOTE [ Packed samples decode as their files ]
A packed member holds the original file's bytes, unchanged, and its index row keeps the packed
source's order. Loading sample `i` reads those bytes at the offset in the index (one `os.pread`,
or a slice of a cached block: NOTE [ Block reads ]), then runs the packed source's own steps:
the `ImageDecoder`'s decode and resize (NOTE [ One sample's path ]; through the decoded cache if
there is one, NOTE [ Decoded cache ]), the transform with the (seed, epoch, i) stream, and for
masks the source's own mask rule (`checked_index_map` for `ImageMaskFolder`, `merge_binary_masks`
for `MultiMaskFolder`, `decode_rows` for `RLEMasks`, whose rows live in the index), then
`resize_nearest` and `transform_with_mask`. So with the same options and seed, every batch equals
the folder source's bit for bit, for any worker count: nothing here depends on which process
reads, or in what order. Each member's CRC-32 is checked after the read, so a shard changed after
packing is an error naming the shard and the key, never a silently different pixel.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from xloader import storage
from xloader._checks import check_choice, check_int
from xloader._targets import MaskValues, class_target, decode_rows, merge_binary_masks
from xloader.cache import CachedSample, DecodedCache, decode_sample, image_and_mask_sample, image_sample
from xloader.decoding import decode_mask
from xloader.errors import DatasetError
from xloader.index._sample_index import Ragged, SampleIndex
from xloader.shards._block_order import block_order
from xloader.shards._index import member_extension, read_index
from xloader.shards._members import PackedMembers, bad_member
from xloader.shards._reader import ShardReader
from xloader.shards.pack import parse_size
from xloader.sources._base import ImageSource
from xloader.sources._masks import (
    check_mask_interpolation,
    checked_index_map,
    mask_format,
    resize_nearest,
    size_mismatch,
    transform_with_mask,
)
from xloader.sources.image_folder import LABEL_MODES  # a packed ImageManifest has one class per row

__all__ = ["TarShards"]

_MASK_KINDS = ("masks", "multi_masks", "rle")  # packed ImageMaskFolder, MultiMaskFolder, RLEMasks


class _AsPacked:
    """The default of `TarShards` options: the value the packed source had."""

    def __repr__(self) -> str:
        return "AS_PACKED"


AS_PACKED: Any = _AsPacked()


class TarShards(PackedMembers, ImageSource):
    """The samples of a dataset packed with `xloader.pack` / `xloader pack`, read from its shards.

    Sample `i` is sample `i` of the packed source, loaded the same way (NOTE [ Packed samples
    decode as their files ]): with the same options, transform and seed, `Batches`, the Keras
    and the torch adapters give the same batches as the folder source did, bit for bit. A packed
    `ImageFolder` or `ImageManifest` gives `x` (H, W, C) uint8 images and `y` by `label_mode`;
    a packed `ImageMaskFolder`, `MultiMaskFolder` or `RLEMasks` gives `x` and its mask `y` by
    `mask_mode` and `mask_dtype`, made by that source's own rule.

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
        label_mode: class sources: "int", "categorical", "binary", "input" or None; a packed
            `ImageManifest` with "multi_hot" or "regression" labels: that mode, "input" or None
            (a source packed without labels: "input" or None).
        mask_dtype, mask_mode, num_classes, mask_values: mask sources, as in the packed one
            (`mask_values` only for a packed `ImageMaskFolder`).
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
            about `2 * window * block_size` bytes of blocks (NOTE [ Block reads ]).
        storage_options: fsspec options for a URL `path` (e.g. `{"endpoint_url": ...}`).
        cache: keep decoded, resized images (and masks): None (default), "memory", a directory
            or a `DecodedCache` (NOTE [ Decoded cache ]). An entry is keyed by its shard's
            identity and its members' offsets, sizes and CRC-32s, so a re-packed or changed
            shard is decoded again; batches are the same with and without it.

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
        cache: str | os.PathLike[str] | DecodedCache | None = None,
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
        self.packed_options: dict[str, Any] = packed
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
            cache=cache,
        )
        if self.kind in _MASK_KINDS:
            self._configure_masks(
                option("mask_mode", mask_mode),
                option("mask_dtype", mask_dtype),
                option("num_classes", num_classes),
                option("mask_values", mask_values),
            )
        else:
            self.label_mode = option("label_mode", label_mode)
            check_choice("label_mode", self.label_mode, _label_modes(columns))
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
        index_columns: dict[str, Any] = dict(columns)
        if "class_offsets" in columns:  # "multi_hot": a Ragged group of class indices per sample
            index_columns["classes"] = Ragged(index_columns.pop("class_offsets"), classes=columns["classes"])
        if "rle_rows" in columns:  # a packed RLEMasks: its rows per sample, each row's runs
            runs = Ragged(index_columns.pop("rle_runs"), starts=columns["rle_starts"], lengths=columns["rle_lengths"])
            index_columns["rle"] = Ragged(index_columns.pop("rle_rows"), classes=columns["rle_classes"], runs=runs)
            for name in ("rle_starts", "rle_lengths", "rle_classes"):
                del index_columns[name]
        if "multi_rows" in columns:  # a packed MultiMaskFolder: its mask members, grouped per sample
            parts = {
                name: index_columns.pop("multi_" + name) for name in ("paths", "classes", "offset", "size", "crc32")
            }
            index_columns["multi"] = Ragged(index_columns.pop("multi_rows"), **parts)
        self._index = SampleIndex(**index_columns, position=np.arange(count, dtype=np.int64))  # position: the key
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
        for name in ("keep_aspect_ratio", "downscale_on_decode"):
            if getattr(self, name):
                raise ValueError(f"{name}=True is for class sources; {self.root!r} holds images and masks.")
        if self.kind != "masks":  # as MultiMaskFolder and RLEMasks: binary masks merged, "multi_hot" too
            if values is not None:
                raise ValueError(
                    f"mask_values is for one class-index mask file per image; {self.root!r} holds a packed "
                    f"{self.packed_from} (binary masks with their classes). Leave mask_values out."
                )
            self.mask_format = mask_format(mode, dtype, num_classes)
        else:
            self.mask_format = mask_format(mode, dtype, num_classes, modes=("index", "one_hot"))
        self.mask_dtype, self.num_classes = self.mask_format.dtype, self.mask_format.num_classes
        # A dict from the caller, or the [[stored, class], ...] pairs the index saves (JSON has no int keys).
        self.mask_values = MaskValues.of(None if values is None else dict(values))
        self.label_mode = None
        self.has_targets = True

    def _mask(self, index: int, image_shape: tuple[int, ...]) -> np.ndarray:
        """As the packed source's `_mask`: `ImageMaskFolder`'s index map in `mask_format.work_dtype`
        from its mask member, `MultiMaskFolder`'s binary mask members merged, or `RLEMasks`'s rows
        (kept in the index) decoded."""
        members, image_path = self._mask_members(index), self.describe(index)

        def decoded(name: str, offset: int, size: int, crc: int) -> np.ndarray:
            return decode_mask(self._read(index, name, offset, size, crc), name, max_pixels=self.max_pixels)

        if self.kind == "rle":
            shape, order = (int(image_shape[0]), int(image_shape[1])), self.packed_options["order"]
            return decode_rows(
                self._index.rle,
                index,
                shape,
                self.mask_format,
                order,
                lambda row, end: self._overrun(index, end, shape),
            )
        if self.kind == "multi_masks":
            classes = self._index.multi.row(index, "classes")
            binary = [decoded(*member) for member in members]
            for mask, (name, *_) in zip(binary, members, strict=True):
                size_mismatch(name, mask.shape, image_path, image_shape)
            on = [(int(c), mask != 0) for c, mask in zip(classes, binary, strict=True)]
            return merge_binary_masks(self.mask_format, image_shape, on)
        if not members:
            return np.zeros(image_shape[:2], self.mask_format.work_dtype)
        name = members[0][0]
        mask = decoded(*members[0])
        return checked_index_map(mask, name, image_path, image_shape, self.mask_format, self.mask_values)

    def _overrun(self, index: int, end: int, shape: tuple[int, int]) -> None:
        """A packed run-length row that ends past its image: `BadImageError` naming the member."""
        member = self._member(index, "json")
        reason = (
            f"a run ends at pixel {end}, past the {shape[0] * shape[1]} pixels of its image "
            f"{self.describe(index)} ({shape[0]}x{shape[1]}, HxW)"
        )
        raise bad_member(member, reason + ". Check the CSV the shards were packed from, then pack again")

    # --- the Source protocol -----------------------------------------------------------------

    def __repr__(self) -> str:
        return (
            f"TarShards({self.root!r}, {len(self)} samples in {len(self._shards)} shards, packed from "
            f"{self.packed_from}, image_size={self.image_size})"
        )

    @property
    def filenames(self) -> list[str]:
        """The packed files' paths relative to the packed source's folder, in index order."""
        return self._index.files.tolist()

    @property
    def filepaths(self) -> list[str]:
        """Each sample's image member, `<shard>:<key>.<ext>`, in index order (as `describe`)."""
        return [self.describe(index) for index in range(len(self))]

    @property
    def labels(self) -> np.ndarray | list[list[int]] | None:
        """Every sample's labels in index order, as the packed source's `labels`: int64 class
        indices (N,), a list of class-index lists ("multi_hot"), float32 targets (N,) or (N, k)
        ("regression"); None if packed without labels."""
        columns = self._index.columns
        if "classes" in columns:
            ragged = columns["classes"]
            return [ragged.row(i, "classes").tolist() for i in range(len(self))]
        for name in ("labels", "targets"):
            if name in columns:
                return columns[name].copy()
        return None

    def paths_of(self, indices: Sequence[int]) -> list[str]:
        """The byte ranges (`storage.byte_range`) the samples at `indices` read from remote
        shards, so `Batches` fetches a batch's ranges together (`SupportsPaths`); [] locally.
        With `order="block"`, the spans of their blocks this process does not hold or read yet.
        Samples the decoded cache holds read nothing: with or without their masks, as `load`
        asks for them with or without targets (which this method is not told)."""
        if not storage.is_url(self.root):
            return []
        cache = self.decoded_cache
        if cache is not None:
            views = (True, False) if self.kind in _MASK_KINDS else (False,)
            indices = [i for i in indices if not any(cache.holds(self, i, self._cache_view(i, v)) for v in views)]
        return self._ranges(indices)

    def describe(self, index: int) -> str:
        """`<shard>:<key>.<ext>`: the image member of sample `index`."""
        return self._member(index, member_extension(self._index.files[index]))

    def epoch_order(self, seed: int, epoch: int) -> np.ndarray | None:
        """With `order="block"`, the block order of `epoch` (`SupportsEpochOrder`); else None."""
        if self.order != "block":
            return None
        return block_order(seed, epoch, self._bounds, window=self.window)

    def _target(self, index: int) -> np.ndarray:
        """`ImageManifest._target`'s rule, from the index's columns."""
        columns, count = self._index.columns, len(self.class_names or ())
        if "targets" in columns:
            return np.array(columns["targets"][index], dtype=np.float32)
        if "classes" in columns:
            return class_target("multi_hot", columns["classes"].row(index, "classes"), count)
        return class_target(self.label_mode, columns["labels"][index], count)

    def _cache_view(self, index: int, with_mask: bool | None = None) -> CachedSample:
        """Sample `index` as the decoded cache sees it (NOTE [ Decoded cache ]): the members'
        bytes, named by `_version` (shard identity, offsets, sizes, CRC-32s), and with masks
        (`with_mask`, default for image+mask sources) its resized mask too. Without a cache,
        `decode()` is the one decode path as well."""
        member, read = self.describe(index), lambda: self._image_bytes(index)
        version = lambda: self._version(index)  # noqa: E731
        if not (self.kind in _MASK_KINDS if with_mask is None else with_mask):
            return image_sample(self.decoder, member, read, version)
        fmt = self.mask_format
        values = None if self.mask_values is None else sorted(self.mask_values.mapping.items())
        return image_and_mask_sample(
            self.decoder,
            member,
            tuple(name for name, *_ in self._mask_members(index)),
            f"{self.kind};mask={fmt.mode},{fmt.dtype.str},{fmt.num_classes},{fmt.work_dtype.str},values={values}",
            fmt.work_dtype,
            lambda shape: resize_nearest(self._mask(index, shape), self.image_size),
            read,
            version,
        )

    def load(
        self, index: int, *, seed: int, epoch: int, with_targets: bool, defer_normalize: bool = False
    ) -> tuple[Any, np.ndarray | None]:
        """Sample `index`, as the packed source's `load` (NOTE [ Packed samples decode as their
        files ]), through the decoded cache if there is one."""
        masks = self.kind in _MASK_KINDS and with_targets
        image, _, mask = decode_sample(self, index, self._cache_view(index, masks))
        if not masks:
            return self._finish(
                image, index, seed=seed, epoch=epoch, with_targets=with_targets, defer_normalize=defer_normalize
            )
        assert mask is not None  # `_cache_view(index, True)` makes the mask with the image
        return transform_with_mask(
            self,
            image,
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


def _label_modes(columns: dict[str, Any]) -> tuple[str | None, ...]:
    """The `label_mode`s a packed class source's labels allow."""
    if "labels" in columns:
        return LABEL_MODES
    if "classes" in columns:
        return ("multi_hot", "input", None)
    if "targets" in columns:
        return ("regression", "input", None)
    return ("input", None)
