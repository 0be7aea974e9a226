"""Prompts with the plans they should give: the edit planner's accuracy set.

Each entry is ``(prompt, steps, unsupported)``: ``steps`` lists ``(op, params)`` in order,
where ``params`` holds the values the prompt states (the rest must be the operation's
defaults, so the whole plan is compared); ``unsupported`` counts the clauses no local
operation covers. Shared by tests/unit/edit and bench/edit.py.
"""

from __future__ import annotations

from typing import Any

Expected = tuple[str, list[tuple[str, dict[str, Any]]], int]

PROMPTS: list[Expected] = [
    # One operation, plain wording.
    ("Remove the background", [("remove_background", {})], 0),
    ("make the background transparent", [("remove_background", {})], 0),
    ("cut out the product", [("remove_background", {})], 0),
    ("Make it 20% brighter", [("brightness", {"amount": 0.2})], 0),
    ("make it darker", [("brightness", {"amount": -0.2})], 0),
    ("brighten it slightly", [("brightness", {"amount": 0.1})], 0),
    ("make it much brighter", [("brightness", {"amount": 0.4})], 0),
    ("reduce the brightness by 30%", [("brightness", {"amount": -0.3})], 0),
    ("increase the contrast", [("contrast", {"amount": 0.2})], 0),
    ("lower the contrast a bit", [("contrast", {"amount": -0.1})], 0),
    ("make the colours more vivid", [("saturation", {"amount": 0.2})], 0),
    ("desaturate it by 50%", [("saturation", {"amount": -0.5})], 0),
    ("sharpen the image", [("sharpen", {"amount": 1.0})], 0),
    ("blur the image a lot", [("blur", {"radius": 6.0})], 0),
    ("blur it by 5 pixels", [("blur", {"radius": 5.0})], 0),
    ("remove the noise", [("denoise", {"strength": 7.0})], 0),
    ("auto enhance", [("auto_enhance", {})], 0),
    ("fix the white balance", [("auto_enhance", {})], 0),
    ("make it black and white", [("grayscale", {})], 0),
    ("convert to grayscale", [("grayscale", {})], 0),
    ("give it a sepia tone", [("sepia", {})], 0),
    ("invert the colours", [("invert", {})], 0),
    ("rotate 90 degrees", [("rotate", {"degrees": 90.0})], 0),
    ("rotate it 45° counter-clockwise", [("rotate", {"degrees": -45.0})], 0),
    ("turn it upside down", [("rotate", {"degrees": 180.0})], 0),
    ("flip horizontally", [("flip", {"direction": "horizontal"})], 0),
    ("mirror the image", [("flip", {"direction": "horizontal"})], 0),
    ("flip it vertically", [("flip", {"direction": "vertical"})], 0),
    ("crop to the subject", [("crop", {"mode": "subject"})], 0),
    ("crop it square", [("crop", {"mode": "aspect", "aspect": (1, 1)})], 0),
    ("crop to 16:9", [("crop", {"mode": "aspect", "aspect": (16, 9)})], 0),
    ("trim 10% off the edges", [("crop", {"mode": "margin", "margin": 0.1})], 0),
    ("resize to 1024x768", [("resize", {"width": 1024, "height": 768})], 0),
    ("make it 800 pixels wide", [("resize", {"width": 800})], 0),
    ("scale it down by half", [("resize", {"factor": 0.5})], 0),
    ("upscale the image", [("upscale", {"factor": 2})], 0),
    ("upscale 4x", [("upscale", {"factor": 4})], 0),
    ("make it twice as big", [("upscale", {"factor": 2})], 0),
    ("add a 40px white border", [("pad", {"pixels": 40, "color": "white"})], 0),
    ("pad it to a square with black", [("pad", {"aspect": (1, 1), "color": "black"})], 0),
    ("save as jpeg", [("format", {"format": "jpeg"})], 0),
    ("convert it to webp", [("format", {"format": "webp"})], 0),
    ("make the background white", [("replace_background", {"color": "white"})], 0),
    ("put it on a light blue background", [("replace_background", {"color": "lightblue"})], 0),
    ("blur the background", [("blur_background", {"radius": 12.0})], 0),
    ("make it look like a painting", [("style", {"style": 0, "strength": 1.0})], 0),
    ("apply style 7", [("style", {"style": 7, "strength": 1.0})], 0),
    ("blur the faces", [("faces", {"mode": "blur"})], 0),
    ("pixelate everyone's face", [("faces", {"mode": "pixelate"})], 0),
    ("remove the text", [("remove_text", {})], 0),
    ("erase the watermark", [("remove_text", {})], 0),
    (
        'add a watermark saying "ACME Corp" in the top left',
        [("watermark", {"text": "ACME Corp", "position": "top-left"})],
        0,
    ),
    # Paraphrases.
    ("get rid of the backdrop please", [("remove_background", {})], 0),
    ("can you make the picture less dark", [("brightness", {"amount": 0.2})], 0),
    ("I'd like more vibrant colours", [("saturation", {"amount": 0.2})], 0),
    ("the photo is grainy, clean it up", [("denoise", {"strength": 7.0})], 0),
    ("make this monochrome", [("grayscale", {})], 0),
    ("give it an old-fashioned look", [("sepia", {})], 0),
    ("hide the people's faces for privacy", [("faces", {"mode": "blur"})], 0),
    ("anonymize the people", [("faces", {"mode": "blur"})], 0),
    ("turn it into a work of art", [("style", {"style": 0, "strength": 1.0})], 0),
    ("increase the resolution", [("upscale", {"factor": 2})], 0),
    ("make the image crisper", [("sharpen", {"amount": 1.0})], 0),
    ("make the colours pop", [("contrast", {"amount": 0.2})], 0),
    ("improve the lighting", [("auto_enhance", {})], 0),
    ("delete the caption at the bottom", [("remove_text", {})], 0),
    ("show it in reversed colours", [("invert", {})], 0),
    ("enhance the resolution", [("upscale", {"factor": 2})], 0),
    ("erase the date from the corner", [("remove_text", {})], 0),
    # Paraphrases no rule covers: matched by MiniLM similarity alone.
    ("lose everything behind the subject", [("remove_background", {})], 0),
    ("make it higher quality", [("auto_enhance", {})], 0),
    ("make the photo look nicer", [("auto_enhance", {})], 0),
    ("the edges need trimming", [("crop", {"mode": "margin", "margin": 0.1})], 0),
    ("only keep the main object", [("remove_background", {})], 0),
    # Several steps.
    (
        "make it 20% brighter, then remove the background",
        [("brightness", {"amount": 0.2}), ("remove_background", {})],
        0,
    ),
    (
        "remove the background and upscale it 4x",
        [("remove_background", {}), ("upscale", {"factor": 4})],
        0,
    ),
    (
        "Convert to black and white, increase contrast and save as JPG",
        [("grayscale", {}), ("contrast", {"amount": 0.2}), ("format", {"format": "jpeg"})],
        0,
    ),
    (
        "rotate 90 degrees clockwise; then crop it square",
        [("rotate", {"degrees": 90.0}), ("crop", {"mode": "aspect", "aspect": (1, 1)})],
        0,
    ),
    (
        "blur the faces and add a watermark saying 'confidential'",
        [("faces", {"mode": "blur"}), ("watermark", {"text": "confidential"})],
        0,
    ),
    (
        "make the background white, resize to 1000x1000 and export as png",
        [
            ("replace_background", {"color": "white"}),
            ("resize", {"width": 1000, "height": 1000}),
            ("format", {"format": "png"}),
        ],
        0,
    ),
    (
        "denoise it, sharpen slightly, then make the colours a little more vivid",
        [
            ("denoise", {"strength": 7.0}),
            ("sharpen", {"amount": 0.5}),
            ("saturation", {"amount": 0.1}),
        ],
        0,
    ),
    (
        "flip it horizontally and make it sepia",
        [("flip", {"direction": "horizontal"}), ("sepia", {})],
        0,
    ),
    # A second batch, written before the planner saw it: as first measured, rules+MiniLM
    # planned 19 of these 24 exactly (rules alone 18); the rules were then widened
    # (quoted watermark text, "behind it", colour cast, painterly) and a temperature
    # operation added. "fix that" (after "too dark") still comes out as auto_enhance.
    ("could you lighten this up by about 15 percent", [("brightness", {"amount": 0.15})], 0),
    ("knock out the background so only the shoe remains", [("remove_background", {})], 0),
    (
        "Make the whole thing grayscale then bump the contrast",
        [("grayscale", {}), ("contrast", {"amount": 0.2})],
        0,
    ),
    ("give me a 2x larger version", [("upscale", {"factor": 2})], 0),
    ("swap the background for solid black", [("replace_background", {"color": "black"})], 0),
    ("turn it 180 degrees", [("rotate", {"degrees": 180.0})], 0),
    ("mirror it left to right", [("flip", {"direction": "horizontal"})], 0),
    ("make it a square crop", [("crop", {"mode": "aspect", "aspect": (1, 1)})], 0),
    ("scale to 1920x1080", [("resize", {"width": 1920, "height": 1080})], 0),
    ("tone down the saturation", [("saturation", {"amount": -0.2})], 0),
    ("smooth out the noise a little", [("denoise", {"strength": 3.5})], 0),
    ("anonymise faces by pixelation", [("faces", {"mode": "pixelate"})], 0),
    ("get rid of the timestamp in the corner", [("remove_text", {})], 0),
    ("put 'DRAFT' across the middle", [("watermark", {"text": "DRAFT", "position": "center"})], 0),
    ("give it a painterly look", [("style", {"style": 0, "strength": 1.0})], 0),
    ("export it as a PNG file", [("format", {"format": "png"})], 0),
    (
        "make the subject pop by blurring what's behind it",
        [("blur_background", {"radius": 12.0})],
        0,
    ),
    (
        "it's too dark, fix that and sharpen it",
        [("brightness", {"amount": 0.2}), ("sharpen", {"amount": 1.0})],
        0,
    ),
    ("make the colors warmer and add a dragon", [("temperature", {"amount": 0.2})], 1),
    ("negative image please", [("invert", {})], 0),
    ("shrink it to a thumbnail", [("resize", {"factor": 0.5})], 0),
    ("correct the colour cast", [("auto_enhance", {})], 0),
    ("make it look like an old sepia photograph", [("sepia", {})], 0),
    ("add some padding", [("pad", {"pixels": 20})], 0),
    # What no local operation does: reported, never guessed.
    ("add a dog next to the person", [], 1),
    ("make it 10% brighter and add a hat on his head", [("brightness", {"amount": 0.1})], 1),
    ("replace the sky with a sunset", [], 1),
    ("make him smile", [], 1),
]
