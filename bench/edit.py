"""edit benchmarks, side by side in one run (``python -m bench.edit``).

1. Planner accuracy on the prompt set kept in the tests (tests/edit_prompts.py):
   exact plans with rules only and with rules + MiniLM, and planning time per prompt.
2. Single-image latency per operation class on a 1024x768 photo, through ``run_plan``
   with the real models, each beside a plain-Pillow baseline on the same image: for
   tone and geometry the same operation called directly in Pillow (the engine's
   overhead), for the model classes the naive Pillow stand-in a script would use
   (Lanczos for upscaling, a threshold mask for the background, a posterize+edge filter
   for style, a whole-picture blur for faces, a median filter for marks), i.e. what
   the model costs over the cheapest Pillow answer.
3. Batch throughput of 40 generated images: the Ray Data job vs one sequential loop
   (bench/_edit_batch.py, written with the edit surface), when that file exists.
"""

from __future__ import annotations

import asyncio
import importlib.util
import time
from collections.abc import Callable
from pathlib import Path

import skimage.data
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

from bench._util import median_ms, record
from tests.edit_prompts import PROMPTS
from visionserve.models.edit import LocalModelOps, Planner, Step, run_plan
from visionserve.models.edit.engines import LocalEngines
from visionserve.settings import get_settings

REPO = Path(__file__).resolve().parents[1]
SIZE = (1024, 768)
LIMIT = 64_000_000

# Operation class -> (prompt, runs, plain-Pillow baseline).
CLASSES: dict[str, tuple[str, int, Callable[[Image.Image], Image.Image]]] = {
    "tone": (
        "make it 20% brighter, increase the contrast and make the colours more vivid",
        10,
        lambda im: ImageEnhance.Color(
            ImageEnhance.Contrast(ImageEnhance.Brightness(im).enhance(1.2)).enhance(1.2)
        ).enhance(1.2),
    ),
    "geometry": (
        "rotate 90 degrees, crop it square and resize to 512x512",
        10,
        lambda im: (
            im.transpose(Image.Transpose.ROTATE_270)
            .crop((0, 128, 768, 896))
            .resize((512, 512), Image.Resampling.LANCZOS)
        ),
    ),
    "bg removal": (
        "remove the background",
        5,
        lambda im: im.convert("L").point(lambda v: 255 if v > 128 else 0),
    ),
    "upscale x2": (
        "upscale 2x",
        3,
        lambda im: im.resize((im.width * 2, im.height * 2), Image.Resampling.LANCZOS),
    ),
    "style": (
        "apply style 5",
        5,
        lambda im: ImageOps.posterize(im, 3).filter(ImageFilter.EDGE_ENHANCE_MORE),
    ),
    "faces": ("blur the faces", 5, lambda im: im.filter(ImageFilter.GaussianBlur(12))),
    "inpaint": ("remove the text", 5, lambda im: im.filter(ImageFilter.MedianFilter(5))),
}


def planner_accuracy() -> dict[str, float]:
    from visionserve.models.embedding import Embedder

    out: dict[str, float] = {"prompts": len(PROMPTS)}
    for name, planner in (("rules", Planner()), ("rules+minilm", Planner(Embedder()))):
        exact = 0
        started = time.perf_counter()
        for prompt, steps, unsupported in PROMPTS:
            plan = planner.plan(prompt)
            want = [Step(op=op, params=params) for op, params in steps]
            exact += plan.steps == want and len(plan.unsupported) == unsupported
        out[f"{name} accuracy"] = exact / len(PROMPTS)
        out[f"{name} ms/prompt"] = (time.perf_counter() - started) * 1000 / len(PROMPTS)
    return out


def photo() -> Image.Image:
    """The astronaut photo (a face, a subject) at 1024x768, with a caption to remove."""
    from PIL import ImageDraw, ImageFont

    img = Image.fromarray(skimage.data.astronaut()).resize((768, 768)).crop((0, 0, 768, 768))
    canvas = Image.new("RGB", SIZE, (90, 110, 140))
    canvas.paste(img, (128, 0))
    ImageDraw.Draw(canvas).text(
        (20, 720), "© SAMPLE 2024", font=ImageFont.load_default(size=28), fill=(255, 255, 255)
    )
    return canvas


def operation_latency() -> dict[str, tuple[float, float]]:
    home = get_settings().model_dir
    models = LocalModelOps(home)
    engines = LocalEngines(home)
    img = photo()
    planner = Planner()
    results = {}
    for name, (prompt, runs, baseline) in CLASSES.items():
        plan = planner.plan(prompt)
        assert plan.steps and not plan.unsupported, (prompt, plan)

        def ours(plan=plan) -> object:  # type: ignore[no-untyped-def]
            return asyncio.run(
                run_plan(plan, img, models, max_output_pixels=LIMIT, engines=engines)
            )

        results[name] = (median_ms(ours, runs), median_ms(lambda b=baseline: b(img), runs))
    return results


def main() -> None:
    acc = planner_accuracy()
    print(f"planner on {int(acc['prompts'])} prompts with expected plans (tests/edit_prompts.py)")
    for name in ("rules", "rules+minilm"):
        print(
            f"  {name:<13} exact plans {acc[f'{name} accuracy']:.3f}"
            f"   {acc[f'{name} ms/prompt']:.1f} ms/prompt"
        )
        record(f"planner {name} exact plans", acc[f"{name} accuracy"], "share")
    print(f"single image {SIZE[0]}x{SIZE[1]}, median ms (ours vs plain-Pillow baseline)")
    for name, (ours, base) in operation_latency().items():
        print(f"  {name:<11} {ours:9.1f}  baseline {base:8.1f}  ratio {ours / base:7.1f}")
        record(f"{name} 1024x768 vs plain Pillow", ours, "ms", baseline=base)
    if importlib.util.find_spec("bench._edit_batch") is not None:
        from bench._edit_batch import batch_throughput

        figures = batch_throughput()
        print(
            f"batch of {figures['images']} images ({figures['prompt']!r}), "
            f"{figures['actors']} actors"
        )
        print(
            f"  sequential loop {figures['sequential_s']:7.2f} s "
            f"({figures['sequential_images_per_s']} img/s)"
        )
        print(
            f"  Ray Data        {figures['ray_data_s']:7.2f} s "
            f"({figures['ray_data_images_per_s']} img/s)"
        )
        print(f"  speedup {figures['speedup']:.2f} (goal >= {figures['goal']})")
        record(
            "batch steady rate, Ray Data vs sequential loop",
            figures["steady_ray_data_images_per_s"],
            "images/s",
            baseline=figures["steady_sequential_images_per_s"],
            goal=f">= {figures['goal']}",
        )
    else:
        print("batch throughput: bench/_edit_batch.py not present")


if __name__ == "__main__":
    main()
