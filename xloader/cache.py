"""The decoded-sample cache: decode and resize each image once, not once per epoch.

# NOTE [ Decoded cache ]
Sources take `cache=None` (default: decode every time), `cache="memory"` (this run: one file in
/dev/shm that every worker process maps, whatever their number and start method, deleted when
the source is collected or the process that made the source exits), a directory (a file there,
reused by later runs and by other processes, Keras and torch alike), or a `DecodedCache` to set
`max_bytes`. What is kept is each image decoded, resized and colour-converted, *before* the
transform: augmentations stay a function of (seed, epoch, index), so batches are bit-identical
with and without the cache.
- What. The image; for `ImageMaskFolder` also its resized mask (`image_and_mask_sample`),
  with the mask file and mask options in the keys. Other mask sources make masks at each load.
- Keys. The file's name is a digest of every decode option (colour mode, size, filter, aspect
  crop, pixel limit, reduced decode), the OpenCV version (its decoder defines the pixels) and
  every sample path, in order; a subset or another option gets another file. Each entry carries a
  digest of its file's path, size, mtime and inode: a file changed since it was cached is decoded
  again, never served stale. A packed member (`TarShards`) is not a file: its entry carries a
  digest of its shard's identity and the member's offset, size and CRC-32 (its mask's too).
- Concurrency and crashes: NOTE [ Decoded cache file ] in xloader/_cache_file.py.
- Size. With an `image_size` every entry has the same size, so the file is sized for the whole
  dataset when it is made; if that is over `max_bytes` or the free space where it goes, making it
  raises `DatasetError` with both figures. Without an `image_size` (images of their own sizes) the
  data area is `max_bytes`, or half the free space; once it is full (or the disk is: space is
  reserved with `posix_fallocate` entry by entry), samples that do not fit are decoded each
  time, with one warning per process.
"""

from __future__ import annotations

import glob
import hashlib
import os
import threading
import uuid
import warnings
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from xloader import storage
from xloader._cache_file import CacheFile, Entry, aligned, layout
from xloader.errors import DatasetError

if TYPE_CHECKING:
    from xloader._decoder import ImageDecoder

__all__ = ["DecodedCache"]

_FORMAT = 1
# Every cache file this process has open, by (pid, path): NOTE [ Decoded cache file ] says why
# a process keeps one map per file, open for its life.
_OPEN: dict[tuple[int, str], CacheFile] = {}
_OPEN_LOCK = threading.Lock()
_CHANNELS = {"rgb": 3, "rgba": 4, "grayscale": 1}


@dataclass(frozen=True, slots=True)
class DecodedCache:
    """Where a source keeps its decoded images (NOTE [ Decoded cache ] in xloader/cache.py).

    Args:
        location: "memory" (this run, shared memory) or a directory (kept across runs; made if
            missing). For a directory named "memory", write "./memory".
        max_bytes: the most the cache may hold, or None: with an `image_size`, what the dataset
            needs (refused if over the free space); without, half the free space where it goes.

    Example:
        >>> train = xl.ImageFolder("data/train", image_size=(224, 224),  # doctest: +SKIP
        ...                        cache=xl.DecodedCache("/scratch/cache", max_bytes=20 * 2**30))
    """

    location: str | os.PathLike[str]
    max_bytes: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.location, (str, os.PathLike)):
            raise TypeError(f"cache must be None, 'memory' or a directory path, got {self.location!r}.")
        if self.max_bytes is not None and (
            isinstance(self.max_bytes, bool) or not isinstance(self.max_bytes, (int, np.integer)) or self.max_bytes <= 0
        ):
            raise ValueError(f"max_bytes must be a positive int (bytes) or None, got {self.max_bytes!r}.")
        if self.location != "memory" and os.path.exists(self.location) and not os.path.isdir(self.location):
            raise ValueError(
                f"cache {os.fspath(self.location)!r} is a file; pass a directory (made if missing) or 'memory'."
            )


def bind_cache(cache: object) -> SourceCache | None:
    """Check a source's `cache` argument: its cache, or None."""
    if cache is None:
        return None
    if not isinstance(cache, DecodedCache):
        cache = DecodedCache(cache)  # type: ignore[arg-type]
    return SourceCache(cache)


def _shm_directory() -> str:
    return "/dev/shm" if os.path.isdir("/dev/shm") else os.path.realpath(os.environ.get("TMPDIR", "/tmp"))


def _unlink_matching(pattern: str, owner: int) -> None:
    if os.getpid() != owner:  # a forked worker's copy of the object: the parent owns the files
        return
    for path in glob.glob(pattern):
        with _OPEN_LOCK:
            file = _OPEN.pop((owner, path), None)
        if file is not None:
            file.close()  # unmapped, so the memory is freed now, not at exit
        try:
            os.unlink(path)
        except OSError:
            pass


def files_key(paths: tuple[str, ...]) -> bytes | None:
    """16 bytes naming this version of these files (path, size, mtime, inode of each; for a URL,
    size and ETag as listed: `storage.identity`); None if one cannot be stat'ed."""
    digest = hashlib.blake2b(digest_size=16)
    for path in paths:
        if storage.is_url(path):  # NOTE [ Remote storage ]
            listed = storage.identity(path)
            if listed is None:
                return None
            digest.update(os.fsencode(f"{path}\0{listed[0]}\0{listed[1]}\0"))
            continue
        try:
            stat = os.stat(path)
        except OSError:
            return None
        digest.update(os.fsencode(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\0{stat.st_ino}\0"))
    return digest.digest()


class SourceCache:
    """A source's cache: where it goes, and each process's open files (made on first use)."""

    def __init__(self, cache: DecodedCache):
        self.cache = cache
        self.memory = isinstance(cache.location, str) and cache.location == "memory"
        self.directory = _shm_directory() if self.memory else os.path.abspath(os.fspath(cache.location))
        self.prefix = f"xloader-{uuid.uuid4().hex[:16]}-" if self.memory else "xloader-"
        if self.memory:
            weakref.finalize(self, _unlink_matching, os.path.join(self.directory, self.prefix + "*"), os.getpid())
        self._files: dict[tuple[int, int, int, str], CacheFile] = {}
        self._opening = threading.Lock()
        self._warned = False

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_files"], state["_warned"] = {}, False  # open files belong to the process
        del state["_opening"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _opening=threading.Lock())

    def _file(self, source: Any, options: str, sample_bytes: int | None) -> CacheFile:
        # A pruned copy of the source, or one whose options were changed, has its own file.
        ident = (os.getpid(), id(source), len(source), options)
        found = self._files.get(ident)
        if found is None:
            with self._opening:
                found = self._files.get(ident)
                if found is None:
                    found = self._files[ident] = self._open(source, options, sample_bytes)
        return found

    def _open(self, source: Any, options: str, sample_bytes: int | None) -> CacheFile:
        count = len(source)
        digest = hashlib.blake2b(f"{_FORMAT};opencv={cv2.__version__};{options}".encode(), digest_size=16)
        for index in range(count):
            digest.update(os.fsencode(source.describe(index)) + b"\0")
        path = os.path.join(self.directory, f"{self.prefix}{digest.hexdigest()}.cache")
        with _OPEN_LOCK:  # one CacheFile per file in a process, whichever sources share it
            found = _OPEN.get((os.getpid(), path))
            if found is None:
                if os.path.exists(path):
                    found = CacheFile(path, count, 0)
                else:
                    os.makedirs(self.directory, exist_ok=True)
                    found = CacheFile(path, count, self._data_bytes(count, sample_bytes))
                _OPEN[(os.getpid(), path)] = found
            return found

    def _data_bytes(self, count: int, sample_bytes: int | None) -> int:
        """Size of a new file's data area for `count` samples of `sample_bytes` (64-aligned) each."""
        stat = os.statvfs(self.directory)
        free = stat.f_bavail * stat.f_frsize
        limit = self.cache.max_bytes
        if sample_bytes is None:  # sizes unknown: filled until full, so leave the machine half its room
            return limit if limit is not None else free // 2
        need = count * sample_bytes
        total = layout(count, need)[2]
        where = "shared memory (/dev/shm)" if self.memory else repr(self.directory)
        if limit is not None and total > limit:
            raise DatasetError(
                f"the decoded cache of {count} samples of {sample_bytes:,} bytes needs {total:,} bytes, over "
                f"max_bytes={limit:,}. Pass a larger max_bytes, a smaller image_size, or cache=None."
            )
        if total > free:
            raise DatasetError(
                f"the decoded cache of {count} samples of {sample_bytes:,} bytes needs {total:,} bytes, but "
                f"{where} has {free:,} free. Pass a cache directory on a larger disk, a smaller image_size, "
                "or cache=None."
            )
        return need + 16 * sample_bytes  # room for the few entries a killed writer can leak

    def holds(self, source: Any, index: int, sample: CachedSample) -> bool:
        """Whether `load` would find sample `index` here (this version of its files): then it
        reads no file, and a remote source does not fetch it (NOTE [ Remote storage ])."""
        key = sample.version()
        return key is not None and self._file(source, sample.options, sample.nbytes).get(index, key) is not None

    def load(self, source: Any, index: int, sample: CachedSample) -> Entry:
        """`sample.decode()` of sample `index`, from the cache if it holds this version of its files."""
        key = sample.version()
        if key is None:
            return sample.decode()  # a missing file: decoding raises the bad-file error
        file = self._file(source, sample.options, sample.nbytes)
        found = file.get(index, key)
        if found is not None:
            return found
        image, shape, mask = sample.decode()
        if not file.put(index, key, np.ascontiguousarray(image), shape, mask) and file.full and not self._warned:
            self._warned = True
            warnings.warn(
                f"the decoded cache {file.path} is full ({file.used_bytes():,} bytes of images); images that do "
                "not fit are decoded each time. Pass cache=DecodedCache(..., max_bytes=...) with more room, or "
                "an image_size.",
                stacklevel=4,
            )
        return image, shape, mask


@dataclass(frozen=True, slots=True)
class CachedSample:
    """What the cache needs to know of one sample: the files it is made from (the image first),
    every option that shapes it, its size in bytes if known, how to make it, and how to name
    this version of its bytes (`key`; default `files_key(paths)`)."""

    paths: tuple[str, ...]
    options: str
    nbytes: int | None
    decode: Callable[[], Entry]
    key: Callable[[], bytes | None] | None = None

    def version(self) -> bytes | None:
        """16 bytes naming this version of the sample's bytes; None if its files are missing."""
        return files_key(self.paths) if self.key is None else self.key()


def image_sample(
    decoder: ImageDecoder,
    path: str,
    read: Callable[[], bytes] | None = None,
    key: Callable[[], bytes | None] | None = None,
) -> CachedSample:
    """The cache's view of an image decoded and resized by `decoder` (no mask): the file at
    `path`, or the bytes `read()` gives (then `path` names them, and `key` their version)."""
    size = decoder.image_size
    nbytes = None if size is None else aligned(size[0] * size[1] * _CHANNELS[decoder.color_mode])

    def decode() -> Entry:
        image = decoder.unresized(path) if read is None else decoder.unresized_bytes(read(), path)
        return decoder.resize(image), image.shape, None

    return CachedSample((path,), decoder.options_key(), nbytes, decode, key)


def image_and_mask_sample(
    decoder: ImageDecoder,
    path: str,
    mask_paths: tuple[str, ...],
    mask_options: str,
    mask_dtype: np.dtype,
    make_mask: Callable[[tuple[int, ...]], np.ndarray],
    read: Callable[[], bytes] | None = None,
    key: Callable[[], bytes | None] | None = None,
) -> CachedSample:
    """The cache's view of an image and its (H, W) mask of `mask_dtype`, resized to the image's
    size by `make_mask(shape of the image before the resize)`; the mask is made from `mask_paths`
    and shaped by `mask_options`, which must name every option it depends on. `read` and `key`:
    as `image_sample` (`key` then names the mask's version too)."""
    image = image_sample(decoder, path, read, key)
    size = decoder.image_size
    nbytes = None if size is None else image.nbytes + aligned(size[0] * size[1] * mask_dtype.itemsize)  # type: ignore[operator]

    def decode() -> Entry:
        resized, shape, _ = image.decode()
        return resized, shape, make_mask(shape)

    return CachedSample((path, *mask_paths), f"{image.options};{mask_options}", nbytes, decode, key)


def decode_sample(source: Any, index: int, sample: CachedSample | None = None) -> Entry:
    """Sample `index` of an image source (`decoder`, `decoded_cache`, `describe`): its image
    decoded, resized and colour-converted (uint8 (H, W, C), before the transform), the image's
    shape before the resize, and its mask if `sample` makes one; through the source's decoded
    cache if it has one. `sample` defaults to the image alone (`image_sample`)."""
    if sample is None:
        sample = image_sample(source.decoder, source.describe(index))
    if source.decoded_cache is None:
        return sample.decode()
    return source.decoded_cache.load(source, index, sample)
