"""`RLEMasks`: images in a folder, masks as run-length strings in a CSV (the Kaggle convention).

# NOTE [ Run-length encoding ]
A mask is a string of `start length` pairs: `"3 2 9 1"` sets pixels 3, 4 and 9. Pixels are
numbered from 1, in column-major order by default (Fortran order, `order="F"`: top to bottom,
then left to right, so pixel 2 is row 1, column 0), as in the Data Science Bowl 2018, Airbus
Ship Detection, Severstal and TGS Salt competitions. Some competitions number row by row
(`order="C"`). An empty string is an empty mask. xloader accepts runs only in increasing order
and without overlap, as Kaggle's scorers did, and a zero length (`"1 0"`, which some encoders
write for an empty mask) as no pixels.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Literal, Unpack

import numpy as np

from xloader import storage
from xloader._checks import check_choice, check_class_names, list_preview
from xloader._strings import StringTable
from xloader._targets import decode_rows, runs_text, runs_to_pixels
from xloader.errors import BadImageError, DatasetError
from xloader.index._sample_index import Ragged, SampleIndex
from xloader.index._table import read_table
from xloader.index._walk import list_image_files
from xloader.sources._masks import (
    MaskOptions,
    MaskSource,
    mask_format,
    relative_stem,
)

__all__ = ["RLEMasks", "rle_decode", "rle_encode"]

Order = Literal["F", "C"]


def parse_runs(text: str) -> tuple[np.ndarray, np.ndarray]:
    """`"start length ..."` as (0-based starts, lengths), int64, runs of length 0 dropped.

    Raises:
        ValueError: a token that is not an integer, an odd count, a start below 1, a negative
            length, or runs out of order or overlapping; the message says which.
    """
    tokens = text.split()
    if not tokens:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    try:
        numbers = np.array(tokens, dtype=np.int64)
    except (ValueError, OverflowError):
        bad = next(t for t in tokens if not t.isdigit())
        raise ValueError(
            f"{bad!r} is not a whole number; a run-length string is 'start length start length ...'"
        ) from None
    if len(numbers) % 2:
        raise ValueError(f"it has {len(numbers)} numbers, an odd count; runs come in 'start length' pairs")
    starts, lengths = numbers[0::2], numbers[1::2]
    if (starts < 1).any():
        raise ValueError(f"start {int(starts[starts < 1][0])} is below 1; pixels are numbered from 1")
    if (lengths < 0).any():
        raise ValueError(f"length {int(lengths[lengths < 0][0])} is negative")
    keep = lengths > 0
    starts, lengths = starts[keep] - 1, lengths[keep]
    if len(starts) > 1:
        ends = starts + lengths
        wrong = np.flatnonzero(starts[1:] < ends[:-1])
        if len(wrong):
            i = int(wrong[0])
            raise ValueError(
                f"run {starts[i + 1] + 1} {lengths[i + 1]} starts before the previous run "
                f"{starts[i] + 1} {lengths[i]} ends; runs must be in increasing order without overlap"
            )
    return starts, lengths


def _check_order(order: object) -> Order:
    check_choice("order", order, ("F", "C"))
    return order  # type: ignore[return-value]


def _to_image(flat: np.ndarray, shape: tuple[int, int], order: Order) -> np.ndarray:
    """A flat pixel array in `order` as a C-contiguous (H, W) array."""
    return np.ascontiguousarray(flat.reshape(shape, order=order))


def rle_decode(rle: str, shape: tuple[int, int], *, order: Order = "F") -> np.ndarray:
    """Decode a run-length string into a uint8 (H, W) mask of 0 and 1.

    Args:
        rle: `"start length start length ..."`, pixels numbered from 1 (see NOTE [ Run-length encoding ]).
        shape: (height, width) of the image.
        order: "F" (default): column-major, pixels numbered top to bottom, then left to right
            (the Kaggle convention); "C": row by row.

    Raises:
        ValueError: a malformed string, or runs past the end of an image of `shape`.

    Example:
        >>> rle_decode("1 2 6 1", (3, 2))   # pixels 1, 2 (column 0) and 6 (column 1, last row)
        array([[1, 0],
               [1, 0],
               [0, 1]], dtype=uint8)
    """
    _check_order(order)
    height, width = (int(v) for v in shape)
    starts, lengths = parse_runs(rle)
    if len(starts) and int(starts[-1] + lengths[-1]) > height * width:
        raise ValueError(
            f"run {int(starts[-1]) + 1} {int(lengths[-1])} ends at pixel {int(starts[-1] + lengths[-1])}, past the "
            f"{height * width} pixels of a {height}x{width} image"
        )
    flat = np.zeros(height * width, np.uint8)
    flat[runs_to_pixels(starts, lengths)] = 1
    return _to_image(flat, (height, width), order)


def rle_encode(mask: np.ndarray, *, order: Order = "F") -> str:
    """Encode the non-zero pixels of an (H, W) mask as a run-length string (`""` if none).

    The inverse of `rle_decode`: `rle_decode(rle_encode(m), m.shape)` equals `m != 0` as uint8.

    Example:
        >>> rle_encode(np.array([[1, 0], [1, 0], [0, 1]]))
        '1 2 6 1'
    """
    _check_order(order)
    array = np.asarray(mask)
    if array.ndim != 2:
        raise ValueError(f"rle_encode takes an (H, W) mask, got shape {array.shape}.")
    on = np.concatenate([[False], array.ravel(order=order) != 0, [False]])
    edges = np.flatnonzero(on[1:] != on[:-1])
    starts, ends = edges[0::2], edges[1::2]
    return runs_text(starts, ends - starts)


def _sort_key(name: str) -> tuple[int, int | str]:
    """Class values sort as numbers when they all are (`"2" < "10"`), else as text."""
    return (0, int(name)) if name.lstrip("-").isdigit() else (1, name)


class RLEMasks(MaskSource):
    """Images in a folder with masks given as run-length strings in a CSV, several rows per image.

    Each CSV row is one object or one class of one image: its id, optionally its class, and its
    run-length string (see NOTE [ Run-length encoding ]). A row's id names an image in
    `images_dir` by its path relative to `images_dir`, with or without the extension (`0002.jpg`
    or `0002`). Samples are the images that have rows, in sorted path order. `x` is the uint8
    (H, W, C) image; `y` is built at the image's own size (read from the decoded image, so
    nothing is decoded twice), then both are resized to `image_size` (the mask with nearest
    neighbour) and go through `transform(image=x, mask=y)` in one call.

    Classes: with `class_column`, class `class_names[k]` has index k + 1; index 0 is the
    background (pixels in no row). Without it, every row is an object of one class, index 1.
    Where rows overlap, the highest class index wins (in "index" and "one_hot" modes);
    "multi_hot" keeps every class.

    The options it shares with `ImageMaskFolder` (`mask_mode`, `mask_dtype`, `unpaired`,
    `color_mode`, `interpolation`, `follow_links`, `on_bad_file`, `max_pixels`, `cache`) are
    keyword arguments typed by `xloader.sources._masks.MaskOptions`, with the same defaults.

    Args:
        images_dir: folder of images (searched recursively, extensions as `ImageFolder`).
        csv_path: the CSV file, with a header row.
        image_size: (height, width), or None to keep file sizes.
        transform: an albumentations `Compose` (or any `xloader.Transform`). It must resample
            masks with nearest neighbour (the default), else `ValueError`.
        id_column, class_column, rle_column: column names. `class_column=None` when the CSV has
            no class column (Airbus ships, DSB nuclei).
        class_names: the class column's values in index order (ints are compared as text,
            Severstal: `[1, 2, 3, 4]`). None: the sorted values found (as numbers if they all
            are); pass them to give a validation set the same indices.
        order: "F" (default, column-major: the Kaggle convention) or "C" (row by row).
        mask_mode: "index": (H, W) class indices; "one_hot": (H, W, num_classes) with channel 0
            the background; "multi_hot": (H, W, num_classes - 1), channel k = class k + 1, 0/1,
            overlapping rows kept.
        mask_dtype: "index": "uint8" (default) or "int64"; "one_hot" and "multi_hot": "uint8"
            (default) or "float32".
        unpaired: images without rows and rows without an image. "raise" (default): a
            `DatasetError` that lists them. "skip": leave both out, warn, list them in `.skipped`.
            "background": images without rows are samples with an empty mask (Severstal's
            `train.csv` lists only images with defects); rows without an image are skipped.
        color_mode, interpolation, follow_links, storage_options, cache: as in `ImageMaskFolder` (cache: images only).
        on_bad_file, max_pixels: as in `ImageMaskFolder` ("skip" decodes every image and mask
            once now and leaves the bad ones out, listed in `.skipped`).

    Attributes:
        class_names: the class values in index order (None without `class_column`).
        num_classes: the number of classes, background included.
        image_files: image paths relative to `images_dir`, in index order.
        skipped: (what, reason) for everything `unpaired` left out.

    Raises:
        FileNotFoundError: `images_dir` or the CSV does not exist.
        DatasetError: a missing column, a malformed run-length string, an unknown class, unpaired
            images or rows (with `unpaired="raise"`), an id that names two images; the message
            names the CSV line.
        BadImageError: at load time, runs past the end of their image (naming line and image), or
            an unreadable image.

    Example:
        >>> ships = RLEMasks("train_v2", "train_ship_segmentations_v2.csv", image_size=(256, 256),
        ...                  id_column="ImageId", class_column=None, rle_column="EncodedPixels",
        ...                  unpaired="background")  # doctest: +SKIP
        >>> x, y = ships.load(0, seed=0, epoch=0, with_targets=True)  # doctest: +SKIP
        >>> x.shape, y.shape, y.dtype  # doctest: +SKIP
        ((256, 256, 3), (256, 256), dtype('uint8'))
    """

    def __init__(
        self,
        images_dir: str | os.PathLike[str],
        csv_path: str | os.PathLike[str],
        *,
        image_size: tuple[int, int] | None,
        transform: object = None,
        id_column: str = "image_id",
        class_column: str | None = "class",
        rle_column: str = "rle",
        class_names: Sequence[str | int] | None = None,
        order: Order = "F",
        storage_options: dict | None = None,
        **options: Unpack[MaskOptions],
    ):
        self._mounts = storage.mount(images_dir, storage.parent(csv_path), storage_options=storage_options)
        self._configure_masks(images_dir, None, ("images_dir",), image_size=image_size, transform=transform, **options)
        self.csv_path = os.fspath(csv_path)
        if not storage.isfile(self.csv_path):
            raise FileNotFoundError(f"csv_path {self.csv_path!r} does not exist or is not a file.")
        self.order = _check_order(order)
        for name, value in (("id_column", id_column), ("rle_column", rle_column)):
            if not isinstance(value, str):
                raise TypeError(f"{name} must be a column name (str), got {value!r}.")
        if class_column is not None and not isinstance(class_column, str):
            raise TypeError(f"class_column must be a column name (str) or None, got {class_column!r}.")
        names = check_class_names(class_names)
        if names is not None and class_column is None:
            raise ValueError("class_names needs a class_column to read each row's class from.")
        ids, classes, lines, runs = self._read_csv(id_column, class_column, rle_column)
        if not ids:
            raise DatasetError(f"{self.csv_path} has a header but no rows.")
        if class_column is None:
            self.class_names: list[str] | None = None
        else:
            self.class_names = names if names is not None else sorted(set(classes), key=_sort_key)
        self.num_classes = 2 if self.class_names is None else len(self.class_names) + 1
        self.mask_format = mask_format(*self._mask_options, self.num_classes)
        class_index = {name: i + 1 for i, name in enumerate(self.class_names or [])}
        unknown = [(line, c) for line, c in zip(lines, classes, strict=True) if class_column and c not in class_index]
        if unknown:
            shown = [f"line {line}: {value!r}" for line, value in unknown]
            raise DatasetError(
                f"{self.csv_path} has {len(unknown)} rows whose {class_column} is not in class_names "
                f"{self.class_names}: {list_preview(shown)}. Add the class to class_names, or remove the rows."
            )
        row_class = np.array([class_index[c] if class_column else 1 for c in classes], dtype=np.int32)

        files = list_image_files(self.images_dir, follow_links=self.follow_links)
        image_of_row, no_image = self._match_ids(files, ids, lines)
        has_rows = np.zeros(len(files), dtype=bool)
        has_rows[image_of_row[image_of_row >= 0]] = True
        no_rows = [os.path.join(self.images_dir, files[i]) for i in np.flatnonzero(~has_rows)]
        self._settle_unpaired(
            no_rows,
            no_image,
            texts=(
                (f"image has no row in {self.csv_path!r}", f"images have no row in {self.csv_path!r}"),
                (f"row names no image in {self.images_dir!r}", f"rows name no image in {self.images_dir!r}"),
            ),
            rule=f"Ids name images by their path relative to images_dir, with or without extension; {id_column!r} "
            "is the id column.",
        )
        samples = np.flatnonzero(has_rows | (self.unpaired == "background"))
        if not len(samples):
            raise DatasetError(f"no image in {self.images_dir!r} has a row in {self.csv_path!r}.")
        rows = self._index_rows(samples, image_of_row, row_class, np.asarray(lines, dtype=np.int64), runs)
        self._index = SampleIndex(files=StringTable(files[i] for i in samples), rows=rows)
        self._apply_bad_file_policy(self._on_bad_file)

    def _match_ids(self, files: list[str], ids: list[str], lines: list[int]) -> tuple[np.ndarray, list[str]]:
        """The image index of each row (-1: none), and the rows without an image, named by line.

        An id names an image by its path relative to `images_dir`, with or without extension.
        """
        by_name: dict[str, int] = {}
        ambiguous: dict[str, list[str]] = {}
        for i, path in enumerate(files):
            for key in {path.replace(os.sep, "/"), relative_stem(path).replace(os.sep, "/")}:
                if key in by_name:
                    ambiguous.setdefault(key, [files[by_name[key]]]).append(path)
                by_name[key] = i
        image_of_row = np.full(len(ids), -1, dtype=np.int64)
        no_image: list[str] = []
        for row, (sample_id, line) in enumerate(zip(ids, lines, strict=True)):
            key = sample_id.replace("\\", "/")
            if key in ambiguous:
                both = " and ".join(os.path.join(self.images_dir, p) for p in ambiguous[key])
                raise DatasetError(
                    f"{self.csv_path} line {line}: id {sample_id!r} names several images: {both}. "
                    "Use ids with the extension, or keep one file per name."
                )
            if key in by_name:
                image_of_row[row] = by_name[key]
            else:
                no_image.append(f"{self.csv_path} line {line} (id {sample_id!r})")
        return image_of_row, no_image

    def _read_csv(
        self, id_column: str, class_column: str | None, rle_column: str
    ) -> tuple[list[str], list[str], list[int], list[tuple[np.ndarray, np.ndarray]]]:
        """(ids, classes, line numbers, runs) of every data row, the run-length strings parsed."""
        wanted = {id_column: "id_column", rle_column: "rle_column"}
        if class_column is not None:
            wanted[class_column] = "class_column"
        table = read_table(self.csv_path, wanted)
        ids: list[str] = []
        classes: list[str] = []
        lines: list[int] = []
        runs: list[tuple[np.ndarray, np.ndarray]] = []
        for row, text in enumerate(table.values[rle_column]):
            sample_id = table.values[id_column][row].strip()
            if not sample_id:
                if not text.strip() and not (class_column and table.values[class_column][row].strip()):
                    continue  # a row of empty fields
                raise DatasetError(f"{self.csv_path} {table.where(row)}: the {id_column!r} field is empty.")
            try:
                runs.append(parse_runs("" if text.strip().lower() == "nan" else text))
            except ValueError as error:
                raise DatasetError(
                    f"{self.csv_path} {table.where(row)} (id {sample_id!r}): bad run-length string: {error}. "
                    f"Fix the {rle_column!r} field (an empty field is an empty mask)."
                ) from None
            ids.append(sample_id)
            classes.append(table.values[class_column][row].strip() if class_column else "")
            lines.append(int(table.where(row).split()[-1]))
        return ids, classes, lines, runs

    def _index_rows(
        self,
        samples: np.ndarray,
        image_of_row: np.ndarray,
        row_class: np.ndarray,
        row_line: np.ndarray,
        runs: list[tuple[np.ndarray, np.ndarray]],
    ) -> Ragged:
        """The rows of each sample (sorted by class, then CSV line), each with its runs."""
        # One slot per image, and a last one that stays -1 for rows without an image (index -1).
        position = np.full(max(int(samples.max()), int(image_of_row.max(initial=-1))) + 2, -1, dtype=np.int64)
        position[samples] = np.arange(len(samples))
        sample_of_row = np.where(image_of_row >= 0, position[image_of_row], -1)
        kept = np.flatnonzero(sample_of_row >= 0)
        order = kept[np.lexsort((row_line[kept], row_class[kept], sample_of_row[kept]))]
        counts = np.bincount(sample_of_row[order], minlength=len(samples))
        run_counts = np.array([len(runs[r][0]) for r in order], dtype=np.int64)
        empty = np.zeros(0, np.int64)
        starts = np.concatenate([empty, *(runs[r][0] for r in order)])
        lengths = np.concatenate([empty, *(runs[r][1] for r in order)])
        # int32 halves the index for every image under 2**31 pixels (46340 x 46340).
        small = not len(starts) or int((starts + lengths).max()) < 2**31
        return Ragged.from_counts(
            counts,
            classes=row_class[order],
            lines=row_line[order],
            runs=Ragged.from_counts(
                run_counts,
                starts=starts.astype(np.int32) if small else starts,
                lengths=lengths.astype(np.int32) if small else lengths,
            ),
        )

    def __repr__(self) -> str:
        return (
            f"RLEMasks({self.images_dir!r}, {self.csv_path!r}, {len(self)} images, image_size={self.image_size}, "
            f"classes={self.class_names}, mask_mode={self.mask_format.mode!r})"
        )

    def _decode(self, index: int, height: int, width: int) -> np.ndarray:
        """Sample `index`'s mask at (height, width): an index map, or a stack for "multi_hot"."""
        return decode_rows(
            self._index.rows,
            index,
            (height, width),
            self.mask_format,
            self.order,
            lambda row, end: self._overrun(index, row, end, height, width),
        )

    def mask_rows(self, index: int) -> list[tuple[int, str]]:
        """(class index, run-length string) of each row of sample `index`, in the order they are
        merged (by class, then CSV line); class 1 is the first class, 0 the background."""
        rows = self._index.rows
        runs, classes = rows.columns["runs"], rows.columns["classes"]
        return [
            (int(classes[row]), runs_text(runs.row(row, "starts"), runs.row(row, "lengths")))
            for row in rows.span(index)
        ]

    def _overrun(self, index: int, row: int, end: int, height: int, width: int) -> None:
        line = int(self._index.rows.columns["lines"][row])
        reason = (
            f"line {line}: a run ends at pixel {end}, past the {height * width} pixels of its image "
            f"{self.describe(index)} ({height}x{width}, HxW)"
        )
        raise BadImageError(
            f"cannot use {self.csv_path} {reason}. Check that the row names the right image and that "
            f"order={self.order!r} is the CSV's pixel order.",
            path=self.csv_path,
            reason=reason,
        )

    def _mask(self, index: int, image_shape: tuple[int, ...]) -> np.ndarray:
        return self._decode(index, image_shape[0], image_shape[1])
