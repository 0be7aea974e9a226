"""The Ray Data documents job against the loopback S3 server (shared local Ray)."""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.config import Config

from jobs.documents_batch import S3, run
from tests.documents_fixtures import TITLE, report_pdf
from visionserve.settings import get_settings

pytestmark = [pytest.mark.ray, pytest.mark.services, pytest.mark.slow]


def test_every_pdf_under_a_prefix_becomes_one_json(ray_session, s3_server, caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level("INFO", logger="jobs.documents_batch")
    client = boto3.client(
        "s3",
        endpoint_url=s3_server.endpoint_url,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}),
    )
    client.create_bucket(Bucket="docs")
    client.put_object(Bucket="docs", Key="in/a.pdf", Body=report_pdf(1))
    client.put_object(Bucket="docs", Key="in/sub/b.pdf", Body=report_pdf(2))
    client.put_object(Bucket="docs", Key="in/broken.pdf", Body=b"%PDF-1.7 not really")
    client.put_object(Bucket="docs", Key="in/notes.txt", Body=b"ignored")
    s3 = S3(s3_server.endpoint_url, "test", "test", "us-east-1")

    rows = run(
        "s3://docs/in/",
        "s3://docs/out/",
        s3=s3,
        config={"segmentation_strategy": "LayoutAnalysis", "ocr_strategy": "Auto"},
        model_home=str(get_settings().model_home),
        num_cpus=0.25,
    )

    # One progress line per document, as each finishes.
    progress = [r.getMessage() for r in caplog.records if " documents: " in r.getMessage()]
    assert [line.split(":")[0] for line in progress] == [
        "1/3 documents",
        "2/3 documents",
        "3/3 documents",
    ]
    assert any("Failed s3://docs/in/broken.pdf" in line for line in progress)
    assert sorted((r["uri"], r["status"]) for r in rows) == [
        ("s3://docs/in/a.pdf", "Succeeded"),
        ("s3://docs/in/broken.pdf", "Failed"),
        ("s3://docs/in/sub/b.pdf", "Succeeded"),
    ]
    keys = sorted(
        o["Key"] for o in client.list_objects_v2(Bucket="docs", Prefix="out/")["Contents"]
    )
    assert keys == ["out/a.json", "out/b.json", "out/broken.json"]
    doc = json.loads(client.get_object(Bucket="docs", Key="out/b.json")["Body"].read())
    assert doc["page_count"] == 2 and doc["source"] == "s3://docs/in/sub/b.pdf"
    segs = [s for c in doc["chunks"] for s in c["segments"]]
    assert [s["text"] for s in segs if s["segment_type"] == "Title"] == [TITLE]
    broken = json.loads(client.get_object(Bucket="docs", Key="out/broken.json")["Body"].read())
    assert "Invalid PDF" in broken["error"]
