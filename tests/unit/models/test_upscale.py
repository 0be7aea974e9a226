"""Upscalers: exact sizes, clean alpha edges, sharpness, seamless tiling, registry errors,
and the bounds on large outputs: size checks, strips, the pixel budget, memory given back."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from visionserve.errors import BadRequest, PayloadTooLarge, UnknownModel
from visionserve.models.upscale import UPSCALERS, Upscaler, get_upscaler, upscale_lanczos
from visionserve.models.upscale import lanczos as lanczos_module
from visionserve.models.upscale.limits import PixelBudget, check_output_size, release_memory
from visionserve.models.upscale.waifu2x import VARIANTS, Waifu2x
from visionserve.models.weights import WeightError
from visionserve.platform.images import encode_image
from visionserve.settings import LimitSettings, get_settings

METHODS = sorted(UPSCALERS)
WAIFU2X = [f"waifu2x-{v}" for v in VARIANTS]
GREEN_TOLERANCE = 8


@pytest.fixture(scope="session")
def model_home() -> Path:
    home = get_settings().model_home
    assert home is not None
    missing = [v.file for v in VARIANTS.values() if not (home / v.file).is_file()]
    if missing:
        pytest.fail(f"{', '.join(missing)} not in {home}: run `visionserve models fetch`")
    return home


@cache
def _upscaler(method: str, home: Path) -> Upscaler:
    return get_upscaler(method, home, threads=2)


@pytest.fixture(params=METHODS)
def upscaler(request: pytest.FixtureRequest, tmp_path: Path) -> Upscaler:
    # Lanczos needs no weights: its tests must not depend on the model home.
    home = tmp_path if request.param == "lanczos" else request.getfixturevalue("model_home")
    return _upscaler(request.param, home)


@pytest.fixture(params=WAIFU2X)
def waifu2x(request: pytest.FixtureRequest, model_home: Path) -> Upscaler:
    return _upscaler(request.param, model_home)


def red_disc(size: tuple[int, int] = (64, 48)) -> Image.Image:
    """A hard-edged opaque red disc on a fully transparent *green* background."""
    img = Image.new("RGBA", size, (0, 255, 0, 0))
    w, h = size
    ImageDraw.Draw(img).ellipse((w // 6, h // 6, w - w // 6, h - h // 6), fill=(255, 0, 0, 255))
    return img


def soft_mask(size: tuple[int, int] = (64, 48)) -> Image.Image:
    """An anti-aliased disc, like a background-removal matte."""
    w, h = size
    big = Image.new("L", (w * 4, h * 4), 0)
    ImageDraw.Draw(big).ellipse((w // 2, h // 2, w * 3, h * 3), fill=255)
    return big.resize(size, Image.Resampling.BOX)


def smooth_scene(size: tuple[int, int] = (96, 80), seed: int = 0) -> Image.Image:
    """Low-frequency colour blobs: super-resolution should agree with bicubic here."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8), "RGB")
    return coarse.resize(size, Image.Resampling.BICUBIC).filter(ImageFilter.GaussianBlur(2))


def text_scene(size: tuple[int, int] = (192, 128)) -> Image.Image:
    """Checkerboard and text, drawn at full resolution: hard edges to restore."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    board = (((yy // 8) + (xx // 8)) % 2 * 200 + 30).astype(np.uint8)
    img = Image.fromarray(np.dstack([board] * 3), "RGB")
    draw = ImageDraw.Draw(img)
    draw.rectangle((8, h // 2 - 4, w - 8, h - 8), fill=(255, 255, 255))
    draw.text((16, h // 2 + 8), "Sharp 42", fill=(0, 0, 0), font=ImageFont.load_default(size=22))
    return img


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(255.0**2 / mse) if mse else float("inf")


def transition_pixels(img: Image.Image) -> int:
    """Checkerboard pixels between its two grey levels: fewer means sharper edges."""
    a = np.asarray(img.convert("L"))[: img.height * 7 // 16]
    return int(((a > 70) & (a < 190)).sum())


def soft_pixels(alpha: np.ndarray) -> int:
    """Pixels in an edge's 10-90% transition: fewer means a crisper edge."""
    return int(((alpha > 25) & (alpha < 230)).sum())


def green_where_visible(img: Image.Image) -> int:
    a = np.asarray(img.convert("RGBA"))
    visible = a[..., 3] > 0
    return int(a[..., 1][visible].max())


# --- every method ------------------------------------------------------------------


@pytest.mark.parametrize("scale", [2, 4])
@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L"])
def test_exact_dimensions_on_odd_sizes(upscaler: Upscaler, scale: int, mode: str) -> None:
    img = smooth_scene((37, 23)).convert(mode)
    out = upscaler.upscale(img, scale)
    assert out.size == (37 * scale, 23 * scale)
    assert out.mode == mode


def test_no_colour_fringe_from_transparent_pixels(upscaler: Upscaler) -> None:
    out = upscaler.upscale(red_disc(), 4)
    assert out.mode == "RGBA"
    assert green_where_visible(out) <= GREEN_TOLERANCE


def test_straight_alpha_resampling_fails_the_fringe_check() -> None:
    # Resampling each band on its own (straight alpha: what numpy/OpenCV do, and what
    # Pillow did before it premultiplied in resize) leaks the hidden green into the edge.
    img = red_disc()
    size = (img.width * 4, img.height * 4)
    bands = [band.resize(size, Image.Resampling.LANCZOS) for band in img.split()]
    assert green_where_visible(Image.merge("RGBA", bands)) > 100


def test_flatten_when_alpha_not_preserved(upscaler: Upscaler) -> None:
    out = upscaler.upscale(red_disc(), 2, preserve_alpha=False)
    assert out.mode == "RGB"
    px = np.asarray(out, dtype=int)
    assert px[1, 1].min() >= 250  # the transparent corner became white
    r, g, b = px[out.height // 2, out.width // 2]
    assert r > 240 and g < 16 and b < 16


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("P", "RGBA"),
        ("LA", "RGBA"),
        ("RGB-key", "RGBA"),
        ("1", "L"),
        ("CMYK", "RGB"),
        ("I;16", "RGB"),
    ],
)
def test_other_modes_are_normalized(upscaler: Upscaler, mode: str, expected: str) -> None:
    if mode == "P":
        img = red_disc().quantize(4)  # transparent index from the RGBA source
        assert img.has_transparency_data
    elif mode == "LA":
        img = Image.merge("LA", [Image.new("L", (64, 48), 180), soft_mask()])
    elif mode == "RGB-key":
        img = red_disc().convert("RGB")  # the hidden background is pure green
        img.info["transparency"] = (0, 255, 0)  # a PNG tRNS colour key
    else:
        img = text_scene().convert("L" if mode == "I;16" else "RGB").convert(mode)
    out = upscaler.upscale(img, 2)
    assert (out.mode, out.size) == (expected, (img.width * 2, img.height * 2))
    if mode in ("P", "RGB-key"):
        assert green_where_visible(out) <= GREEN_TOLERANCE


@pytest.mark.parametrize("scale", [0, 1, 3, 8])
def test_bad_scale(upscaler: Upscaler, scale: int) -> None:
    with pytest.raises(BadRequest, match="scale_factor"):
        upscaler.upscale(smooth_scene((8, 8)), scale)


def test_constant_alpha_is_kept(upscaler: Upscaler) -> None:
    img = smooth_scene((20, 20)).convert("RGBA")
    img.putalpha(128)
    alpha = np.asarray(upscaler.upscale(img, 2).getchannel("A"))
    assert alpha.min() == alpha.max() == 128


# --- Lanczos -----------------------------------------------------------------------


def test_lanczos_alpha_is_lanczos_of_alpha() -> None:
    img = red_disc()
    img.putalpha(soft_mask())
    out = upscale_lanczos(img, 4)
    expected = img.getchannel("A").resize(out.size, Image.Resampling.LANCZOS)
    diff = np.abs(np.asarray(out.getchannel("A"), int) - np.asarray(expected, int))
    assert diff.max() <= 1


def test_lanczos_opaque_region_matches_plain_lanczos() -> None:
    rgb = smooth_scene((64, 64), seed=3)
    img = rgb.convert("RGBA")
    alpha = Image.new("L", img.size, 0)
    alpha.paste(255, (8, 8, 56, 56))
    img.putalpha(alpha)
    out = np.asarray(upscale_lanczos(img, 4))
    plain = np.asarray(rgb.resize((256, 256), Image.Resampling.LANCZOS))
    # Lanczos reads 3 source pixels either side: beyond that the opaque core is untouched.
    core = np.s_[(8 + 3) * 4 : (56 - 3) * 4, (8 + 3) * 4 : (56 - 3) * 4]
    assert np.array_equal(out[core][..., :3], plain[core])
    assert (out[core][..., 3] == 255).all()


def test_lanczos_rgb_and_l_match_pillow() -> None:
    for img in (smooth_scene(), smooth_scene().convert("L")):
        plain = img.resize((img.width * 2, img.height * 2), Image.Resampling.LANCZOS)
        assert np.array_equal(np.asarray(upscale_lanczos(img, 2)), np.asarray(plain))


# --- waifu2x -----------------------------------------------------------------------


def test_waifu2x_agrees_with_bicubic_on_smooth_images(waifu2x: Upscaler) -> None:
    img = smooth_scene()
    bicubic = img.resize((img.width * 2, img.height * 2), Image.Resampling.BICUBIC)
    assert psnr(np.asarray(waifu2x.upscale(img, 2)), np.asarray(bicubic)) > 25


def test_waifu2x_restores_edges_better_than_bicubic(waifu2x: Upscaler) -> None:
    truth = text_scene()
    small = truth.resize((truth.width // 2, truth.height // 2), Image.Resampling.BOX)
    bicubic = small.resize(truth.size, Image.Resampling.BICUBIC)
    out = waifu2x.upscale(small, 2)
    # Measured: bicubic 18.9 dB, upconv7 27.1 dB, cunet 27.1 dB.
    truth_px = np.asarray(truth)
    assert psnr(np.asarray(out), truth_px) > psnr(np.asarray(bicubic), truth_px) + 5
    assert transition_pixels(out) < transition_pixels(bicubic) // 4


def test_waifu2x_alpha_keeps_coverage_and_is_crisper(waifu2x: Upscaler) -> None:
    img = Image.new("RGBA", (64, 48), (200, 200, 200, 0))
    img.putalpha(soft_mask())
    out = waifu2x.upscale(img, 4).getchannel("A")
    lanczos = img.getchannel("A").resize(out.size, Image.Resampling.LANCZOS)
    a, ref = np.asarray(out, float), np.asarray(lanczos, float)
    assert abs(a.sum() - ref.sum()) / ref.sum() < 0.02
    assert np.abs(a - ref).mean() < 6
    assert soft_pixels(a) < soft_pixels(ref)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_tiling_leaves_no_seams(model_home: Path, variant: str) -> None:
    img = smooth_scene((300, 300), seed=1)
    ImageDraw.Draw(img).text((20, 140), "tile borders at 100 and 200", fill=(0, 0, 0))
    tiled = Waifu2x(model_home, variant, tile=100, threads=2)
    assert tiled._tiles(300) == ([0, 100, 200], 100)
    a = np.asarray(tiled.upscale(img, 2), dtype=np.int16)
    b = np.asarray(Waifu2x(model_home, variant, tile=1024, threads=2).upscale(img, 2), np.int16)
    if variant == "upconv7":
        # Fully convolutional: tiles with enough context are exact.
        assert np.abs(a - b).max() <= 1
        return
    # cunet's squeeze-excitation pools over the tile, so values move a little...
    assert psnr(a, b) > 40
    # ...but no step appears at the tile borders (output columns/rows 200 and 400).
    for axis in (0, 1):
        jump_tiled = np.abs(np.diff(a, axis=axis)).mean(axis=(1 - axis, 2))
        jump_whole = np.abs(np.diff(b, axis=axis)).mean(axis=(1 - axis, 2))
        for border in (200, 400):
            assert jump_tiled[border - 1] - jump_whole[border - 1] < 0.5


# --- registry ----------------------------------------------------------------------


def test_registry_names() -> None:
    assert METHODS == ["lanczos", "waifu2x-cunet", "waifu2x-upconv7"]


def test_names_match_registry(upscaler: Upscaler) -> None:
    assert upscaler.name in UPSCALERS


def test_unknown_method_lists_valid_names(tmp_path: Path) -> None:
    with pytest.raises(UnknownModel) as info:
        get_upscaler("esrgan", tmp_path)
    assert info.value.details["valid"] == METHODS
    for name in METHODS:
        assert name in str(info.value)


def test_lanczos_needs_no_weights(tmp_path: Path) -> None:
    assert get_upscaler("lanczos", tmp_path).upscale(smooth_scene((5, 3)), 4).size == (20, 12)


@pytest.mark.parametrize("method", WAIFU2X)
def test_missing_weight_says_how_to_fetch(tmp_path: Path, method: str) -> None:
    with pytest.raises(WeightError, match="visionserve models fetch"):
        get_upscaler(method, tmp_path)


# --- large outputs -----------------------------------------------------------------

MAX_OUTPUT_PIXELS = LimitSettings().max_output_pixels


def test_output_size_check_is_inclusive_and_says_the_limit() -> None:
    assert check_output_size(100, 50, 2, 100 * 50 * 4) == 20_000
    with pytest.raises(PayloadTooLarge) as info:
        check_output_size(7999, 7999, 4, MAX_OUTPUT_PIXELS)
    err = info.value
    assert (err.status, err.code) == (413, "payload_too_large")  # cutout: image_too_large
    assert err.details["max_output_pixels"] == MAX_OUTPUT_PIXELS
    assert err.details["output_pixels"] == 31996 * 31996
    assert err.details["max_input_pixels_at_scale"] == MAX_OUTPUT_PIXELS // 16
    assert f"{MAX_OUTPUT_PIXELS} pixels" in err.message


@pytest.mark.parametrize("mode", ["RGBA", "RGB", "L"])
@pytest.mark.parametrize("scale", [2, 4])
@pytest.mark.parametrize("height", [9, 17, 100, 211])
def test_lanczos_strips_equal_one_resize(
    monkeypatch: pytest.MonkeyPatch, mode: str, scale: int, height: int
) -> None:
    # Noise with random alpha: any difference in rounding or pass order would show.
    rng = np.random.default_rng(height)
    img = Image.fromarray(rng.integers(0, 256, (height, 37, 4), dtype=np.uint8)).convert(mode)
    whole = np.asarray(upscale_lanczos(img, scale))
    monkeypatch.setattr(lanczos_module, "STRIP_PIXELS", 1)  # strips of the fewest rows
    assert np.array_equal(np.asarray(upscale_lanczos(img, scale)), whole)


async def test_pixel_budget_runs_large_work_alone_and_in_order() -> None:
    import asyncio

    budget = PixelBudget(100)
    log: list[str] = []

    async def work(name: str, pixels: int) -> None:
        async with budget.hold(pixels):
            log.append(f"+{name}")
            assert budget.in_flight <= max(budget.limit, pixels)
            await asyncio.sleep(0.01)
            log.append(f"-{name}")

    await asyncio.gather(
        work("a", 60), work("big", 500), work("b", 30), work("c", 30), work("d", 40)
    )
    # Over the budget on its own, "big" runs alone; "b" waits its turn behind it even
    # though it would have fitted beside "a"; "b" and "c" then share the budget.
    assert log == ["+a", "-a", "+big", "-big", "+b", "+c", "+d", "-b", "-c", "-d"]
    assert budget.in_flight == 0


def _rss() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


def _request_at_limit(
    upscaler: Upscaler, scale: int, side: tuple[int, int], *, noisy: bool = False
) -> None:
    """What a replica does for one request: upscale and encode in a worker thread (as
    ``asyncio.to_thread`` does), then trim.

    ``noisy`` gives a photo-like texture whose PNG is large (97 MB at 32 MP): the
    encoder's many small buffers are what glibc keeps in the worker thread's arena
    (+63 MB per 32 MP request measured without the trim).
    """

    def work() -> None:
        w, h = side
        if noisy:
            rng = np.random.default_rng(0)
            img = Image.fromarray(rng.integers(0, 256, (h, w, 4), dtype=np.uint8), "RGBA")
        else:
            img = Image.new("RGBA", side, (0, 0, 0, 0))
            ImageDraw.Draw(img).ellipse((8, 8, w - 8, h - 8), fill=(200, 40, 40, 255))
            img = img.filter(ImageFilter.GaussianBlur(2))  # a soft matte edge
        big = upscaler.upscale(img, scale)
        assert big.size == (w * scale, h * scale)
        encode_image(big, "png")

    _worker_threads().submit(work).result()
    release_memory()


@cache
def _worker_threads() -> ThreadPoolExecutor:
    """Long-lived threads, like the event loop's default executor in a replica."""
    return ThreadPoolExecutor(2)


@pytest.mark.slow
def test_memory_is_given_back_after_a_request_at_the_limit(tmp_path: Path) -> None:
    # The largest x4 the default limit allows: 1414x1414 -> 5656x5656 (32 MP, 128 MB RGBA).
    side = int((MAX_OUTPUT_PIXELS // 16) ** 0.5)
    assert side * side * 16 <= MAX_OUTPUT_PIXELS
    upscaler = get_upscaler("lanczos", tmp_path)
    _request_at_limit(upscaler, 4, (64, 64), noisy=True)  # it has served something before
    before = _rss()
    # Twice: the first request's large blocks are mapped and unmapped when freed; glibc
    # then raises its mmap threshold, and from the second on they come from its heap.
    for _ in range(2):
        _request_at_limit(upscaler, 4, (side, side), noisy=True)
    after = _rss()
    assert after < before * 1.10, f"RSS {before >> 20} MiB -> {after >> 20} MiB"


@pytest.mark.parametrize("method", WAIFU2X)
def test_waifu2x_gives_its_arena_back(model_home: Path, method: str) -> None:
    # Before shrinking, onnxruntime's arena kept what the largest tile grew it to:
    # +0.4 GB (upconv7) to +0.8 GB (cunet, two batch items) after one request, for good.
    # What stays now is a one-time ~16 MB (cunet's kernels for the tile shape).
    upscaler = get_upscaler(method, model_home, threads=2)
    _request_at_limit(upscaler, 2, (48, 48))  # warm: a tile smaller than the largest
    before = _rss()
    _request_at_limit(upscaler, 4, (256, 256))  # full-size tiles, both passes
    grown = _rss() - before
    assert grown < 32 * 2**20, f"RSS grew {grown >> 20} MiB"
