"""Shared fixtures: one real Ray cluster per test session, and the rdsweep command as a subprocess."""
from __future__ import annotations

import atexit
import functools
import gzip
import importlib.util
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent.parent
# Ray 2.60 clusters use token authentication; the test cluster and every rdsweep run in the session share
# this token, and never read or write the user's ~/.ray/auth_token.
RAY_ENV = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}


def idx_bytes(images, magic=0x803, rows=28, cols=28) -> bytes:
    """An IDX3 image file's bytes (MNIST's format)."""
    header = np.array([magic, len(images), rows, cols], dtype=">u4").tobytes()
    return header + np.asarray(images).astype(np.uint8).tobytes()


def idx_label_bytes(labels, magic=0x801, count=None) -> bytes:
    """An IDX1 label file's bytes; `count` overrides the header's count (a truncated file)."""
    header = np.array([magic, len(labels) if count is None else count], ">u4").tobytes()
    return header + np.asarray(labels, np.uint8).tobytes()


def write_idx(root, n_train=24, n_test=10, labels=False, gz=False) -> None:
    """Random IDX images in root, and with `labels` their label files: i % 10 (train) and 9 − i % 10 (test),
    so every cut of the splits is recognisable."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    files = {f"{part}-images-idx3-ubyte": idx_bytes(rng.integers(0, 256, (n, 784)))
             for part, n in (("train", n_train), ("t10k", n_test))}
    if labels:
        files["train-labels-idx1-ubyte"] = idx_label_bytes(np.arange(n_train) % 10)
        files["t10k-labels-idx1-ubyte"] = idx_label_bytes(9 - np.arange(n_test) % 10)
    for name, raw in files.items():
        if gz:
            (root / f"{name}.gz").write_bytes(gzip.compress(raw))
        else:
            (root / name).write_bytes(raw)


def pytest_configure(config):
    """Under pytest-xdist each worker keeps to one thread (and so do the commands it runs), so that two workers
    share two cores instead of fighting over them."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ["OMP_NUM_THREADS"] = "1"
        import torch
        torch.set_num_threads(1)


def pytest_collection_modifyitems(items):
    """Under pytest-xdist (`make test` runs two workers), every test of the Ray cluster goes to one worker, so
    the session starts Ray once and its launches never wait for each other's CPUs."""
    for item in items:
        if {"ray_address", "ray_cluster"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.xdist_group("ray"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RayCluster:
    """A real multi-node Ray cluster on this machine: a head that runs no trials (0 CPUs) and worker nodes,
    each `ray start --block` in its own process group, so a test can lose one (SIGKILL to its group, as a
    machine that dies) and the teardown stops exactly this cluster (`ray stop` would stop every Ray instance
    of the user on the machine)."""

    def __init__(self):
        self.temp = tempfile.mkdtemp(prefix="rdray", dir="/tmp")  # short: Ray's socket paths have a length limit
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.head = self._start("head", "--head", "--port", str(self.port), "--num-cpus", "0", "--num-gpus", "0",
                                "--include-dashboard=false", "--disable-usage-stats",
                                "--dashboard-port", str(_free_port()),
                                "--object-store-memory", str(200 * 2**20), "--temp-dir", self.temp)
        self.workers: dict[str, subprocess.Popen] = {}

    def _start(self, name: str, *args: str) -> subprocess.Popen:
        log_path = Path(self.temp) / f"ray-start-{name}.log"
        with open(log_path, "w") as log:
            node = subprocess.Popen(
                [str(BIN / "ray"), "start", "--block", "--node-ip-address", "127.0.0.1",
                 "--dashboard-agent-listen-port", str(_free_port()), "--metrics-export-port", str(_free_port()),
                 "--runtime-env-agent-port", str(_free_port()), *args],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                env={**os.environ, **RAY_ENV, **plugin_env()})
        _wait_for_node(node, log_path)
        return node

    def add_worker(self, name: str, cpus: float = 1, gpus: float = 0) -> None:
        """A worker node; `gpus` advertises GPUs the machine need not have (Ray books them, CUDA finds none)."""
        self.workers[name] = self._start(name, "--address", self.address, "--num-cpus", f"{cpus:g}",
                                         "--num-gpus", f"{gpus:g}", "--object-store-memory", str(100 * 2**20))
        _wait_for_nodes(self.address, len(self.workers) + 1)

    def node_of(self, pid: int) -> str:
        """The worker node a process runs on: Ray's workers stay in their raylet's session, which is that
        node's `ray start`."""
        (name,) = [name for name, node in self.workers.items() if node.pid == os.getsid(pid)]
        return name

    def lose_worker(self, name: str) -> None:
        """The node dies at once, its raylet and its trials' workers with it: SIGKILL to every process of the
        node's session (Ray's workers need not share their raylet's process group)."""
        node = self.workers.pop(name)
        for proc in Path("/proc").iterdir():
            try:
                if proc.name.isdigit() and int(proc.name) != node.pid and os.getsid(int(proc.name)) == node.pid:
                    os.kill(int(proc.name), signal.SIGKILL)
            except (OSError, ValueError):
                continue
        _stop(node, graceful=False)

    def stop(self) -> None:
        for node in [*self.workers.values(), self.head]:
            _stop(node)
        shutil.rmtree(self.temp, ignore_errors=True)


@functools.cache
def plugin_env() -> dict:
    """The environment of a machine where the example plugin (examples/plugin) is installed, and the contract-
    breaking test plugins (tests/plugins) are importable: a PYTHONPATH. The plugin is installed with pip into a
    folder of its own (its dist-info makes its entry points real), not into the suite's environment, so only
    the processes given this environment see it; every node of the test cluster is one of them, as every node
    of a real cluster has the same environment (docs/cluster.md)."""
    temp = tempfile.mkdtemp(prefix="rdplugin")
    atexit.register(shutil.rmtree, temp, ignore_errors=True)
    site, source = os.path.join(temp, "site"), os.path.join(temp, "source")   # a build writes into its source
    shutil.copytree(ROOT / "examples" / "plugin", source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    offline = ["--no-build-isolation"] if importlib.util.find_spec("setuptools") else []
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
                    *offline, "--target", site, source], check=True, capture_output=True)
    return {"PYTHONPATH": os.pathsep.join([site, str(ROOT / "tests" / "plugins"), os.environ.get("PYTHONPATH", "")])}


@pytest.fixture(scope="session")
def ray_cluster():
    """The session's one Ray cluster: a head with no CPUs and two 1-CPU worker nodes, no GPU (on a GPU host
    too: the tests compare the trials with in-process CPU runs), private ports and temp dir. Every launch
    test runs across two nodes, as on a real cluster."""
    cluster = RayCluster()
    try:
        for name in ("node-1", "node-2"):
            cluster.add_worker(name)
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def ray_address(ray_cluster):
    return ray_cluster.address


def _wait_for_node(node: subprocess.Popen, log_path: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if node.poll() is not None:
            raise RuntimeError(f"ray start exited early: {log_path.read_text()[-2000:]}")
        if "will now block forever" in log_path.read_text():
            return
        time.sleep(0.5)
    raise RuntimeError(f"ray start did not come up in time: {log_path.read_text()[-2000:]}")


def _wait_for_nodes(address: str, count: int, timeout: float = 60) -> None:
    """Until the cluster's GCS lists `count` live nodes (a worker's `ray start` returns before it registers)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = subprocess.run([str(BIN / "ray"), "status", "--address", address], capture_output=True,
                                text=True, env={**os.environ, **RAY_ENV})
        active = status.stdout.split("Active:")[-1].split("Pending:")[0] if "Active:" in status.stdout else ""
        if active.count("node_") >= count:
            return
        time.sleep(0.5)
    raise RuntimeError(f"the Ray cluster at {address} did not reach {count} nodes: {status.stdout[-1500:]}")


def _stop(node: subprocess.Popen, graceful: bool = True) -> None:
    """SIGTERM lets Ray drain (up to 30 s); nothing runs any more, so give it a few seconds, then kill the
    group. Not graceful: SIGKILL at once, a node that dies."""
    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 10))[0 if graceful else 1:]:
        try:
            os.killpg(node.pid, sig)
            node.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue
        except ProcessLookupError:
            return


@pytest.fixture
def rdsweep():
    """Run the installed `rdsweep` console script in a subprocess (as users do, so exit statuses are real);
    returns the CompletedProcess. Output that is not UTF-8 (a path's Latin-1 byte) reads as backslash escapes."""
    def run(*args, cwd=None, timeout=300, env=None):
        return subprocess.run([str(BIN / "rdsweep"), *map(str, args)], cwd=cwd,
                              capture_output=True, text=True, errors="backslashreplace", timeout=timeout,
                              env={**os.environ, **RAY_ENV, "COLUMNS": "200", **(env or {})})
    return run


def trial_workers(token: str) -> list[int]:
    """PIDs of this test session's Ray trial processes (they inherit the session's private auth token)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if (b"ImplicitFunc" in (proc / "cmdline").read_bytes()
                    and f"RAY_AUTH_TOKEN={token}".encode() in (proc / "environ").read_bytes()):
                pids.append(int(proc.name))
        except (OSError, ValueError):
            continue
    return pids
