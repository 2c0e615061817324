"""The cheaper GET for `s3://` objects: one botocore client per process (thread-safe, its own
connection pool of `threads` connections) instead of s3fs's `cat_file`.

# NOTE [ The S3 read path ]
s3fs runs every call on its asyncio loop thread (aiobotocore): each of a worker's fetch threads
hands its call over to that one thread and waits, and that thread competes with decoding for
the worker's GIL. In three runs of benchmarks/remote.py (2,000 objects of ~30 kB from moto on this
2-core machine), the torch loader with 2 workers read 314-371 img/s through botocore against
156-175 through s3fs; per GET, 1.5-1.6 against 1.8-2.0 ms of client CPU (docs/remote.md).
So `s3://` objects are read with botocore when every storage option maps onto it; anything
else (`requester_pays`, `s3_additional_kwargs`, `version_aware`, a `session`, ...) keeps s3fs,
whose meaning of those options xloader does not restate. Listing always goes through s3fs.
`XLOADER_S3_CLIENT=s3fs` turns the botocore path off. The bytes are the object's bytes either way.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

__all__ = ["S3_CLIENT_ENV", "botocore_reader"]

S3_CLIENT_ENV = "XLOADER_S3_CLIENT"
# s3fs options with a botocore equivalent; any other option keeps the s3fs read path.
_MAPPED = frozenset({"key", "secret", "token", "endpoint_url", "anon", "profile", "client_kwargs", "config_kwargs"})

Reader = Callable[[str, int | None, int | None], bytes]


def client_choice() -> str:
    """The read client for `s3://` ("botocore" or "s3fs"), from `XLOADER_S3_CLIENT`."""
    value = os.environ.get(S3_CLIENT_ENV, "botocore")
    if value not in ("botocore", "s3fs"):
        raise ValueError(f"{S3_CLIENT_ENV} must be 'botocore' or 's3fs', got {value!r}. Unset it for the default.")
    return value


def botocore_reader(storage_options: dict[str, Any], threads: int) -> Reader | None:
    """`read(url, start, end)`: the bytes of `s3://bucket/key` (`start`/`end` for a byte range,
    `end` exclusive) through a botocore client made now, in this process; None if an option has
    no botocore equivalent or botocore is missing. Raises `FileNotFoundError` for a missing
    object or bucket, `PermissionError` for a refused one, botocore's errors otherwise."""
    if not set(storage_options) <= _MAPPED:
        return None
    try:
        import botocore.config
        import botocore.exceptions
        import botocore.session
    except ImportError:
        return None
    options = dict(storage_options)
    session = botocore.session.Session(profile=options.get("profile"))
    config: dict[str, Any] = {"retries": {"total_max_attempts": 1}, **options.get("config_kwargs", {})}
    config.setdefault("max_pool_connections", threads)
    if options.get("anon"):
        config["signature_version"] = botocore.UNSIGNED
    client_kwargs = dict(options.get("client_kwargs") or {})
    for ours, theirs in (
        ("key", "aws_access_key_id"),
        ("secret", "aws_secret_access_key"),
        ("token", "aws_session_token"),
    ):
        if options.get(ours) is not None:
            client_kwargs.setdefault(theirs, options[ours])
    if options.get("endpoint_url") is not None:
        client_kwargs.setdefault("endpoint_url", options["endpoint_url"])
    client = session.create_client("s3", config=botocore.config.Config(**config), **client_kwargs)
    refused = ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403")

    def read(url: str, start: int | None = None, end: int | None = None) -> bytes:
        bucket, _, key = url.split("://", 1)[1].partition("/")
        extra = {} if start is None else {"Range": f"bytes={start}-{'' if end is None else end - 1}"}
        try:
            response = client.get_object(Bucket=bucket, Key=key, **extra)
        except botocore.exceptions.ClientError as error:
            code = str(error.response.get("Error", {}).get("Code", ""))
            if code in ("NoSuchKey", "NoSuchBucket", "404"):
                raise FileNotFoundError(url) from error
            if code in refused:
                raise PermissionError(f"{code}: {error}") from error
            raise
        with response["Body"] as body:
            return body.read()

    return read
