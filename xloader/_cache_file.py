"""The decoded cache's storage: one memory-mapped file shared by every process that opens it.

# NOTE [ Decoded cache file ]
Layout: a 4 KiB header, then a table of one 80-byte entry per sample index, then the data area.
Every process maps the whole file (`MAP_SHARED`), so a page holds one copy in memory whatever
the number of processes, and /proc's PSS counts it once in total.

- Filling: whichever process first decodes sample i writes it. It takes a non-blocking
  byte-range lock (`fcntl.lockf`) on entry i (another writer of the same entry: it gives up and
  keeps its own decode), marks the entry as being written (its sequence number made odd), writes
  the pixels, the key and the shape, then publishes it (sequence even). The kernel drops the
  locks of a killed process; a killed writer leaves an odd sequence, which no reader accepts,
  and the next writer of that entry rewrites it.
- Each process keeps its one map of a file open for its life: closing any descriptor of a file
  (an `mmap` closes its own duplicate) drops every `fcntl` lock the process holds on it.
- Reading takes no lock (a seqlock): read the sequence, check the key, copy the pixels out, and
  read the sequence again; any change, or an odd value, and the entry counts as missing. x86's
  ordered stores make the publish visible after the data; elsewhere this relies on the same.
- Space: an entry keeps its region when rewritten (a changed file of the same decoded size);
  new regions are taken from a bump pointer in the header, under a lock on header byte 0, and
  reserved with `posix_fallocate`, so a full disk or /dev/shm is an error code (the cache then
  counts as full), never a SIGBUS on first touch of a sparse page.
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
import threading
import uuid

import numpy as np

__all__ = ["CacheFile"]

MAGIC = b"XLDCACH1"
_HEADER_BYTES = 4096
_ALIGN = 64
_HEADER = np.dtype(
    [("magic", "S8"), ("count", "<u8"), ("table", "<u8"), ("data", "<u8"), ("end", "<u8"), ("next", "<u8")]
)
ENTRY = np.dtype(
    [
        ("seq", "<u8"),
        ("key", "u1", 16),
        ("offset", "<u8"),
        ("capacity", "<u8"),
        ("shape", "<u4", 3),
        ("full", "<u4", 3),  # the decoded image's shape before the resize
        ("mask_shape", "<u4", 3),  # (H, W, 0) for an (H, W) mask; all 0: no mask
        ("mask_dtype", "S4"),  # numpy's dtype.str, e.g. "|u1"
    ]
)
Entry = tuple[np.ndarray, tuple[int, ...], "np.ndarray | None"]  # image, its shape before the resize, mask


def aligned(nbytes: int) -> int:
    return (nbytes + _ALIGN - 1) // _ALIGN * _ALIGN


def reserve(fd: int, offset: int, nbytes: int) -> bool:
    """Reserve file space with `posix_fallocate`; False if the file system is full. A file system
    without fallocate (some network ones) is used sparse, as if reserved."""
    try:
        os.posix_fallocate(fd, offset, nbytes)
    except OSError as error:
        if error.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
            return False
    return True


def layout(count: int, data_bytes: int) -> tuple[int, int, int]:
    """(table offset, data offset, file size) of a cache of `count` entries and `data_bytes` of data."""
    data = -(-(_HEADER_BYTES + count * ENTRY.itemsize) // 4096) * 4096
    return _HEADER_BYTES, data, data + data_bytes


class CacheFile:
    """One cache file, opened (or created, complete, under an atomic link) by this process.

    Args:
        path: the file.
        count: entries (one per sample index).
        data_bytes: size of the data area, used only when this process creates the file.
    """

    def __init__(self, path: str, count: int, data_bytes: int):
        self.path = path
        self._fd = self._open(path, count, data_bytes)
        self._map = mmap.mmap(self._fd, os.fstat(self._fd).st_size)
        header = np.frombuffer(self._map, _HEADER, count=1)
        if header["magic"][0] != MAGIC or int(header["count"][0]) != count:
            self.close()
            raise ValueError(
                f"{path} is not a decoded cache of this dataset (format or size differ). Delete it; "
                "xloader makes a new one."
            )
        self._header = header
        self.end = int(header["end"][0])
        table = np.frombuffer(self._map, ENTRY, count=count, offset=int(header["table"][0]))
        self._seq, self._key, self._offset = table["seq"], table["key"], table["offset"]
        self._capacity, self._shape, self._full = table["capacity"], table["shape"], table["full"]
        self._mask_shape, self._mask_dtype = table["mask_shape"], table["mask_dtype"]
        self._bytes = np.frombuffer(self._map, np.uint8)
        self._lock = threading.Lock()  # fcntl locks belong to the process; threads share them
        self.full = False

    @staticmethod
    def _open(path: str, count: int, data_bytes: int) -> int:
        try:
            return os.open(path, os.O_RDWR)
        except FileNotFoundError:
            pass
        table, data, size = layout(count, data_bytes)
        temporary = f"{path}.{os.getpid()}.{uuid.uuid4().hex}.tmp"
        fd = os.open(temporary, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.ftruncate(fd, size)
            if not reserve(fd, 0, data):  # header and table: never a sparse page
                raise OSError(
                    errno.ENOSPC,
                    f"no room for the decoded cache's table ({data:,} bytes) in {os.path.dirname(path)}. "
                    "Free some space, or pass cache=None",
                )
            header = np.zeros(1, _HEADER)
            header[0] = (MAGIC, count, table, data, size, data)
            os.pwrite(fd, header.tobytes(), 0)
            try:
                os.link(temporary, path)  # published complete; a racing creator's file wins if first
            except FileExistsError:
                pass
        finally:
            os.close(fd)
            os.unlink(temporary)
        return os.open(path, os.O_RDWR)

    def close(self) -> None:
        for name in ("_seq", "_key", "_offset", "_capacity", "_shape", "_full", "_mask_shape", "_mask_dtype"):
            self.__dict__.pop(name, None)
        for name in ("_bytes", "_header"):
            self.__dict__.pop(name, None)
        try:
            self._map.close()
        except (AttributeError, BufferError):
            pass  # an array still views the map; it closes when collected
        os.close(self._fd)

    def get(self, index: int, key: bytes) -> Entry | None:
        """Entry `index` as (a copy of the image, its shape before the resize, a copy of the mask
        or None) if it is published under `key`, else None."""
        seq = int(self._seq[index])
        if seq == 0 or seq & 1 or self._key[index].tobytes() != key:
            return None
        offset = int(self._offset[index])
        shape = tuple(int(v) for v in self._shape[index])
        full = tuple(int(v) for v in self._full[index])
        nbytes = shape[0] * shape[1] * shape[2]
        image = self._bytes[offset : offset + nbytes].reshape(shape).copy()
        mask = None
        mask_shape = tuple(int(v) for v in self._mask_shape[index] if v)
        if mask_shape:
            dtype = np.dtype(self._mask_dtype[index].decode())
            start = offset + aligned(nbytes)
            mask = (
                self._bytes[start : start + int(np.prod(mask_shape)) * dtype.itemsize].view(dtype).reshape(mask_shape)
            )
            mask = mask.copy()
        if int(self._seq[index]) != seq:
            return None  # rewritten while we copied
        return image, full, mask

    def put(
        self, index: int, key: bytes, image: np.ndarray, full: tuple[int, ...], mask: np.ndarray | None = None
    ) -> bool:
        """Store `image` (uint8, (H, W, C)) and `mask` (any dtype, (H, W) or (H, W, K), or None)
        as entry `index` under `key`; False if another writer holds the entry or the file is full."""
        nbytes = aligned(image.nbytes) + (0 if mask is None else aligned(mask.nbytes))
        with self._lock:
            try:
                fcntl.lockf(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 1 + index)
            except OSError:
                return False
            try:
                seq = int(self._seq[index])
                writing = seq + 1 if seq % 2 == 0 else seq + 2
                self._seq[index] = writing
                if int(self._capacity[index]) < nbytes:
                    offset = self._allocate(nbytes)
                    if offset is None:
                        return False
                    self._offset[index], self._capacity[index] = offset, nbytes
                self._fill(int(self._offset[index]), image, mask)
                self._key[index] = np.frombuffer(key, np.uint8)
                self._shape[index] = image.shape
                self._full[index] = full
                self._mask_shape[index] = (0, 0, 0) if mask is None else (*mask.shape, 0)[:3]
                self._mask_dtype[index] = b"" if mask is None else mask.dtype.str.encode()
                self._seq[index] = writing + 1
                return True
            finally:
                fcntl.lockf(self._fd, fcntl.LOCK_UN, 1, 1 + index)

    def _fill(self, offset: int, image: np.ndarray, mask: np.ndarray | None) -> None:
        self._bytes[offset : offset + image.nbytes] = image.reshape(-1)
        if mask is not None:
            start = offset + aligned(image.nbytes)
            self._bytes[start : start + mask.nbytes] = np.ascontiguousarray(mask).reshape(-1).view(np.uint8)

    def _allocate(self, nbytes: int) -> int | None:
        fcntl.lockf(self._fd, fcntl.LOCK_EX, 1, 0)
        try:
            start = int(self._header["next"][0])
            if start + nbytes > self.end:
                self.full = True
                return None
            if not reserve(self._fd, start, nbytes):
                self.full = True
                return None
            self._header["next"] = start + nbytes
            return start
        finally:
            fcntl.lockf(self._fd, fcntl.LOCK_UN, 1, 0)

    def used_bytes(self) -> int:
        """Bytes of the data area handed out so far."""
        return int(self._header["next"][0]) - int(self._header["data"][0])
