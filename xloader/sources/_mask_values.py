"""`mask_values=`: stored mask values remapped to class indices as each mask file is read."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from xloader.errors import BadImageError

__all__ = ["MaskValues"]


class MaskValues:
    """A lookup table from stored values (0..max key) to class indices; other values are refused."""

    __slots__ = ("_known", "_table", "mapping")

    def __init__(self, mapping: Mapping[int, int]):
        self.mapping = {int(k): int(v) for k, v in mapping.items()}
        top = max(self.mapping)
        self._table = np.zeros(top + 1, dtype=np.int64)
        self._known = np.zeros(top + 1, dtype=bool)
        for stored, index in self.mapping.items():
            self._table[stored], self._known[stored] = index, True

    @classmethod
    def of(cls, mapping: object) -> MaskValues | None:
        """Check `mask_values` (None, or a non-empty mapping of ints >= 0 to ints >= 0)."""
        if mapping is None:
            return None
        if not isinstance(mapping, Mapping) or not mapping:
            raise TypeError(f"mask_values must be a non-empty dict of stored value -> class index, got {mapping!r}.")
        for key, value in mapping.items():
            for what, number in (("stored value", key), ("class index", value)):
                if isinstance(number, (bool, np.bool_)) or not isinstance(number, (int, np.integer)) or number < 0:
                    raise ValueError(f"mask_values maps ints >= 0 to ints >= 0; {what} {number!r} is not one.")
        return cls(mapping)

    def apply(self, mask: np.ndarray, path: str) -> np.ndarray:
        """`mask` with every stored value replaced by its class index (uint8 if they all fit, else int64)."""
        values = np.unique(mask)
        unknown = values[(values < 0) | (values >= len(self._known))]
        if not unknown.size:
            unknown = values[~self._known[values]]
        if unknown.size:
            reason = (
                f"mask value {int(unknown[0])} is not a key of mask_values "
                f"(stored values: {values.tolist()[:20]}; mask_values keys: {sorted(self.mapping)})"
            )
            raise BadImageError(f"cannot use {path}: {reason}. Add it to mask_values.", path=path, reason=reason)
        table = self._table.astype(np.uint8) if self._table.max() <= 255 else self._table
        return table[mask]
