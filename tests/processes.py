"""Real processes for integration tests: `signalcast worker` subprocesses and their cleanup."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def signalcast_env(config: Path, database_url: str, broker_url: str, **extra: str) -> dict:
    """The environment of a signalcast process of the test deployment: this process's
    environment without its SIGNALCAST_* settings, but with the deployment's one artifact key
    (conftest sets it), so every process signs and verifies artifacts alike."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNALCAST_")}
    if "SIGNALCAST_ARTIFACT_KEY" in os.environ:
        env["SIGNALCAST_ARTIFACT_KEY"] = os.environ["SIGNALCAST_ARTIFACT_KEY"]
    env.update(SIGNALCAST_CONFIG=str(config), SIGNALCAST_DATABASE_URL=database_url,
               SIGNALCAST_BROKER_URL=broker_url, PYTHONUNBUFFERED="1", **extra)
    return env


def start_worker(env: dict, name: str, queues: str = "predict,train,alerts",
                 concurrency: int = 1, log: Path | None = None) -> subprocess.Popen:
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        [sys.executable, "-m", "signalcast.cli", "worker", "-Q", queues, "-c", str(concurrency),
         "-n", f"{name}@%h", "--loglevel", "INFO"],
        env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def wait_for_workers(app, names: list[str], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    seen: set[str] = set()
    while time.monotonic() < deadline:
        for reply in app.control.ping(timeout=0.5) or []:
            seen.update(reply)
        if all(any(s.startswith(f"{n}@") for s in seen) for n in names):
            return
        time.sleep(0.2)
    raise TimeoutError(f"workers {names} did not answer a ping within {timeout}s (saw {seen})")


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
    """Signal the main process (as an operator or orchestrator would; SIGKILL takes its whole
    process group, pool children included), wait, and force-kill the group after ``timeout``."""
    if proc.poll() is None:
        if sig == signal.SIGKILL:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    return proc.returncode


@contextmanager
def workers(env: dict, app, count: int = 1, log_dir: Path | None = None,
            **kwargs) -> Iterator[list[subprocess.Popen]]:
    names = [f"w{i}" for i in range(count)]
    procs = [start_worker(env, n, log=log_dir / f"{n}.log" if log_dir else None, **kwargs)
             for n in names]
    try:
        wait_for_workers(app, names)
        yield procs
    finally:
        for proc in procs:
            stop(proc)
