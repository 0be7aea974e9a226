"""edit's "COS": input and output buckets on the platform's blob store.

With ``blobs.backend: s3`` a bucket is a real bucket of the same S3-compatible
endpoint (IBM COS, MinIO, AWS) and URLs are presigned GETs. With local blobs a
bucket is the folder ``<blobs.local_dir>/cos/<bucket>/`` and URLs are the ingress's
signed ``/blobs/...`` URLs, so a client fetches a result the same way either way.
"""

from __future__ import annotations

import builtins
import logging
import posixpath
from collections.abc import Iterator
from contextlib import contextmanager

from visionserve.errors import ServiceUnavailable, VisionServeError
from visionserve.settings import S3Settings, Settings
from visionserve.store.blobs import BlobStore, S3BlobStore, make_blob_store

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif"})
MIME = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
EXTENSION = {"png": "png", "jpeg": "jpg", "webp": "webp"}


class PrefixedStore:
    """A view of a blob store under ``prefix`` (a local "bucket")."""

    def __init__(self, inner: BlobStore, prefix: str) -> None:
        self.inner = inner
        self.prefix = prefix.strip("/") + "/"

    def put(self, key: str, data: bytes, content_type: str | None = None) -> None:
        self.inner.put(self.prefix + key, data, content_type)

    def get(self, key: str) -> bytes:
        return self.inner.get(self.prefix + key)

    def exists(self, key: str) -> bool:
        return self.inner.exists(self.prefix + key)

    def delete(self, key: str) -> None:
        self.inner.delete(self.prefix + key)

    def delete_prefix(self, prefix: str) -> int:
        return self.inner.delete_prefix(self.prefix + prefix)

    def list(self, prefix: str = "") -> builtins.list[str]:
        cut = len(self.prefix)
        return [k[cut:] for k in self.inner.list(self.prefix + prefix)]

    def url(self, key: str, expires_in: int | None = None) -> str:
        return self.inner.url(self.prefix + key, expires_in)

    def content_type(self, key: str) -> str | None:
        return self.inner.content_type(self.prefix + key)


def bucket(settings: Settings, name: str) -> BlobStore:
    """The bucket ``name`` of the configured store; URLs live ``edit.presign_expires``."""
    expires = settings.edit.presign_expires
    s3 = s3_settings(settings)
    if s3 is not None:
        one = s3.model_copy(update={"bucket": name, "prefix": ""})
        return S3BlobStore(one, url_expiry_s=expires)
    return PrefixedStore(make_blob_store(settings), f"cos/{name}")


def s3_settings(settings: Settings) -> S3Settings | None:
    """The S3-compatible store edit's buckets live in, or None for local folders."""
    if settings.edit.s3 is not None:
        return settings.edit.s3
    return settings.blobs.s3 if settings.blobs.backend == "s3" else None


def input_bucket(settings: Settings) -> BlobStore:
    return bucket(settings, settings.edit.input_bucket)


def output_bucket(settings: Settings) -> BlobStore:
    return bucket(settings, settings.edit.output_bucket)


def endpoint(settings: Settings) -> str:
    """Where the buckets live, as a client would address them (never a credential)."""
    s3 = s3_settings(settings)
    if s3 is not None:
        return s3.endpoint_url or f"https://s3.{s3.region}.amazonaws.com"
    return f"{settings.public_url.rstrip('/')}/blobs/cos"


def region(settings: Settings) -> str:
    s3 = s3_settings(settings)
    return s3.region if s3 is not None else settings.blobs.s3.region


def is_image_name(key: str) -> bool:
    return posixpath.splitext(key)[1].lower() in IMAGE_SUFFIXES


def result_name(filename: str | None, fmt: str) -> str:
    """``<stem>_modified.<ext>`` of the contract; a safe stem whatever the client sent."""
    base = posixpath.basename((filename or "").replace("\\", "/"))
    stem = posixpath.splitext(base)[0]
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem).strip("._") or "image"
    return f"{stem[:100]}_modified.{EXTENSION.get(fmt, fmt)}"


def join_prefix(*parts: str) -> str:
    """Prefix parts joined with ``/`` and ending in one (``""`` stays empty)."""
    joined = "/".join(p.strip("/") for p in parts if p.strip("/"))
    return f"{joined}/" if joined else ""


@contextmanager
def storage(action: str) -> Iterator[None]:
    """Turn a store failure into a clear public error: the call and the store's error code.

    ``COS put_object failed: ClientError: NoSuchBucket`` (as the contract's callbacks show
    it), never the store's message text, which may name endpoints or keys.
    """
    try:
        yield
    except VisionServeError:
        raise
    except Exception as exc:
        response = getattr(exc, "response", None)
        code = response.get("Error", {}).get("Code") if isinstance(response, dict) else None
        log.warning("COS %s failed", action, exc_info=exc)
        # botocore names its error classes after the code: say it as the contract does.
        detail = f"ClientError: {code}" if code else type(exc).__name__
        raise ServiceUnavailable(f"COS {action} failed: {detail}", code="storage_error") from exc
