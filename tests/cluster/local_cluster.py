"""A real multi-node Ray cluster on loopback, started with ``ray start`` as a user would.

Each node is a ``ray start --block`` process in a session of its own, so that killing
that session (SIGKILL) takes the node's raylet and every worker it started with it: a
node lost as a machine is lost. Ports are free ones, so the cluster runs beside any
other Ray on the machine, and token auth is on, as on a ``make run`` cluster.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Node:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    metrics_port: int

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the whole node: the ``ray start`` process, its raylet and its workers."""
        self.signal(signal.SIGKILL)
        self.proc.wait(10)

    def signal(self, sig: int) -> None:
        # Every process of the node's session: some of Ray's take a process group of their own.
        for pid in self.processes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def processes(self) -> list[int]:
        out = subprocess.run(
            ["pgrep", "-s", str(self.proc.pid)], capture_output=True, text=True, check=False
        )
        return [int(p) for p in out.stdout.split()]


class NodeStartFailed(AssertionError):
    def __init__(self, node: Node, message: str) -> None:
        super().__init__(message)
        self.node = node


@dataclass
class LocalCluster:
    """``ray start --head`` plus worker nodes, their env and the dashboard's address."""

    work: Path
    env: dict[str, str]
    gcs_port: int = field(default_factory=free_port)
    dashboard_port: int = field(default_factory=free_port)
    nodes: list[Node] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    @property
    def dashboard(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    @property
    def token(self) -> str:
        return self.env["RAY_AUTH_TOKEN"]

    def start_node(self, name: str, *, num_cpus: float, resources: dict[str, float]) -> Node:
        """Start a node and wait until the cluster counts it; once more if it timed out.

        Under load a node's first registration with the GCS can time out ("The current
        node timed out during startup"): that start is stopped and made again.
        """
        try:
            return self._start_node(name, num_cpus=num_cpus, resources=resources)
        except NodeStartFailed as exc:
            exc.node.signal(signal.SIGKILL)
            self.nodes.remove(exc.node)
            return self._start_node(name, num_cpus=num_cpus, resources=resources)

    def _start_node(self, name: str, *, num_cpus: float, resources: dict[str, float]) -> Node:
        head = not self.nodes
        metrics_port = free_port()
        args = [
            str(BIN / "ray"),
            "start",
            "--block",
            "--node-ip-address=127.0.0.1",
            f"--num-cpus={num_cpus:g}",
            f"--resources={json.dumps(resources)}",
            f"--metrics-export-port={metrics_port}",
            f"--dashboard-agent-listen-port={free_port()}",
            f"--dashboard-agent-grpc-port={free_port()}",
            f"--runtime-env-agent-port={free_port()}",
            "--disable-usage-stats",
        ]
        if head:
            args += [
                "--head",
                f"--port={self.gcs_port}",
                "--include-dashboard=true",
                "--dashboard-host=127.0.0.1",
                f"--dashboard-port={self.dashboard_port}",
                f"--ray-client-server-port={free_port()}",
                f"--temp-dir={self.work / 'ray'}",
            ]
        else:
            args.append(f"--address={self.address}")
        log = self.work / f"{name}.log"
        proc = subprocess.Popen(
            args,
            env=self.env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,  # the node's processes share this session id
        )
        node = Node(name, proc, log, metrics_port)
        self.nodes.append(node)
        self.wait_for_nodes(len(self.nodes))
        return node

    def run(self, *args: str, timeout: float = 600, check: bool = True) -> str:
        """A Ray CLI command (``serve``, ``ray``) against this cluster; its output."""
        proc = subprocess.run(
            [str(BIN / args[0]), *args[1:]],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"{' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
            )
        return proc.stdout + proc.stderr

    def api(self, path: str, **params: Any) -> Any:
        """The dashboard's HTTP API (state API, jobs), with the cluster's token."""
        r = httpx.get(
            f"{self.dashboard}{path}",
            params=params,
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=30,
        )
        r.raise_for_status()
        return r.json()

    def alive_nodes(self) -> list[dict[str, Any]]:
        data = self.api("/api/v0/nodes", limit=100)["data"]["result"]["result"]
        return [n for n in data if n["state"] == "ALIVE"]

    def actors(self, class_prefix: str) -> list[dict[str, Any]]:
        """Alive actors whose class name starts with ``class_prefix`` (Serve replicas...)."""
        data = self.api(
            "/api/v0/actors",
            limit=1000,
            detail="true",
            filter_keys="state",
            filter_predicates="=",
            filter_values="ALIVE",
        )["data"]["result"]["result"]
        return [a for a in data if a["class_name"].startswith(class_prefix)]

    def wait_for_nodes(self, count: int, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            dead = [n for n in self.nodes if not n.alive()]
            if dead:
                raise NodeStartFailed(
                    dead[0],
                    f"ray start of {dead[0].name} exited:\n{dead[0].log.read_text()[-3000:]}",
                )
            try:
                if len(self.alive_nodes()) >= count:
                    return
            except (httpx.HTTPError, KeyError) as exc:
                last = exc
            time.sleep(1)
        raise AssertionError(f"{count} nodes not alive after {timeout:.0f} s ({last!r})")

    def stop(self) -> None:
        for node in reversed(self.nodes):
            node.signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(n.processes() for n in self.nodes):
            time.sleep(0.5)
        for node in self.nodes:
            node.signal(signal.SIGKILL)
