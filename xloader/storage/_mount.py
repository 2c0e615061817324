"""The client side of NOTE [ Remote storage ] (xloader/storage/__init__.py): `Mount` (one listed
root, its options, its per-process client and its bounded retries) and the per-process registry."""

from __future__ import annotations

import bisect
import os
import pickle
import re
import threading
import time
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from xloader._strings import StringTable
from xloader.errors import BadImageError
from xloader.storage._s3 import Reader, botocore_reader, client_choice

__all__ = ["RETRY_SECONDS_ENV", "THREADS_ENV", "Mount", "StorageError", "is_url", "mount", "mount_for"]

# Protocols whose roots can be listed (http has no listing: its files are checked one by one).
_UNLISTABLE = ("http", "https")
# Env knobs, read in the process that builds the source and carried by its Mount.
RETRY_SECONDS_ENV = "XLOADER_STORAGE_RETRY_SECONDS"
THREADS_ENV = "XLOADER_STORAGE_THREADS"
_DEFAULT_RETRY_SECONDS = 30.0
_DEFAULT_THREADS = 16
_FIRST_DELAY, _MAX_DELAY = 0.1, 2.0


class StorageError(BadImageError):
    """An object could not be fetched from remote storage after retries, or is not there.

    Attributes `path` (the URL) and `reason` (the last cause), as `BadImageError`.
    """


def is_url(path: object) -> bool:
    """True for `scheme://...` strings (fsspec URLs); False for local paths and non-strings."""
    if not isinstance(path, str):
        return False
    cut = path.find("://")
    return cut > 1 and path[:cut].replace("+", "").replace("-", "").replace(".", "").isalnum()


def _split(url: str) -> tuple[str, str]:
    """(scheme, the rest without trailing "/")."""
    scheme, _, rest = url.partition("://")
    return scheme.lower(), rest.rstrip("/")


def _host(url: str) -> str:
    scheme, rest = _split(url)
    return f"{scheme}://{rest.split('/', 1)[0]}"


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if number <= 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}. Unset it for the default, {default}.")
    return number


class Mount:
    """One remote root: its URL, fsspec `storage_options`, listing and read policy.

    Built by `mount`; see NOTE [ Remote storage ]. Picklable: the listing travels, the client
    does not (each process makes its own).

    Attributes:
        root: the URL, without a trailing "/".
        storage_options: keyword arguments for `fsspec.filesystem(scheme, ...)`.
        retry_seconds: the longest a read may take, retries included.
        threads: how many objects one process fetches at once.
    """

    def __init__(self, root: str, storage_options: dict[str, Any] | None = None, *, listed: bool = True):
        if storage_options is not None and not isinstance(storage_options, dict):
            raise TypeError(f"storage_options must be a dict of fsspec options or None, got {storage_options!r}.")
        self.root = root.rstrip("/") if not root.endswith("://") else root
        self.storage_options = dict(storage_options or {})
        self.retry_seconds = _env_float(RETRY_SECONDS_ENV, _DEFAULT_RETRY_SECONDS)
        self.threads = int(_env_float(THREADS_ENV, _DEFAULT_THREADS))
        self.scheme = _split(root)[0]
        self.s3_client = client_choice()  # NOTE [ The S3 read path ] (_s3.py)
        # The listing, sorted by key (relative to root), in compact columns: a worker holding a
        # million keys holds three buffers, not a million Python objects (xloader/_strings.py).
        self._keys: StringTable | None = None
        self._sizes = np.zeros(0, dtype=np.int64)
        self._stamps = StringTable([])  # ETag or modification time
        self._fs: Any = None
        self._read: Reader | None = None
        self._pid = -1
        self._executor: ThreadPoolExecutor | None = None
        if listed and self.scheme not in _UNLISTABLE:
            self._list()

    def __repr__(self) -> str:
        listed = f"{len(self._keys)} objects" if self._keys is not None else "not listed"
        return f"Mount({self.root!r}, {listed})"

    def __getstate__(self) -> dict[str, Any]:
        return {
            "root": self.root,
            "storage_options": self.storage_options,
            "retry_seconds": self.retry_seconds,
            "threads": self.threads,
            "scheme": self.scheme,
            "s3_client": self.s3_client,
            "_keys": self._keys,
            "_sizes": self._sizes,
            "_stamps": self._stamps,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._fs, self._read, self._pid, self._executor = None, None, -1, None
        _register(self)

    # --- the client, per process ------------------------------------------------------------

    @property
    def fs(self) -> Any:
        """This process's fsspec filesystem (made after a fork, never inherited through one)."""
        if self._pid != os.getpid():
            with _client_lock:  # threads of a new process make one client, not one each
                if self._pid != os.getpid():
                    self._new_client()
        return self._fs

    def _new_client(self) -> None:
        try:
            import fsspec
        except ImportError:
            raise ImportError(
                f"reading {self.root} needs fsspec (and s3fs for s3://, gcsfs for gs://). "
                'In a clone of the xloader repository run pip install -e ".[remote]" (".[gcs]" for gs://).'
            ) from None
        options = dict(self.storage_options)
        if self.scheme in ("s3", "s3a"):  # one attempt per call: the retries are ours, bounded in time
            options.setdefault("config_kwargs", {"retries": {"max_attempts": 1}})
        self._fs = fsspec.filesystem(self.scheme, skip_instance_cache=True, **options)
        if self.scheme in ("s3", "s3a"):
            self._fs.retries = 1
            if self.s3_client == "botocore":
                self._read = botocore_reader(self.storage_options, self.threads)
        self._executor = ThreadPoolExecutor(self.threads, thread_name_prefix="xloader-fetch")
        self._pid = os.getpid()

    def _pool(self) -> ThreadPoolExecutor:
        self.fs  # noqa: B018 - makes this process's client and pool
        assert self._executor is not None
        return self._executor

    # --- the listing -------------------------------------------------------------------------

    def _list(self) -> None:
        fs = self.fs
        base = fs._strip_protocol(self.root).rstrip("/")

        def find() -> dict[str, dict[str, Any]]:
            try:
                return fs.find(base, detail=True)
            except FileNotFoundError:  # no such bucket: nothing listed, so the root "does not exist"
                return {}

        found = self._call(find, self.root, action="list")
        info: dict[str, tuple[int, str]] = {}
        for key, detail in found.items():
            key = key.rstrip("/")
            relative = "" if key == base else key[len(base) + 1 :] if key.startswith(base + "/") else None
            if relative is None or key.endswith("/") or detail.get("type") == "directory":
                continue
            stamp = detail.get("ETag") or detail.get("etag") or detail.get("mtime") or detail.get("LastModified")
            info[relative] = (int(detail.get("size") or 0), str(stamp or ""))
        keys = sorted(info)
        self._keys = StringTable(keys)
        self._sizes = np.array([info[key][0] for key in keys], dtype=np.int64)
        self._stamps = StringTable(info[key][1] for key in keys)

    def relative(self, url: str) -> str | None:
        """`url` relative to the root ("" for the root itself), or None if it is not under it."""
        if url.rstrip("/") == self.root:
            return ""
        prefix = self.root if self.root.endswith("/") else self.root + "/"
        return url[len(prefix) :].rstrip("/") if url.startswith(prefix) else None

    def under(self, relative: str) -> list[str]:
        """Listed keys below the folder `relative` (every key for ""), relative to that folder."""
        keys = self._keys
        assert keys is not None
        if not relative:
            return keys.tolist()
        prefix = relative + "/"
        start = bisect.bisect_left(keys, prefix)
        stop = bisect.bisect_left(keys, relative + "0", start)  # "0" follows "/"
        return [keys[i][len(prefix) :] for i in range(start, stop)]

    @property
    def listed(self) -> bool:
        return self._keys is not None

    def stat(self, relative: str) -> tuple[int, str] | None:
        """(size, ETag or mtime) of a listed object, None if not listed."""
        keys = self._keys
        if keys is None:
            return None
        i = bisect.bisect_left(keys, relative)
        if i == len(keys) or keys[i] != relative:
            return None
        return int(self._sizes[i]), self._stamps[i]

    # --- reads -------------------------------------------------------------------------------

    def _call(self, fetch: Any, url: str, *, expected_size: int | None = None, action: str = "read") -> Any:
        """`fetch()`, retrying transient errors with backoff until `retry_seconds` have passed."""
        start = time.monotonic()
        delay, attempts = _FIRST_DELAY, 0
        while True:
            attempts += 1
            try:
                result = fetch()
                if expected_size is not None and len(result) != expected_size:
                    raise ConnectionError(f"got {len(result):,} bytes of the {expected_size:,} listed")
                return result
            except FileNotFoundError:
                raise _error(url, "object not found (was it deleted after the dataset was indexed?)", action) from None
            except PermissionError as error:
                reason = f"permission denied ({error}); check the credentials in storage_options"
                raise _error(url, reason, action) from None
            except Exception as error:  # noqa: BLE001 - clients raise many types; see _transient
                elapsed = time.monotonic() - start
                if not _transient(error) or elapsed + delay > self.retry_seconds:
                    why = f"{type(error).__name__}: {error}".strip().rstrip(":")
                    tries = f"{attempts} attempt{'s' if attempts > 1 else ''}"
                    hint = (
                        ""
                        if not _transient(error)
                        else f"; check the endpoint and network, or wait longer ({RETRY_SECONDS_ENV})"
                    )
                    raise _error(url, f"{why} (after {tries} over {elapsed:.1f} s){hint}", action) from error
                time.sleep(delay)
                delay = min(delay * 2, _MAX_DELAY)

    def fetch(self, url: str) -> bytes:
        """The object's bytes (or those of its byte range, `byte_range`), retried as `_call`
        says; raises `StorageError`. A range is one ranged GET, shorter where the object ends."""
        fs = self.fs
        read = self._read or (lambda url, start, end: fs.cat_file(url, start=start, end=end))
        ranged = _RANGE.search(url)
        if ranged is not None:
            whole, start, end = url[: ranged.start()], int(ranged.group(1)), int(ranged.group(2))
            if end <= start:  # HTTP has no empty range: a server would send the whole object
                return b""
            data = bytes(self._call(lambda: read(whole, start, end), url))
            if len(data) > end - start:
                raise _error(
                    url,
                    f"the server ignored the byte range (sent {len(data):,} bytes for {end - start:,}); "
                    "serve shards from a server that supports HTTP Range requests",
                )
            return data
        relative = self.relative(url)
        listed = self.stat(relative) if relative is not None else None
        data = self._call(lambda: read(url, None, None), url, expected_size=listed[0] if listed else None)
        if not data:
            raise _error(url, "the object is empty (0 bytes)")
        return bytes(data)

    def submit(self, url: str) -> Future[bytes]:
        return self._pool().submit(self.fetch, url)


_RANGE = re.compile(r"#bytes=(\d+)-(\d+)$")


def byte_range(url: str, start: int, size: int) -> str:
    """The name of bytes `start` to `start + size` of the object at `url`, for `prefetch` and
    `read_url` (a packed shard's member: xloader/shards)."""
    return f"{url}#bytes={start}-{start + size}"


def _transient(error: BaseException) -> bool:
    """Whether another attempt may succeed: 5xx, throttling, timeouts and connection errors yes;
    other 4xx and wrong arguments no."""
    status = getattr(error, "status", None) or getattr(error, "code", None)
    if isinstance(status, int):
        return status >= 500 or status in (408, 429)
    response = getattr(error, "response", None)
    if isinstance(response, dict):  # botocore ClientError
        code = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if isinstance(code, int):
            return code >= 500 or code in (408, 429)
    return not isinstance(error, (TypeError, ValueError, NotImplementedError)) or isinstance(error, OSError)


def _error(url: str, reason: str, action: str = "read") -> StorageError:
    return StorageError(f"cannot {action} {url}: {reason}.", path=url, reason=reason)


# --- the registry (per process) -----------------------------------------------------------------

_mounts: dict[str, Mount] = {}
_lock = threading.Lock()
_client_lock = threading.Lock()


def _new_locks() -> None:
    """In a forked child: locks another thread of the parent may have held at the fork are new."""
    global _lock, _client_lock
    _lock, _client_lock = threading.Lock(), threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_locks)


def _register(mount_: Mount) -> None:
    with _lock:
        _mounts[mount_.root] = mount_


_ABSENT = object()


def _same_value(a: object, b: object) -> bool:
    """Equal, or pickled alike (option objects without `==`, e.g. a botocore Config built twice)."""
    if a is b or a == b:
        return True
    try:
        return pickle.dumps(a) == pickle.dumps(b)
    except Exception:  # noqa: BLE001 - an unpicklable option: it is told apart by ==
        return False


def _differing_options(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The keys (as text, sorted) whose values differ between two `storage_options`."""
    keys = [*old, *(key for key in new if key not in old)]
    return sorted(str(key) for key in keys if not _same_value(old.get(key, _ABSENT), new.get(key, _ABSENT)))


def mount(*locations: object, storage_options: dict[str, Any] | None = None) -> tuple[Mount, ...]:
    """Mount every URL among `locations` (local paths, None and other objects are skipped):
    list it once and register it in this process (NOTE [ Remote storage ]). Keep the result on
    the source, so the mounts travel to its workers. Returns `()` when nothing is remote.

    Raises:
        TypeError: `storage_options` is not a dict, or is given with local paths only.
        StorageError: the listing failed after retries (endpoint down, credentials refused).
    """
    urls = [location for location in locations if isinstance(location, str) and is_url(location)]
    if storage_options is not None and not urls:
        raise TypeError(
            f"storage_options={storage_options!r} is for fsspec URLs (s3://, gs://, http(s)://, memory://, file://); "
            "the paths given are local. Leave storage_options out."
        )
    # A URL below another one given here is answered by that one's listing: list once.
    roots = [url if url.endswith("://") else url.rstrip("/") for url in dict.fromkeys(urls)]
    roots = [url for url in roots if not any(other != url and url.startswith(other + "/") for other in roots)]
    mounts = tuple(Mount(url, storage_options) for url in dict.fromkeys(roots))
    for each in mounts:
        previous = _mounts.get(each.root)
        differing = _differing_options(previous.storage_options, each.storage_options) if previous else []
        if differing:
            warnings.warn(  # the keys only: values may be secrets
                f"{each.root} was mounted before with other storage_options (differing: {', '.join(differing)}); "
                f"every source under {each.root} in this process now reads with the new ones. "
                "One root reads with one set of options.",
                stacklevel=3,
            )
        _register(each)
    return mounts


def mount_for(url: str, *, listed: bool = False) -> Mount:
    """The registered mount that holds `url` (the deepest root). If there is none (or, with
    `listed`, none with a listing), a new one with the options of the nearest mount on the same
    host or bucket (or none): for reads, unlisted, at the host; with `listed`, listed at `url`."""
    with _lock:
        holding = [m for m in _mounts.values() if m.relative(url) is not None]
        best = max(holding, key=lambda m: len(m.root), default=None)
        if best is not None and (best.listed or not listed or best.scheme in _UNLISTABLE):
            return best
        same_host = [m for m in _mounts.values() if _host(m.root) == _host(url)]
    options = best.storage_options if best else same_host[-1].storage_options if same_host else None
    new = Mount(url if listed else _host(url), options, listed=listed)
    _register(new)
    return new


def _listed_mount(url: str) -> tuple[Mount, str] | None:
    """(mount, relative path) if a listing answers for `url`, else None (http)."""
    holder = mount_for(url, listed=True)
    relative = holder.relative(url)
    if not holder.listed or relative is None:
        return None
    return holder, relative
