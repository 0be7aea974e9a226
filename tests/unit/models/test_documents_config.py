"""A documents task's configuration: one typed model, its aliases, defaults and round trip."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from visionserve.errors import BadRequest
from visionserve.models.documents.config import (
    Configuration,
    SegmentOptions,
    SegmentProcessing,
    validated,
)
from visionserve.models.documents.types import SegmentType

ST = SegmentType

RAW = {
    "chunk_processing": {"target_length": 200, "tokenizer": "Cl100kBase", "embeddings": True},
    "expires_in": 3600,
    "high_resolution": True,
    "ocr_strategy": "Auto",
    "segmentation_strategy": "LayoutAnalysis",
    "segment_processing": {
        "SectionHeader": {"strategy": "LLM", "llm": "Rewrite the heading"},
        "table": {"html": "LLM", "embed_sources": ["html", "Content"], "future_option": 1},
        "PageFooter": {"strategy": "Ignore", "embed_sources": ["Markdown", "Content"]},
        "not_a_type": {"strategy": "LLM"},
    },
    "error_handling": "Continue",
    "llm_processing": {"model_id": "tiny", "temperature": 0.2},
}


def test_stored_configuration_round_trips() -> None:
    config = Configuration.model_validate(RAW)
    stored = config.model_dump(mode="json")
    again = Configuration.model_validate(stored)
    assert again == config
    assert again.model_dump(mode="json") == stored
    # Stored in the contract's spelling: snake_case types, canonical embed sources;
    # keys naming no segment type are dropped, unknown options kept.
    assert set(stored["segment_processing"]) == {"section_header", "table", "page_footer"}
    assert stored["segment_processing"]["table"]["embed_sources"] == ["HTML", "Content"]
    assert stored["segment_processing"]["table"]["future_option"] == 1


def test_defaults_round_trip() -> None:
    stored = Configuration().model_dump(mode="json")
    assert Configuration.model_validate(stored) == Configuration.model_validate({})
    assert stored["segment_processing"] == {} and stored["ocr_strategy"] == "All"


@pytest.mark.parametrize("key", ["SectionHeader", "section_header", "sectionheader"])
def test_every_spelling_of_a_type_means_the_same(key: str) -> None:
    config = Configuration.model_validate({"segment_processing": {key: {"strategy": "LLM"}}})
    assert config.segment_processing.options(ST.SECTION_HEADER).needs_llm
    assert list(config.model_dump(mode="json")["segment_processing"]) == ["section_header"]


def test_a_type_given_twice_is_refused() -> None:
    with pytest.raises(ValidationError, match="section_header is given twice"):
        SegmentProcessing.model_validate({"SectionHeader": {}, "section_header": {}})


@pytest.mark.parametrize(
    "processing",
    [
        {"table": {"embed_sources": ["Bogus"]}},
        {"table": {"embed_sources": "Markdown"}},
        {"table": {"crop_image": "Sometimes"}},
        {"table": {"strategy": "Maybe"}},
        {"table": "LLM"},
    ],
)
def test_bad_values_are_refused(processing: dict) -> None:  # type: ignore[type-arg]
    with pytest.raises(ValidationError):
        Configuration.model_validate({"segment_processing": processing})
    with pytest.raises(BadRequest, match=r"^segment_processing\.table"):
        validated(Configuration, {"segment_processing": processing})


def test_resolved_options_and_their_defaults() -> None:
    processing = Configuration.model_validate(RAW).segment_processing
    assert processing.options(ST.TEXT) == SegmentOptions()  # not configured: the defaults
    assert processing.options(ST.PICTURE).crop_image == "All"  # pictures crop by default
    table = processing.options(ST.TABLE)
    assert (table.format, table.strategy, table.html_llm) == ("Html", "LLM", True)
    assert table.embed_sources == ("HTML", "Content") and table.needs_llm
    footer = processing.options(ST.PAGE_FOOTER)  # Ignore drops the rendered forms only
    assert footer.strategy == "Ignore" and footer.embed_sources == ("Content",)
    header = processing.options(ST.SECTION_HEADER)
    assert header.llm == "Rewrite the heading" and header.embed_sources == ("Markdown",)
    html_only = SegmentProcessing.model_validate({"title": {"html": "Auto"}})
    assert html_only.options(ST.TITLE).embed_sources == ("HTML",)
