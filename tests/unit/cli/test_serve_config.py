"""serve_config.yaml and the cluster profiles must say what the code builds (serve build)."""

from __future__ import annotations

import yaml

from cluster.profiles import GPU_CONFIG, RAYSERVICE
from cluster.serve_build import CONFIG, REPO, generated


def test_committed_configs_match_serve_build() -> None:
    for path, text in generated().items():
        name = path.relative_to(REPO)
        assert path.read_text() == text, f"{name} drifted from the code: run `make serve-build`"


def test_rayservice_embeds_the_cluster_profile_of_serve_config() -> None:
    local = yaml.safe_load(CONFIG.read_text())
    service = yaml.safe_load(RAYSERVICE.read_text())
    embedded = yaml.safe_load(service["spec"]["serveConfigV2"])
    (app,), (local_app,) = embedded["applications"], local["applications"]
    assert [d["name"] for d in app["deployments"]] == [d["name"] for d in local_app["deployments"]]
    assert app["import_path"] == local_app["import_path"] == "graphs.app:build_app"
    assert app["args"]["surfaces"] == local_app["args"]["surfaces"]
    assert app["args"]["settings"] == {"blobs": {"backend": "s3"}}  # the rest from the Secret
    cluster = service["spec"]["rayClusterConfig"]
    pods = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    for pod in pods:
        (container,) = pod["template"]["spec"]["containers"]
        assert container["envFrom"] == [{"secretRef": {"name": "visionserve"}}]
    workers = {g["groupName"]: g for g in cluster["workerGroupSpecs"]}
    assert (
        workers["gpu"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]
        == "1"
    )
    assert all(g["minReplicas"] <= g["replicas"] <= g["maxReplicas"] for g in workers.values())
    assert cluster["enableInTreeAutoscaling"] is True
    ingress = next(d for d in app["deployments"] if d["name"] == "ingress")
    assert ingress["autoscaling_config"]["min_replicas"] == 2


def test_gpu_profile_puts_the_onnx_models_on_gpus() -> None:
    (app,) = yaml.safe_load(GPU_CONFIG.read_text())["applications"]
    gpus = {d["name"]: d["ray_actor_options"].get("num_gpus", 0) for d in app["deployments"]}
    assert gpus["bg-u2netp"] == gpus["upscale"] == gpus["layout"] == 0.5
    assert gpus["anomaly"] == gpus["ingress"] == 0  # OpenVINO on CPU; the request path
    assert app["args"]["settings"]["inspect"]["train_num_gpus"] == 1


def test_every_deployment_declares_resources_and_limits() -> None:
    (app,) = yaml.safe_load(CONFIG.read_text())["applications"]
    total_min_cpus = largest = 0.0
    for d in app["deployments"]:
        assert d["ray_actor_options"]["num_cpus"] > 0, d["name"]
        assert d["max_queued_requests"] > 0, d["name"]
        scaling = d["autoscaling_config"]
        assert 1 <= scaling["min_replicas"] <= scaling["max_replicas"], d["name"]
        total_min_cpus += d["ray_actor_options"]["num_cpus"] * scaling["min_replicas"]
        largest = max(largest, d["ray_actor_options"]["num_cpus"])
    # The whole cluster starts on a 2-core machine, and autoscaling can happen there:
    # two more replicas of the largest reservation still fit (a busy bg-u2netp scaling
    # out while another model does; bench/autoscale.py measures the first).
    assert total_min_cpus + 2 * largest <= 2.0, total_min_cpus


def test_io_bound_deployments_reserve_next_to_nothing() -> None:
    (app,) = yaml.safe_load(CONFIG.read_text())["applications"]
    cpus = {d["name"]: d["ray_actor_options"]["num_cpus"] for d in app["deployments"]}
    for name in ("ingress", "job-worker", "cutout-graph", "documents-graph", "extract-graph"):
        assert cpus[name] <= 0.01, name  # they await other deployments
    assert cpus["bg-u2netp"] == cpus["layout"] == 0.15  # one inference thread each
