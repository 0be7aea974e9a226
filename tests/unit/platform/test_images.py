"""Safe image decoding: formats, corrupt files, decompression bombs, base64 input."""

from __future__ import annotations

import base64
import io
import struct
import time
import tracemalloc
import zlib

import pytest
from PIL import Image

from visionserve.errors import BadRequest, InvalidFormat, InvalidImage
from visionserve.platform.images import decode_base64, encode_image, open_image, sniff_format

MAX_PIXELS = 64_000_000


def scene(mode: str = "RGB", size: tuple[int, int] = (64, 48)) -> Image.Image:
    """A small image with structure, so lossy codecs keep something measurable."""
    img = Image.new(mode, size, (255, 0, 0, 255) if mode == "RGBA" else (255, 0, 0))
    img.paste((0, 0, 255) if mode == "RGB" else (0, 0, 255, 128), (16, 12, 48, 36))
    return img


def saved(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(width: int = 50_000, height: int = 50_000) -> bytes:
    """A valid PNG header that claims huge dimensions, with a tiny body."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    idat = zlib.compress(b"\x00" * 64)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
def test_round_trip(fmt: str) -> None:
    original = scene()
    data = encode_image(original, fmt)
    assert sniff_format(data) == fmt
    img = open_image(data, max_pixels=MAX_PIXELS)
    assert img.size == original.size
    # The blue square survives even lossy compression.
    r, _, b = img.convert("RGB").getpixel((32, 24))
    assert b > 200 and r < 60


def test_png_keeps_alpha() -> None:
    img = open_image(encode_image(scene("RGBA"), "png"), max_pixels=MAX_PIXELS)
    assert img.mode == "RGBA"
    assert img.getpixel((32, 24))[3] == 128


def test_jpeg_flattens_alpha_onto_white() -> None:
    transparent = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    img = open_image(encode_image(transparent, "jpeg"), max_pixels=MAX_PIXELS)
    assert min(img.getpixel((4, 4))) > 240


def test_gif_is_an_invalid_format() -> None:
    with pytest.raises(InvalidFormat) as exc_info:
        open_image(saved(scene(), "GIF"), max_pixels=MAX_PIXELS)
    assert exc_info.value.details == {"field": "image", "received": "image/gif"}
    assert exc_info.value.message == "Invalid image format. Supported: PNG, JPG, WEBP"
    assert exc_info.value.code == "invalid_format"


def test_allowed_formats_are_configurable() -> None:
    img = open_image(saved(scene(), "GIF"), allowed={"PNG", "GIF"}, max_pixels=MAX_PIXELS)
    assert img.size == (64, 48)
    with pytest.raises(InvalidFormat, match=r"Supported: PNG$"):
        open_image(saved(scene(), "JPEG"), allowed={"PNG"}, max_pixels=MAX_PIXELS)


@pytest.mark.parametrize(
    ("data", "received"),
    [
        (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>', "image/svg+xml"),
        (b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>', "image/svg+xml"),
        (b"just some text, not an image\n", "text/plain"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "application/pdf"),
        (b"\x00\x01\x02\x03 binary junk", "application/octet-stream"),
    ],
)
def test_non_images_are_invalid_formats(data: bytes, received: str) -> None:
    with pytest.raises(InvalidFormat) as exc_info:
        open_image(data, max_pixels=MAX_PIXELS)
    assert exc_info.value.details["received"] == received


def test_sniff_format() -> None:
    assert sniff_format(saved(scene(), "BMP")) == "bmp"
    assert sniff_format(saved(scene(), "TIFF")) == "tiff"
    assert sniff_format(b"\xef\xbb\xbf  <?xml version='1.0'?><root/>") == "xml"
    assert sniff_format("héllo wörld".encode()) == "text"
    assert sniff_format(b"") is None


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_truncated_image(fmt: str) -> None:
    data = saved(scene(size=(256, 256)), fmt)
    with pytest.raises(InvalidImage, match=r"truncated or corrupt|corrupt image header"):
        open_image(data[: len(data) // 2], max_pixels=MAX_PIXELS)


def test_header_only_png_is_invalid() -> None:
    with pytest.raises(InvalidImage):
        open_image(b"\x89PNG\r\n\x1a\n", max_pixels=MAX_PIXELS)


def test_zero_bytes() -> None:
    with pytest.raises(InvalidImage, match="empty"):
        open_image(b"", max_pixels=MAX_PIXELS)


def test_decompression_bomb_refused_from_the_header() -> None:
    data = bomb_png()
    assert len(data) < 200
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(InvalidImage) as exc_info:
            open_image(data, max_pixels=MAX_PIXELS)
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "50000x50000" in exc_info.value.message
    assert str(MAX_PIXELS) in exc_info.value.message
    assert exc_info.value.details["width"] == 50_000
    # Decoding would need 7.5 GB; refusing from the header needs next to nothing.
    assert peak < 1_000_000
    assert elapsed < 1.0


def test_configured_limit_applies_below_pillows_own() -> None:
    data = encode_image(scene(size=(100, 100)), "png")
    with pytest.raises(InvalidImage, match="100x100"):
        open_image(data, max_pixels=9_999)
    assert open_image(data, max_pixels=10_000).size == (100, 100)


def test_zero_size_png() -> None:
    data = bomb_png(0, 10)
    with pytest.raises(InvalidImage):
        open_image(data, max_pixels=MAX_PIXELS)


def test_decode_base64() -> None:
    raw = encode_image(scene(), "png")
    encoded = base64.b64encode(raw).decode()
    assert decode_base64(encoded) == raw
    assert decode_base64(f"data:image/png;base64,{encoded}") == raw
    assert decode_base64(f"DATA:image/png;BASE64,{encoded}") == raw
    wrapped = "\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76))
    assert decode_base64(f"  {wrapped}\n") == raw
    assert decode_base64(encoded.rstrip("=")) == raw


@pytest.mark.parametrize(
    "value",
    ["not base64!!", "aGVsbG8*d29ybGQ=", "a", "data:image/png,rawbytes", "data:image/png;base64"],
)
def test_bad_base64(value: str) -> None:
    with pytest.raises(BadRequest) as exc_info:
        decode_base64(value, field="image_base64")
    assert exc_info.value.code == "invalid_base64"
    assert exc_info.value.details == {"field": "image_base64"}
    assert "image_base64" in exc_info.value.message


@pytest.mark.parametrize("value", ["", "   ", "data:image/png;base64,"])
def test_empty_base64(value: str) -> None:
    with pytest.raises(InvalidImage, match="empty"):
        decode_base64(value)
