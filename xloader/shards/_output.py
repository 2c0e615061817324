"""Where `pack` writes: a local folder, or an fsspec URL through the storage module's client.

# NOTE [ Packing to a URL ]
`pack(source, "s3://bucket/packed")` streams each shard into one object (fsspec's writer: a
multipart upload on S3) and writes the index last, as one object, so a reader that finds the
index finds every shard complete. The URL is mounted (listed) first with `storage_options`,
which answers whether it already holds a packed dataset, and mounted again at the end, so
`TarShards(url)` and `is_packed(url)` in this process see what was written. A failed pack
deletes the shards it wrote. Writes are not retried: pack again.
"""

from __future__ import annotations

import os
import posixpath
from typing import IO, Any

from xloader import storage
from xloader.shards._index import INDEX_NAME, shard_name

__all__ = ["Output"]


class Output:
    """The folder or URL `out` that `pack` writes (created if missing)."""

    def __init__(self, out: str, storage_options: dict[str, Any] | None):
        self.out = out
        self.remote = storage.is_url(out)
        self.storage_options = storage_options
        self._fs: Any = storage.mount(out, storage_options=storage_options)[0].fs if self.remote else None

    def path(self, name: str) -> str:
        return posixpath.join(self.out, name) if self.remote else os.path.join(self.out, name)

    def check_new(self) -> None:
        """Raise unless `out` can take a new packed dataset (creating a local folder)."""
        if not self.remote and os.path.exists(self.out) and not os.path.isdir(self.out):
            raise FileExistsError(f"pack output {self.out!r} is a file; give a folder (it is created if missing).")
        if storage.isfile(self.path(INDEX_NAME)) or storage.isfile(self.path(shard_name(0))):
            raise FileExistsError(
                f"{self.out!r} already holds a packed dataset. Pack into a new folder, or delete this one first."
            )
        if not self.remote:
            os.makedirs(self.out, exist_ok=True)

    def open(self, name: str) -> IO[bytes]:
        """File `name` in `out`, open for writing bytes."""
        if self.remote:
            return self._fs.open(self.path(name), "wb")
        return open(self.path(name), "wb")  # noqa: SIM115 - the caller closes it

    def put(self, name: str, data: bytes) -> None:
        """Write file `name` whole: locally through a temporary name, so no reader sees half of it."""
        if self.remote:
            with self.open(name) as file:
                file.write(data)
            return
        temporary = self.path(name + ".partial")
        with open(temporary, "wb") as file:
            file.write(data)
        os.replace(temporary, self.path(name))

    def remove(self, name: str) -> None:
        if self.remote:
            self._fs.rm(self.path(name))
        else:
            os.remove(self.path(name))

    def done(self) -> None:
        """List a URL again, so this process sees the files written (NOTE [ Packing to a URL ])."""
        if self.remote:
            storage.mount(self.out, storage_options=self.storage_options)
