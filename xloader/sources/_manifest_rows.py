"""How `ImageManifest` reads its table's cells: paths, class labels, numbers, and one error per kind of bad row."""

from __future__ import annotations

import math
import os
import warnings
from typing import Any

import numpy as np

from xloader import storage
from xloader._checks import list_preview
from xloader.errors import DatasetError
from xloader.index._table import Table

__all__ = ["CLASS_MODES", "SINGLE_CLASS_MODES", "ManifestRows", "Problems", "and_join", "rows_text"]

SINGLE_CLASS_MODES = ("int", "categorical", "binary")
CLASS_MODES = (*SINGLE_CLASS_MODES, "multi_hot")


def _is_missing(value: object) -> bool:
    """None, NaN, pandas.NA or NaT: what a DataFrame holds for an empty cell."""
    if value is None:
        return True
    if isinstance(value, (float, np.floating)):
        return math.isnan(value)
    return type(value).__name__ in ("NAType", "NaTType")


def _class_name(value: object) -> str | None:
    """A class label as text: strings as they are, ints written in decimal (as a CSV holds them)."""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return str(int(value))
    return None


def _number(value: object) -> float | None:
    """A regression target as a finite float32 value, or None if it is not one."""
    if isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
    elif isinstance(value, (int, float, np.integer, np.floating)):
        number = float(value)
    else:
        return None
    with np.errstate(over="ignore"):
        single = np.float32(number)
    return float(single) if np.isfinite(single) else None


def rows_text(count: int) -> str:
    return f"{count} row" if count == 1 else f"{count} rows"


def and_join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


class Problems:
    """Bad rows grouped by kind, so that one error lists every row with the same problem."""

    def __init__(self, table: Table):
        self.table = table
        self.rows: dict[str, list[str]] = {}

    def add(self, kind: str, row: int, detail: str = "") -> None:
        where = self.table.where(row)
        self.rows.setdefault(kind, []).append(f"{where}: {detail}" if detail else where)

    def raise_first(self, kinds: dict[str, tuple[str, str]]) -> None:
        """Raise `DatasetError` for the first kind in `kinds` (kind -> (what, fix)) that has rows."""
        for kind, (what, fix) in kinds.items():
            found = self.rows.get(kind)
            if found:
                raise DatasetError(f"{self.table.name}: {what} ({rows_text(len(found))}): {list_preview(found)}. {fix}")


class ManifestRows:
    """The row-parsing half of `ImageManifest` (its options: label_mode, label_delimiter, x_col, y_col, base_dir)."""

    label_mode: str | None
    label_delimiter: str
    x_col: str
    y_col: Any
    base_dir: str

    def _parse_paths(self, table: Table, problems: Problems) -> list[str | None]:
        """Each row's path relative to `base_dir`, normalised (`./a.jpg` and `a.jpg` are one
        image); None for a row with a problem."""
        prefix = self.base_dir.rstrip(os.sep) + os.sep
        paths: list[str | None] = []
        for row, value in enumerate(table.values[self.x_col]):
            path = None
            if isinstance(value, os.PathLike):
                value = os.fspath(value)
            if isinstance(value, str) and value:
                full = storage.normpath(os.path.join(self.base_dir, value))
                if full.startswith(prefix):
                    path = full[len(prefix) :]
                elif full == self.base_dir:
                    path = os.curdir  # base_dir itself: reported as "a directory, not a file"
                else:
                    problems.add("path_escape", row, repr(value))
            elif _is_missing(value) or isinstance(value, str):  # None, NaN or ""
                problems.add("path_empty", row)
            else:
                problems.add("path_type", row, repr(value))
            paths.append(path)
        return paths

    def _parse_labels(
        self, table: Table, columns: list[str], given: list[str] | None, problems: Problems
    ) -> list[Any]:
        """Per row: a class name, a list of class names, or a tuple of floats (None: no labels)."""
        if self.label_mode in (None, "input"):
            return [None] * len(table)
        if self.label_mode == "regression":
            return self._parse_numbers(table, columns, problems)
        known = set(given) if given is not None else None
        labels: list[Any] = []
        for row, value in enumerate(table.values[columns[0]]):
            if self.label_mode == "multi_hot":
                names = self._parse_multi(value, row, problems)
                labels.append(names)
            else:
                names = self._parse_single(value, row, problems)
                labels.append(names[0] if names else None)
            if known is not None:
                for name in names:
                    if name not in known:
                        problems.add("label_unknown", row, repr(name))
        return labels

    @staticmethod
    def _parse_single(value: object, row: int, problems: Problems) -> list[str]:
        if _is_missing(value) or (isinstance(value, str) and value == ""):
            problems.add("label_missing", row)
            return []
        name = _class_name(value)
        if name is None:
            problems.add("label_type", row, repr(value))
            return []
        return [name]

    def _parse_multi(self, value: object, row: int, problems: Problems) -> list[str]:
        if isinstance(value, str):
            if value == "":
                return []
            names = value.split(self.label_delimiter)
            if "" in names:
                problems.add("label_empty_item", row, repr(value))
            return [name for name in names if name]
        if isinstance(value, (list, tuple, np.ndarray)):
            found = [_class_name(item) for item in value]
            if None in found or "" in found:
                problems.add("label_type", row, repr(value))
            return [name for name in found if name]
        if _is_missing(value):
            return []
        problems.add("label_type", row, repr(value))
        return []

    def _parse_numbers(self, table: Table, columns: list[str], problems: Problems) -> list[Any]:
        values = [table.values[column] for column in columns]
        targets: list[Any] = []
        for row, cells in enumerate(zip(*values, strict=True)):
            numbers = [_number(cell) for cell in cells]
            for column, cell, number in zip(columns, cells, numbers, strict=True):
                if number is None:
                    problems.add("number", row, f"{column}={cell!r}")
            targets.append(tuple(numbers))
        return targets

    def _raise_row_problems(self, problems: Problems) -> None:
        x_col, y_col, delimiter = self.x_col, self.y_col, self.label_delimiter
        if self.label_mode == "multi_hot":
            type_fix = "Each cell must hold class names: a string, or a list of strings or ints."
        else:
            type_fix = (
                "Class labels must be strings or ints. For several classes per image, use label_mode='multi_hot'."
            )
        problems.raise_first(
            {
                "path_empty": ("empty path", f"Give every row the image's path in column {x_col!r}."),
                "path_type": ("a path that is not text", f"Column {x_col!r} must hold file paths as strings."),
                "path_escape": (
                    f"a path outside base_dir {self.base_dir!r}",
                    "Paths are relative to base_dir and must stay inside it: remove '..' steps and absolute "
                    "paths to other folders, or pass a base_dir that holds every image.",
                ),
                "label_missing": (f"no label in column {y_col!r}", "Give every row a label."),
                "label_type": ("a label that is not a class name", type_fix),
                "label_empty_item": (
                    f"an empty class name between {delimiter!r} delimiters",
                    f"Remove the extra {delimiter!r}. An empty cell means no class.",
                ),
                "label_unknown": (
                    "a label not in class_names",
                    "Add it to class_names or fix the row (class_names is the complete list of classes).",
                ),
                "number": (
                    "a value that is not a finite number",
                    f"Regression targets in {y_col!r} must be numbers that fit float32 (not empty, NaN or inf).",
                ),
            }
        )

    @staticmethod
    def _check_duplicates(table: Table, paths: list[str | None]) -> None:
        rows_of: dict[str, list[int]] = {}
        for row, path in enumerate(paths):
            if path is not None:
                rows_of.setdefault(path, []).append(row)
        repeated = [
            f"{path!r} on {and_join([table.where(row) for row in rows])}"
            for path, rows in rows_of.items()
            if len(rows) > 1
        ]
        if repeated:
            raise DatasetError(
                f"{table.name} lists the same image on several rows: {list_preview(repeated)}. List each image "
                "once; for several classes per image, use one row with label_mode='multi_hot'."
            )

    def _found_classes(self, table: Table, labels: list[Any]) -> list[str]:
        if self.label_mode not in CLASS_MODES:
            return []
        found: set[str] = set()
        for label in labels:
            if isinstance(label, list):
                found.update(label)
            elif label is not None:
                found.add(label)
        names = sorted(found)
        if len(names) > 1 and all(name.isdecimal() for name in names) and names != sorted(names, key=int):
            warnings.warn(
                f"{table.name}: the class names are numbers but are sorted as text, as in Keras: "
                f"{list_preview([repr(name) for name in names], 12)}. "
                "Pass class_names in the order you want, e.g. sorted by value.",
                stacklevel=3,
            )
        return names
