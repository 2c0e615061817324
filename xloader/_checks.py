"""Argument checks shared by every source and loader: one rule, one wording, plain Python types out.

Each check returns the value normalised to a plain Python type (a NumPy int becomes an `int`),
so options can be written with `json.dumps` and compared across processes. Wrong types raise
`TypeError`, wrong values `ValueError`; every message names the argument and shows the value.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from xloader import storage
from xloader.errors import DatasetError

__all__ = [
    "check_bool",
    "check_choice",
    "check_class_names",
    "check_directory",
    "check_fraction",
    "check_image_size",
    "check_int",
    "list_preview",
]


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_bool(name: str, value: object) -> bool:
    """`value` as a `bool` if it is True or False (NumPy's included), else `TypeError`."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}.")
    return bool(value)


def check_int(name: str, value: object, minimum: int) -> int:
    """`value` as an `int` if it is an integer >= `minimum` (NumPy's included)."""
    if not _is_int(value):
        raise TypeError(f"{name} must be an int >= {minimum}, got {value!r}.")
    if value < minimum:  # type: ignore[operator]
        raise ValueError(f"{name} must be an int >= {minimum}, got {value}.")
    return int(value)  # type: ignore[call-overload]


def check_choice(name: str, value: object, choices: Sequence[object]) -> None:
    """`ValueError` listing the choices unless `value` is one of them."""
    if value not in choices:
        options = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {options}; got {value!r}.")


def check_fraction(name: str, value: object, hint: str = "") -> float:
    """A number strictly between 0 and 1, as a `float`."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
        raise TypeError(f"{name} must be a number between 0 and 1, got {value!r}.")
    if not 0 < value < 1:
        raise ValueError(f"{name} must be strictly between 0 and 1, got {value!r}.{hint}")
    return float(value)


def check_image_size(image_size: object) -> tuple[int, int] | None:
    """`image_size` = (height, width) of positive ints as a tuple of `int`, or None (keep file sizes)."""
    if image_size is None:
        return None
    if not isinstance(image_size, Sequence) or len(image_size) != 2 or not all(_is_int(v) for v in image_size):
        raise TypeError(f"image_size must be (height, width) as two ints, or None; got {image_size!r}.")
    height, width = (int(v) for v in image_size)
    if height <= 0 or width <= 0:
        raise ValueError(f"image_size must be positive, got {image_size!r}.")
    return height, width


def check_class_names(class_names: object) -> list[str] | None:
    """`class_names` as a list of distinct, non-empty strings (ints are accepted and converted)."""
    if class_names is None:
        return None
    if isinstance(class_names, (str, bytes)) or not isinstance(class_names, Sequence):
        raise TypeError(f"class_names must be a list of names, got {class_names!r}.")
    names = []
    for name in class_names:
        if not isinstance(name, str) and not _is_int(name):
            raise TypeError(f"class_names must hold strings (or ints), got {name!r} ({type(name).__name__}).")
        names.append(str(name))
    if not names:
        raise ValueError("class_names must name at least one class.")
    if "" in names:
        raise ValueError("class_names must not contain an empty name.")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"class_names lists {', '.join(map(repr, repeated))} more than once.")
    return names


def check_directory(path: str | os.PathLike[str], what: str) -> str:
    """`path` as a string if it is an existing directory, else raise with the path named."""
    text = os.fspath(path)
    if not storage.exists(text):
        raise FileNotFoundError(f"{what} {text!r} does not exist.")
    if not storage.isdir(text):
        raise DatasetError(f"{what} {text!r} is not a directory.")
    return text


def list_preview(items: Sequence[str], limit: int = 10) -> str:
    """`a, b, c and 7 more` for error messages that must name every bad file without flooding."""
    shown = ", ".join(items[:limit])
    more = len(items) - limit
    return f"{shown} and {more} more" if more > 0 else shown
