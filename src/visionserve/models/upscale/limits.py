"""Bounds on work whose output is larger than its input, and giving memory back after it.

An upscale's output is ``scale**2`` times its input: a 249 KB PNG of 7999x7999 pixels
asks x4 for a billion RGBA pixels (4 GB per buffer). :func:`check_output_size` refuses
such a request from the sizes alone, before any pixel is touched.

glibc keeps the memory a large request freed in its arenas, so a replica that served
one can hold gigabytes for good; :func:`release_memory` hands it back to the system.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import cache

from visionserve.errors import PayloadTooLarge

#: Outputs at least this large are followed by :func:`release_memory` (16 MB of RGBA).
RELEASE_AFTER_PIXELS = 4_000_000


def check_output_size(width: int, height: int, scale: int, max_pixels: int) -> int:
    """Refuse an output of ``(width * scale) x (height * scale)`` over ``max_pixels``.

    Args:
        width: Input width in pixels.
        height: Input height in pixels.
        scale: The integer factor each side grows by.
        max_pixels: The largest output ``width * height`` allowed
            (``settings.limits.max_output_pixels``).

    Returns:
        The number of output pixels.

    Raises:
        PayloadTooLarge: Over the limit (code ``payload_too_large``, which the cutout
            contract calls ``image_too_large``); ``details`` holds the limit, the
            output size and the largest input that the scale allows.
    """
    out_w, out_h = width * scale, height * scale
    pixels = out_w * out_h
    if pixels > max_pixels:
        raise PayloadTooLarge(
            f"Output would be {out_w}x{out_h} ({pixels} pixels); the limit is {max_pixels} "
            f"pixels. Send a smaller image or a smaller scale factor",
            details={
                "max_output_pixels": max_pixels,
                "output_width": out_w,
                "output_height": out_h,
                "output_pixels": pixels,
                "scale_factor": scale,
                "max_input_pixels_at_scale": max_pixels // (scale * scale),
            },
        )
    return pixels


@cache
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # musl, macOS: no malloc_trim
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim  # type: ignore[no-any-return]


def release_memory() -> bool:
    """Return the heap memory glibc holds free to the system (``malloc_trim(0)``).

    Trims every arena, the per-thread ones that ``asyncio.to_thread`` work allocates
    in included. Takes a few milliseconds; call it after a large request, not per tile.

    Returns:
        True when memory was given back; False when none was, or where the C library
        has no ``malloc_trim``.
    """
    trim = _malloc_trim()
    if trim is None:
        return False
    return bool(trim(0))


class PixelBudget:
    """Admits work while the output pixels in flight stay within a budget.

    A replica that takes 16 requests at once would otherwise hold 16 outputs at the
    limit together. Work over the budget on its own still runs, alone. Admission is
    first come, first served, so a large request is not starved by a stream of small
    ones.

    Args:
        limit: Output pixels that may be in flight together.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight = 0
        self._turn = asyncio.Lock()  # FIFO: whoever holds it is next to be admitted
        self._changed = asyncio.Condition()

    @asynccontextmanager
    async def hold(self, pixels: int) -> AsyncIterator[None]:
        """Wait until ``pixels`` fit beside the work in flight, and hold them meanwhile."""
        async with self._turn, self._changed:
            await self._changed.wait_for(
                lambda: self.in_flight == 0 or self.in_flight + pixels <= self.limit
            )
            self.in_flight += pixels
        try:
            yield
        finally:
            async with self._changed:
                self.in_flight -= pixels
                self._changed.notify_all()
