"""Shared fixtures: one real Ray cluster per test session, and the rdsweep command as a subprocess."""
from __future__ import annotations

import gzip
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
        if "ray_address" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("ray"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def ray_address():
    """A real `ray start --head` on 127.0.0.1 with 2 CPUs and no GPU (on a GPU host too: the tests compare the
    trials with in-process CPU runs), private ports and temp dir; yields its address.

    It runs with --block in its own process group, so the teardown stops exactly this cluster
    (`ray stop` would stop every Ray instance of the user on the machine)."""
    temp = tempfile.mkdtemp(prefix="rdray", dir="/tmp")  # short: Ray's socket paths have a length limit
    port = _free_port()
    cmd = [str(BIN / "ray"), "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
           "--port", str(port), "--num-cpus", "2", "--num-gpus", "0", "--include-dashboard=false",
           "--disable-usage-stats",
           "--dashboard-port", str(_free_port()), "--dashboard-agent-listen-port", str(_free_port()),
           "--object-store-memory", str(200 * 2**20), "--temp-dir", temp]
    log = open(Path(temp) / "ray-start.log", "w")
    head = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, **RAY_ENV})
    address = f"127.0.0.1:{port}"
    try:
        _wait_for_head(head, port, temp)
        yield address
    finally:
        _stop(head)
        log.close()
        shutil.rmtree(temp, ignore_errors=True)


def _wait_for_head(head: subprocess.Popen, port: int, temp: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if head.poll() is not None:
            raise RuntimeError(f"ray start exited early: {(Path(temp) / 'ray-start.log').read_text()[-2000:]}")
        if "will now block forever" in (Path(temp) / "ray-start.log").read_text():
            return
        time.sleep(0.5)
    raise RuntimeError("ray start --head did not come up in time")


def _stop(head: subprocess.Popen) -> None:
    # SIGTERM lets Ray drain (up to 30 s); nothing runs any more, so give it a few seconds, then kill the group.
    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 10)):
        try:
            os.killpg(head.pid, sig)
            head.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue
        except ProcessLookupError:
            return


@pytest.fixture
def rdsweep():
    """Run the installed `rdsweep` console script in a subprocess (as users do, so exit statuses are real);
    returns the CompletedProcess."""
    def run(*args, cwd=None, timeout=300, env=None):
        return subprocess.run([str(BIN / "rdsweep"), *map(str, args)], cwd=cwd,
                              capture_output=True, text=True, timeout=timeout,
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
