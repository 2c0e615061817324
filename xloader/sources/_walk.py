"""Listing image files under a directory: one scandir walk, sorted like Keras's flow_from_directory."""

from __future__ import annotations

import heapq
import os

# The extensions Keras's flow_from_directory accepts (matched case-insensitively).
IMAGE_EXTENSIONS = frozenset({"png", "jpg", "jpeg", "bmp", "ppm", "tif", "tiff"})


def list_image_files(top: str, *, follow_links: bool, extensions: frozenset[str] = IMAGE_EXTENSIONS) -> list[str]:
    """Paths of image files under `top`, relative to it, recursively.

    Order: directories sorted by path, files sorted by name within each (the order of
    `keras.preprocessing.image.DirectoryIterator`). With `follow_links`, a directory reached
    twice (through a link, or a link loop) is listed once, under the first of its paths in that
    order, whatever order the file system lists entries in. Hidden entries (names starting
    with ".") are skipped: macOS `._photo.jpg` resource forks and `.ipynb_checkpoints` are not
    images. A link to a directory is never taken for a file, followed or not (as in `os.walk`).
    """
    found: list[tuple[str, list[str]]] = []
    seen: set[tuple[int, int]] = set()
    # Directories are visited in sorted path order (a parent sorts before its children), so the
    # path a linked directory is first reached by does not depend on scandir's order.
    pending = [top]
    while pending:
        directory = heapq.heappop(pending)
        if follow_links:
            info = os.stat(directory)
            key = (info.st_dev, info.st_ino)
            if key in seen:
                continue
            seen.add(key)
        names: list[str] = []
        with os.scandir(directory) as entries:
            for entry in entries:  # the hot loop of indexing: decoding.is_image_file's test, inlined
                name = entry.name
                if name[0] == ".":
                    continue
                if entry.is_dir():  # follows links: a link to a directory is a directory
                    if follow_links or not entry.is_symlink():
                        heapq.heappush(pending, entry.path)
                    continue
                dot = name.rfind(".")
                if dot > 0 and name[dot + 1 :].lower() in extensions:
                    # Not checked further: an unreadable or dangling entry fails at decode, by name.
                    names.append(name)
        found.append((directory, sorted(names)))
    files: list[str] = []
    for directory, names in found:  # already in sorted path order
        prefix = os.path.relpath(directory, top)
        if prefix == os.curdir:
            files.extend(names)
        else:
            prefix += os.sep
            files.extend([prefix + name for name in names])
    return files
