"""Documents the tests generate with pymupdf (no files shipped)."""

from __future__ import annotations

import io

import numpy as np
import pymupdf
from PIL import Image, ImageFilter

TITLE = "Quarterly Report on Widget Sales"
HEADING = "Regional Results"
PARAGRAPH = (
    "Sales of widgets grew steadily across every region this quarter. The northern "
    "stores led the increase, while the coastal branches held their ground despite "
    "the storms that closed several of them for a week."
)
ITEMS = [
    "Northern stores grew by twelve percent",
    "Coastal stores were flat",
    "Online orders doubled",
]
TABLE = [
    ["Region", "Units", "Revenue"],
    ["North", "1200", "36000"],
    ["Coast", "800", "24000"],
    ["Online", "450", "13500"],
]


def report_pdf(pages: int = 2) -> bytes:
    """Title, heading, paragraph, list, ruled table, header/footer on every page."""
    doc = pymupdf.open()
    for number in range(1, pages + 1):
        page = doc.new_page(width=595, height=842)
        page.insert_text((72, 40), "ACME Corporation Internal", fontsize=8)
        page.insert_text((500, 810), f"Page {number}", fontsize=8)
        y = 90
        if number == 1:
            page.insert_text((72, y), TITLE, fontsize=22, fontname="hebo")
            y += 40
        page.insert_text(
            (72, y), HEADING if number == 1 else f"{HEADING} {number}", fontsize=15, fontname="hebo"
        )
        y += 24
        box = pymupdf.Rect(72, y, 523, y + 70)
        page.insert_textbox(box, PARAGRAPH, fontsize=10.5)
        y += 80
        for item in ITEMS:
            page.insert_text((80, y), f"• {item}", fontsize=10.5)
            y += 16
        y += 14
        col = [72, 220, 340, 460]
        for r, row in enumerate(TABLE):
            top = y + r * 20
            for c, cell in enumerate(row):
                page.insert_text((col[c] + 4, top + 14), cell, fontsize=10)
            page.draw_line((72, top), (460, top))
        page.draw_line((72, y + 20 * len(TABLE)), (460, y + 20 * len(TABLE)))
        for x in col:
            page.draw_line((x, y), (x, y + 20 * len(TABLE)))
    return doc.tobytes()


def scanned_png(pdf: bytes, page: int = 0, dpi: int = 200, seed: int = 0) -> bytes:
    """A page rendered to an image with blur and noise, as a scanner would give it."""
    doc = pymupdf.open(stream=pdf, filetype="pdf")
    pix = doc[page].get_pixmap(dpi=dpi)
    img = Image.frombytes("RGB", (pix.width, pix.height), pix.samples)
    img = img.filter(ImageFilter.GaussianBlur(0.6))
    arr = np.asarray(img, np.float32)
    arr += np.random.default_rng(seed).normal(0, 6, arr.shape)
    buf = io.BytesIO()
    Image.fromarray(arr.clip(0, 255).astype(np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def many_pages_pdf(pages: int) -> bytes:
    doc = pymupdf.open()
    for number in range(pages):
        doc.new_page().insert_text((72, 72), f"page {number + 1}")
    return doc.tobytes()
