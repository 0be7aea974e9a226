"""Safe image decoding shared by every surface.

Client images are hostile input: wrong formats, truncated files and
decompression bombs (a few hundred bytes that claim 50000x50000 pixels). Every
surface decodes through :func:`open_image`, which identifies the format by its
magic bytes, refuses oversized dimensions from the header alone, and turns every
decoder failure into a 400-class :class:`~visionserve.errors.InvalidImage`.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import io
import struct
from collections.abc import Iterable
from typing import TYPE_CHECKING, Literal

from PIL import Image, ImageFile

from visionserve.errors import BadRequest, InvalidFormat, InvalidImage, PayloadTooLarge

if TYPE_CHECKING:
    from visionserve.settings import Settings

#: MIME type of each name :func:`sniff_format` returns.
MIME_TYPES = {
    "png": "image/png",
    "jpeg": "image/jpeg",
    "webp": "image/webp",
    "gif": "image/gif",
    "tiff": "image/tiff",
    "bmp": "image/bmp",
    "pdf": "application/pdf",
    "svg": "image/svg+xml",
    "xml": "application/xml",
    "text": "text/plain",
}
DEFAULT_FORMATS = frozenset({"PNG", "JPEG", "WEBP"})

# Sniffed name -> Pillow format name, for the raster formats Pillow may decode.
_PILLOW_NAMES = {
    "png": "PNG",
    "jpeg": "JPEG",
    "webp": "WEBP",
    "gif": "GIF",
    "tiff": "TIFF",
    "bmp": "BMP",
}
# Order and spelling used when listing supported formats to clients.
_DISPLAY = {"PNG": "PNG", "JPEG": "JPG", "WEBP": "WEBP", "GIF": "GIF", "TIFF": "TIFF", "BMP": "BMP"}
# What a broken file can make Pillow's decoders raise.
_DECODE_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    IndexError,
    TypeError,
    struct.error,
    Image.DecompressionBombError,
    Image.DecompressionBombWarning,  # raised only where warnings are errors
)


def decode_base64(data: str, *, field: str = "image") -> bytes:
    """Decode a base64 image field, with or without a ``data:<mime>;base64,`` prefix.

    Whitespace (line breaks from MIME encoders) is ignored and missing ``=``
    padding is restored; anything outside the standard alphabet is refused.

    Args:
        data: The field's value.
        field: The field name, for error details.

    Returns:
        The decoded bytes.

    Raises:
        BadRequest: Not valid base64 (code ``invalid_base64``).
        InvalidImage: The field is empty.
    """
    text = data.strip()
    if text[:5].lower() == "data:":
        header, sep, text = text.partition(",")
        if not sep or not header.lower().endswith(";base64"):
            raise BadRequest(
                f"{field}: a data URI must be base64-encoded (data:<mime>;base64,...)",
                code="invalid_base64",
                details={"field": field},
            )
    text = "".join(text.split())
    if not text:
        raise InvalidImage(f"{field} is empty", details={"field": field})
    if len(text) % 4:
        text += "=" * (-len(text) % 4)
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadRequest(
            f"{field} is not valid base64: {exc}", code="invalid_base64", details={"field": field}
        ) from None
    if not raw:
        raise InvalidImage(f"{field} is empty", details={"field": field})
    return raw


def sniff_format(data: bytes) -> str | None:
    """Identify a file by its magic bytes.

    Args:
        data: The file's bytes (the first kilobyte is enough).

    Returns:
        One of the keys of :data:`MIME_TYPES`, or None when unknown.
    """
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    if data.startswith(b"BM"):
        return "bmp"
    if data.startswith(b"%PDF-"):
        return "pdf"
    head = data[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith(b"<") and b"<svg" in head:
        return "svg"
    if head.startswith(b"<?xml"):
        return "xml"
    if _looks_like_text(data[:512]):
        return "text"
    return None


def open_image(
    data: bytes, *, allowed: Iterable[str] = DEFAULT_FORMATS, max_pixels: int, load: bool = True
) -> Image.Image:
    """Decode an image safely.

    The format is taken from the magic bytes, and the dimensions from the header
    before any pixel is decoded, so a decompression bomb is refused without
    allocating its pixels.

    Args:
        data: The encoded image.
        allowed: Pillow format names accepted (``"PNG"``, ``"JPEG"``, ``"WEBP"``, ...).
        max_pixels: The largest ``width * height`` accepted.
        load: Decode the pixels now; with False the caller decodes (``load()``) the
            frame it wants, and a corrupt one raises Pillow's error there.

    Returns:
        The image, loaded unless ``load`` is False.

    Raises:
        InvalidImage: Empty, zero or oversized dimensions, truncated or corrupt.
        InvalidFormat: Not one of the ``allowed`` formats; ``details["received"]``
            is the MIME type found.
    """
    if not data:
        raise InvalidImage("image is empty", details={"field": "image"})
    accepted = {name.upper() for name in allowed}
    sniffed = sniff_format(data)
    pillow_name = _PILLOW_NAMES.get(sniffed or "")
    if pillow_name is None or pillow_name not in accepted:
        supported = ", ".join(_DISPLAY.get(n, n) for n in _sorted_formats(accepted))
        raise InvalidFormat(
            f"Invalid image format. Supported: {supported}",
            details={
                "field": "image",
                "received": MIME_TYPES.get(sniffed or "", "application/octet-stream"),
            },
        )

    try:
        img = _read_header(data, pillow_name)
    except _DECODE_ERRORS as exc:
        raise InvalidImage(f"corrupt image header: {exc}", details={"field": "image"}) from None
    width, height = img.size
    if width <= 0 or height <= 0:
        raise InvalidImage(f"image has zero size ({width}x{height})", details={"field": "image"})
    if width * height > max_pixels:
        raise InvalidImage(
            f"image is {width}x{height} ({width * height} pixels); the limit is "
            f"{max_pixels} pixels",
            details={"field": "image", "width": width, "height": height, "max_pixels": max_pixels},
        )
    if not load:
        return img
    try:
        img.load()
    except _DECODE_ERRORS as exc:
        raise InvalidImage(
            f"truncated or corrupt image: {exc}", details={"field": "image"}
        ) from None
    return img


def load_image(
    data: bytes,
    settings: Settings,
    *,
    allowed: Iterable[str] = DEFAULT_FORMATS,
    what: str = "Image",
) -> Image.Image:
    """A request's image under the settings' limits: its size in bytes, then a safe decode.

    The one way services turn uploaded bytes into pixels (see :func:`open_image`).

    Raises:
        PayloadTooLarge: Over ``limits.max_download_bytes``.
        InvalidFormat, InvalidImage: Not an ``allowed`` image, or a corrupt one.
    """
    limit = settings.limits.max_download_bytes
    if len(data) > limit:
        raise PayloadTooLarge(f"{what} too large: the limit is {limit} bytes")
    return open_image(data, allowed=allowed, max_pixels=settings.limits.max_image_pixels)


def encode_image(
    img: Image.Image, fmt: Literal["png", "webp", "jpeg"] = "png", *, quality: int = 90
) -> bytes:
    """Encode an image, converting its mode where the format requires it.

    Args:
        img: The image.
        fmt: ``"png"``, ``"webp"`` or ``"jpeg"``.
        quality: Quality for the lossy formats (1-100).

    Returns:
        The encoded bytes.

    Raises:
        ValueError: An unknown format.
    """
    has_alpha = img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info
    buf = io.BytesIO()
    if fmt == "png":
        img.save(buf, "PNG")
    elif fmt == "webp":
        if img.mode not in ("RGB", "RGBA"):
            img = img.convert("RGBA" if has_alpha else "RGB")
        img.save(buf, "WEBP", quality=quality)
    elif fmt == "jpeg":
        if has_alpha:
            # JPEG has no alpha: flatten onto white rather than let transparent
            # pixels show whatever colour they happen to hold.
            rgba = img.convert("RGBA")
            flat = Image.new("RGB", rgba.size, (255, 255, 255))
            flat.paste(rgba, mask=rgba.getchannel("A"))
            img = flat
        elif img.mode not in ("RGB", "L"):
            img = img.convert("RGB")
        img.save(buf, "JPEG", quality=quality)
    else:
        raise ValueError(f"unknown image format {fmt!r}; use png, webp or jpeg")
    return buf.getvalue()


def _read_header(data: bytes, pillow_name: str) -> ImageFile.ImageFile:
    # Call the format's opener directly rather than Image.open: Image.open applies
    # Pillow's process-global MAX_IMAGE_PIXELS (a warning, or an error above twice
    # that) before we can apply our own configured limit with a useful message.
    # The opener reads the header only; pixels are decoded by load().
    Image.preinit()
    if pillow_name not in Image.OPEN:
        Image.init()
    if pillow_name not in Image.OPEN:
        raise OSError(f"this server's Pillow cannot decode {pillow_name}")
    factory, _accept = Image.OPEN[pillow_name]
    return factory(io.BytesIO(data), "")


def _sorted_formats(names: set[str]) -> list[str]:
    order = list(_DISPLAY)
    return sorted(names, key=lambda n: (order.index(n) if n in order else len(order), n))


def _looks_like_text(head: bytes) -> bool:
    if not head:
        return False
    try:
        # Incremental and not final: a multi-byte character cut at the end of
        # the sample is not an error.
        text = codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return False
    return all(ch.isprintable() or ch in "\t\r\n\f" for ch in text)
