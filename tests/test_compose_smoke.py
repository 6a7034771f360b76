"""docker-compose.yml started without Docker: each service's own command, environment and
health check, run as processes on this machine.

The file is read as compose reads it: ``.env`` (here: .env.example's values with a test
deployment's passwords and a fake Telegram) fills the ``${VAR}``s and becomes each signalcast
service's environment; the service's ``environment`` overrides it. Then what Docker would
provide is mapped: service host names to this machine (``redis:6379`` to a Redis started with
the compose service's own command, password included, on a free port; ``postgres:5432`` to the
local Postgres, a fresh database), the bind-mounted YAML file to a file of the test, published
container ports to free ports. Start order follows ``depends_on``: Redis healthy, ``migrate``
exits 0, then every long-running signalcast service, each until its own health check passes.
Then the operator's first step (``docker compose exec scheduler signalcast train --all``), and
a tick flows from the scheduler to an alert that the fake Telegram Bot API receives.

Not started: the ``postgres`` container (the local server stands in) and ``flower`` (a
third-party image; its command is Flower's, not ours).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from tests.conftest import write_config
from tests.fakes.telegram_server import FakeTelegram
from tests.test_deploy import COMPOSE_TEXT

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load(COMPOSE_TEXT)
SERVICES = COMPOSE["services"]
CHAT = "101"
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:-|:\?)([^}]*))?\}")


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}``, ``${VAR:?error}`` and ``$$``."""
    def one(match: re.Match) -> str:
        name, op, arg = match.groups()
        if env.get(name):
            return env[name]
        if op == ":?":
            raise AssertionError(f"compose would stop: {arg}")
        return arg if op == ":-" else ""

    return _VAR.sub(one, value.replace("$$", "\0")).replace("\0", "$")


def dotenv_from_example() -> dict[str, str]:
    """What ``cp .env.example .env`` gives compose: the uncommented ``VAR=value`` lines."""
    found = {}
    for line in (REPO / ".env.example").read_text().splitlines():
        match = re.match(r"^([A-Z][A-Z0-9_]*)=(.*)$", line)
        if match and match[2]:
            found[match[1]] = match[2]
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Deployment:
    """The compose services as processes; ``stop()`` ends every one of them."""

    def __init__(self, workdir: Path, dotenv: dict[str, str], config: Path, database: str):
        self.workdir, self.dotenv, self.config, self.database = workdir, dotenv, config, database
        self.redis_port = free_port()
        self.ports: dict[str, dict[int, int]] = {}
        self.processes: dict[str, subprocess.Popen] = {}

    # -- what Docker would provide ------------------------------------------------------------

    def map_hosts(self, text: str) -> str:
        text = text.replace("@redis:6379", f"@127.0.0.1:{self.redis_port}")
        text = text.replace("@postgres:5432/", "@127.0.0.1:5432/")
        return text.replace("/etc/signalcast/config.yaml", str(self.config))

    def environment(self, name: str) -> dict[str, str]:
        """env_file (.env) then the service's environment, interpolated, hosts mapped."""
        service = SERVICES[name]
        env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNALCAST_")}
        if service.get("env_file"):
            env.update(self.dotenv)
        for key, value in (service.get("environment") or {}).items():
            env[key] = interpolate(str(value), self.dotenv)
        env.update({k: self.map_hosts(v) for k, v in env.items()})
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def published(self, name: str) -> dict[int, int]:
        """container port -> a free host port, for each of the service's ``ports``."""
        ports = {}
        for spec in SERVICES[name].get("ports", []):
            container = int(interpolate(spec, self.dotenv).rsplit(":", 1)[1])
            ports[container] = free_port()
        self.ports[name] = ports
        return ports

    def remap(self, name: str, words: list[str]) -> list[str]:
        out = []
        for i, word in enumerate(words):
            for container, host in self.ports.get(name, {}).items():
                if i and words[i - 1] == "--port" and word == str(container):
                    word = str(host)
                word = word.replace(f"127.0.0.1:{container}", f"127.0.0.1:{host}")
            out.append(word)
        return out

    @staticmethod
    def executable(words: list[str]) -> list[str]:
        if words[0] == "signalcast":  # the image's entry point
            return [sys.executable, "-m", "signalcast.cli", *words[1:]]
        if words[0] == "python":
            return [sys.executable, *words[1:]]
        return words

    # -- running services ---------------------------------------------------------------------

    def start(self, name: str) -> subprocess.Popen:
        service = SERVICES[name]
        self.published(name)
        if name == "redis":  # the compose command, on this machine's port and a data dir
            argv = [interpolate(w, self.dotenv) for w in service["command"]]
            argv += ["--port", str(self.redis_port), "--bind", "127.0.0.1", "--dir",
                     str(self.workdir)]
        else:  # ENTRYPOINT ["signalcast"] + command
            argv = self.executable(["signalcast", *self.remap(name, service["command"])])
        log = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen(argv, env=self.environment(name), cwd=self.workdir,
                                   stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        self.processes[name] = process
        return process

    def health_check(self, name: str) -> subprocess.CompletedProcess:
        test = SERVICES[name]["healthcheck"]["test"]
        assert test[0] == "CMD", f"{name}: {test[0]} checks are not run here"
        words = self.remap(name, test[1:])
        if words[0] == "redis-cli":
            words = [words[0], "-p", str(self.redis_port), *words[1:]]
        env = self.environment(name)
        return subprocess.run(self.executable(words), env=env, cwd=self.workdir,
                              capture_output=True, text=True, timeout=60)

    def wait_healthy(self, name: str, timeout: float) -> None:
        deadline, last = time.monotonic() + timeout, None
        while time.monotonic() < deadline:
            process = self.processes[name]
            assert process.poll() is None, f"{name} exited {process.returncode}: {self.log(name)}"
            last = self.health_check(name)
            if last.returncode == 0:
                return
            time.sleep(2)
        raise AssertionError(f"{name} not healthy after {timeout}s: {last.stdout}{last.stderr}"
                             f"\n{self.log(name)}")

    def log(self, name: str) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def run(self, name: str, *words: str, timeout: float = 600) -> subprocess.CompletedProcess:
        """``docker compose run --rm NAME`` / ``exec NAME signalcast WORDS``."""
        command = list(words) or SERVICES[name]["command"]
        return subprocess.run(self.executable(["signalcast", *command]),
                              env=self.environment(name), cwd=self.workdir,
                              capture_output=True, text=True, timeout=timeout)

    def stop(self) -> None:
        for process in reversed(list(self.processes.values())):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)


@pytest.fixture
def deployment(tmp_path: Path, postgres_url: str) -> Iterator[tuple[Deployment, FakeTelegram]]:
    assert shutil.which("redis-server"), "redis-server is needed (.ci/run installs it)"
    database = postgres_url.rsplit("/", 1)[1]
    now = datetime.now(UTC)
    config = write_config(tmp_path / "signalcast.yaml", {
        # one-minute candles, so ticks come every minute
        "assets": [{"symbol": "BTC/USDT", "timeframe": "1m"}],
        "targets": [{"pct": 0.002, "horizon": 30, "alert_threshold": 0.51}],
        "models": {"champion": "lightgbm", "alert_without_skill": ["*"],
                   "params": {"lightgbm": {"n_estimators": 30}}},
        "training": {"history_candles": 1500, "min_rows": 200, "folds": 3, "bootstrap": 100},
        "data": {"source": "synthetic", "seed": 5, "backfill_days": 2,
                 "start": (now - timedelta(days=2)).replace(second=0, microsecond=0)
                 .isoformat().replace("+00:00", "Z")},
        "schedule": {"predict_delay_seconds": 2, "misfire_grace_seconds": 30},
        "alerts": {"charts": False, "debounce": False},
    })
    with FakeTelegram() as telegram:
        dotenv = dotenv_from_example()
        dotenv.update(
            POSTGRES_USER="postgres", POSTGRES_PASSWORD="trusted-locally", POSTGRES_DB=database,
            REDIS_PASSWORD=secrets.token_hex(16), SIGNALCAST_WEB_TOKEN=secrets.token_hex(16),
            SIGNALCAST_TELEGRAM_TOKEN=telegram.token,
            SIGNALCAST_TELEGRAM_API_URL=telegram.base_url, SIGNALCAST_TELEGRAM_CHAT_IDS=CHAT,
            SIGNALCAST_TELEGRAM_ADMINS="1", SIGNALCAST_LOG_FORMAT="text",
            SIGNALCAST_ARTIFACT_KEY=os.environ["SIGNALCAST_ARTIFACT_KEY"],
            FLOWER_BASIC_AUTH="admin:" + secrets.token_hex(8))
        deploy = Deployment(tmp_path, dotenv, config, database)
        try:
            yield deploy, telegram
        finally:
            deploy.stop()


@pytest.mark.timeout(1200)  # start-up, a training, minute ticks: ~100 s here, more when busy
def test_compose_services_become_healthy_and_a_tick_flows_from_scheduler_to_alert(
        deployment):
    deploy, telegram = deployment
    ours = [name for name, s in SERVICES.items() if "build" in s]
    assert set(SERVICES) - set(ours) == {"redis", "postgres", "flower"}

    deploy.start("redis")
    deploy.wait_healthy("redis", timeout=30)
    unauthenticated = subprocess.run(["redis-cli", "-p", str(deploy.redis_port), "ping"],
                                     capture_output=True, text=True, timeout=10,
                                     env={k: v for k, v in os.environ.items()
                                          if k != "REDISCLI_AUTH"})
    assert "NOAUTH" in unauthenticated.stdout + unauthenticated.stderr  # requirepass holds

    migrate = deploy.run("migrate")
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr

    long_running = [name for name in ours if SERVICES[name]["restart"] != "no"]
    for name in long_running:
        deploy.start(name)
    for name in long_running:
        deploy.wait_healthy(name, timeout=240)

    # the operator's first step (docs/production.md): wait for the first tick's backfill, train
    deadline = time.monotonic() + 180
    while True:
        status = deploy.run("scheduler", "status", "--json", timeout=120)
        if '"candles": 0' not in status.stdout and status.returncode == 0:
            break
        assert time.monotonic() < deadline, status.stdout + deploy.log("scheduler")
        time.sleep(5)
    train = deploy.run("scheduler", "train", "--all", timeout=600)
    assert train.returncode == 0, train.stdout + train.stderr + deploy.log("worker-train")

    # ticks come every minute: the scheduler enqueues, the predict worker predicts and queues
    # the alert, the alerts worker sends it to Telegram
    deadline = time.monotonic() + 360
    while not [m for m in telegram.sent_messages(CHAT) if "chance of touching" in m["text"]]:
        assert time.monotonic() < deadline, (
            f"no signal alert reached Telegram; sent: {telegram.sent_messages()}\n"
            + deploy.log("scheduler") + deploy.log("worker-predict")
            + deploy.log("worker-alerts"))
        time.sleep(3)
    for name in long_running:  # still healthy after the work
        assert deploy.health_check(name).returncode == 0, name
