"""The app builder binds bg-removal and upscale once and hands them to cutout and edit."""

from __future__ import annotations

from typing import Any

from graphs.app import build_app


def init_args(bound: Any) -> tuple[Any, ...]:
    """What a bound deployment will be constructed with (binding starts no Ray)."""
    node = getattr(bound, "_bound_deployment", bound)
    return tuple(node.init_args)


def test_cutout_and_edit_share_one_remover_and_one_upscaler() -> None:
    _, handles = init_args(build_app({"surfaces": ["cutout", "edit"]}))
    removers, _, cutout_upscaler, _ = init_args(handles["cutout-graph"])
    _, edit_remover, edit_upscaler, method = init_args(handles["edit"])
    assert edit_remover is removers["local_u2netp"]
    assert edit_upscaler is cutout_upscaler is handles["upscale"]
    assert method in {"waifu2x-upconv7", "lanczos"}


def test_edit_alone_still_gets_a_bg_removal_deployment() -> None:
    _, handles = init_args(build_app({"surfaces": ["edit"]}))
    assert "cutout-graph" not in handles
    snapshot, remover, _, _ = init_args(handles["edit"])
    assert remover._bound_deployment.name == "bg-u2netp"
    assert snapshot["edit"]["bg_model"] == "u2netp"
