"""The documents graph sends a page again when its replica died or its calls went unanswered.

The real stages run in-process (no Ray); one handle misbehaves for its first calls as a
lost node makes Serve misbehave: a call that never answers (a chained argument lost with
the node is re-sent to live replicas without end) or Ray's replica-gone error.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import graphs.documents
from deployments.documents import Chunking, DocumentPages, Layout, Ocr
from graphs.documents import DocumentsGraph
from tests.documents_fixtures import many_pages_pdf
from tests.fakes import LocalHandle, instance
from visionserve.errors import BadRequest
from visionserve.models.documents.config import Configuration
from visionserve.settings import DocumentSettings, get_settings
from visionserve.store.blobs import make_blob_store

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
PAGES = 3
DEFAULT_TIMEOUT_S = DocumentSettings().page_timeout_s
# Fast: the real OCR and chunking of a text PDF, in parallel with nothing in the way.
CONFIG = Configuration.model_validate(
    {"ocr_strategy": "Auto", "segmentation_strategy": "Page", "error_handling": "Continue"}
)


class ActorDiedError(Exception):
    """Named as Ray's: the library knows a lost replica by the error's name."""


class Misbehaving:
    """doc-pages whose first ``times`` renderings of page 1 stall (never answer) or raise."""

    def __init__(self, pages: LocalHandle, times: int, how: Any) -> None:
        self.pages, self.left, self.how = pages, times, how
        self.renders = 0
        self.stalled: list[asyncio.Future[Any]] = []

    def __getattr__(self, name: str) -> Any:  # prepare, segments
        return getattr(self.pages, name)

    @property
    def render(self) -> Misbehaving:
        return self

    def remote(self, input_key: str, number: int, config: Configuration) -> asyncio.Future[Any]:
        self.renders += 1
        if number != 1 or self.left == 0:
            return self.pages.render.remote(input_key, number, config)
        self.left -= 1
        call = asyncio.get_running_loop().create_future()
        if self.how == "stall":
            self.stalled.append(call)  # no replica ever answers it
        else:
            call.set_exception(self.how)
        return call


@pytest.fixture
def stages(settings):  # type: ignore[no-untyped-def]
    settings.model_home = get_settings().model_home
    snapshot = settings.model_dump(mode="json")
    make_blob_store(settings).put("in/doc.pdf", many_pages_pdf(PAGES), "application/pdf")
    return {
        "pages": LocalHandle(instance(DocumentPages, snapshot)),
        "ocr": LocalHandle(instance(Ocr, snapshot)),
        "layout": LocalHandle(instance(Layout)),
        "chunking": LocalHandle(instance(Chunking, snapshot)),
    }


def graph_of(stages: dict[str, Any], page_timeout_s: float = DEFAULT_TIMEOUT_S) -> Any:
    return instance(DocumentsGraph, *stages.values(), page_timeout_s)


async def parse(stages: dict[str, Any], **timeout: float) -> dict[str, Any]:
    graph = graph_of(stages, **timeout)
    return await graph.parse("t1", "in/doc.pdf", CONFIG)  # type: ignore[no-any-return]


def page_texts(result: dict[str, Any]) -> str:
    return " ".join(s["text"] for c in result["chunks"] for s in c["segments"])


async def test_a_page_that_gets_no_answer_is_dropped_and_sent_again(stages) -> None:  # type: ignore[no-untyped-def]
    clean = await parse(stages)
    stages["pages"] = pages = Misbehaving(stages["pages"], 1, "stall")
    result = await parse(stages, page_timeout_s=1.0)
    assert result["page_errors"] == [] and result["page_count"] == PAGES
    assert page_texts(result) == page_texts(clean) and "page 1" in page_texts(clean)
    assert pages.renders == PAGES + 1
    assert pages.stalled[0].cancelled()  # the unanswered call was dropped, not left pending


async def test_a_page_whose_replica_died_is_sent_again(stages) -> None:  # type: ignore[no-untyped-def]
    clean = await parse(stages)
    stages["pages"] = pages = Misbehaving(stages["pages"], 2, ActorDiedError("node died"))
    result = await parse(stages)
    assert result["page_errors"] == [] and page_texts(result) == page_texts(clean)
    assert pages.renders == PAGES + 2


async def test_a_page_that_never_answers_fails_alone_after_its_tries(stages, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(graphs.documents, "PAGE_TRIES", 2)
    stages["pages"] = pages = Misbehaving(stages["pages"], 2, "stall")
    result = await parse(stages, page_timeout_s=0.5)
    # Page 1 stalled on both tries: it alone fails (Continue), as a timeout.
    assert [e["page"] for e in result["page_errors"]] == [1]
    assert result["page_errors"][0]["error"].startswith("Timed out while processing")
    assert result["page_count"] == PAGES and page_texts(result)
    assert pages.renders == PAGES + 1 and all(call.cancelled() for call in pages.stalled)


async def test_a_failure_of_the_page_itself_is_not_sent_again(stages) -> None:  # type: ignore[no-untyped-def]
    stages["pages"] = pages = Misbehaving(stages["pages"], 1, BadRequest("unreadable page"))
    result = await parse(stages)
    assert result["page_errors"] == [{"page": 1, "error": "unreadable page"}]
    assert pages.renders == PAGES


class Counting:
    """doc-pages that records how many pages were in flight whenever one started."""

    def __init__(self, pages: LocalHandle) -> None:
        self.pages, self.started, self.finished = pages, 0, 0
        self.in_flight: list[int] = []

    def __getattr__(self, name: str) -> Any:  # prepare
        return getattr(self.pages, name)

    @property
    def render(self) -> Any:
        def remote(*args: Any) -> asyncio.Future[Any]:
            self.started += 1
            self.in_flight.append(self.started - self.finished)
            return self.pages.render.remote(*args)

        return type("Render", (), {"remote": staticmethod(remote)})

    @property
    def segments(self) -> Any:
        def remote(*args: Any) -> asyncio.Future[Any]:
            call = self.pages.segments.remote(*args)
            call.add_done_callback(lambda _: setattr(self, "finished", self.finished + 1))
            return call

        return type("Segments", (), {"remote": staticmethod(remote)})


async def test_pages_in_flight_are_capped_across_documents(stages, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(graphs.documents, "PAGES_IN_FLIGHT", 2)
    stages["pages"] = pages = Counting(stages["pages"])
    graph = graph_of(stages)
    results = await asyncio.gather(*(graph.parse(t, "in/doc.pdf", CONFIG) for t in "ab"))
    assert [r["page_count"] for r in results] == [PAGES, PAGES]
    assert pages.started == 2 * PAGES and max(pages.in_flight) == 2
