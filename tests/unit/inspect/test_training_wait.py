"""A training that cannot be scheduled says why instead of sitting at 0 % in silence."""

from __future__ import annotations

from deployments.anomaly_training import resource_shortfall


def test_fits_when_the_cluster_has_room() -> None:
    assert resource_shortfall({"CPU": 0.1, "GPU": 0}, {"CPU": 0.2}) is None
    assert resource_shortfall({"CPU": 0.2, "GPU": 0}, {"CPU": 0.2}) is None


def test_names_each_missing_resource_and_what_is_free() -> None:
    reason = resource_shortfall({"CPU": 0.5, "GPU": 1}, {"CPU": 0.2})
    assert reason is not None
    assert "0.5 CPU (0.2 free)" in reason and "1 GPU (0 free)" in reason
    assert "scales down" in reason
