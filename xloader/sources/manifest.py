"""`ImageManifest`: images listed in a table (a CSV file or a DataFrame) with their labels.

This is the job of Keras's `flow_from_dataframe`. The table is read once, checked row by row,
and kept as a compact index: the paths in a `StringTable`, the labels in NumPy arrays.

# NOTE [ Manifest paths stay inside base_dir ]
A manifest names files, so it can name any file. Each path is joined to `base_dir` and
normalised. Paths that leave `base_dir` are refused: `../x.jpg`, or an absolute path
elsewhere. The realpath of each file (one `realpath` per folder, one `lstat` per file) must also
stay inside it, so a symbolic link cannot lead outside either. `follow_links=True` trusts
symbolic links (an image folder linked from another disk), but the manifest's own text still
cannot leave `base_dir`. The check runs once, at construction, together with the check that
every file exists.
"""

from __future__ import annotations

import os
import stat
import warnings
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from xloader import storage
from xloader._checks import check_bool, check_choice, check_class_names, check_directory, list_preview
from xloader._strings import StringTable
from xloader._targets import check_binary_classes
from xloader.cache import DecodedCache
from xloader.decoding import DEFAULT_MAX_PIXELS, ColorMode
from xloader.errors import DatasetError
from xloader.index._sample_index import Ragged, SampleIndex
from xloader.index._table import Table, read_table
from xloader.sources._base import ImageSource, class_target
from xloader.sources._manifest_rows import CLASS_MODES, SINGLE_CLASS_MODES, ManifestRows, Problems, rows_text

__all__ = ["ImageManifest"]

LABEL_MODES = ("int", "sparse", "categorical", "binary", "multi_hot", "regression", "input", None)

# Keras class_mode values that have no equivalent here, and what to use instead.
_KERAS_ONLY_MODES = {
    "raw": "use label_mode='regression' (float32 numbers from the y_col column or columns)",
    "other": "use label_mode='regression' (float32 numbers from the y_col column or columns)",
    "multi_output": "use label_mode='regression' with a list of y_col columns (one float32 vector per image)",
}


def _inside(path: str, base: str) -> bool:
    """Whether the absolute, normalised `path` is `base` or below it."""
    return path == base or path.startswith(base.rstrip(os.sep) + os.sep)


class ImageManifest(ManifestRows, ImageSource):
    """Images listed in a CSV file or a pandas DataFrame, one row per image, with their labels.

    One column holds each image's path, relative to `base_dir`. Other columns hold the labels.
    Samples follow the table's row order. Each sample is `x`, a uint8 (H, W, C) image resized
    to `image_size` and then passed through `transform(image=x)`. The transform's output dtype
    wins. The target `y` depends on `label_mode`:

    - `"int"` (or Keras's `"sparse"`): int64 class index, shape ();
    - `"categorical"`: float32 one-hot, shape (num_classes,);
    - `"binary"`: float32 0.0 / 1.0, shape (), for exactly two classes;
    - `"multi_hot"`: float32 multi-hot, shape (num_classes,), from a list of classes per row.
      A CSV cell holds the classes separated by `label_delimiter` (`"cat|dog"`). A DataFrame
      cell may also hold a list or tuple. An empty cell means no class (all zeros);
    - `"regression"`: float32 numbers from `y_col`: shape () for one column name, (k,) for a
      list of k names;
    - `"input"`: the transformed image itself, same shape and dtype as `x` (autoencoders);
    - `None`: no targets (batches are `x` only).

    Class labels are names: strings, or ints written in decimal. Classes are the sorted labels
    found in every row (Keras's order), or `class_names` in the order given.
    Every file is checked when the source is built, so a wrong path fails at once, by row.
    The transform runs with the random state of (seed, epoch, sample index), so a sample is the
    same in any worker, thread or framework.

    Args:
        manifest: the path of a CSV file (UTF-8, comma-separated, with a header line), or a
            DataFrame (pandas, or anything with `columns` and `df[column]`). pandas is not needed
            for CSV files.
        image_size: (height, width) every image is resized to, or None to keep file sizes.
        base_dir: the folder paths are relative to. Default for a CSV file: the folder the
            file is in. Required for a DataFrame. Absolute paths are accepted if they are
            inside it. Paths that leave it are refused.
        x_col: the column of image paths (Keras's default name, "filename").
        y_col: the label column (Keras's default name, "class"). For `"regression"` it may
            also be a list of columns. Ignored with `label_mode` "input" or None.
        label_mode: "int" (or "sparse"), "categorical", "binary", "multi_hot", "regression",
            "input" or None, as above.
        class_names: the classes, in index order, so train and validation share indices. A
            label not listed is an error naming its row. Only for the class label modes.
        label_delimiter: what separates the classes of a `"multi_hot"` cell, default "|".
        transform: an albumentations `Compose` (or any `xloader.transforms.Transform`).
        color_mode: "rgb" (3 channels), "rgba" (4) or "grayscale" (1).
        interpolation: resize filter: "nearest" (exactly Pillow's, so Keras's), "bilinear"
            (default), "bicubic", "area", "lanczos".
        keep_aspect_ratio: crop each image to the aspect ratio of `image_size`, centred, before
            resizing it (as Keras); needs an `image_size`.
        missing_files: "raise" (default): rows whose file does not exist are an error that
            lists them; "skip": they are left out with a warning and listed in `.skipped`.
            Classes are found from every row, so skipping never shifts class indices.
        follow_links: trust symbolic links that lead outside `base_dir` (see NOTE
            [ Manifest paths stay inside base_dir ]).
        on_bad_file: "raise" (default): an unreadable image raises `BadImageError` naming it when
            its sample is loaded; "skip": every image is decoded once now and bad ones are left
            out, listed with reasons in `.skipped` (NOTE [ Bad-file policy ]).
        max_pixels: refuse images that declare more pixels than this (decompression bombs;
            NOTE [ Pixel limit ]); None: no limit.
        cache: keep decoded, resized images: None (default), "memory" (this run, shared by all
            workers), a directory (kept across runs) or a `DecodedCache` (NOTE [ Decoded cache ]).
        downscale_on_decode: decode JPEGs at 1/2, 1/4 or 1/8 size when that still covers
            `image_size` (faster for large photos; close to, not equal to, a full decode:
            NOTE [ Reduced-size decode ]). Needs an `image_size`.
        storage_options: fsspec options when the CSV or `base_dir` is a URL (`s3://`,
            `http(s)://`, ...; docs/remote.md).

    Raises:
        TypeError: `manifest` is neither a path nor a DataFrame, a DataFrame without
            `base_dir`, or a wrong argument type.
        ValueError: a wrong option value.
        FileNotFoundError: the CSV file or `base_dir` does not exist.
        DatasetError: a bad manifest. The message names the file (or "the DataFrame") and every
            bad row (CSV line, or DataFrame index). It is raised for an empty table, a missing
            column, an empty path, a path outside `base_dir`, a missing label, a label not in
            `class_names`, a value that is not a number, an image listed twice, or a missing file.

    Example:
        >>> train = ImageManifest("data/train.csv", image_size=(224, 224))  # doctest: +SKIP
        >>> val = ImageManifest("data/val.csv", image_size=(224, 224),  # doctest: +SKIP
        ...                     class_names=train.class_names)
        >>> x, y = train.load(0, seed=0, epoch=0, with_targets=True)  # doctest: +SKIP
        >>> x.shape, y.dtype  # doctest: +SKIP
        ((224, 224, 3), dtype('int64'))
    """

    x_is_image = True

    def __init__(
        self,
        manifest: str | os.PathLike[str] | Any,
        *,
        image_size: tuple[int, int] | None,
        base_dir: str | os.PathLike[str] | None = None,
        x_col: str = "filename",
        y_col: str | Sequence[str] = "class",
        label_mode: str | None = "int",
        class_names: Sequence[str] | None = None,
        label_delimiter: str = "|",
        transform: object = None,
        color_mode: ColorMode = "rgb",
        interpolation: str = "bilinear",
        keep_aspect_ratio: bool = False,
        missing_files: Literal["raise", "skip"] = "raise",
        follow_links: bool = False,
        on_bad_file: str = "raise",
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        cache: str | os.PathLike[str] | DecodedCache | None = None,
        downscale_on_decode: bool = False,
        storage_options: dict | None = None,
    ):
        super().__init__(transform)
        # NOTE [ Remote storage ]: the files' folder is listed once, here.
        files_root = storage.parent(manifest) if base_dir is None else base_dir
        self._mounts = storage.mount(files_root, storage_options=storage_options)
        # base_dir is known only after the table is read; the image options are checked first.
        self._configure_images_from("", locals())
        check_choice("missing_files", missing_files, ("raise", "skip"))
        if isinstance(label_mode, str) and label_mode in _KERAS_ONLY_MODES:
            raise ValueError(f"label_mode={label_mode!r} is a Keras class_mode; {_KERAS_ONLY_MODES[label_mode]}.")
        check_choice("label_mode", label_mode, LABEL_MODES)
        if not isinstance(label_delimiter, str) or not label_delimiter:
            raise ValueError(f"label_delimiter must be a non-empty string, got {label_delimiter!r}.")
        self.label_mode = "int" if label_mode == "sparse" else label_mode
        self.label_delimiter = label_delimiter
        self.follow_links = check_bool("follow_links", follow_links)
        self.x_col = self._check_column("x_col", x_col)
        self.y_col = self._check_y_col(y_col)
        self.has_targets = self.label_mode is not None
        self.y_is_image = self.label_mode == "input"
        given_classes = self._check_class_names(class_names)

        label_columns = self._label_columns()
        table = read_table(manifest, {self.x_col: "x_col", **dict.fromkeys(label_columns, "y_col")})
        self.manifest_path = table.path
        """The CSV file's path, or None when the manifest was a DataFrame."""
        self.base_dir = self._root = self._find_base_dir(table, base_dir)

        problems = Problems(table)
        paths = self._parse_paths(table, problems)
        labels = self._parse_labels(table, label_columns, given_classes, problems)
        self._raise_row_problems(problems)
        self._check_duplicates(table, paths)
        self.class_names = given_classes if given_classes is not None else self._found_classes(table, labels)
        self.class_indices = {name: index for index, name in enumerate(self.class_names)}
        where = "class_names" if given_classes is not None else table.name
        check_binary_classes(self.label_mode, self.class_names, where)

        self.skipped: list[tuple[str, str]] = []
        """(path, reason) of every row left out by `missing_files="skip"`."""
        keep = self._check_files(table, paths, missing_files)
        files = StringTable(paths[row] for row in keep)  # type: ignore[misc]
        self._index = SampleIndex(files=files, **self._label_columns_of([labels[row] for row in keep]))
        self._apply_bad_file_policy(on_bad_file)

    # --- arguments ------------------------------------------------------------------------------

    @staticmethod
    def _check_column(name: str, value: object) -> str:
        if not isinstance(value, str) or not value:
            raise TypeError(f"{name} must be a column name (a non-empty string), got {value!r}.")
        return value

    def _check_y_col(self, y_col: object) -> str | list[str]:
        if self.label_mode in (None, "input"):
            return y_col  # type: ignore[return-value]  # ignored, as in Keras
        if isinstance(y_col, str):
            columns = [self._check_column("y_col", y_col)]
        elif self.label_mode == "regression" and isinstance(y_col, Sequence):
            columns = [self._check_column("y_col", column) for column in y_col]
            if not columns:
                raise ValueError("y_col is an empty list; name at least one column of targets.")
            repeated = sorted({column for column in columns if columns.count(column) > 1})
            if repeated:
                raise ValueError(f"y_col lists {repeated} more than once.")
        else:
            raise TypeError(
                f"y_col must be one column name for label_mode={self.label_mode!r}, got {y_col!r}. "
                "A list of columns is for label_mode='regression'."
            )
        if self.x_col in columns:
            raise ValueError(f"x_col and y_col both name the column {self.x_col!r}; the labels need their own column.")
        return y_col if isinstance(y_col, str) else columns

    def _label_columns(self) -> list[str]:
        if self.label_mode in (None, "input"):
            return []
        return [self.y_col] if isinstance(self.y_col, str) else list(self.y_col)

    def _check_class_names(self, class_names: Sequence[str] | None) -> list[str] | None:
        if class_names is None:
            return None
        if self.label_mode not in CLASS_MODES:
            raise ValueError(
                f"class_names is only used with class labels; label_mode={self.label_mode!r} has none. "
                "Leave class_names out."
            )
        names = check_class_names(class_names)
        return names

    @staticmethod
    def _find_base_dir(table: Table, base_dir: str | os.PathLike[str] | None) -> str:
        if base_dir is not None:
            return storage.abspath(check_directory(base_dir, "base_dir"))
        if table.path is None:
            raise TypeError(
                "base_dir is required with a DataFrame: pass the folder its paths are relative to "
                "(base_dir='.' for the current directory)."
            )
        return os.path.dirname(storage.abspath(table.path))

    # --- files ----------------------------------------------------------------------------------

    def _locate(self, path: str, real_base: str, real_dirs: dict[str, str]) -> tuple[str, str] | None:
        """None if `path` (relative to base_dir) is a regular file that stays inside base_dir,
        else ("escape", where it leads) or ("missing", why)."""
        full = os.path.join(self.base_dir, path)
        if storage.is_url(full):
            return storage.locate(full)
        try:
            if self.follow_links:
                info = os.stat(full)
            else:
                parent, name = os.path.split(full)
                real_parent = real_dirs.get(parent)
                if real_parent is None:
                    real_parent = real_dirs[parent] = os.path.realpath(parent)
                real = os.path.join(real_parent, name)
                if not _inside(real, real_base):
                    return "escape", real
                info = os.lstat(real)
                if stat.S_ISLNK(info.st_mode):
                    real = os.path.realpath(real)
                    if not _inside(real, real_base):
                        return "escape", real
                    info = os.stat(real)
        except (OSError, ValueError):
            return "missing", "not found"
        if stat.S_ISREG(info.st_mode):
            return None
        return "missing", "a directory, not a file" if stat.S_ISDIR(info.st_mode) else "not a regular file"

    def _check_files(self, table: Table, paths: list[str | None], missing_files: str) -> list[int]:
        """Rows to keep: every row whose file exists (NOTE [ Manifest paths stay inside base_dir ])."""
        real_base = os.path.realpath(self.base_dir)
        real_dirs: dict[str, str] = {}
        escaping: list[str] = []
        missing: list[tuple[int, str]] = []
        remote = storage.locate_all(self.base_dir, paths)  # NOTE [ Remote storage ]: URLs checked at once
        for row, path in enumerate(paths):
            assert path is not None  # rows with a bad path were refused before
            problem = remote[path] if path in remote else self._locate(path, real_base, real_dirs)
            if problem is None:
                continue
            kind, detail = problem
            if kind == "escape":
                escaping.append(f"{table.where(row)}: {path!r} leads to {detail!r}")
            else:
                missing.append((row, detail))
        if escaping:
            raise DatasetError(
                f"{table.name}: a path outside base_dir {self.base_dir!r} through a symbolic link "
                f"({rows_text(len(escaping))}): {list_preview(escaping)}. Move the files inside base_dir, pass the "
                "folder that really holds them as base_dir, or pass follow_links=True to trust symbolic links."
            )
        if not missing:
            return list(range(len(paths)))
        listed = [
            f"{table.where(row)}: {paths[row]!r}" + ("" if why == "not found" else f" ({why})") for row, why in missing
        ]
        default = " (by default the CSV file's folder)" if table.path is not None else ""
        message = (
            f"{table.name}: {len(missing)} listed image{'s' if len(missing) > 1 else ''} not found under "
            f"base_dir {self.base_dir!r}: {list_preview(listed)}. Paths are relative to base_dir{default}."
        )
        if missing_files == "raise":
            raise DatasetError(
                f"{message} Fix the paths or base_dir, or pass missing_files='skip' to leave these rows out "
                "(they are then listed in .skipped)."
            )
        warnings.warn(f"{message} These rows are left out (see .skipped).", stacklevel=3)
        self.skipped = [
            (os.path.join(self.base_dir, paths[row]), f"{why} ({table.where(row)})")  # type: ignore[arg-type]
            for row, why in missing
        ]
        dropped = {row for row, _ in missing}
        keep = [row for row in range(len(paths)) if row not in dropped]
        if not keep:
            raise DatasetError(f"{table.name}: none of the {len(paths)} listed images exists under {self.base_dir!r}.")
        return keep

    # --- labels ---------------------------------------------------------------------------------

    def _label_columns_of(self, labels: list[Any]) -> dict[str, Any]:
        """The index columns of the labels: `labels` (int64 class per sample), `classes` (a
        `Ragged` group of int32 classes per sample, "multi_hot") or `targets` (float32)."""
        if self.label_mode in SINGLE_CLASS_MODES:
            return {"labels": np.fromiter((self.class_indices[name] for name in labels), np.int64, len(labels))}
        if self.label_mode == "multi_hot":
            classes = np.fromiter(
                (self.class_indices[name] for names in labels for name in names), np.int32, sum(map(len, labels))
            )
            return {"classes": Ragged.from_counts([len(names) for names in labels], classes=classes)}
        if self.label_mode == "regression":
            targets = np.asarray(labels, dtype=np.float32).reshape(len(labels), -1)
            return {"targets": targets[:, 0].copy() if isinstance(self.y_col, str) else targets}
        return {}

    def _target(self, index: int) -> np.ndarray:
        columns = self._index.columns
        if "targets" in columns:
            return np.array(columns["targets"][index], dtype=np.float32)
        if "classes" in columns:
            return class_target("multi_hot", columns["classes"].row(index, "classes"), len(self.class_names))
        return class_target(self.label_mode, columns["labels"][index], len(self.class_names))

    # --- the Source protocol ----------------------------------------------------------------------

    def __repr__(self) -> str:
        where = repr(self.manifest_path) if self.manifest_path is not None else "<DataFrame>"
        return (
            f"ImageManifest({where}, {len(self)} images, base_dir={self.base_dir!r}, "
            f"label_mode={self.label_mode!r}, {len(self.class_names)} classes, image_size={self.image_size})"
        )

    @property
    def labels(self) -> np.ndarray | list[list[int]] | None:
        """Every sample's labels, in index order (Keras's `DataFrameIterator.labels`).

        int64 class indices (N,) for "int", "categorical" and "binary". A list of class-index
        lists for "multi_hot". float32 targets (N,) or (N, k) for "regression". None without
        labels.
        """
        columns = self._index.columns
        if "targets" in columns:
            return columns["targets"].copy()
        if "labels" in columns:
            return columns["labels"].copy()
        if "classes" in columns:
            return [columns["classes"].row(i, "classes").tolist() for i in range(len(self))]
        return None
