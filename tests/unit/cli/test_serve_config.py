"""serve_config.yaml must say what the code builds (serve build graphs.app:app)."""

from __future__ import annotations

import yaml

from cluster.serve_build import CONFIG, built_config


def test_committed_config_matches_serve_build() -> None:
    committed = yaml.safe_load(CONFIG.read_text())
    assert committed == built_config(), "serve_config.yaml drifted: run `make serve-build`"


def test_every_deployment_declares_resources_and_limits() -> None:
    (app,) = yaml.safe_load(CONFIG.read_text())["applications"]
    total_min_cpus = 0.0
    for d in app["deployments"]:
        assert d["ray_actor_options"]["num_cpus"] > 0, d["name"]
        assert d["max_queued_requests"] > 0, d["name"]
        scaling = d["autoscaling_config"]
        assert 1 <= scaling["min_replicas"] <= scaling["max_replicas"], d["name"]
        total_min_cpus += d["ray_actor_options"]["num_cpus"] * scaling["min_replicas"]
    assert total_min_cpus <= 2.0  # the whole cluster starts on a 2-core machine
