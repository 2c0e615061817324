"""Data that is not on the local disk: fsspec URLs (`s3://`, `gs://`, `http(s)://`, `memory://`,
`file://`) behind the one read path (`decoding.read_bytes`) and the one listing path
(`index._walk.list_image_files`). Local paths never reach this module's fsspec code.

# NOTE [ Remote storage ]
- A source given a URL calls `mount(root, storage_options=...)` once: the root is listed there,
  in the parent (one recursive listing: keys, sizes, ETags or mtimes), and the `Mount` (root,
  options, listing) is registered in this process and kept on the source. Every later check
  (`exists`, `isdir`, `scandir`, `list_image_files`) answers from that listing.
- The `Mount` travels with the source to workers: unpickling it (forkserver, spawn) registers it
  in the worker; a forked worker inherits the registry. The fsspec client is created lazily per
  process (keyed by pid, `skip_instance_cache=True`) and never used across a fork: object-store
  clients used before a fork hang after it (s3fs#914).
- Reads are bounded: a fetch retries transient errors (throttling, 5xx, resets, refused
  connections) with exponential backoff until `retry_seconds` have passed, and the reader waits
  at most that long (plus a second), whatever the client's own retries do. Then a
  `StorageError` (a `BadImageError`) names the URL and the last cause. A missing object or a
  refused permission is not retried.
- `prefetch(urls, ahead)` (called by `Batches.get_batch` for sources that are `SupportsPaths`)
  starts every fetch of a batch at once on a bounded thread pool, then those of the batch the
  caller computes next (`Batches.fetch_ahead`: a torch worker's next batch is `b + num_workers`);
  `read_url` takes each result as the batch is decoded in order, so decoding overlaps the
  fetches, and the next batch's bytes arrive while this one decodes. Pending fetches belong to
  the calling thread (a thread worker's batch never takes another's bytes); when the thread
  starts its next batch, those it does not name again are dropped. A thread thus holds at most
  two batches' bytes, and an object the caller does compute next is fetched once, not twice.
- The bytes are the object's bytes: what is decoded is identical to the same file on disk, so
  batches are bit-identical across storage (NOTE [ The one function ] in batching.py).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import posixpath
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures import wait as futures_wait
from dataclasses import dataclass
from typing import Any, TypeVar

from xloader.storage._mount import (
    RETRY_SECONDS_ENV,
    THREADS_ENV,
    Mount,
    StorageError,
    _error,
    _listed_mount,
    _mounts,
    _transient,
    byte_range,
    is_url,
    mount,
    mount_for,
)
from xloader.storage._s3 import S3_CLIENT_ENV

__all__ = [
    "RETRY_SECONDS_ENV",
    "S3_CLIENT_ENV",
    "THREADS_ENV",
    "Mount",
    "StorageError",
    "byte_range",
    "fetch_async",
    "is_url",
    "identity",
    "mount",
    "prefetch",
    "read_url",
]


@dataclass(frozen=True, slots=True)
class _Entry:
    """A directory entry of a listing, shaped like `os.DirEntry` for the code that scans roots."""

    name: str
    path: str
    directory: bool

    def is_dir(self, *, follow_symlinks: bool = True) -> bool:
        return self.directory

    def is_file(self, *, follow_symlinks: bool = True) -> bool:
        return not self.directory

    def is_symlink(self) -> bool:
        return False


# --- reads ----------------------------------------------------------------------------------------

_pending = threading.local()


def _pending_fetches() -> dict[str, Future[bytes]]:
    """This thread's prefetched, unread fetches. A forked child's main thread inherits the
    parent's, whose pool does not exist in the child: they are dropped, never waited for."""
    if getattr(_pending, "pid", None) != os.getpid():
        _pending.pid, _pending.futures = os.getpid(), {}
    return _pending.futures


def prefetch(paths: Iterable[str], ahead: Iterable[str] = ()) -> None:
    """Start fetching every URL among `paths` (local paths are ignored) for this thread's next
    reads, then those among `ahead` (the batch this thread computes after: they queue behind
    `paths` on the pool). Fetches this thread started before and that neither names are dropped
    (cancelled if not started), so a thread holds at most two batches' bytes."""
    previous = _pending_fetches()
    futures: dict[str, Future[bytes]] = {}
    for path in itertools.chain(paths, ahead):
        if path not in futures and is_url(path):
            futures[path] = previous.pop(path) if path in previous else mount_for(path).submit(path)
    for future in previous.values():
        future.cancel()
    _pending.futures = futures


def read_url(url: str) -> bytes:
    """The object's bytes, from this thread's prefetch if it has them; raises `StorageError`
    naming the URL (after retries bounded by the mount's `retry_seconds`)."""
    holder = mount_for(url)
    future = _pending_fetches().pop(url, None) or holder.submit(url)
    return _wait(url, holder, future)


def fetch_async(url: str) -> Callable[[], bytes]:
    """Start fetching `url` now on this process's pool, for no thread in particular (unlike
    `prefetch`): returns a function that waits for the bytes, bounded and raising as `read_url`
    does, and that any thread may call, any number of times."""
    holder = mount_for(url)
    future = holder.submit(url)
    return lambda: _wait(url, holder, future)


_T = TypeVar("_T")


def _wait(url: str, holder: Mount, future: Future[_T]) -> _T:
    """The fetch's bytes. Its `retry_seconds` bound counts from when the fetch starts: queued
    behind other fetches on the pool it waits longer, up to `_QUEUED_BOUNDS` bounds in all."""
    bound = holder.retry_seconds + 1.0
    queued_until = time.monotonic() + _QUEUED_BOUNDS * bound
    while not (future.running() or future.done()) and time.monotonic() < queued_until:
        futures_wait([future], timeout=0.05)
    try:
        return future.result(timeout=bound)
    except FutureTimeout:
        raise _error(url, f"no answer within {holder.retry_seconds:g} s ({RETRY_SECONDS_ENV})") from None


_QUEUED_BOUNDS = 10  # a fetch queued behind 10 bounds' worth of others is a stuck pool, not a slow read


def active() -> bool:
    """True once this process has mounted a URL: the batch builder prefetches only then."""
    return bool(_mounts)


# --- listing, as os and _walk do for local paths -------------------------------------------------


def _probe(path: str) -> dict[str, Any] | None:
    """An unlisted object's fsspec info (retried as reads are), None if it does not exist."""
    holder = mount_for(path)
    fs = holder.fs

    def info() -> dict[str, Any] | None:
        try:
            return fs.info(path)
        except FileNotFoundError as error:
            # fsspec's http reports any failed probe as not found; a 5xx or a refused
            # connection under it is an outage, to retry, not a missing file.
            cause = error.__cause__
            if cause is not None and not isinstance(cause, FileNotFoundError) and _transient(cause):
                raise ConnectionError(f"{type(cause).__name__}: {cause}") from error
            return None

    return holder._call(info, path)


def exists(path: str) -> bool:
    """`os.path.exists` for local paths; for a URL, a listed object or folder (over http, a URL that answers)."""
    if not is_url(path):
        return os.path.exists(path)
    found = _listed_mount(path)
    if found is None:
        return _probe(path) is not None
    holder, relative = found
    return holder.stat(relative) is not None or bool(holder.under(relative))


def isdir(path: str) -> bool:
    """`os.path.isdir` for local paths; for a URL, a prefix with listed objects below it (over
    http, which has no folders, a URL ending with "/" that answers, e.g. a manifest's `base_dir`)."""
    if not is_url(path):
        return os.path.isdir(path)
    found = _listed_mount(path)
    if found is None:
        info = _probe(path)
        return info is not None and (path.endswith("/") or info.get("type") == "directory")
    holder, relative = found
    return bool(holder.under(relative))


def isfile(path: str) -> bool:
    """`os.path.isfile` for local paths; for a URL, a listed object (over http, a URL that answers)."""
    if not is_url(path):
        return os.path.isfile(path)
    found = _listed_mount(path)
    if found is None:
        return _probe(path) is not None
    return found[0].stat(found[1]) is not None


def scandir(path: str) -> contextlib.AbstractContextManager[Iterator[Any]]:
    """`os.scandir(path)` for local paths; for a URL, the listing's entries directly under it
    (entries with `name`, `path`, `is_dir()`, `is_file()`, `is_symlink()`), as a context manager."""
    if not is_url(path):
        return os.scandir(path)
    found = _listed_mount(path)
    if found is None:
        raise NotADirectoryError(f"{path} cannot be listed (http has no listing); use a manifest of its files.")
    holder, relative = found
    entries: dict[str, bool] = {}
    for key in holder.under(relative):
        name, slash, _ = key.partition("/")
        entries[name] = entries.get(name, False) or bool(slash)
    base = path.rstrip("/")
    return contextlib.nullcontext(iter([_Entry(name, f"{base}/{name}", d) for name, d in entries.items()]))


def list_image_files(top: str, *, extensions: frozenset[str], prefix: str = "") -> list[str]:
    """`_walk.list_image_files` for a URL, from the listing: the same files in the same order
    (folders sorted by path, files by name within each; hidden names skipped)."""
    found = _listed_mount(top)
    if found is None:
        raise NotADirectoryError(f"{top} cannot be listed (http has no listing); use a manifest of its files.")
    holder, relative = found
    folders: dict[str, list[str]] = {}
    for key in holder.under(relative):
        parts = key.split("/")
        name = parts[-1]
        dot = name.rfind(".")
        if any(part.startswith(".") or not part for part in parts) or dot <= 0:
            continue
        if name[dot + 1 :].lower() in extensions:
            folders.setdefault(posixpath.dirname(key), []).append(key)
    # A folder's path sorts before its sub-folders' and local listing visits folders in path
    # order (a heap of paths), so sorting the folder paths gives the same order.
    return [prefix + key for folder in sorted(folders) for key in sorted(folders[folder])]


def identity(url: str) -> tuple[int, str] | None:
    """(size, ETag or modification time) of `url` as listed when its source was built (None if
    it was not listed, e.g. over http): what a cache of decoded images can key a remote file by."""
    found = _listed_mount(url)
    return found[0].stat(found[1]) if found is not None else None


def locate(url: str) -> tuple[str, str] | None:
    """For the manifest's file check: None if the object exists, else ("missing", "not found").
    A store that does not answer raises `StorageError` (an outage is not a missing file)."""
    return None if isfile(url) else ("missing", "not found")


def locate_all(base: str, paths: Iterable[str | None]) -> dict[str, tuple[str, str] | None]:
    """`locate` of each `path` joined to a URL `base` ({} for a local `base`), keyed by `path`.
    Listed objects answer from the listing; the others (over http, no listing) are asked with
    one HEAD each, all at once on the mount's pool (`XLOADER_STORAGE_THREADS` in flight).
    Raises `StorageError` for the first (in `paths` order) that keeps failing."""
    if not is_url(base):
        return {}
    found: dict[str, tuple[str, str] | None] = {}
    probes: dict[str, Future[dict[str, Any] | None]] = {}
    for path in paths:
        if path is None or path in found or path in probes or not is_url(url := posixpath.join(base, path)):
            continue
        if _listed_mount(url) is not None:
            found[path] = locate(url)
        else:
            probes[path] = mount_for(url)._pool().submit(_probe, url)
    try:
        for path, probe in probes.items():
            url = posixpath.join(base, path)
            found[path] = None if _wait(url, mount_for(url), probe) is not None else ("missing", "not found")
    finally:
        for probe in probes.values():
            probe.cancel()
    return found


def open_text(path: str, **options: Any) -> Any:
    """`open(path, "r", **options)` for local paths, fsspec's for a URL (through its mount's options)."""
    if not is_url(path):
        return open(path, **options)  # noqa: SIM115 - the caller closes it
    import fsspec

    return fsspec.open(path, "rt", **mount_for(path).storage_options, **options).open()


def normpath(path: str) -> str:
    """`os.path.normpath`, keeping a URL's `scheme://`."""
    if not is_url(path):
        return os.path.normpath(path)
    scheme, _, rest = path.partition("://")
    return f"{scheme}://{posixpath.normpath(rest)}"


def abspath(path: str) -> str:
    """`os.path.abspath` for local paths; a URL is absolute already."""
    return path if is_url(path) else os.path.abspath(path)


def parent(location: object) -> str | None:
    """The folder of a URL (None for anything else): the default root of a manifest's files."""
    return posixpath.dirname(location.rstrip("/")) if isinstance(location, str) and is_url(location) else None
