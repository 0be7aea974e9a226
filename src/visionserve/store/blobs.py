"""Blob storage: uploads, results, model files and captures.

Two backends behind one small interface, picked by ``settings.blobs.backend``:

* :class:`LocalBlobStore` keeps files under a directory (the embedded default).
  Its URLs point at the ingress (``/blobs/{key}``) and carry an expiring
  HMAC signature that the ingress checks with :class:`UrlSigner`.
* :class:`S3BlobStore` talks to any S3-compatible server (AWS, MinIO, IBM COS)
  and hands out presigned URLs, so clients download straight from storage.

Keys are ``/``-separated relative paths such as ``results/<job>/mask.png``. Both
backends validate them the same way, so code that works on one works on the other.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import hmac
import logging
import mimetypes
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from urllib.parse import quote

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from visionserve.errors import BadRequest, Conflict, Forbidden, NotFound, VisionServeError
from visionserve.settings import S3Settings, Settings

log = logging.getLogger(__name__)

# S3 DeleteObjects accepts at most 1000 keys per call. Read at call time, so tests
# can lower it to exercise batching without creating thousands of objects.
DELETE_BATCH = 1000

# Local sidecar holding a blob's content type: ``.<name>.ctype`` next to the blob.
# Names starting with "." are refused as keys, so sidecars and temp files never
# collide with (or show up as) blobs.
_SIDECAR_SUFFIX = ".ctype"


@runtime_checkable
class BlobStore(Protocol):
    """What every blob backend offers."""

    def put(self, key: str, data: bytes, content_type: str | None = None) -> None:
        """Store ``data`` under ``key``, replacing any previous blob atomically."""
        ...

    def get(self, key: str) -> bytes:
        """Return the blob's bytes.

        Raises:
            NotFound: No blob has this key.
        """
        ...

    def exists(self, key: str) -> bool:
        """Whether a blob has this key."""
        ...

    def delete(self, key: str) -> None:
        """Delete the blob; deleting a missing key is not an error."""
        ...

    def delete_prefix(self, prefix: str) -> int:
        """Delete every blob whose key starts with ``prefix``; return how many."""
        ...

    def list(self, prefix: str = "") -> builtins.list[str]:
        """Keys starting with ``prefix`` (a plain string prefix, as in S3), sorted."""
        ...

    def url(self, key: str, expires_in: int | None = None) -> str:
        """A URL a client can GET for ``expires_in`` seconds (backend default if None)."""
        ...

    def content_type(self, key: str) -> str | None:
        """The blob's content type, if known.

        Raises:
            NotFound: No blob has this key.
        """
        ...


def validate_key(key: str) -> str:
    """Check that ``key`` is a safe relative blob key and return it.

    Raises:
        BadRequest: The key is empty, absolute, contains ``\\`` or NUL, or has an
            empty, ``.``/``..`` or otherwise dot-leading segment.
    """
    if not isinstance(key, str) or not key:
        raise BadRequest("blob key must be a non-empty string")
    _check_segments(key, key.split("/"))
    return key


def _validate_prefix(prefix: str) -> str:
    # A prefix is a key, possibly ending in "/" or in a partial name; "" means all.
    if prefix:
        segments = prefix.split("/")
        if segments[-1] == "":
            segments = segments[:-1]
        _check_segments(prefix, segments)
    return prefix


def _check_segments(key: str, segments: list[str]) -> None:
    if "\\" in key or "\x00" in key:
        raise BadRequest(f"invalid blob key {key!r}: backslash or NUL", details={"key": key})
    for segment in segments:
        if not segment:
            raise BadRequest(
                f"invalid blob key {key!r}: absolute or empty segment", details={"key": key}
            )
        if segment.startswith("."):
            # Covers "." and ".." (traversal) and hides the local store's own files.
            raise BadRequest(
                f"invalid blob key {key!r}: segment starts with '.'", details={"key": key}
            )


class UrlSigner:
    """Signs and checks expiring ingress URLs for local blobs.

    The URL is ``{public_url}/blobs/{key}?expires={unix}&sig={hex}`` with
    ``sig = HMAC-SHA256(key, f"{blob_key}\\n{expires}")``. Every replica must share
    the signing key (``Settings.signing_key``) so that any of them can verify.

    Args:
        key: HMAC key.
        public_url: Base URL of the ingress as clients see it.
        clock: Source of the current unix time (tests substitute it).
    """

    def __init__(
        self, key: bytes, public_url: str, *, clock: Callable[[], float] = time.time
    ) -> None:
        if not key:
            raise ValueError("signing key must not be empty")
        self._key = key
        self.public_url = public_url.rstrip("/")
        self._clock = clock

    def signature(self, key: str, expires: int) -> str:
        """Hex HMAC of ``key`` and ``expires``."""
        message = f"{key}\n{expires}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def sign(self, key: str, expires_in: int) -> str:
        """Return a URL for ``key`` valid for ``expires_in`` seconds."""
        validate_key(key)
        if expires_in <= 0:
            raise ValueError("expires_in must be positive")
        expires = int(self._clock()) + int(expires_in)
        sig = self.signature(key, expires)
        return f"{self.public_url}/blobs/{quote(key, safe='/')}?expires={expires}&sig={sig}"

    def verify(self, key: str, expires: int | str, sig: str) -> None:
        """Check a URL's ``expires`` and ``sig`` query parameters for ``key``.

        Raises:
            Forbidden: The signature does not match or the URL has expired.
        """
        try:
            expires_at = int(expires)
        except (TypeError, ValueError):
            raise Forbidden("invalid blob URL signature") from None
        expected = self.signature(key, expires_at)
        # Bytes, so a non-ASCII sig is a mismatch rather than a TypeError.
        if not hmac.compare_digest(expected.encode(), str(sig).encode()):
            raise Forbidden("invalid blob URL signature")
        if expires_at < self._clock():
            raise Forbidden("blob URL has expired")


class LocalBlobStore:
    """Blobs as files under ``root``; URLs are signed links to the ingress.

    Writes go to a temp file in the target directory and are renamed into place,
    so readers (other replicas, other processes) see the old or the new blob,
    never a partial one.

    Args:
        root: Directory holding the blobs (created if missing).
        signer: Signs URLs for :meth:`url`; the ingress verifies with the same key.
        url_expiry_s: Default URL lifetime in seconds.
    """

    def __init__(self, root: Path, signer: UrlSigner, *, url_expiry_s: int = 3600) -> None:
        self.root = Path(root).expanduser().resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.signer = signer
        self.url_expiry_s = url_expiry_s

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*validate_key(key).split("/"))

    @staticmethod
    def _sidecar(path: Path) -> Path:
        return path.with_name(f".{path.name}{_SIDECAR_SUFFIX}")

    def put(self, key: str, data: bytes, content_type: str | None = None) -> None:
        path = self._path(key)
        sidecar = self._sidecar(path)
        # A concurrent delete_prefix may prune the freshly made directory; retry then.
        for attempt in range(3):
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                if content_type:
                    _atomic_write(sidecar, content_type.encode())
                else:
                    sidecar.unlink(missing_ok=True)
                _atomic_write(path, data)
                return
            except FileNotFoundError:
                if attempt == 2:
                    raise
            except (FileExistsError, NotADirectoryError, IsADirectoryError):
                # A file cannot also be a directory: "a" and "a/b" cannot both exist here.
                raise Conflict(
                    f"blob key {key!r} clashes with an existing blob or prefix",
                    details={"key": key},
                ) from None

    def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise NotFound(f"blob {key!r} not found", details={"key": key}) from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def content_type(self, key: str) -> str | None:
        path = self._path(key)
        if not path.is_file():
            raise NotFound(f"blob {key!r} not found", details={"key": key})
        try:
            return self._sidecar(path).read_text().strip() or None
        except FileNotFoundError:
            return mimetypes.guess_type(path.name)[0]

    def delete(self, key: str) -> None:
        path = self._path(key)
        with contextlib.suppress(FileNotFoundError, NotADirectoryError, IsADirectoryError):
            path.unlink()
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            self._sidecar(path).unlink()
        self._prune(path.parent)

    def delete_prefix(self, prefix: str) -> int:
        if not prefix:
            # Refuse to wipe the whole store by accident (an unset id, say).
            raise BadRequest("delete_prefix needs a non-empty prefix")
        count = 0
        dirs: set[Path] = set()
        for key in self.list(prefix):
            path = self._path(key)
            try:
                path.unlink()
                count += 1
            except FileNotFoundError:
                continue  # deleted concurrently
            self._sidecar(path).unlink(missing_ok=True)
            dirs.add(path.parent)
        # Deepest first, so parents empty out before we reach them.
        for directory in sorted(dirs, key=lambda p: len(p.parts), reverse=True):
            self._prune(directory)
        log.debug("deleted %d local blobs under %r", count, prefix)
        return count

    def list(self, prefix: str = "") -> builtins.list[str]:
        _validate_prefix(prefix)
        # Only walk the directory the prefix names; its last partial segment is a filter.
        base_dir = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        base = self.root.joinpath(*base_dir.split("/")) if base_dir else self.root
        if not base.is_dir():
            return []
        keys = []
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            rel = Path(dirpath).relative_to(self.root).as_posix()
            for name in filenames:
                if name.startswith("."):
                    continue  # sidecars and in-flight temp files
                key = name if rel == "." else f"{rel}/{name}"
                if key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)

    def url(self, key: str, expires_in: int | None = None) -> str:
        return self.signer.sign(key, self.url_expiry_s if expires_in is None else expires_in)

    def _prune(self, directory: Path) -> None:
        # Remove now-empty directories up to (not including) root; rmdir fails if
        # a concurrent put has just written there, which is what we want.
        while directory != self.root and self.root in directory.parents:
            try:
                directory.rmdir()
            except OSError:
                return
            directory = directory.parent


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class S3BlobStore:
    """Blobs in an S3-compatible bucket; URLs are presigned GETs.

    Works with AWS S3, MinIO and IBM Cloud Object Storage (COS is an S3 endpoint:
    create HMAC credentials for the service instance and set ``endpoint_url`` to
    the regional endpoint, e.g. ``https://s3.us-south.cloud-object-storage.appdomain.cloud``).
    Requests use SigV4 and standard retries (3 attempts).

    Args:
        settings: Endpoint, bucket, credentials, addressing style and key prefix.
        url_expiry_s: Default presigned URL lifetime in seconds.
        client: A ready boto3 S3 client (tests); built from ``settings`` if None.
    """

    def __init__(
        self, settings: S3Settings, *, url_expiry_s: int = 3600, client: Any = None
    ) -> None:
        self.bucket = settings.bucket
        prefix = settings.prefix.strip("/")
        self.prefix = f"{prefix}/" if prefix else ""
        self.url_expiry_s = url_expiry_s
        self.client = client or s3_client(settings)
        if settings.create_bucket:
            self.ensure_bucket(settings.region)

    @classmethod
    def from_settings(cls, settings: Settings) -> S3BlobStore:
        """The store ``settings.blobs`` describes (whatever ``backend`` says)."""
        return cls(settings.blobs.s3, url_expiry_s=settings.blobs.url_expiry_s)

    def ensure_bucket(self, region: str = "us-east-1") -> None:
        """Create the bucket if it does not exist; safe to call from many replicas."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
            return
        except ClientError as exc:
            if _error_code(exc) not in {"404", "NoSuchBucket", "NotFound"}:
                raise
        kwargs: dict[str, Any] = {"Bucket": self.bucket}
        # us-east-1 is S3's default location and refuses an explicit constraint.
        if region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        try:
            self.client.create_bucket(**kwargs)
            log.info("created bucket %s", self.bucket)
        except ClientError as exc:
            if _error_code(exc) != "BucketAlreadyOwnedByYou":
                raise

    def _full(self, key: str) -> str:
        return self.prefix + validate_key(key)

    def put(self, key: str, data: bytes, content_type: str | None = None) -> None:
        extra = {"ContentType": content_type} if content_type else {}
        self.client.put_object(Bucket=self.bucket, Key=self._full(key), Body=data, **extra)

    def get(self, key: str) -> bytes:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._full(key))
        except ClientError as exc:
            if _error_code(exc) in {"NoSuchKey", "404", "NotFound"}:
                raise NotFound(f"blob {key!r} not found", details={"key": key}) from None
            raise
        body = response["Body"]
        try:
            return body.read()
        finally:
            body.close()

    def _head(self, key: str) -> dict[str, Any] | None:
        try:
            return dict(self.client.head_object(Bucket=self.bucket, Key=self._full(key)))
        except ClientError as exc:
            if _error_code(exc) in {"404", "NoSuchKey", "NotFound"}:
                return None
            raise

    def exists(self, key: str) -> bool:
        return self._head(key) is not None

    def content_type(self, key: str) -> str | None:
        head = self._head(key)
        if head is None:
            raise NotFound(f"blob {key!r} not found", details={"key": key})
        return head.get("ContentType")

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._full(key))

    def delete_prefix(self, prefix: str) -> int:
        if not prefix:
            # Refuse to wipe the whole bucket by accident (an unset id, say).
            raise BadRequest("delete_prefix needs a non-empty prefix")
        full = self.prefix + _validate_prefix(prefix)
        deleted = 0
        batch: builtins.list[dict[str, str]] = []
        for page in self._pages(full):
            for obj in page.get("Contents", []):
                batch.append({"Key": obj["Key"]})
                if len(batch) >= DELETE_BATCH:
                    deleted += self._delete_batch(batch)
                    batch = []
        if batch:
            deleted += self._delete_batch(batch)
        log.debug("deleted %d objects under s3://%s/%s", deleted, self.bucket, full)
        return deleted

    def _delete_batch(self, batch: builtins.list[dict[str, str]]) -> int:
        response = self.client.delete_objects(
            Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True}
        )
        errors = response.get("Errors", [])
        if errors:
            first = errors[0]
            raise VisionServeError(
                f"could not delete {len(errors)} of {len(batch)} objects: "
                f"{first.get('Key')}: {first.get('Code')} {first.get('Message')}",
                code="storage_error",
            )
        return len(batch)

    def list(self, prefix: str = "") -> builtins.list[str]:
        full = self.prefix + _validate_prefix(prefix)
        cut = len(self.prefix)
        return [obj["Key"][cut:] for page in self._pages(full) for obj in page.get("Contents", [])]

    def _pages(self, full_prefix: str) -> Any:
        paginator = self.client.get_paginator("list_objects_v2")
        return paginator.paginate(Bucket=self.bucket, Prefix=full_prefix)

    def url(self, key: str, expires_in: int | None = None) -> str:
        expires_in = self.url_expiry_s if expires_in is None else expires_in
        if expires_in <= 0:
            raise ValueError("expires_in must be positive")
        return self.client.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.bucket, "Key": self._full(key)},
            ExpiresIn=expires_in,
        )


def s3_client(settings: S3Settings) -> Any:
    """A boto3 S3 client for ``settings``: the one client factory of the code base.

    SigV4, the configured addressing style, standard retries (3 attempts). Batch jobs
    that read and write arbitrary buckets use it too.
    """
    config = Config(
        s3={"addressing_style": settings.addressing_style},
        signature_version="s3v4",
        retries={"max_attempts": 3, "mode": "standard"},
    )
    return boto3.client(
        "s3",
        endpoint_url=settings.endpoint_url,
        region_name=settings.region,
        aws_access_key_id=settings.access_key_id,
        aws_secret_access_key=settings.secret_access_key,
        config=config,
    )


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def make_blob_store(settings: Settings) -> BlobStore:
    """The blob store that ``settings.blobs.backend`` selects."""
    blobs = settings.blobs
    if blobs.backend == "s3":
        return S3BlobStore.from_settings(settings)
    assert blobs.local_dir is not None  # resolved by Settings
    signer = UrlSigner(settings.signing_key, settings.public_url)
    return LocalBlobStore(blobs.local_dir, signer, url_expiry_s=blobs.url_expiry_s)
