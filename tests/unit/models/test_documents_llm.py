"""Documents' llm_processing: which segments ask the LLM, the prompt, where the answer goes."""

from __future__ import annotations

import pytest

from tests.llm_stub import openai_stub
from visionserve.models.documents.config import Configuration, SegmentProcessingConfig
from visionserve.models.documents.llm import fill_segment, llm_requests, process_segments
from visionserve.models.documents.types import BBox, Segment, SegmentType
from visionserve.platform.egress import EgressPolicy
from visionserve.platform.llm import LlmClient
from visionserve.settings import EgressSettings, LlmSettings

ST = SegmentType


@pytest.fixture
def openai_server():  # type: ignore[no-untyped-def]
    with openai_stub() as server:
        yield server


def client_for(url: str, **settings: str) -> LlmClient:
    return LlmClient(
        LlmSettings(base_url=url, **settings), EgressPolicy(EgressSettings(allow=["127.0.0.1"]))
    )


def segment(seg_type: SegmentType = ST.TABLE, segment_id: str = "s1") -> Segment:
    return Segment(
        segment_id,
        seg_type,
        BBox(0, 0, 10, 10),
        1,
        100,
        100,
        text="a b c d e f g h",
        html="<table></table>",
        markdown="| a |",
    )


async def test_llm_fills_html_for_segments_that_ask(openai_server) -> None:  # type: ignore[no-untyped-def]
    url, seen = openai_server
    seg = segment()
    options = SegmentProcessingConfig(html="LLM").options(ST.TABLE)
    await fill_segment(client_for(url, api_key="sk-local", model="tiny"), seg, options)
    assert seg.html == seg.llm == "<table><tr><td> c d e f g h</td></tr></table>"
    assert seg.markdown == "| a |"  # only the fields that asked are replaced
    (call,) = seen
    assert call["path"] == "/v1/chat/completions" and call["auth"] == "Bearer sk-local"
    assert (
        call["body"]["model"] == "tiny"
        and "HTML" in call["body"]["messages"][0]["content"][0]["text"]
    )


async def test_a_custom_prompt_is_sent_as_is(openai_server) -> None:  # type: ignore[no-untyped-def]
    url, seen = openai_server
    seg = segment()
    options = SegmentProcessingConfig(llm="Summarise this table").options(ST.TABLE)
    await fill_segment(client_for(url), seg, options)
    assert seg.llm and seg.html == "<table></table>"
    assert seen[0]["body"]["messages"][0]["content"][0]["text"].startswith("Summarise this table")


def test_which_configs_want_the_llm() -> None:
    def wants(**fields: str) -> bool:
        return SegmentProcessingConfig.model_validate(fields).options(ST.TABLE).needs_llm

    assert wants(strategy="LLM") and wants(html="LLM") and wants(markdown="LLM")
    assert wants(llm="Summarise this table")
    assert not wants(html="Auto") and not wants()


@pytest.mark.parametrize("key", ["SectionHeader", "section_header"])
def test_both_spellings_of_a_type_ask_the_llm(key: str) -> None:
    config = Configuration.model_validate({"segment_processing": {key: {"strategy": "LLM"}}})
    segments = [segment(ST.SECTION_HEADER, "h"), segment(ST.TEXT, "t")]
    assert [s.segment_id for s, _ in llm_requests(segments, config)] == ["h"]


async def test_process_segments_says_what_happened(openai_server) -> None:  # type: ignore[no-untyped-def]
    url, seen = openai_server
    asks = Configuration.model_validate({"segment_processing": {"Table": {"strategy": "LLM"}}})
    segs = [segment(ST.TABLE, "t"), segment(ST.TEXT, "x")]
    assert await process_segments(segs, Configuration(), client_for(url)) is None
    assert await process_segments(segs, asks, None) == "not_configured"
    assert seen == [] and segs[0].llm is None
    assert await process_segments(segs, asks, client_for(url)) == "applied"
    assert segs[0].llm and segs[1].llm is None and len(seen) == 1
