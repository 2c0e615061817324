"""The index of a packed dataset: one `.npz` file next to the tar shards.

# NOTE [ Shard index format ]
`xloader pack` writes `OUT/shard-000000.tar, shard-000001.tar, ...` and `OUT/xloader-index.npz`,
an uncompressed NumPy archive of flat arrays, one row per sample in the packed source's order:

- `shard` (int32): which shard holds the sample; `offset`, `size` (int64) and `crc32` (uint32):
  where the image member's bytes start in that shard, how many, and their CRC-32.
- `mask_offset`, `mask_size`, `mask_crc32`: the same for the `.mask.<ext>` member of image+mask
  sources (size -1: the sample has no mask, all background). Absent for class sources.
- `labels` (int64): the class index (the `.cls` member), for class sources that have labels.
- `classes` (int32) and `class_offsets` (int64, n + 1): a manifest's "multi_hot" class indices,
  those of sample `i` at `class_offsets[i]:class_offsets[i + 1]` (the `.json` member: a list).
- `targets` (float32, (n,) or (n, k)): a manifest's "regression" targets (the `.json` member: a
  number or a list of numbers, each the float32 value exactly).
- `multi_rows` (int64, n + 1) and, per mask member of a packed `MultiMaskFolder`, `multi_paths`
  (a `StringTable`), `multi_classes` (int32), `multi_offset`, `multi_size`, `multi_crc32`:
  sample `i`'s `.mask<k>.<ext>` members are rows `multi_rows[i]:multi_rows[i + 1]`.
- `rle_rows` (int64, n + 1), `rle_classes` (int32, per row), `rle_runs` (int64, rows + 1),
  `rle_starts`, `rle_lengths` (int64, 0-based, per run): a packed `RLEMasks`'s rows and runs.
- `files` (and `masks`, "" for none): the packed files' paths relative to their folder (a
  `StringTable`, saved as `files` and `files__offsets`): the sample keys of the resume
  fingerprint, as in the folder source, and the members' extensions.
- `meta`: UTF-8 JSON: format name and version, the source's kind, class and options, class
  names, and each shard's name, sample count and byte size.

Sample `i`'s WebDataset key is `i` in decimal, zero-padded to `meta["key_width"]` digits (keys
have no dots, so WebDataset splits `000042.mask.png` into key `000042` and field `mask.png`).
Opening reads this one file (no per-sample objects) and stats each shard once.
"""

from __future__ import annotations

import io
import json
import os
from typing import Any

import numpy as np

from xloader import storage
from xloader._strings import StringTable
from xloader.errors import DatasetError

INDEX_NAME = "xloader-index.npz"
FORMAT = "xloader-shards"
VERSION = 1
_OFFSETS = "__offsets"  # a StringTable column `x` is saved as `x` (bytes) and `x__offsets`


def shard_name(number: int) -> str:
    return f"shard-{number:06d}.tar"


def member_extension(name: str) -> str:
    """The member suffix for a packed file: its extension in lower case ("bin" if it has none)."""
    return os.path.splitext(name)[1][1:].lower() or "bin"


def key_width(count: int) -> int:
    """Digits of the zero-padded keys of `count` samples (at least 6, like the shard numbers)."""
    return max(6, len(str(max(count - 1, 0))))


def index_path(root: str) -> str:
    return os.path.join(root, INDEX_NAME)


def is_packed(path: str) -> bool:
    """True if `path` (a folder or a URL) is written by `xloader.pack` (it holds the index file)."""
    return storage.isfile(index_path(path))


Columns = dict[str, "np.ndarray | StringTable"]


def index_bytes(meta: dict[str, Any], columns: Columns) -> bytes:
    """The index file holding `meta` and the per-sample `columns` (arrays, or `StringTable`s
    saved as two arrays): an uncompressed `.npz`."""
    arrays: dict[str, np.ndarray] = {}
    for name, column in columns.items():
        if isinstance(column, StringTable):
            arrays[name], arrays[name + _OFFSETS] = column.arrays()
        else:
            arrays[name] = column
    arrays["meta"] = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]  # numpy's stub reads ** as allow_pickle
    return buffer.getvalue()


def write_index(root: str, meta: dict[str, Any], columns: Columns) -> str:
    """Write `index_bytes(meta, columns)` as `root/xloader-index.npz` (a local folder), through a
    temporary name so a reader never sees half a file."""
    path = index_path(root)
    temporary = path + ".partial"
    with open(temporary, "wb") as file:
        file.write(index_bytes(meta, columns))
    os.replace(temporary, path)
    return path


def read_index(root: str) -> tuple[dict[str, Any], Columns]:
    """The `meta` and the per-sample columns of the packed dataset in folder `root`.

    Raises:
        FileNotFoundError: `root` or its index file does not exist.
        DatasetError: the index is not one this version of xloader reads.
    """
    path = index_path(root)
    if not storage.is_url(root) and not os.path.isdir(root):
        raise FileNotFoundError(f"packed dataset folder {root!r} does not exist.")
    if not storage.isfile(path):
        raise FileNotFoundError(
            f"{root!r} has no {INDEX_NAME}, so it is not a folder written by xloader pack. "
            f"Pack a dataset with `xloader pack SOURCE {root}` or xloader.pack(source, {root!r})."
        )
    try:
        data = io.BytesIO(storage.read_url(path)) if storage.is_url(path) else path
        with np.load(data, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
        meta = json.loads(arrays.pop("meta").tobytes())
    except (OSError, ValueError, KeyError) as error:
        raise DatasetError(f"cannot read the shard index {path}: {error}. Pack the dataset again.") from None
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise DatasetError(
            f"{path} is format {meta.get('format')!r} version {meta.get('version')!r}; this xloader reads "
            f"{FORMAT!r} version {VERSION}. Pack the dataset again with this version."
        )
    columns: Columns = {}
    for name in [name for name in arrays if not name.endswith(_OFFSETS)]:
        offsets = arrays.get(name + _OFFSETS)
        columns[name] = arrays[name] if offsets is None else StringTable.from_arrays(arrays[name], offsets)
    return meta, columns
