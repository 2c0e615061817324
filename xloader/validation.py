"""Checking a whole dataset before training: decode every sample once and report what is wrong.

# NOTE [ Bad-file policy ]
A file that cannot be read (missing, empty, truncated, not an image, a mask that does not fit its
image, over the pixel limit) raises `BadImageError` when its sample is loaded. Sources take
`on_bad_file`:
- "raise" (default): loading the sample raises, naming the path, the sample index and the reason;
- "skip": at construction the source decodes every sample once (`validate`) and leaves the bad
  ones out of its index *before* any epoch plan exists, so every batch is full, both adapters
  see the same smaller dataset, and the skipped files with their reasons are in `source.skipped`.
Only `BadImageError` counts as a bad file: an exception from user code (a transform, a load
function) is a bug to fix, not data to drop, and always propagates.

# NOTE [ Validation threads ]
`validate` decodes on threads (OpenCV and Pillow release the GIL): by default one per core this
process may run on, or `XLOADER_VALIDATION_WORKERS` if set; `workers=` overrides both. Each
thread decodes one file at a time, so memory peaks near threads x the largest decoded image.
At most two samples per thread are submitted ahead (not the whole dataset, as `pool.map` does),
so an error stops the check after those, not after every remaining file.
"""

from __future__ import annotations

import json
import os
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from xloader.errors import BadImageError
from xloader.source import Source

__all__ = ["BadFile", "ValidationReport", "validate", "ON_BAD_FILE"]

ON_BAD_FILE = ("raise", "skip")
WORKERS_VARIABLE = "XLOADER_VALIDATION_WORKERS"


@dataclass(frozen=True)
class BadFile:
    """One sample that could not be loaded: its index in the source, its path and why."""

    index: int
    path: str
    reason: str


@dataclass
class ValidationReport:
    """What `validate` found. `ok` is True when every sample loaded.

    Attributes:
        num_samples: samples checked.
        bad_files: the samples that raised `BadImageError`, in index order.
        class_counts: samples per class name (sources with `class_names` and `labels`), else None.
        image_sizes: "HxW" of the files as stored (before resizing) -> count, most common first.
        skipped: files the source itself left out (images without masks with `unpaired="skip"`,
            bad files with `on_bad_file="skip"`), as (path, reason).
    """

    num_samples: int
    bad_files: list[BadFile] = field(default_factory=list)
    class_counts: dict[str, int] | None = None
    image_sizes: dict[str, int] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.bad_files and not self.skipped

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (paths as strings; undecodable names keep their surrogate escapes)."""
        out = asdict(self)
        out["ok"] = self.ok
        out["skipped"] = [{"path": path, "reason": reason} for path, reason in self.skipped]
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=True)

    def __str__(self) -> str:
        lines = [
            f"{self.num_samples} samples checked: {len(self.bad_files)} bad files, {len(self.skipped)} skipped by the source."
        ]
        if self.class_counts is not None:
            lines.append("per class: " + ", ".join(f"{name} {count}" for name, count in self.class_counts.items()))
        if self.image_sizes:
            sizes = list(self.image_sizes.items())
            shown = ", ".join(f"{size} ({count})" for size, count in sizes[:5])
            lines.append(f"image sizes (HxW): {shown}" + (f" and {len(sizes) - 5} more" if len(sizes) > 5 else ""))
        lines += [f"bad: {bad.path}: {bad.reason}" for bad in self.bad_files]
        lines += [f"skipped: {path}: {reason}" for path, reason in self.skipped]
        return "\n".join(lines)


def _stored_size(path: str) -> str | None:
    """ "HxW" from the file header (no decode), or None if it is not a readable image file."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            width, height = image.size
    except Exception:  # noqa: BLE001 - unreadable files are reported by the decode step
        return None
    return f"{height}x{width}"


def _check_one(source: Source, index: int) -> tuple[BadFile | None, str | None]:
    try:
        source.load(index, seed=0, epoch=0, with_targets=source.has_targets)
    except BadImageError as error:
        return BadFile(index, error.path or source.describe(index), error.reason or str(error)), None
    path = source.describe(index)
    return None, _stored_size(path) if os.path.isfile(path) else None


def _progress(items: Iterator[Any], total: int, enabled: bool, description: str) -> Iterable[Any]:
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, total=total, desc=description, unit="file", leave=False)


def validation_workers(workers: int | None = None) -> int:
    """The number of validation threads: `workers` if given, else the environment variable
    `XLOADER_VALIDATION_WORKERS`, else one per core this process may run on
    (NOTE [ Validation threads ]). Raises `ValueError` for a value that is not a positive int."""
    if workers is None:
        text = os.environ.get(WORKERS_VARIABLE, "").strip()
        if not text:
            return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        if not (text.isdigit() and int(text) > 0):
            raise ValueError(f"{WORKERS_VARIABLE} must be a positive int (validation threads), got {text!r}.")
        return int(text)
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)):
        raise TypeError(f"workers must be a positive int or None (one thread per core), got {workers!r}.")
    if workers <= 0:
        raise ValueError(f"workers must be a positive int or None (one thread per core), got {workers}.")
    return int(workers)


def _bounded_map(pool: ThreadPoolExecutor, function: Callable[[int], Any], count: int, window: int) -> Iterator[Any]:
    """`pool.map(function, range(count))` with at most `window` calls submitted and not yet consumed."""
    pending: deque[Future[Any]] = deque()
    for index in range(count):
        if len(pending) >= window:
            yield pending.popleft().result()
        pending.append(pool.submit(function, index))
    while pending:
        yield pending.popleft().result()


def validate(source: Source, *, workers: int | None = None, progress: bool = False) -> ValidationReport:
    """Load every sample of `source` once (transform included, random state of epoch 0) and report.

    Decoding runs on `workers` threads, by default one per core or `XLOADER_VALIDATION_WORKERS`
    (NOTE [ Validation threads ]). Only `BadImageError` is collected; any other exception (a bug
    in a transform or a load function) propagates.

    Returns:
        A `ValidationReport`: bad files with reasons, samples per class, stored image sizes,
        and the files the source itself left out (`source.skipped`, if it has one).
    """
    count = len(source)
    bad: list[BadFile] = []
    sizes: Counter[str] = Counter()
    threads = validation_workers(workers)
    with ThreadPoolExecutor(threads, thread_name_prefix="xloader-validate") as pool:
        results = _bounded_map(pool, lambda index: _check_one(source, index), count, 2 * threads)
        for bad_file, size in _progress(results, count, progress, "checking"):
            if bad_file is not None:
                bad.append(bad_file)
            elif size is not None:
                sizes[size] += 1
    class_counts = None
    class_names = getattr(source, "class_names", None)
    labels = getattr(source, "labels", None)
    if class_names is not None and isinstance(labels, np.ndarray) and labels.ndim == 1:
        counts = np.bincount(labels, minlength=len(class_names))
        class_counts = {name: int(counts[i]) for i, name in enumerate(class_names)}
    skipped = [
        (item.path, item.reason) if isinstance(item, BadFile) else (str(item[0]), str(item[1]))
        for item in getattr(source, "skipped", [])
    ]
    return ValidationReport(
        num_samples=count,
        bad_files=bad,
        class_counts=class_counts,
        image_sizes=dict(sizes.most_common()),
        skipped=skipped,
    )
