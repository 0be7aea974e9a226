"""The `ray job submit` edit batch (jobs/edit_batch.py) against the loopback S3 server."""

from __future__ import annotations

import io
import uuid

import numpy as np
import pytest
from PIL import Image

from jobs.edit_batch import run
from tests.scenes import textured_background
from visionserve.settings import S3Settings, Settings, get_settings
from visionserve.store.blobs import s3_client

pytestmark = [pytest.mark.ray, pytest.mark.services, pytest.mark.slow]


def _settings(s3_server, tmp_path) -> Settings:  # type: ignore[no-untyped-def]
    s3 = S3Settings(
        endpoint_url=s3_server.endpoint_url,
        access_key_id=s3_server.access_key_id,
        secret_access_key=s3_server.secret_access_key,
    )
    suffix = uuid.uuid4().hex[:8]
    settings = Settings(
        home=tmp_path,
        model_home=get_settings().model_home,
        edit={
            "s3": s3.model_dump(),
            "input_bucket": f"jin-{suffix}",
            "output_bucket": f"jout-{suffix}",
            "input_prefix": "in/",
            "output_prefix": "edited",
        },
    )
    client = s3_client(s3)
    client.create_bucket(Bucket=settings.edit.input_bucket)
    client.create_bucket(Bucket=settings.edit.output_bucket)
    return settings


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def test_every_image_under_the_prefix_is_edited(ray_session, s3_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = _settings(s3_server, tmp_path)
    client = s3_client(settings.edit.s3)
    inputs = settings.edit.input_bucket
    client.put_object(Bucket=inputs, Key="in/a.png", Body=_png(textured_background((80, 60))))
    client.put_object(Bucket=inputs, Key="in/sub/b.png", Body=_png(textured_background((80, 60))))
    client.put_object(Bucket=inputs, Key="in/broken.png", Body=b"\x89PNG\r\n\x1a\nnope")
    client.put_object(Bucket=inputs, Key="in/notes.txt", Body=b"ignored")
    client.put_object(Bucket=inputs, Key="elsewhere/c.png", Body=_png(Image.new("RGB", (8, 8))))

    summary = run(settings, "convert it to grayscale", job_id="job-1")

    assert summary["status"] == "completed_with_errors" and summary["job_id"] == "job-1"
    assert (summary["total_files"], summary["processed"], summary["failed"]) == (3, 2, 1)
    assert summary["output_prefix"] == "edited/job-1/" and "error" not in summary
    assert [e.split(":")[0] for e in summary["errors"]] == ["broken.png"]
    listed = client.list_objects_v2(Bucket=settings.edit.output_bucket, Prefix="edited/job-1/")
    keys = sorted(o["Key"] for o in listed["Contents"])
    assert keys == ["edited/job-1/a_modified.png", "edited/job-1/sub/b_modified.png"]
    body = client.get_object(Bucket=settings.edit.output_bucket, Key=keys[0])["Body"].read()
    rgb = np.asarray(Image.open(io.BytesIO(body)).convert("RGB"), np.int16)
    assert np.abs(rgb[..., 0] - rgb[..., 1]).max() <= 1  # grey: the channels agree


def test_an_uncovered_prompt_fails_before_any_image(ray_session, s3_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = _settings(s3_server, tmp_path)
    summary = run(settings, "add a dog", job_id="job-2")
    assert summary["status"] == "failed" and "add a dog" in summary["error"]
    assert summary["total_files"] == 0 and summary["errors"] == []
