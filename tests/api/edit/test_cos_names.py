"""Result names and prefixes: whatever a client sends as filename, keys stay in their folder."""

from __future__ import annotations

import pytest

from visionserve.surfaces.edit.cos import is_image_name, join_prefix, result_name


@pytest.mark.parametrize(
    ("filename", "fmt", "expected"),
    [
        ("product.png", "png", "product_modified.png"),
        ("burger.jpeg", "jpeg", "burger_modified.jpg"),
        ("photo.JPG", "webp", "photo_modified.webp"),
        ("../../etc/passwd", "png", "passwd_modified.png"),
        ("C:\\Users\\me\\shot 1.png", "png", "shot_1_modified.png"),
        ("", "png", "image_modified.png"),
        (None, "png", "image_modified.png"),
        ("...", "png", "image_modified.png"),
        ("a" * 300 + ".png", "png", "a" * 100 + "_modified.png"),
        ("café/ünïcode.png", "png", "ünïcode_modified.png"),
    ],
)
def test_result_names_are_safe_keys(filename, fmt, expected) -> None:  # type: ignore[no-untyped-def]
    assert result_name(filename, fmt) == expected


def test_prefixes_and_image_names() -> None:
    assert join_prefix("results/batch", "job") == "results/batch/job/"
    assert join_prefix("/results/batch/", "job") == "results/batch/job/"
    assert join_prefix("", "job") == "job/" and join_prefix("", "") == ""
    assert is_image_name("a/b.JPEG") and is_image_name("x.webp")
    assert not is_image_name("notes.txt") and not is_image_name("png")
