"""Every operation on odd inputs (palette, grey, alpha, 16-bit, CMYK, tiny, thin images):
a result of the planned size or a VisionServeError, never anything else."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from PIL import Image

from visionserve.errors import VisionServeError
from visionserve.models.edit import OPERATIONS, Plan, Step, run_plan
from visionserve.models.edit.runner import planned_sizes


def _images() -> dict[str, Image.Image]:
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 255, (37, 53, 3), dtype=np.uint8))
    rgba = rgb.convert("RGBA")
    rgba.putalpha(Image.fromarray(rng.integers(0, 255, (37, 53), dtype=np.uint8)))
    palette = rgb.convert("P", palette=Image.Palette.ADAPTIVE)
    palette.info["transparency"] = 0
    return {
        "rgb": rgb,
        "rgba": rgba,
        "palette": palette,
        "grey": rgb.convert("L"),
        "grey_alpha": rgba.convert("LA"),
        "16bit": Image.fromarray((rng.integers(0, 65535, (37, 53))).astype(np.uint16)),
        "cmyk": rgb.convert("CMYK"),
        "one_pixel": Image.new("RGB", (1, 1), (200, 10, 10)),
        "thin": Image.new("RGB", (300, 2), (10, 200, 10)),
    }


IMAGES = _images()
STEPS = [Step(op=name, params={}) for name in OPERATIONS if name not in ("crop", "resize")] + [
    Step(op="crop", params={"mode": "subject"}),
    Step(op="crop", params={"mode": "aspect", "aspect": (16, 9)}),
    Step(op="resize", params={"factor": 0.5}),
    Step(op="rotate", params={"degrees": 33}),
    Step(op="pad", params={"aspect": (1, 1)}),
]


@pytest.mark.parametrize("name", list(IMAGES))
def test_every_operation_on_odd_images(name: str, models, engines) -> None:  # type: ignore[no-untyped-def]
    img = IMAGES[name]
    failures = []
    for step in STEPS:
        plan = Plan(steps=[step])
        try:
            out = asyncio.run(
                run_plan(plan, img, models, max_output_pixels=10_000_000, engines=engines)
            ).image
        except VisionServeError:
            continue
        except Exception as exc:
            failures.append(f"{step.op}: {type(exc).__name__}: {exc}")
            continue
        (want,) = planned_sizes(plan, img.width, img.height)
        if step.op == "crop" and step.params["mode"] == "subject":
            ok = out.width <= want[0] and out.height <= want[1]
        else:
            ok = out.size == want
        if not ok:
            failures.append(f"{step.op}: size {out.size}, planned {want}")
    assert not failures, "\n".join(failures)
