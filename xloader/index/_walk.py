"""Listing image files under a directory, sorted like Keras's flow_from_directory: one walk, each
directory listed in C where that extension is built (NOTE [ Listing a directory in C ]), else by os.scandir."""

from __future__ import annotations

import functools
import heapq
import os
import sys
from collections.abc import Callable

from xloader import storage

try:
    from xloader.index import _fastlist  # type: ignore[attr-defined]  # a C extension, built from _fastlist.c where a compiler was found
except ImportError:
    _fastlist = None

# The extensions Keras's flow_from_directory accepts (matched case-insensitively).
IMAGE_EXTENSIONS = frozenset({"png", "jpg", "jpeg", "bmp", "ppm", "tif", "tiff"})


def list_image_files(
    top: str | os.PathLike[str], *, follow_links: bool, extensions: frozenset[str] = IMAGE_EXTENSIONS, prefix: str = ""
) -> list[str]:
    """Paths of image files under `top`, relative to it, recursively, each after `prefix`.

    Order: directories sorted by path, files sorted by name within each (the order of
    `keras.preprocessing.image.DirectoryIterator`). With `follow_links`, a directory reached
    twice (through a link, or a link loop) is listed once, under the first of its paths in that
    order, whatever order the file system lists entries in. Hidden entries (names starting
    with ".") are skipped: macOS `._photo.jpg` resource forks and `.ipynb_checkpoints` are not
    images. A link to a directory is never taken for a file, followed or not (as in `os.walk`);
    links to files are listed only if they lead to a regular file (or nowhere: the read then
    fails by name). Named pipes, sockets and devices are never listed.
    Raises OSError (naming the path) for a directory that cannot be read.
    """
    top = os.fspath(top)
    if storage.is_url(top):  # NOTE [ Remote storage ]
        return storage.list_image_files(top, extensions=extensions, prefix=prefix)
    scan = _directory_scanner(extensions)
    files: list[str] = []
    seen: set[tuple[int, int]] = set()
    # Directories are visited in sorted path order (a parent sorts before its children), so the
    # path a linked directory is first reached by does not depend on scandir's order, and the
    # files come out in Keras's order.
    pending = [top]
    while pending:
        directory = heapq.heappop(pending)
        if follow_links:
            info = os.stat(directory)
            key = (info.st_dev, info.st_ino)
            if key in seen:
                continue
            seen.add(key)
        relative = os.path.relpath(directory, top)
        names, subdirectories = scan(
            directory, follow_links, prefix if relative == os.curdir else prefix + relative + os.sep
        )
        files.extend(names)
        for name in subdirectories:
            heapq.heappush(pending, os.path.join(directory, name))
    return files


def _scan_directory_python(
    directory: str, follow_links: bool, prefix: str, extensions: frozenset[str]
) -> tuple[list[str], list[str]]:
    """The image files directly in `directory` (`prefix` + name, sorted by name) and its
    sub-directories to visit (names, in scandir's order): links to directories only if `follow_links`.

    Hidden entries (names starting with ".") are neither. Files are regular files, links to them,
    and dangling links (whose read then fails by name); a named pipe, socket or device, or a
    link to one, is never listed, so nothing opens it (a FIFO would block the read). Raises
    OSError if the directory cannot be read, or an entry's type cannot be told for a reason
    other than a dangling link."""
    names: list[str] = []
    subdirectories: list[str] = []
    with os.scandir(directory) as entries:
        for entry in entries:  # the hot loop of indexing: decoding.is_image_file's test, inlined
            name = entry.name
            if name[0] == ".":
                continue
            if entry.is_dir():  # follows links: a link to a directory is a directory
                if follow_links or not entry.is_symlink():
                    subdirectories.append(name)
                continue
            dot = name.rfind(".")
            if dot > 0 and name[dot + 1 :].lower() in extensions and (entry.is_file() or _is_dangling(entry)):
                # An unreadable or dangling entry fails at decode, by name.
                names.append(name)
    names.sort()
    return [prefix + name for name in names] if prefix else names, subdirectories


def _is_dangling(entry: os.DirEntry[str]) -> bool:
    """True for a link to nothing; False for a named pipe, socket or device, or a link to one."""
    if not entry.is_symlink():
        return False
    try:
        os.stat(entry.path)
    except FileNotFoundError:
        return True
    return False


def _c_listing_applies(extensions: frozenset[str]) -> bool:
    """True where `_fastlist.scan_directory` (NOTE [ Listing a directory in C ]) gives exactly
    `_scan_directory_python`'s result: it is built, file names are UTF-8 (with surrogateescape
    for the rest, as on every POSIX system), and the C test of `extensions` matches str.lower()'s."""
    if (
        _fastlist is None
        or sys.getfilesystemencoding() != "utf-8"
        or sys.getfilesystemencodeerrors() != "surrogateescape"
    ):
        return False
    # The C test lower-cases ASCII only. str.lower() also turns U+212A KELVIN SIGN into "k", so an
    # extension with a "k" (or any non-ASCII one) is left to Python, as are more extensions, or
    # longer ones, than the C code has room for.
    return len(extensions) <= 32 and all(
        extension.isascii() and "k" not in extension and len(extension) <= 15 for extension in extensions
    )


def _directory_scanner(extensions: frozenset[str]) -> Callable[[str, bool, str], tuple[list[str], list[str]]]:
    """`scan(directory, follow_links, prefix)`: the C listing where it applies, else `_scan_directory_python`."""
    if not _c_listing_applies(extensions):
        return functools.partial(_scan_directory_python, extensions=extensions)
    encoded = tuple(sorted(extension.encode("ascii") for extension in extensions))
    return lambda directory, follow_links, prefix: _fastlist.scan_directory(directory, follow_links, encoded, prefix)
