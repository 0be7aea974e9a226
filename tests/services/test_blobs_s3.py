"""S3BlobStore against a real S3 endpoint (moto's standalone server)."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from visionserve.errors import BadRequest, NotFound
from visionserve.settings import S3Settings
from visionserve.store import blobs
from visionserve.store.blobs import BlobStore, S3BlobStore

pytestmark = pytest.mark.services


@pytest.fixture
def store(s3_settings: S3Settings) -> S3BlobStore:
    return S3BlobStore(s3_settings, url_expiry_s=300)


def test_is_a_blob_store(store: S3BlobStore) -> None:
    assert isinstance(store, BlobStore)


def test_create_bucket_is_idempotent(s3_settings: S3Settings) -> None:
    first = S3BlobStore(s3_settings)
    S3BlobStore(s3_settings)  # the bucket exists now: no error
    first.ensure_bucket()
    first.put("k", b"v")
    assert S3BlobStore(s3_settings).get("k") == b"v"


def test_put_get_exists_delete(store: S3BlobStore) -> None:
    assert not store.exists("results/a.png")
    store.put("results/a.png", b"\x89PNG data", "image/png")
    assert store.exists("results/a.png")
    assert store.get("results/a.png") == b"\x89PNG data"
    assert store.content_type("results/a.png") == "image/png"

    store.delete("results/a.png")
    assert not store.exists("results/a.png")
    store.delete("results/a.png")  # absent: no error


def test_missing_key_is_not_found(store: S3BlobStore) -> None:
    with pytest.raises(NotFound):
        store.get("nope/missing.bin")
    with pytest.raises(NotFound):
        store.content_type("nope/missing.bin")


def test_bad_keys_rejected(store: S3BlobStore) -> None:
    for key in ("../x", "/abs", "a//b", "a\\b"):
        with pytest.raises(BadRequest):
            store.put(key, b"x")


def test_list_and_delete_prefix_in_batches(
    store: S3BlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(blobs, "DELETE_BATCH", 10)
    calls: list[int] = []
    real = store.client.delete_objects

    def counting(**kwargs: object) -> object:
        calls.append(len(kwargs["Delete"]["Objects"]))  # type: ignore[index]
        return real(**kwargs)

    monkeypatch.setattr(store.client, "delete_objects", counting)

    keys = sorted(f"jobs/j1/out-{i:02d}.png" for i in range(25))
    for key in keys:
        store.put(key, key.encode())
    store.put("jobs/j2/keep.png", b"keep")

    assert store.list("jobs/j1/") == keys
    assert store.delete_prefix("jobs/j1/") == 25
    assert calls == [10, 10, 5]
    assert store.list("jobs/") == ["jobs/j2/keep.png"]
    assert store.delete_prefix("jobs/j1/") == 0


def test_list_follows_pagination(store: S3BlobStore, monkeypatch: pytest.MonkeyPatch) -> None:
    keys = sorted(f"p/{i:02d}" for i in range(25))
    for key in keys:
        store.put(key, b"x")
    real_pages = store._pages
    # Small pages force continuation tokens through the real server.
    monkeypatch.setattr(
        store,
        "_pages",
        lambda prefix: store.client.get_paginator("list_objects_v2").paginate(
            Bucket=store.bucket, Prefix=prefix, PaginationConfig={"PageSize": 7}
        ),
    )
    assert store.list("p/") == keys
    assert store.delete_prefix("p/") == 25
    monkeypatch.setattr(store, "_pages", real_pages)
    assert store.list("p/") == []


def test_key_prefix_is_applied_and_hidden(s3_settings: S3Settings) -> None:
    store = S3BlobStore(s3_settings.model_copy(update={"prefix": "/tenant-a/"}))
    other = S3BlobStore(s3_settings.model_copy(update={"prefix": "tenant-b"}))
    store.put("x/1", b"a")
    other.put("x/1", b"b")
    assert store.list("") == ["x/1"]
    assert store.get("x/1") == b"a"
    assert other.get("x/1") == b"b"
    raw = store.client.list_objects_v2(Bucket=store.bucket)["Contents"]
    assert sorted(o["Key"] for o in raw) == ["tenant-a/x/1", "tenant-b/x/1"]
    assert store.delete_prefix("x/") == 1
    assert other.exists("x/1")


def test_presigned_url_is_path_style_and_fetchable(
    store: S3BlobStore, s3_settings: S3Settings
) -> None:
    store.put("results/a b.png", b"\x89PNG bytes", "image/png")
    url = store.url("results/a b.png")

    split = urlsplit(url)
    assert split.hostname == "127.0.0.1"
    assert split.path.startswith(f"/{s3_settings.bucket}/")
    query = parse_qs(split.query)
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert query["X-Amz-Expires"] == ["300"]

    response = httpx.get(url)
    assert response.status_code == 200
    assert response.content == b"\x89PNG bytes"
    assert response.headers["content-type"] == "image/png"


def test_presigned_url_carries_its_expiry(store: S3BlobStore) -> None:
    # moto 5.2 does not enforce presigned-URL expiry (an expired URL still gets 200),
    # so check what real S3/MinIO/COS enforce: X-Amz-Date + X-Amz-Expires, both signed.
    store.put("short.bin", b"x")
    before = datetime.now(UTC).replace(microsecond=0)
    query = parse_qs(urlsplit(store.url("short.bin", expires_in=1)).query)
    after = datetime.now(UTC)
    assert query["X-Amz-Expires"] == ["1"]
    signed_at = datetime.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    assert before <= signed_at <= after
    assert "host" in query["X-Amz-SignedHeaders"][0].split(";")
    assert query["X-Amz-Signature"][0]
