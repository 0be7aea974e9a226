"""The documents batch job's Ray-free parts: its S3 client and its failure rows."""

from __future__ import annotations

import logging
import pickle
from typing import Any

import pytest

from jobs.documents_batch import S3, ParseDocuments
from visionserve.errors import BadRequest
from visionserve.settings import S3Settings
from visionserve.store.blobs import S3BlobStore, s3_client


def test_the_job_builds_its_client_with_the_blob_stores_factory(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    built: list[S3Settings] = []

    def factory(settings: S3Settings) -> Any:
        built.append(settings)
        return s3_client(settings)

    monkeypatch.setattr("visionserve.store.blobs.s3_client", factory)
    s3 = S3("http://127.0.0.1:9", "key", "secret", "eu-west-1")
    client = s3.client
    (settings,) = built
    assert (settings.endpoint_url, settings.region) == ("http://127.0.0.1:9", "eu-west-1")
    assert (settings.access_key_id, settings.secret_access_key) == ("key", "secret")
    assert client.meta.endpoint_url == "http://127.0.0.1:9"
    assert client.meta.config.s3 == {"addressing_style": "path"}
    assert client.meta.config.retries["mode"] == "standard"
    # Workers get the settings, never a client: each builds its own.
    again = pickle.loads(pickle.dumps(s3))
    assert again._client is None and again.settings == s3.settings


def test_the_blob_store_is_built_from_settings_with_the_same_factory() -> None:
    from visionserve.settings import Settings

    settings = Settings.model_validate(
        {"blobs": {"backend": "s3", "s3": {"endpoint_url": "http://127.0.0.1:9", "bucket": "b"}}}
    )
    store = S3BlobStore.from_settings(settings)
    assert store.bucket == "b" and store.client.meta.endpoint_url == "http://127.0.0.1:9"
    assert store.client.meta.config.retries["mode"] == "standard"


class FakeS3:
    def __init__(self) -> None:
        self.written: dict[str, Any] = {}

    def get(self, uri: str) -> bytes:
        return b"%PDF"

    def put_json(self, uri: str, value: Any) -> None:
        self.written[uri] = value


class Pipeline:
    def __init__(self, error: Exception) -> None:
        self.error = error

    def parse(self, data: bytes, config: object) -> None:
        raise self.error


@pytest.mark.parametrize(
    ("error", "message", "category"),
    [
        (RuntimeError("/secret/server/path kaput"), "Internal error", "internal"),
        (BadRequest("Invalid PDF: the file is corrupt"), "Invalid PDF", "invalid_input"),
    ],
)
def test_a_failed_document_row_shows_only_the_public_failure(  # type: ignore[no-untyped-def]
    library_log, error, message, category
) -> None:
    job = ParseDocuments.__new__(ParseDocuments)  # without loading the models
    job.s3, job.output, job.config = FakeS3(), "s3://out", None  # type: ignore[assignment]
    job.pipeline = Pipeline(error)  # type: ignore[assignment]
    rows = job({"uri": ["s3://in/a.pdf"]})
    assert rows["status"] == ["Failed"] and rows["error"][0].startswith(message)
    written = job.s3.written["s3://out/a.json"]  # type: ignore[attr-defined]
    assert written["error"] == rows["error"][0] and written["category"] == category
    for leaked in ("/secret", "kaput", "RuntimeError"):
        assert leaked not in str(written)
    if category == "internal":
        assert "s3://in/a.pdf" in written["error"]
        (logged,) = [r for r in library_log.records if r.levelno >= logging.ERROR]
        assert logged.exc_info and "kaput" in str(logged.exc_info[1])
