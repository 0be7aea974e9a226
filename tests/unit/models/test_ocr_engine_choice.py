"""Which OCR engine documents.ocr_engine means on this machine ("auto": tesseract if usable)."""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from visionserve.errors import UnknownModel
from visionserve.models.documents import ocr
from visionserve.models.documents.ocr import (
    OcrUnavailable,
    get_ocr_engine,
    resolve_ocr_engine,
    tesseract_problem,
)
from visionserve.settings import DocumentSettings, Settings

SETTING = "VISIONSERVE_DOCUMENTS__OCR_ENGINE"
LIST_LANGS = 'List of available languages in "/usr/share/tesseract-ocr/5/tessdata/" (2):\n'


@pytest.fixture
def probe(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """Fake ``shutil.which`` and ``tesseract --list-langs``; a test sets what they give."""
    state: dict[str, Any] = {"which": "/usr/bin/tesseract", "langs": "eng\nosd\n", "calls": []}

    def which(binary: str) -> str | None:
        state["calls"].append(("which", binary))
        return state["which"] if binary == "tesseract" else None

    def run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
        state["calls"].append(("run", cmd))
        if isinstance(state["langs"], BaseException):
            raise state["langs"]
        out = (LIST_LANGS + state["langs"]).encode()
        return subprocess.CompletedProcess(cmd, 0, stdout=out, stderr=b"")

    monkeypatch.delenv(SETTING, raising=False)  # the tests choose the setting themselves
    monkeypatch.setattr(ocr.shutil, "which", which)
    monkeypatch.setattr(ocr.subprocess, "run", run)
    ocr.invoice_languages.cache_clear()  # answered by the fake, and forgotten after
    yield state
    ocr.invoice_languages.cache_clear()


def test_auto_without_tesseract_runs_rapidocr(probe: dict[str, Any]) -> None:
    probe["which"] = None
    assert tesseract_problem() == "tesseract not found"
    assert resolve_ocr_engine("auto") == (
        "rapidocr",
        "OCR engine: rapidocr (tesseract not found; apt-get install tesseract-ocr "
        f"tesseract-ocr-eng, or set {SETTING})",
    )
    assert not [c for c in probe["calls"] if c[0] == "run"]  # nothing to run


def test_auto_with_tesseract_and_english_runs_tesseract(probe: dict[str, Any]) -> None:
    assert tesseract_problem() is None
    engine, line = resolve_ocr_engine("auto")
    assert engine == "tesseract"
    assert line == (
        f"OCR engine: tesseract (auto: tesseract is installed; set {SETTING}=rapidocr for RapidOCR)"
    )
    assert ("run", ["/usr/bin/tesseract", "--list-langs"]) in probe["calls"]


def test_invoices_are_read_in_every_invoice_language_installed(
    probe: dict[str, Any],
) -> None:
    probe["langs"] = "deu\neng\nfra\nosd\nspa\n"  # as listed: sorted, osd among them
    assert ocr.invoice_languages() == "eng+deu+fra+spa"  # eng first, no osd
    probe["langs"] = "osd\n"
    ocr.invoice_languages.cache_clear()
    assert ocr.invoice_languages() == "eng"  # tesseract then says what to install


def test_auto_with_tesseract_but_no_english_data_runs_rapidocr(probe: dict[str, Any]) -> None:
    probe["langs"] = "osd\n"
    engine, line = resolve_ocr_engine("auto")
    assert engine == "rapidocr"
    assert line == (
        "OCR engine: rapidocr (tesseract has no 'eng' language data; apt-get install "
        f"tesseract-ocr tesseract-ocr-eng, or set {SETTING})"
    )


def test_auto_with_a_tesseract_that_does_not_start_runs_rapidocr(probe: dict[str, Any]) -> None:
    probe["langs"] = PermissionError(13, "Permission denied")
    engine, line = resolve_ocr_engine("auto")
    assert engine == "rapidocr"
    assert "tesseract does not run (PermissionError)" in line
    probe["langs"] = subprocess.TimeoutExpired(["tesseract"], 10)
    assert resolve_ocr_engine("auto")[0] == "rapidocr"


def test_explicit_tesseract_without_the_binary_fails_clearly(probe: dict[str, Any]) -> None:
    probe["which"] = None
    with pytest.raises(OcrUnavailable) as exc:
        resolve_ocr_engine("tesseract")
    assert exc.value.message == (
        f"{SETTING}=tesseract, but tesseract not found: apt-get install tesseract-ocr "
        f"tesseract-ocr-eng, or set {SETTING}=auto to fall back to RapidOCR"
    )
    assert exc.value.status == 503


def test_explicit_tesseract_without_english_data_fails_clearly(probe: dict[str, Any]) -> None:
    probe["langs"] = "osd\n"
    with pytest.raises(OcrUnavailable, match="has no 'eng' language data: apt-get install"):
        resolve_ocr_engine("tesseract")


def test_explicit_tesseract_that_works(probe: dict[str, Any]) -> None:
    assert resolve_ocr_engine("tesseract") == (
        "tesseract",
        f"OCR engine: tesseract (set by {SETTING}; rapidocr is the other)",
    )


def test_explicit_rapidocr_never_probes_tesseract(probe: dict[str, Any]) -> None:
    engine, line = resolve_ocr_engine("rapidocr")
    assert engine == "rapidocr"
    assert line == (
        f"OCR engine: rapidocr (set by {SETTING}; {SETTING}=tesseract needs apt-get install "
        "tesseract-ocr tesseract-ocr-eng)"
    )
    assert probe["calls"] == []


def test_unknown_engine_name(probe: dict[str, Any]) -> None:
    with pytest.raises(UnknownModel, match="easyocr"):
        resolve_ocr_engine("easyocr")


class FakeEngine:
    def __init__(self, name: str, **kwargs: Any) -> None:
        self.name, self.kwargs = name, kwargs

    def recognize(self, image: np.ndarray) -> list[Any]:
        return []


@pytest.fixture
def fake_engines(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("tesseract", "rapidocr"):
        monkeypatch.setitem(ocr.OCR_ENGINES, name, lambda n=name, **kw: FakeEngine(n, **kw))


@pytest.mark.usefixtures("fake_engines")
@pytest.mark.parametrize(("installed", "expected"), [(True, "tesseract"), (False, "rapidocr")])
def test_get_ocr_engine_resolves_auto(
    probe: dict[str, Any], installed: bool, expected: str
) -> None:
    probe["which"] = "/usr/bin/tesseract" if installed else None
    assert get_ocr_engine("auto").name == expected
    assert get_ocr_engine("rapidocr").name == "rapidocr"  # explicit names as before


def test_auto_is_the_default_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert DocumentSettings().ocr_engine == "auto"
    for value in ("auto", "tesseract", "rapidocr"):
        monkeypatch.setenv(SETTING, value)
        assert Settings().documents.ocr_engine == value


def _deployment_class(deployment: Any) -> Any:
    """The class behind a ``@serve.deployment`` (typed as the class, it is a Deployment)."""
    return deployment.func_or_class


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.mark.usefixtures("fake_engines")
def test_ocr_replica_logs_its_engine_once(probe: dict[str, Any], tmp_path: Any) -> None:
    from deployments.documents import Ocr

    probe["which"] = None
    # Serve's replica logger: in a replica the only one with handlers (file and stderr).
    serve_logger, handler = logging.getLogger("ray.serve"), Records()
    level = serve_logger.level
    serve_logger.addHandler(handler)
    serve_logger.setLevel(logging.INFO)  # what a replica's logging_config sets
    try:
        replica = _deployment_class(Ocr)({"home": str(tmp_path)})
    finally:
        serve_logger.removeHandler(handler)
        serve_logger.setLevel(level)
    assert replica.engine.name == "rapidocr"
    ocr_lines = [r for r in handler.records if r.getMessage().startswith("OCR engine:")]
    assert [(r.levelno, r.getMessage()) for r in ocr_lines] == [
        (
            logging.INFO,
            "OCR engine: rapidocr (tesseract not found; apt-get install tesseract-ocr "
            f"tesseract-ocr-eng, or set {SETTING})",
        )
    ]


@pytest.mark.usefixtures("fake_engines")
def test_ocr_replica_with_explicit_tesseract_and_none_installed_fails_to_start(
    probe: dict[str, Any], tmp_path: Any
) -> None:
    from deployments.documents import Ocr

    probe["which"] = None
    settings = {"home": str(tmp_path), "documents": {"ocr_engine": "tesseract"}}
    with pytest.raises(OcrUnavailable, match="tesseract not found: apt-get install"):
        _deployment_class(Ocr)(settings)
