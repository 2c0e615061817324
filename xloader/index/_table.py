"""A table of samples (a CSV file or a pandas-like DataFrame) read into plain column lists.

Every row keeps a name for error messages: its line in the CSV file, or its DataFrame index.
pandas is optional and never imported: a DataFrame is recognised by its `columns` attribute.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping
from typing import Any

from xloader import storage
from xloader._checks import list_preview
from xloader.errors import DatasetError

__all__ = ["Table", "read_table"]


class Table:
    """Some columns of a manifest, as lists aligned by row, with a name for each row.

    Attributes:
        name: the CSV file's path as given, or "the DataFrame".
        path: the CSV file's path, or None for a DataFrame.
        columns: every column the table has, in order.
        values: column name -> the column's cells (CSV cells are strings; DataFrame cells are
            whatever `Series.tolist()` returns: str, int, float, NaN, lists, ...).
    """

    def __init__(
        self,
        *,
        name: str,
        path: str | None,
        columns: list[Any],
        values: dict[str, list[Any]],
        row_names: list[Any],
    ):
        self.name = name
        self.path = path
        self.columns = columns
        self.values = values
        self._row_names = row_names

    def __len__(self) -> int:
        return len(self._row_names)

    def where(self, row: int) -> str:
        """`line 7` (the CSV line the row starts on, the header being line 1) or `index 5` / `index 'a'`."""
        label = self._row_names[row]
        if self.path is not None:
            return f"line {label}"
        return f"index {label}" if isinstance(label, int) else f"index {label!r}"


def read_table(manifest: object, wanted: Mapping[str, str]) -> Table:
    """Read the columns `wanted` (column name -> the argument that named it, for messages).

    Args:
        manifest: the path of a CSV file (UTF-8, a byte-order mark allowed, comma-separated,
            a header line naming the columns), or a DataFrame (anything with `columns` and
            `df[column]`; `index` names the rows if present).
        wanted: the columns to read, e.g. `{"filename": "x_col", "class": "y_col"}`.

    Raises:
        TypeError: `manifest` is neither a path nor a DataFrame.
        FileNotFoundError: the CSV file does not exist.
        DatasetError: the file is empty, not UTF-8 or malformed; a row has the wrong number of
            fields; a wanted column is missing or appears twice; there are no rows.
    """
    if isinstance(manifest, (str, os.PathLike)):
        table = _read_csv(os.fspath(manifest), wanted)
    elif isinstance(manifest, bytes):
        raise TypeError("manifest must be a CSV file path as str or os.PathLike, or a DataFrame; got bytes.")
    elif hasattr(manifest, "columns") and hasattr(manifest, "__getitem__"):
        table = _read_frame(manifest, wanted)
    else:
        raise TypeError(
            f"manifest must be the path of a CSV file or a pandas DataFrame, got {type(manifest).__name__}."
        )
    if len(table) == 0:
        only = " (only a header line)" if table.path is not None else ""
        raise DatasetError(f"{table.name} has no rows{only}. Add one row per image.")
    return table


# Arguments that may also say a column is absent.
_OPTIONAL_COLUMNS = {"class_column": ", or class_column=None if the file has no class column"}


def _check_columns(name: str, columns: list[Any], wanted: Mapping[str, str]) -> None:
    found = list_preview([repr(c) for c in columns], 20) or "none"
    for column, argument in wanted.items():
        count = columns.count(column)
        if count == 0:
            raise DatasetError(
                f"{name} has no column {column!r} (columns found: {found}). "
                f"Pass {argument}='<column>' to use another column{_OPTIONAL_COLUMNS.get(argument, '')}."
            )
        if count > 1:
            raise DatasetError(f"{name} has {count} columns named {column!r}. Rename them so each name is unique.")


def _read_csv(path: str, wanted: Mapping[str, str]) -> Table:
    if not storage.exists(path):
        raise FileNotFoundError(f"manifest {path!r} does not exist.")
    if storage.isdir(path):
        raise DatasetError(f"manifest {path!r} is a directory; pass the CSV file, or use ImageFolder for folders.")
    lines: list[int] = []
    values: dict[str, list[Any]] = {column: [] for column in wanted}
    with storage.open_text(path, newline="", encoding="utf-8-sig") as file:
        reader = csv.reader(file)
        try:
            header = next(reader, None)
            if header is None:
                raise DatasetError(
                    f"{path} is empty. A manifest starts with a header line naming its columns, e.g. filename,class."
                )
            _check_columns(path, header, wanted)
            positions = {column: header.index(column) for column in wanted}
            line = reader.line_num
            for record in reader:
                # line_num counts physical lines read, so a quoted field spanning lines is named
                # by the line it starts on.
                start, line = line + 1, reader.line_num
                if not record:  # a blank line
                    continue
                if len(record) != len(header):
                    raise DatasetError(
                        f"{path} line {start} has {len(record)} fields but the header has {len(header)} "
                        f"({', '.join(header)}). Quote fields that contain a comma."
                    )
                lines.append(start)
                for column, position in positions.items():
                    values[column].append(record[position])
        except UnicodeDecodeError as error:
            raise DatasetError(
                f"{path} is not UTF-8 text ({error.reason} after line {reader.line_num}). Save it as UTF-8, "
                "or read it with pandas.read_csv(..., encoding=...) and pass the DataFrame."
            ) from None
        except csv.Error as error:
            raise DatasetError(f"{path} line {reader.line_num} is not valid CSV: {error}.") from None
    return Table(name=path, path=path, columns=header, values=values, row_names=lines)


def _to_list(column: Any) -> list[Any]:
    for method in ("tolist", "to_list"):  # pandas' name, and polars'/pyarrow's
        if callable(getattr(column, method, None)):
            return list(getattr(column, method)())
    return list(column)


def _read_frame(frame: Any, wanted: Mapping[str, str]) -> Table:
    name = "the DataFrame"
    columns = list(frame.columns)
    _check_columns(name, columns, wanted)
    values = {column: _to_list(frame[column]) for column in wanted}
    length = len(next(iter(values.values()))) if values else len(frame)
    index = getattr(frame, "index", None)
    row_names = _to_list(index) if index is not None else list(range(length))
    if len(row_names) != length:
        row_names = list(range(length))
    return Table(name=name, path=None, columns=columns, values=values, row_names=row_names)
