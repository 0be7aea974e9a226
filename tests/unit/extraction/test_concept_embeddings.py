"""Field names the vocabulary does not know, mapped by MiniLM (the real model)."""

from __future__ import annotations

import pytest

from tests.extract_fixtures import generate
from visionserve.models.embedding import Embedder
from visionserve.models.extraction.document import load_pages
from visionserve.models.extraction.engine import LocalExtractor
from visionserve.models.extraction.schema import ExtractionSchema
from visionserve.models.extraction.vocabulary import ConceptIndex, concept_for


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder(threads=1)


@pytest.mark.parametrize(
    ("name", "description", "concept"),
    [
        ("payment_deadline", "", "due_date"),
        ("billed_party", "", "customer"),
        ("sales_tax_amount", "", "tax"),
        ("x1", "the amount of VAT charged", "tax"),
        ("order_number", "", None),  # an order is not the invoice
        ("delivery_date", "", None),  # too close to both dates to call
    ],
)
def test_names_fuzzy_matching_misses(
    embedder: Embedder, name: str, description: str, concept: str | None
) -> None:
    assert concept_for(name, description).concept is None  # fuzzy alone cannot tell
    index = ConceptIndex(embedder)
    assert concept_for(name, description, index=index).concept == concept


def test_an_extractor_with_minilm_fills_a_field_named_in_other_words(embedder: Embedder) -> None:
    doc = generate("classic", "de", "digital", seed=4)
    schema = ExtractionSchema.parse({"payment_deadline": "date", "billed_party": "string"})
    ex = LocalExtractor(embedder).extract(load_pages(doc.data, max_pages=5), schema)
    assert ex.result == {
        "payment_deadline": doc.truth["due_date"],
        "billed_party": doc.truth["customer"],
    }
    assert LocalExtractor().extract(load_pages(doc.data, max_pages=5), schema).result == {
        "payment_deadline": None,
        "billed_party": None,
    }
