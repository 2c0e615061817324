"""`xloader.pack`: a file-backed source's samples as WebDataset tar shards plus one index file."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import tarfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any

import numpy as np

from xloader import storage
from xloader._strings import StringTable
from xloader.decoding import read_bytes
from xloader.shards._index import (
    FORMAT,
    INDEX_NAME,
    VERSION,
    Columns,
    index_bytes,
    key_width,
    member_extension,
    shard_name,
)
from xloader.shards._output import Output

__all__ = ["PackResult", "pack"]

_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}
_SINGLE_LABEL_MODES = ("int", "categorical", "binary")
# A remote source's files are fetched this many samples at a time, with the next as many ahead:
# enough to keep the storage pool's 16 threads busy, and at most 32 samples' bytes held at once.
_FETCH_SAMPLES = 16


def parse_size(size: object, name: str = "shard_size") -> int:
    """Bytes from an int or a string such as "256MB" (10**6 bytes per MB) or "1GiB" (2**30);
    errors name the option `name`."""
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        number = int(size)
    elif isinstance(size, str) and (match := re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", size)):
        unit = match.group(2).upper()
        if unit not in _UNITS:
            raise ValueError(
                f"{name} {size!r} has an unknown unit {match.group(2)!r}; use B, KB, MB, GB, KiB, MiB or GiB."
            )
        number = int(float(match.group(1)) * _UNITS[unit])
    else:
        raise TypeError(f"{name} must be a number of bytes or a string such as '256MB', got {size!r}.")
    if number <= 0:
        raise ValueError(f"{name} must be positive, got {size!r}.")
    return number


@dataclass(frozen=True, slots=True)
class PackResult:
    """What `pack` wrote: the folder, its sample and shard counts, and the shards' total bytes."""

    out: str
    samples: int
    shards: int
    bytes: int


@dataclass(frozen=True, slots=True)
class _Plan:
    """What to pack, read from the source's public attributes."""

    meta: dict[str, Any]
    images: list[str]  # paths to read
    files: list[str]  # the same, relative to the source's folder
    labels: Columns  # what the index keeps of the labels (NOTE [ Shard index format ])
    label_member: Callable[[int], tuple[str, bytes]] | None  # sample i's label member: (suffix, bytes)
    masks: list[str] | None  # relative to `masks_dir`, "" for none
    masks_dir: str = ""
    parts: list[list[str]] | None = None  # MultiMaskFolder: each sample's mask files, in merge order


def _rle_plan(source: Any) -> _Plan:
    """An `RLEMasks`: each sample's rows become `<key>.json` ({"classes": [...], "rle": [...],
    "order": ...}), and the index's `rle_*` columns, from which `TarShards` decodes its masks."""
    from xloader.sources.rle import parse_runs

    fmt = source.mask_format
    rows = [source.mask_rows(i) for i in range(len(source))]
    flat = [row for sample in rows for row in sample]
    runs = [parse_runs(text) for _, text in flat]
    columns: Columns = {
        "rle_rows": np.concatenate([[0], np.cumsum([len(sample) for sample in rows])]).astype(np.int64),
        "rle_classes": np.array([c for c, _ in flat], np.int32),
        "rle_runs": np.concatenate([[0], np.cumsum([len(s) for s, _ in runs])]).astype(np.int64),
        "rle_starts": np.concatenate([np.zeros(0, np.int64), *(s for s, _ in runs)]),
        "rle_lengths": np.concatenate([np.zeros(0, np.int64), *(n for _, n in runs)]),
    }
    options = {**_image_options(source), "mask_dtype": fmt.dtype.name, "mask_mode": fmt.mode}
    options.update(num_classes=fmt.num_classes, order=source.order)

    def member(i: int) -> tuple[str, bytes]:
        classes, texts = [c for c, _ in rows[i]], [t for _, t in rows[i]]
        return "json", json.dumps({"classes": classes, "rle": texts, "order": source.order}).encode()

    return _Plan(
        meta={"kind": "rle", "source": "RLEMasks", "options": options, "class_names": source.class_names},
        images=source.filepaths,
        files=source.image_files,
        labels=columns,
        label_member=member,
        masks=None,
    )


def _multi_mask_plan(source: Any) -> _Plan:
    """A `MultiMaskFolder`: its binary mask files become `<key>.mask<k>.<ext>`, their classes
    (1 for the first class; 0 is background) `<key>.json`, and the index's `multi_*` columns."""
    fmt = source.mask_format
    parts = [source.mask_files(i) for i in range(len(source))]
    classes = [source.mask_classes(i) for i in range(len(source))]
    rows = np.zeros(len(parts) + 1, np.int64)
    np.cumsum([len(p) for p in parts], out=rows[1:])
    options = {**_image_options(source), "mask_dtype": fmt.dtype.name, "mask_mode": fmt.mode}
    options["num_classes"] = fmt.num_classes
    return _Plan(
        meta={
            "kind": "multi_masks",
            "source": "MultiMaskFolder",
            "options": options,
            "class_names": source.class_names,
            "layout": source.layout,
        },
        images=source.filepaths,
        files=source.image_files,
        labels={"multi_rows": rows, "multi_classes": np.fromiter((c for row in classes for c in row), np.int32)},
        label_member=lambda i: ("json", json.dumps(classes[i]).encode()),
        masks=None,
        masks_dir=source.masks_dir,
        parts=parts,
    )


def _label_plan(source: Any) -> tuple[Columns, Callable[[int], tuple[str, bytes]] | None]:
    """The index columns and the WebDataset member of a class source's labels: `<key>.cls` (the
    class index in decimal) for one class per image, `<key>.json` for "multi_hot" (a list of
    class indices) and "regression" (the float32 numbers, written exactly as JSON numbers)."""
    mode, labels = source.label_mode, source.labels
    if mode == "multi_hot":
        counts = [len(row) for row in labels]
        offsets = np.zeros(len(counts) + 1, np.int64)
        np.cumsum(counts, out=offsets[1:])
        flat = np.fromiter((c for row in labels for c in row), np.int32, int(offsets[-1]))
        return {"classes": flat, "class_offsets": offsets}, lambda i: (
            "json",
            json.dumps([int(c) for c in labels[i]]).encode(),
        )
    if mode == "regression":
        targets = np.asarray(labels, np.float32)
        return {"targets": targets}, lambda i: ("json", json.dumps(targets[i].tolist()).encode())
    if labels is None or (mode not in (*_SINGLE_LABEL_MODES, "input", None)):
        return {}, None
    column = np.asarray(labels, dtype=np.int64)
    return {"labels": column}, lambda i: ("cls", str(int(column[i])).encode())


def _image_options(source: Any) -> dict[str, Any]:
    decoder = source.decoder
    return {
        "image_size": list(decoder.image_size) if decoder.image_size else None,
        "color_mode": decoder.color_mode,
        "interpolation": decoder.interpolation,
        "keep_aspect_ratio": decoder.keep_aspect_ratio,
        "max_pixels": decoder.max_pixels,
        "downscale_on_decode": decoder.downscale_on_decode,
    }


def _plan(source: Any) -> _Plan:
    """The files, labels and options of `source` (ImageFolder, ImageManifest, ImageMaskFolder or
    MultiMaskFolder)."""
    from xloader.sources import ImageFolder, ImageManifest, ImageMaskFolder, MultiMaskFolder, RLEMasks

    if isinstance(source, MultiMaskFolder):
        return _multi_mask_plan(source)
    if isinstance(source, RLEMasks):
        return _rle_plan(source)
    if isinstance(source, ImageMaskFolder):
        fmt = source.mask_format
        options = {
            **_image_options(source),
            "mask_dtype": fmt.dtype.name,
            "mask_mode": fmt.mode,
            "num_classes": fmt.num_classes,
            "mask_values": None if source.mask_values is None else sorted(source.mask_values.mapping.items()),
        }
        return _Plan(
            meta={"kind": "masks", "source": "ImageMaskFolder", "options": options, "class_names": None},
            images=source.filepaths,
            files=source.image_files,
            labels={},
            label_member=None,
            masks=source.mask_files,
            masks_dir=source.masks_dir,
        )
    if isinstance(source, (ImageFolder, ImageManifest)):
        mode = source.label_mode
        labels, label_member = _label_plan(source)
        return _Plan(
            meta={
                "kind": "classes",
                "source": type(source).__name__,
                "options": {**_image_options(source), "label_mode": mode},
                "class_names": list(source.class_names),
            },
            images=source.filepaths,
            files=source.filenames,
            labels=labels,
            label_member=label_member,
            masks=None,
        )
    raise TypeError(
        f"pack takes an ImageFolder, ImageManifest, ImageMaskFolder, MultiMaskFolder or RLEMasks, got "
        f"{type(source).__name__}. "
        "Other sources are not file-backed in a way pack can copy yet."
    )


def _files(plan: _Plan, start: int, stop: int) -> list[str]:
    """The paths or URLs of every file of samples `start` to `stop` (images, then masks)."""
    stop = min(stop, len(plan.images))
    paths = [plan.images[i] for i in range(start, stop)]
    if plan.masks is not None:
        paths += [os.path.join(plan.masks_dir, plan.masks[i]) for i in range(start, stop) if plan.masks[i]]
    if plan.parts is not None:
        paths += [os.path.join(plan.masks_dir, name) for i in range(start, stop) for name in plan.parts[i]]
    return paths


class _ShardWriter:
    """Appends members to numbered shards, starting a new shard when the next sample would
    push the current one past `shard_size` (a sample's members always share a shard)."""

    def __init__(self, out: Output, shard_size: int):
        self.out, self.shard_size = out, shard_size
        self.number, self.used = -1, 0
        self.file: IO[bytes] | None = None
        self.tar: tarfile.TarFile | None = None
        self.shards: list[dict[str, Any]] = []

    def start_sample(self, size: int) -> int:
        """Make room for a sample of about `size` bytes; returns its shard's number."""
        if self.tar is None or (self.used + size > self.shard_size and self.shards[-1]["samples"]):
            self.close()
            self.number += 1
            name = shard_name(self.number)
            self.shards.append({"name": name, "samples": 0, "bytes": 0})  # listed first: removed on failure
            self.file = self.out.open(name)
            self.tar = tarfile.open(fileobj=self.file, mode="w", format=tarfile.USTAR_FORMAT)
            self.used = 0
        self.shards[-1]["samples"] += 1
        self.used += size
        return self.number

    def add(self, name: str, data: bytes) -> tuple[int, int, int]:
        """Write one member; returns (offset of its data in the shard, size, CRC-32)."""
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = len(data), 0o444, 0  # same bytes on every pack of the same files
        assert self.tar is not None
        self.tar.addfile(info, io.BytesIO(data))
        blocks = -(-len(data) // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE  # the data, padded to whole blocks
        return self.tar.offset - blocks, len(data), zlib.crc32(data)

    def remove(self) -> None:
        """Delete the shards written so far."""
        for shard in self.shards:
            with contextlib.suppress(FileNotFoundError):
                self.out.remove(shard["name"])

    def close(self) -> None:
        if self.tar is not None and self.file is not None:
            self.tar.close()  # the end-of-archive blocks; the file stays open (tarfile does not own it)
            self.shards[-1]["bytes"] = self.file.tell()
            self.file.close()
            self.tar = self.file = None


def _progress(count: int, enabled: bool) -> Iterator[int]:
    if not enabled:
        return iter(range(count))
    from tqdm import tqdm

    return iter(tqdm(range(count), total=count, desc="packing", unit="file"))


def pack(
    source: object,
    out: str | os.PathLike[str],
    *,
    shard_size: int | str = "256MB",
    progress: bool = True,
    storage_options: dict[str, Any] | None = None,
) -> PackResult:
    """Copy the samples of `source` into WebDataset tar shards in folder `out`, with one index.

    Each sample `i` becomes members `<key>.<ext>` (the image file's bytes, never re-encoded),
    `<key>.cls` (its class index in decimal, for class sources with labels), `<key>.json`
    (multi-hot classes or regression values; a `MultiMaskFolder`'s mask classes; an `RLEMasks`
    row), `<key>.mask.<ext>` (its mask file, for image+mask sources) or `<key>.mask<k>.<ext>`
    (each mask file of a `MultiMaskFolder`), where the key is `i`
    zero-padded (NOTE [ Shard index format ] in xloader/shards/_index.py). Samples keep the
    source's order, so `xloader.TarShards(out, ...)` with the source's options and the same
    seed gives the same batches, bit for bit.

    Args:
        source: an `ImageFolder`, `ImageManifest` (any `label_mode`), `ImageMaskFolder`,
            `MultiMaskFolder` or `RLEMasks`. Its options (image size, colour mode, label and mask modes...)
            are saved as the defaults of `TarShards`; its `transform` is not saved.
        out: a folder, created if missing, or an fsspec URL (`s3://bucket/packed`,
            `memory://packed`; NOTE [ Packing to a URL ]); it must not already hold a packed
            dataset.
        shard_size: the size a shard grows to before the next one starts, in bytes or as
            "256MB" (MB = 10**6 bytes) or "1GiB" (2**30).
        progress: show a progress bar (tqdm).
        storage_options: fsspec options for a URL `out` (e.g. `{"endpoint_url": ...}`).

    Returns:
        A `PackResult` (folder, sample count, shard count, bytes written in shards).

    Raises:
        TypeError: `source` is not one of the sources above.
        FileExistsError: `out` is a file or already holds a packed dataset.
        BadImageError: a file of the source cannot be read (missing, unreadable or empty).
        StorageError: a URL `out` cannot be listed (endpoint down, credentials refused).
    """
    out = os.fspath(out)
    limit = parse_size(shard_size)
    plan = _plan(source)
    output = Output(out, storage_options)
    output.check_new()
    count = len(plan.images)
    width = key_width(count)
    shard = np.zeros(count, np.int32)
    place = np.zeros((3, count), np.int64)  # offset, size, crc32 of the image member
    mask_place = np.full((3, count), -1, np.int64)  # the same for the mask member; -1: none
    part_place: list[tuple[int, int, int]] = []  # the same for each MultiMaskFolder mask member
    writer = _ShardWriter(output, limit)
    try:
        for i in _progress(count, progress):
            if i % _FETCH_SAMPLES == 0 and storage.active():  # concurrent GETs (NOTE [ Remote storage ])
                storage.prefetch(
                    _files(plan, i, i + _FETCH_SAMPLES), ahead=_files(plan, i + _FETCH_SAMPLES, i + 2 * _FETCH_SAMPLES)
                )
            key = f"{i:0{width}d}"
            image = read_bytes(plan.images[i])
            mask_name = plan.masks[i] if plan.masks is not None else ""
            mask = read_bytes(os.path.join(plan.masks_dir, mask_name)) if mask_name else None
            parts = plan.parts[i] if plan.parts is not None else []
            part_data = [read_bytes(os.path.join(plan.masks_dir, name)) for name in parts]
            mask_bytes = (len(mask) if mask is not None else 0) + sum(map(len, part_data))
            shard[i] = writer.start_sample(len(image) + mask_bytes)
            place[:, i] = writer.add(f"{key}.{member_extension(plan.files[i])}", image)
            if plan.label_member is not None:
                suffix, data = plan.label_member(i)
                writer.add(f"{key}.{suffix}", data)
            if mask is not None:
                mask_place[:, i] = writer.add(f"{key}.mask.{member_extension(mask_name)}", mask)
            for k, (name, data) in enumerate(zip(parts, part_data, strict=True)):
                part_place.append(writer.add(f"{key}.mask{k}.{member_extension(name)}", data))
        writer.close()
        meta = {**plan.meta, "format": FORMAT, "version": VERSION, "key_width": width, "shards": writer.shards}
        columns: Columns = {
            "files": StringTable(plan.files),
            "shard": shard,
            "offset": place[0],
            "size": place[1],
            "crc32": place[2].astype(np.uint32),
        }
        columns.update(plan.labels)
        if plan.masks is not None:
            columns["masks"] = StringTable(plan.masks)
            columns["mask_offset"], columns["mask_size"] = mask_place[0], mask_place[1]
            columns["mask_crc32"] = np.maximum(mask_place[2], 0).astype(np.uint32)
        if plan.parts is not None:
            places = np.array(part_place, np.int64).reshape(-1, 3)
            columns["multi_paths"] = StringTable(name for names in plan.parts for name in names)
            columns["multi_offset"], columns["multi_size"] = places[:, 0], places[:, 1]
            columns["multi_crc32"] = places[:, 2].astype(np.uint32)
        output.put(INDEX_NAME, index_bytes(meta, columns))
    except BaseException:  # a bad file, Ctrl-C, a failed upload: no shards left without an index
        writer.close()
        writer.remove()
        raise
    finally:
        storage.prefetch(())  # drop the fetches a failed pack left pending
    output.done()
    return PackResult(out=out, samples=count, shards=len(writer.shards), bytes=sum(s["bytes"] for s in writer.shards))
