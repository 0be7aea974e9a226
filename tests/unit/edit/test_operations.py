"""Pixel checks: each operation does what the prompt said, measured on generated scenes
and scikit-image's bundled astronaut photo, with the real models."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import skimage.data
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from tests.scenes import iou, object_scene
from visionserve.errors import PayloadTooLarge
from visionserve.models.edit import LocalModelOps, Plan, Planner, Step, run_plan
from visionserve.models.edit.engines import LocalEngines
from visionserve.models.edit.ops.faces import FaceDetector

LIMIT = 32_000_000


@pytest.fixture(scope="module")
def astronaut() -> Image.Image:
    return Image.fromarray(skimage.data.astronaut())


def run(
    prompt_or_plan: str | Plan, img: Image.Image, models: LocalModelOps, engines: LocalEngines, **kw
):  # type: ignore[no-untyped-def]
    plan = Planner().plan(prompt_or_plan) if isinstance(prompt_or_plan, str) else prompt_or_plan
    return asyncio.run(
        run_plan(plan, img, models, max_output_pixels=kw.get("limit", LIMIT), engines=engines)
    )


def _mean(img: Image.Image) -> float:
    return float(np.asarray(img.convert("RGB"), dtype=np.float64).mean())


def test_brightness_goes_up_by_the_asked_share(models, engines) -> None:  # type: ignore[no-untyped-def]
    scene, _ = object_scene()  # mid-tones, nothing near white: no clipping
    out = run("make it 20% brighter", scene, models, engines).image
    assert _mean(out) / _mean(scene) == pytest.approx(1.2, abs=0.01)
    darker = run("make it 30% darker", scene, models, engines).image
    assert _mean(darker) / _mean(scene) == pytest.approx(0.7, abs=0.01)


def test_resize_and_upscale_give_the_asked_sizes(models, engines) -> None:  # type: ignore[no-untyped-def]
    scene, _ = object_scene((160, 120))
    assert run("resize to 100x50", scene, models, engines).image.size == (100, 50)
    assert run("make it 80 pixels wide", scene, models, engines).image.size == (80, 60)
    up = run("upscale 4x", scene, models, engines)
    assert up.image.size == (640, 480)
    # waifu2x, not a plain resize: close to the Lanczos result but not equal to it.
    lanczos = scene.resize((640, 480), Image.Resampling.LANCZOS)
    diff = np.abs(np.asarray(up.image, np.int16) - np.asarray(lanczos, np.int16)).mean()
    assert 0.1 < diff < 20


def test_background_removal_matches_the_known_shape(models, engines) -> None:  # type: ignore[no-untyped-def]
    scene, truth = object_scene(shape="rounded", colour=(30, 80, 200), seed=1)
    out = run("remove the background", scene, models, engines).image
    assert out.mode == "RGBA" and out.size == scene.size
    assert iou(np.asarray(out.getchannel("A")) > 127, truth) >= 0.9
    # The subject's pixels are the original ones.
    rgb = np.asarray(out.convert("RGB"), np.int16)
    assert np.abs(rgb[truth] - np.asarray(scene, np.int16)[truth]).max() == 0


def test_background_replaced_with_a_colour_and_blurred(models, engines) -> None:  # type: ignore[no-untyped-def]
    scene, truth = object_scene(shape="ellipse", seed=3)
    white = np.asarray(run("make the background white", scene, models, engines).image)
    outside = ~np.asarray(Image.fromarray(truth).resize(scene.size))  # the true background
    ring = outside.copy()
    ring[
        int(scene.height * 0.1) : int(scene.height * 0.9),
        int(scene.width * 0.1) : int(scene.width * 0.9),
    ] = False
    assert (white[ring] >= 245).all(axis=-1).mean() > 0.98
    blurred = np.asarray(run("blur the background", scene, models, engines).image, np.float32)
    orig = np.asarray(scene, np.float32)

    # Background detail (stripes) drops; the subject's inside stays as it was.
    def detail(a: np.ndarray) -> float:
        return float(np.abs(np.diff(a, axis=1))[ring[:, 1:]].mean())

    assert detail(blurred) < 0.5 * detail(orig)
    core = np.asarray(Image.fromarray(truth).filter(ImageFilter.MinFilter(9)))
    assert np.abs(blurred[core] - orig[core]).mean() < 2


def test_crop_to_the_subject_uses_the_mask(models, engines) -> None:  # type: ignore[no-untyped-def]
    scene, truth = object_scene(shape="ellipse", seed=4)
    plan = Plan(steps=[Step(op="crop", params={"mode": "subject", "padding": 0.0})])
    out = run(plan, scene, models, engines).image
    ys, xs = np.nonzero(truth)
    want = (xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
    assert (
        abs(out.width - want[0]) <= 0.06 * want[0] and abs(out.height - want[1]) <= 0.06 * want[1]
    )


def test_faces_in_the_astronaut_photo_are_blurred(models, engines, astronaut) -> None:  # type: ignore[no-untyped-def]
    faces = engines.faces().detect(astronaut)
    assert len(faces) >= 1
    x0, y0, x1, y1 = faces[0].box
    # Eileen Collins' face is at about x 180-270, y 60-180 in the 512x512 photo.
    assert 150 < (x0 + x1) / 2 < 300 and 50 < (y0 + y1) / 2 < 190
    out = run("blur the faces", astronaut, models, engines).image
    a, b = np.asarray(astronaut, np.int16), np.asarray(out, np.int16)
    face = (slice(int(y0) + 10, int(y1) - 10), slice(int(x0) + 10, int(x1) - 10))
    assert np.abs(a[face] - b[face]).mean() > 8  # the face changed
    sharp = np.abs(np.diff(a[face], axis=1)).mean()
    assert np.abs(np.diff(b[face], axis=1)).mean() < 0.5 * sharp  # and lost its detail
    changed = np.abs(a - b).max(axis=-1) > 0
    cx, cy, hw, hh = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) * 0.66, (y1 - y0) * 0.66
    yy, xx = np.mgrid[0 : a.shape[0], 0 : a.shape[1]]
    outside = ((xx - cx) / hw) ** 2 + ((yy - cy) / hh) ** 2 > 1.05
    assert not changed[outside].any()  # the rest of the picture is untouched
    # The detector no longer finds a face where the blur is.
    after = FaceDetector(engines.model_home, threads=1).detect(out)
    assert all(f.score < faces[0].score - 0.2 or abs(f.box[0] - x0) > 40 for f in after)


def test_pixelate_faces(models, engines, astronaut) -> None:  # type: ignore[no-untyped-def]
    out = np.asarray(run("pixelate the faces", astronaut, models, engines).image)
    x0, y0, x1, y1 = (int(v) for v in engines.faces().detect(astronaut)[0].box)
    block = out[(y0 + y1) // 2 - 4 : (y0 + y1) // 2 + 4, (x0 + x1) // 2 - 4 : (x0 + x1) // 2 + 4]
    assert len({tuple(px) for px in block.reshape(-1, 3)}) <= 4  # big flat cells


def test_style_transfer_changes_the_image_and_keeps_its_size(models, engines, astronaut) -> None:  # type: ignore[no-untyped-def]
    img = astronaut.resize((300, 201))
    styled = run("apply style 3", img, models, engines).image
    other = run("apply style 20", img, models, engines).image
    assert styled.size == img.size == other.size
    a, s, o = (np.asarray(x, np.float32) for x in (img, styled, other))
    assert np.abs(a - s).mean() > 15
    assert np.abs(s - o).mean() > 10  # different styles differ
    half = run("apply style 3 at 50%", img, models, engines).image
    assert np.abs(np.asarray(half, np.float32) - (a + s) / 2).mean() < 2


def test_arbitrary_style_from_a_picture(engines, astronaut) -> None:  # type: ignore[no-untyped-def]
    stripes = Image.fromarray(
        (np.indices((256, 256)).sum(axis=0) // 16 % 2 * 255).astype(np.uint8)
    ).convert("RGB")
    out = engines.style().stylize_with(astronaut.resize((320, 240)), stripes)
    assert out.size == (320, 240)
    assert (
        np.abs(
            np.asarray(out, np.float32) - np.asarray(astronaut.resize((320, 240)), np.float32)
        ).mean()
        > 10
    )


def _text_scene() -> tuple[Image.Image, np.ndarray]:
    scene, _ = object_scene((480, 320), seed=5)
    img = scene.copy()
    draw = ImageDraw.Draw(img)
    draw.text((20, 280), "SAMPLE 2024", font=ImageFont.load_default(size=22), fill=(255, 255, 255))
    ink = np.abs(np.asarray(img, np.int16) - np.asarray(scene, np.int16)).max(axis=-1) > 40
    return img, ink


def test_small_text_is_removed(models, engines) -> None:  # type: ignore[no-untyped-def]
    img, ink = _text_scene()
    clean, _ = object_scene((480, 320), seed=5)
    out = run("remove the text", img, models, engines).image
    before = np.abs(np.asarray(img, np.int16) - np.asarray(clean, np.int16))[ink].mean()
    after = np.abs(np.asarray(out, np.int16) - np.asarray(clean, np.int16))[ink].mean()
    assert after < 0.35 * before
    far = np.ones(ink.shape, bool)
    far[240:, :300] = False
    assert np.array_equal(np.asarray(out)[far], np.asarray(img)[far])


def test_watermark_is_drawn_where_asked(models, engines) -> None:  # type: ignore[no-untyped-def]
    scene, _ = object_scene((400, 300))
    out = np.asarray(
        run("add a watermark saying 'ACME' in the top left", scene, models, engines).image, np.int16
    )
    diff = np.abs(out - np.asarray(scene, np.int16)).max(axis=-1) > 30
    ys, xs = np.nonzero(diff)
    assert diff.sum() > 50 and xs.max() < 200 and ys.max() < 100


@pytest.mark.parametrize(
    ("prompt", "check"),
    [
        ("make it black and white", lambda a, o: np.ptp(o.astype(int), axis=-1).max() == 0),
        ("invert the colours", lambda a, o: np.array_equal(o, 255 - a)),
        ("give it a sepia tone", lambda a, o: (o[..., 0] >= o[..., 2]).mean() > 0.99),
        ("flip horizontally", lambda a, o: np.array_equal(o, a[:, ::-1])),
        ("flip vertically", lambda a, o: np.array_equal(o, a[::-1])),
        ("rotate 90 degrees clockwise", lambda a, o: np.array_equal(o, np.rot90(a, -1))),
        (
            "sharpen the image",
            lambda a, o: (
                np.abs(np.diff(o.astype(int), axis=1)).mean()
                > np.abs(np.diff(a.astype(int), axis=1)).mean()
            ),
        ),
        (
            "blur the image",
            lambda a, o: (
                np.abs(np.diff(o.astype(int), axis=1)).mean()
                < 0.7 * np.abs(np.diff(a.astype(int), axis=1)).mean()
            ),
        ),
        ("increase the contrast", lambda a, o: o.std() > 1.1 * a.std()),
        (
            "make it warmer",
            lambda a, o: (
                o[..., 0].mean() > a[..., 0].mean() + 5 and o[..., 2].mean() < a[..., 2].mean() - 5
            ),
        ),
        (
            "make the colours more vivid",
            lambda a, o: (
                np.ptp(o.astype(int), axis=-1).mean() > np.ptp(a.astype(int), axis=-1).mean()
            ),
        ),
    ],
)
def test_tone_and_geometry(models, engines, prompt, check) -> None:  # type: ignore[no-untyped-def]
    base, _ = object_scene((200, 150), seed=6)
    grain = np.random.default_rng(6).normal(0, 8, (150, 200, 3))  # detail for the filters to act on
    scene = Image.fromarray(np.clip(np.asarray(base, np.float32) + grain, 0, 255).astype(np.uint8))
    out = run(prompt, scene, models, engines).image
    assert check(np.asarray(scene), np.asarray(out.convert("RGB")))


def test_denoise_and_auto_enhance(models, engines) -> None:  # type: ignore[no-untyped-def]
    scene, _ = object_scene((256, 192), seed=7)
    rng = np.random.default_rng(0)
    noisy = Image.fromarray(
        np.clip(np.asarray(scene, np.float32) + rng.normal(0, 20, (192, 256, 3)), 0, 255).astype(
            np.uint8
        )
    )
    out = run("remove the noise", noisy, models, engines).image
    err = lambda x: np.abs(np.asarray(x, np.float32) - np.asarray(scene, np.float32)).mean()  # noqa: E731
    assert err(out) < 0.6 * err(noisy)
    # A dull, blue-tinted, low-contrast picture: auto-enhance widens and balances it.
    arr = np.asarray(scene, np.float32) * 0.4 + np.array([60, 70, 110], np.float32)
    dull = Image.fromarray(arr.clip(0, 255).astype(np.uint8))
    fixed = np.asarray(run("auto enhance", dull, models, engines).image, np.float32)
    assert fixed.std() > 1.5 * np.asarray(dull, np.float32).std()
    means = fixed.reshape(-1, 3).mean(axis=0)
    dull_means = np.asarray(dull, np.float32).reshape(-1, 3).mean(axis=0)
    assert np.ptp(means) < 0.5 * np.ptp(dull_means)


def test_pad_crop_and_format(models, engines) -> None:  # type: ignore[no-untyped-def]
    scene, _ = object_scene((200, 100))
    padded = run("pad it to a square with black", scene, models, engines).image
    assert padded.size == (200, 200) and padded.getpixel((0, 0)) == (0, 0, 0)
    result = run(
        "crop to 16:9, then add a 10px red border and save as webp", scene, models, engines
    )
    assert result.image.size == (178 + 20, 100 + 20)
    assert result.format == "webp" and [s.op for s in result.applied] == ["crop", "pad", "format"]
    assert result.image.getpixel((0, 0)) == (255, 0, 0)


def test_rotate_keeps_transparency_transparent(models, engines) -> None:  # type: ignore[no-untyped-def]
    img = Image.new("RGBA", (100, 60), (200, 0, 0, 255))
    out = run("rotate 45 degrees", img, models, engines).image
    assert out.mode == "RGBA" and out.size == (114, 114)
    assert out.getpixel((0, 0))[3] == 0 and out.getpixel((57, 57))[3] == 255


class _Recorder:
    """ModelOps that only records calls: a refused plan must not reach the models."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def subject_mask(self, image: Image.Image) -> Image.Image:
        self.calls.append("mask")
        return Image.new("L", image.size, 255)

    async def upscale(self, image: Image.Image, factor: int) -> Image.Image:
        self.calls.append("upscale")
        return image.resize((image.width * factor, image.height * factor))


def test_a_plan_that_grows_too_big_is_refused_before_any_work() -> None:
    img = Image.new("RGB", (2000, 1500))
    recorder = _Recorder()
    plan = Planner().plan("remove the background, then upscale 4x")
    with pytest.raises(PayloadTooLarge) as info:
        asyncio.run(run_plan(plan, img, recorder, max_output_pixels=20_000_000))
    assert recorder.calls == []
    assert info.value.status == 413 and info.value.details["op"] == "upscale"
    big_pad = Planner().plan("resize to 5000x4000 then add a 500px border")
    with pytest.raises(PayloadTooLarge):
        asyncio.run(run_plan(big_pad, img, recorder, max_output_pixels=20_000_000))
    ok = asyncio.run(
        run_plan(Planner().plan("upscale 2x"), img, recorder, max_output_pixels=20_000_000)
    )
    assert ok.image.size == (4000, 3000) and recorder.calls == ["upscale"]


def test_an_empty_plan_is_refused() -> None:
    from visionserve.errors import Unprocessable

    with pytest.raises(Unprocessable):
        asyncio.run(
            run_plan(Plan(), Image.new("RGB", (8, 8)), _Recorder(), max_output_pixels=LIMIT)
        )


class _HalfSizeMask(_Recorder):
    """A deployment that answers its mask at half the image's resolution."""

    async def subject_mask(self, image: Image.Image) -> Image.Image:
        mask = Image.new("L", (image.width // 2, image.height // 2), 0)
        mask.paste(255, (10, 20, 30, 40))  # the subject: x 20-60, y 40-80 at full size
        return mask


def test_a_mask_at_another_resolution_is_scaled_to_the_image() -> None:
    plan = Plan(steps=[Step(op="crop", params={"mode": "subject", "padding": 0.0})])
    out = asyncio.run(
        run_plan(plan, Image.new("RGB", (200, 160)), _HalfSizeMask(), max_output_pixels=LIMIT)
    )
    assert abs(out.image.width - 40) <= 2 and abs(out.image.height - 40) <= 2
