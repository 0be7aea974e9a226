"""The OCR replica reads OCR_SLOTS pages at once; the others wait in the replica, not in
Serve's router (which retries a refused request with a backoff of up to 0.5 s)."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from typing import Any

import numpy as np
import pytest

from deployments.documents import OCR_SLOTS, Ocr
from tests.fakes import instance
from visionserve.models.documents import ocr
from visionserve.models.documents.types import Page
from visionserve.settings import Settings


async def test_at_most_ocr_slots_pages_are_read_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    running, most = 0, 0
    lock = threading.Lock()

    def slow_ocr(page: Page, engine: Any, strategy: str) -> Page:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.05)
        with lock:
            running -= 1
        return page

    monkeypatch.setattr(ocr, "ocr_page", slow_ocr)
    replica = instance(Ocr, Settings().model_dump(mode="json"))
    pages = [Page(number=n, image=np.zeros((8, 8, 3), np.uint8), dpi=200) for n in range(1, 9)]
    done = await asyncio.gather(*(replica.recognize(p, "All") for p in pages))
    assert [p.number for p in done] == list(range(1, 9))
    assert most == OCR_SLOTS == min(os.cpu_count() or 1, 4)
    assert Ocr.max_ongoing_requests > OCR_SLOTS  # the rest wait here
