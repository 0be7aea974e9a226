"""Generated invoices through the extract API: the graph (shared OCR deployment, scans
levelled first) answers exactly what the engine answers on its own reference path."""

from __future__ import annotations

import pytest

from tests.api.extract.conftest import Env, b64
from tests.extract_fixtures import INVOICE_SCHEMA, generate
from visionserve.models.documents.ocr import (
    get_ocr_engine,
    invoice_languages,
    resolve_ocr_engine,
)
from visionserve.models.extraction.document import load_pages, ocr_pages
from visionserve.models.extraction.engine import LocalExtractor
from visionserve.models.extraction.schema import ExtractionSchema

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.mark.parametrize(
    ("family", "language", "variant"),
    [("classic", "de", "digital"), ("modern", "fr", "scanned"), ("sidebar", "nl", "rendered")],
)
async def test_api_matches_the_engine(
    env: Env, _embedder, family: str, language: str, variant: str
) -> None:  # type: ignore[no-untyped-def]
    doc = generate(family, language, variant, seed=3)  # type: ignore[arg-type]
    name, _ = resolve_ocr_engine(env.ctx.settings.documents.ocr_engine)
    # As the extract graph asks the shared OCR deployment: one block of lines (psm 6).
    block = {"psm": 6, "lang": invoice_languages()} if name == "tesseract" else {}
    engine = get_ocr_engine(name, **block)
    pages = ocr_pages(load_pages(doc.data, max_pages=5), engine)
    expected = LocalExtractor(_embedder).extract(pages, ExtractionSchema.parse(INVOICE_SCHEMA))

    pid = await env.pattern(schema=INVOICE_SCHEMA)
    async with env.worker():
        r = await env.client.post(f"/patterns/{pid}/ingest", json={"image_base64": b64(doc.data)})
    job = r.json()["data"]
    assert job["status"] == "completed", job
    assert job["result"] == expected.result
    assert job["confidence"] == pytest.approx(expected.confidence, abs=1e-3)
    # Not an empty answer agreed on: most fields found (their accuracy is bench/extract.py's).
    found = [k for k, v in job["result"].items() if v not in (None, [])]
    assert len(found) >= 6, job["result"]
    assert job["field_metadata"]["vendor"]["confidence"] == pytest.approx(
        expected.field_metadata["vendor"]["confidence"]
    )
