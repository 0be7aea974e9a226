"""The web console (/ui/) in a real browser on the running Serve cluster.

Headless Debian Chromium driven by Selenium through Debian's chromedriver (never a
browser download; ``.ci/run`` installs both). One browser session for the module.
Each page is driven as a person would: files chosen, buttons clicked; what it shows is
checked against the surfaces' own APIs. A failing test leaves a screenshot and the
page's HTML in its tmp_path (the path is in the failure message). Keyboard use and
contrast are checked with axe-core (tests/fixtures/axe, vendored) and by tabbing.
"""

from __future__ import annotations

import io
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image, ImageDraw

pytestmark = [pytest.mark.ray, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
AXE = Path(__file__).resolve().parents[1] / "fixtures" / "axe" / "axe.min.js"
# Every visible, enabled control a keyboard user must be able to reach.
CONTROLS = """
return [...document.querySelectorAll(
  'a[href], button, input, select, textarea, summary, [tabindex]:not([tabindex="-1"])'
)].filter(e => !e.disabled && e.checkVisibility({visibilityProperty: true}))
"""
PAGES = ["index.html", "cutout.html", "documents.html", "extract.html", "inspect.html", "edit.html"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1400,1000",
        "--autoplay-policy=no-user-gesture-required",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_script_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def api_key(serve_cluster) -> str:  # type: ignore[no-untyped-def]
    from visionserve.store.keys import KeyStore

    key, _ = KeyStore(serve_cluster.database_url).create("console-browser-test")
    return str(key)


@pytest.fixture(scope="module")
def http(serve_cluster, api_key) -> Iterator[httpx.Client]:  # type: ignore[no-untyped-def]
    headers = {"Authorization": f"Bearer {api_key}"}
    with httpx.Client(base_url=serve_cluster.base_url, headers=headers, timeout=120) as client:
        yield client


@contextmanager
def shots_on_failure(browser: Any, folder: Path) -> Iterator[None]:
    """On failure, save the screenshot and the HTML of the page under test."""
    try:
        yield
    except BaseException as exc:
        folder.mkdir(parents=True, exist_ok=True)
        name = re.sub(r"\W+", "-", browser.current_url.rsplit("/", 1)[-1]) or "page"
        browser.save_screenshot(str(folder / f"{name}.png"))
        (folder / f"{name}.html").write_text(browser.page_source)
        logs = "\n".join(e["message"] for e in browser.get_log("browser"))
        exc.add_note(f"screenshot and HTML in {folder}; browser console:\n{logs}")
        raise


def wait_for(what: Callable[[], Any], timeout_s: float = 60, every_s: float = 0.25) -> Any:
    deadline = time.time() + timeout_s
    while True:
        value = what()
        if value:
            return value
        if time.time() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(every_s)


def open_page(browser: Any, base_url: str, page: str, key: str | None = None) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"{base_url}/ui/{page}")
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "header.top nav a"), 10)
    if key is not None:
        field = browser.find_element(By.ID, "api-key")
        field.clear()
        field.send_keys(key)
        field.submit()
        wait_for(lambda: "key set" in browser.find_element(By.CSS_SELECTOR, ".key-state").text, 5)


def axe_violations(browser: Any) -> list[dict[str, Any]]:
    """axe-core's WCAG 2 A/AA violations (contrast among them) on the page as it is now."""
    if not browser.execute_script("return typeof window.axe !== 'undefined'"):
        browser.execute_script(AXE.read_text())
    violations: list[dict[str, Any]] = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {runOnly: ['wcag2a', 'wcag2aa']})"
        ".then(r => done(r.violations.map(v => ({id: v.id, help: v.help,"
        " nodes: v.nodes.slice(0, 5).map(n => n.target.join(' '))}))))"
        ".catch(e => done([{id: 'axe-error', help: String(e), nodes: []}]));"
    )
    return violations


def assert_accessible(browser: Any) -> None:
    violations = axe_violations(browser)
    assert violations == [], violations


def png(width: int = 160, height: int = 120) -> bytes:
    """A red disc on a light background: something to cut out."""
    img = Image.new("RGB", (width, height), (235, 235, 230))
    ImageDraw.Draw(img).ellipse((40, 20, 120, 100), fill=(200, 30, 30))
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


def test_cutout_shows_every_model_and_records_the_pick(  # type: ignore[no-untyped-def]
    browser, serve_cluster, http, tmp_path
) -> None:
    from selenium.webdriver.common.by import By

    models = [m["model_id"] for m in http.get("/cutout/models").json()["models"]]
    before = http.get("/cutout/preferences").json()
    category = f"console-{uuid.uuid4().hex[:6]}"
    image = tmp_path / "disc.png"
    image.write_bytes(png())
    with shots_on_failure(browser, tmp_path):
        open_page(browser, serve_cluster.base_url, "cutout.html")
        wait_for(lambda: len(browser.find_elements(By.NAME, "model")) == len(models))
        browser.find_element(By.ID, "image").send_keys(str(image))
        category_field = browser.find_element(By.ID, "category")
        category_field.clear()
        category_field.send_keys(category)
        wait_for(lambda: browser.find_element(By.ID, "run").is_enabled(), 10)
        browser.find_element(By.ID, "run").click()
        cards = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, ".result"), 120)
        assert sorted(c.get_attribute("data-model") for c in cards) == sorted(models)
        for card in cards:  # each shows its cut-out, model, time and cost
            img = card.find_element(By.TAG_NAME, "img")
            assert browser.execute_script("return arguments[0].naturalWidth", img) == 160
            assert re.search(r"\d+(\.\d+)? m?s · \$\d", card.text), card.text
        chosen = cards[-1]
        picked = chosen.get_attribute("data-model")
        chosen.find_element(By.CSS_SELECTOR, "button.pick").click()
        wait_for(lambda: "Recorded" in browser.find_element(By.ID, "run-status").text, 20)
        assert "selected" in chosen.get_attribute("class")
        after = http.get("/cutout/preferences").json()
        assert after["total_selections"] == before["total_selections"] + 1
        rows = {m["model_id"]: m for m in after["by_category"][category]}
        assert rows[picked]["selections"] == 1 and rows[picked]["win_rate"] == 1.0
        assert all(rows[m]["selections"] == 0 for m in models if m != picked)
        wait_for(lambda: category in browser.find_element(By.ID, "prefs").text, 10)
        assert_accessible(browser)


def test_documents_draws_each_segment_box(  # type: ignore[no-untyped-def]
    browser, serve_cluster, http, api_key, tmp_path
) -> None:
    from selenium.webdriver.common.by import By

    from tests.documents_fixtures import report_pdf

    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(report_pdf(1))
    with shots_on_failure(browser, tmp_path):
        open_page(browser, serve_cluster.base_url, "documents.html", key=api_key)
        browser.find_element(By.ID, "file").send_keys(str(pdf))
        browser.find_element(By.ID, "parse").click()
        drawn = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#result[data-task]"), 180)
        task_id = drawn[0].get_attribute("data-task")
        assert "Succeeded" in browser.find_element(By.ID, "status").text
        task = http.get(f"/documents/api/v1/task/{task_id}").json()
        segments = [s for c in task["output"]["chunks"] for s in c["segments"]]
        assert segments, task
        boxes = browser.find_elements(By.CSS_SELECTOR, ".page-wrap .seg-box")
        assert sorted(b.get_attribute("data-segment") for b in boxes) == sorted(
            s["segment_id"] for s in segments
        )
        page = browser.find_element(By.CSS_SELECTOR, ".page-wrap canvas").rect
        assert page["width"] > 300
        # The page was drawn by pdf.js: the canvas has ink on it, not a blank sheet.
        assert (
            browser.execute_script(
                "const c = document.querySelector('.page-wrap canvas');"
                "const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
                "let dark = 0; for (let i = 0; i < d.length; i += 4) if (d[i] < 128) dark++;"
                "return dark;"
            )
            > 1000
        )
        by_id = {s["segment_id"]: s for s in segments}
        colours: dict[str, set[str]] = {}
        for b in boxes:
            seg, r = by_id[b.get_attribute("data-segment")], b.rect
            # Where the API puts it, scaled from the page's pixels to the drawn page.
            scale = page["width"] / seg["page_width"]
            assert r["x"] - page["x"] == pytest.approx(seg["bbox"]["left"] * scale, abs=3)
            assert r["y"] - page["y"] == pytest.approx(seg["bbox"]["top"] * scale, abs=3)
            assert r["width"] == pytest.approx(seg["bbox"]["width"] * scale, abs=3)
            colours.setdefault(seg["segment_type"], set()).add(
                b.value_of_css_property("border-top-color")
            )
        assert {"Title", "Text"} <= set(colours), colours
        assert all(len(c) == 1 for c in colours.values())  # one colour per type...
        assert colours["Title"] != colours["Text"]  # ...and types told apart
        chunks = browser.find_elements(By.CSS_SELECTOR, "#view-chunks .chunk")
        assert len(chunks) == len(task["output"]["chunks"])
        assert_accessible(browser)


def test_extract_shows_each_field_box(  # type: ignore[no-untyped-def]
    browser, serve_cluster, http, api_key, tmp_path
) -> None:
    from selenium.webdriver.common.by import By

    from tests.api.extract.conftest import TRUTH, invoice_pdf

    pdf = tmp_path / "invoice.pdf"
    pdf.write_bytes(invoice_pdf())
    with shots_on_failure(browser, tmp_path):
        open_page(browser, serve_cluster.base_url, "extract.html", key=api_key)
        name = browser.find_element(By.ID, "name")
        name.clear()
        name.send_keys(f"Console {uuid.uuid4().hex[:6]}")
        browser.find_element(By.ID, "file").send_keys(str(pdf))
        browser.find_element(By.ID, "run").click()  # saves the new pattern, then ingests
        drawn = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#result[data-job]"), 120)
        job_id = drawn[0].get_attribute("data-job")
        job = http.get(f"/extract/api/jobs/{job_id}").json()["data"]
        assert (
            job["status"] == "completed"
            and job["result"]["invoice_number"] == TRUTH["invoice_number"]
        )
        meta = job["field_metadata"]["invoice_number"]
        box = browser.find_element(By.CSS_SELECTOR, '.box.field[data-field="invoice_number"]')
        page = browser.find_element(By.CSS_SELECTOR, ".page-wrap canvas").rect
        # The engine's boxes are in the page's pixels at 150 DPI (595 pt wide page).
        scale = page["width"] / (595 * 150 / 72)
        x0, y0, x1, _ = meta["bbox"]
        assert box.rect["x"] - page["x"] == pytest.approx(x0 * scale, abs=3)
        assert box.rect["y"] - page["y"] == pytest.approx(y0 * scale, abs=3)
        assert box.rect["width"] == pytest.approx((x1 - x0) * scale, abs=3)
        row = browser.find_element(By.CSS_SELECTOR, 'tr[data-field="invoice_number"]')
        assert "INV-2024-001" in row.text and f"{round(meta['confidence'] * 100)} %" in row.text
        for row in browser.find_elements(By.CSS_SELECTOR, "#fields tbody tr"):
            field = row.get_attribute("data-field")
            confidence = job["field_metadata"][field]["confidence"]
            low = job["result"][field] is not None and confidence < 0.6
            assert ("low" in row.get_attribute("class").split()) == low, (field, confidence)
        assert_accessible(browser)


def test_inspect_trains_and_shows_the_live_pipeline(  # type: ignore[no-untyped-def]
    browser, serve_cluster, http, tmp_path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    from tests.serve.test_inspect_serve import write_video
    from tests.textures import make_dataset

    api = "/inspect/api"
    dataset = make_dataset(tmp_path / "textures", normal=10, anomalous=2, size=128)
    project = http.post(f"{api}/projects", json={"name": f"console-{uuid.uuid4().hex[:6]}"}).json()
    with shots_on_failure(browser, tmp_path):
        open_page(browser, serve_cluster.base_url, "inspect.html")
        wait_for(
            lambda: browser.find_elements(
                By.CSS_SELECTOR, f'#project option[value="{project["id"]}"]'
            )
        )
        Select(browser.find_element(By.ID, "project")).select_by_value(project["id"])
        for label in ("normal", "anomalous"):  # uploaded through the page
            Select(browser.find_element(By.ID, "media-label")).select_by_value(label)
            files = browser.find_element(By.ID, "media-files")
            browser.execute_script("arguments[0].value = ''", files)  # a multiple input adds up
            files.send_keys("\n".join(str(s.path) for s in dataset if s.label == label))
            browser.find_element(By.ID, "upload").click()
            wait_for(lambda: "Uploaded" in browser.find_element(By.ID, "media-status").text, 30)
        wait_for(
            lambda: len(browser.find_elements(By.CSS_SELECTOR, "#media li")) == len(dataset), 10
        )
        assert http.get(f"{api}/projects/{project['id']}/media").json()["total"] == len(dataset)

        Select(browser.find_element(By.ID, "architecture")).select_by_value("patchcore")
        params = browser.find_element(By.ID, "parameters")
        params.clear()
        params.send_keys('{"image_size": 128, "coreset_sampling_ratio": 0.1}')
        browser.find_element(By.ID, "train").click()
        progress = []

        def trained() -> str | None:
            progress.append(
                float(browser.find_element(By.ID, "train-progress").get_attribute("value"))
            )
            return browser.find_element(By.ID, "train-state").get_attribute("data-status")

        assert wait_for(trained, 300, every_s=0.5) == "completed"
        progress.append(float(browser.find_element(By.ID, "train-progress").get_attribute("value")))
        assert progress == sorted(progress) and progress[-1] == 1.0, progress  # never backwards
        model = http.get(f"{api}/projects/{project['id']}/models").json()[0]
        assert model["status"] == "ready"

        videos = serve_cluster.home / "inspect" / "videos" / uuid.uuid4().hex[:8]
        videos.mkdir(parents=True)
        video = write_video(videos / "line.mp4", dataset)
        source = http.post(
            f"{api}/projects/{project['id']}/sources",
            json={
                "type": "video_file",
                "name": "line",
                "config": {"path": str(video), "loop": True},
            },
        ).json()
        pipeline = http.post(
            f"{api}/projects/{project['id']}/pipelines",
            json={
                "name": "line 1",
                "model_id": model["id"],
                "source_id": source["id"],
                "config": {"fps": 10},
            },
        ).json()
        browser.refresh()
        option = f'#project option[value="{project["id"]}"]'
        wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, option), 10)
        Select(browser.find_element(By.ID, "project")).select_by_value(project["id"])
        row = f'tr[data-pipeline="{pipeline["id"]}"]'
        wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, f"{row} button.start"), 10)[
            0
        ].click()

        def video_time() -> float:
            return float(
                browser.execute_script("return document.getElementById('video').currentTime")
            )

        wait_for(lambda: video_time() > 0.5, 60)  # WebRTC frames are playing...
        first = video_time()
        wait_for(lambda: video_time() > first + 0.5, 10)  # ...and keep coming

        def frames() -> int:  # redrawn every second: read in the page
            return int(
                browser.execute_script(
                    "const d = document.querySelector('[data-metric=\"frames processed\"]');"
                    "return d ? d.textContent : 0"
                )
            )

        seen = wait_for(frames, 10)
        wait_for(lambda: frames() > seen, 10)  # the metrics update
        active = [
            a
            for a in http.get(f"{api}/active-pipelines").json()
            if a["pipeline_id"] == pipeline["id"]
        ]
        assert active and active[0]["status"] == "running"
        assert_accessible(browser)
        wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, f"{row} button.secondary"), 10)[
            0
        ].click()
        wait_for(
            lambda: (
                http.get(f"{api}/active-pipelines/{active[0]['id']}").json()["status"] == "stopped"
            ),
            30,
        )


def test_edit_shows_the_plan_and_the_result(  # type: ignore[no-untyped-def]
    browser, serve_cluster, edit_buckets, receiver, tmp_path
) -> None:
    import numpy as np
    from selenium.webdriver.common.by import By

    image = tmp_path / "disc.png"
    image.write_bytes(png())
    with shots_on_failure(browser, tmp_path):
        open_page(browser, serve_cluster.base_url, "edit.html")
        prompt = browser.find_element(By.ID, "prompt")
        prompt.clear()
        prompt.send_keys("make it 20% brighter")
        browser.find_element(By.ID, "image").send_keys(str(image))
        browser.find_element(By.ID, "callback").send_keys(receiver.url)
        browser.find_element(By.ID, "run").click()
        wait_for(lambda: browser.find_element(By.ID, "status").text.startswith("Done"), 180)
        plan = [li.text for li in browser.find_elements(By.CSS_SELECTOR, "#plan li")]
        assert len(plan) == 1 and "bright" in plan[0], plan
        after = browser.find_element(By.ID, "after")
        wait_for(lambda: browser.execute_script("return arguments[0].naturalWidth", after), 20)
        assert browser.execute_script("return arguments[0].naturalWidth", after) == 160
        # The "after" the page shows is the edited image: the same size, brighter.
        edited = Image.open(io.BytesIO(httpx.get(after.get_attribute("src"), timeout=30).content))
        source = Image.open(image)
        assert edited.size == source.size
        assert np.asarray(edited.convert("L")).mean() > np.asarray(source.convert("L")).mean() + 5
        assert receiver.wait_for(1, timeout=30)  # the contract's callback went out too
        assert_accessible(browser)


@pytest.mark.parametrize("page", PAGES)
def test_every_page_is_keyboard_usable_and_readable(  # type: ignore[no-untyped-def]
    browser, serve_cluster, page, tmp_path
) -> None:
    """axe-core finds no WCAG 2 A/AA violation (contrast included), and Tab reaches every
    visible control in order, each showing where the focus is."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    with shots_on_failure(browser, tmp_path):
        open_page(browser, serve_cluster.base_url, page)
        time.sleep(0.5)  # the page's first API answers
        assert_accessible(browser)
        controls = browser.execute_script(CONTROLS)
        assert controls
        browser.execute_script("document.activeElement.blur(); window.scrollTo(0, 0)")
        reached, unmarked = [], []
        for _ in range(len(controls) + 3):
            ActionChains(browser).send_keys(Keys.TAB).perform()
            focused = browser.switch_to.active_element
            reached.append(focused)
            # (past the last control the focus leaves the page: body)
            if (
                focused.tag_name != "body"
                and focused.value_of_css_property("outline-style") == "none"
            ):
                unmarked.append(focused.get_attribute("outerHTML")[:100])
        missing = [c.get_attribute("outerHTML")[:100] for c in controls if c not in reached]
        assert not missing, missing
        assert not unmarked, unmarked  # the focus is visible wherever it goes
