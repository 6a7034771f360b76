"""Health checks for containers and operators: does the database answer, does Redis answer,
does this container's worker answer a ping, does a scheduler lead, does the bot poll?

``signalcast health`` runs them (a Docker HEALTHCHECK); each is a plain function returning a
:class:`Check`, never raising, each with a short timeout.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from pathlib import Path

from signalcast.config import Settings


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'} {self.name}: {self.detail}"


def check_database(settings: Settings) -> Check:
    """A ``SELECT 1`` through the configured engine (the schema is not touched)."""
    from sqlalchemy import text

    from signalcast.db.engine import get_engine

    where = settings.redacted()["environment"]["database_url"]
    try:
        with get_engine(settings.env.database_url).connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        return Check("database", False, f"{where}: {type(exc).__name__}: {exc}")
    return Check("database", True, where)


def check_broker(settings: Settings, timeout: float = 3.0) -> Check:
    """Redis answers PING (embedded mode, with no broker configured, is healthy)."""
    url = settings.env.broker_url
    if url is None:
        return Check("broker", True, "embedded (no SIGNALCAST_BROKER_URL)")
    import redis

    where = settings.redacted()["environment"]["broker_url"]
    try:
        redis.Redis.from_url(url, socket_timeout=timeout,
                             socket_connect_timeout=timeout).ping()
    except Exception as exc:
        return Check("broker", False, f"{where}: {type(exc).__name__}: {exc}")
    return Check("broker", True, where)


def expand_worker_name(name: str) -> str:
    """Celery's node name as the worker expands it: ``%h`` is this host's name, a bare name
    gets ``@host``, e.g. ``predict@%h`` -> ``predict@3f2a9c1b``."""
    host = socket.gethostname()
    name = name.replace("%h", host).replace("%n", host.split(".")[0])
    return name if "@" in name else f"{name}@{host}"


def check_worker(settings: Settings, name: str, timeout: float = 3.0) -> Check:
    """The Celery worker ``name`` answers a broadcast ping within ``timeout``."""
    if settings.env.broker_url is None:
        return Check("worker", False, "needs SIGNALCAST_BROKER_URL (workers use Redis)")
    from signalcast.tasks.app import app, configure

    node = expand_worker_name(name)
    try:
        configure(settings)
        replies = app.control.ping(destination=[node], timeout=timeout)
    except Exception as exc:
        return Check("worker", False, f"{node}: {type(exc).__name__}: {exc}")
    if not any(node in reply for reply in replies):
        return Check("worker", False, f"{node} did not answer a ping within {timeout:g} s")
    return Check("worker", True, f"{node} answers")


def check_scheduler(settings: Settings, timeout: float = 3.0) -> Check:
    """Some scheduler holds the leader lock (this replica, or another while this one stands
    by). Nobody holding it for longer than the lock's TTL means no scheduler runs the jobs."""
    if settings.env.broker_url is None:
        return Check("scheduler", False, "needs SIGNALCAST_BROKER_URL (the lock is in Redis)")
    import redis

    from signalcast.scheduler.leader import LOCK_KEY

    try:
        holder = redis.Redis.from_url(settings.env.broker_url, socket_timeout=timeout,
                                      socket_connect_timeout=timeout).get(LOCK_KEY)
    except Exception as exc:
        return Check("scheduler", False, f"{type(exc).__name__}: {exc}")
    if holder is None:
        return Check("scheduler", False, "no scheduler holds the leader lock")
    holder_text = holder.decode(errors="replace")
    role = "this host leads" if holder_text.startswith(f"{socket.gethostname()}:") else \
        "standby; leader"
    return Check("scheduler", True, f"{role} {holder_text.rsplit(':', 1)[0]}")


def check_bot(settings: Settings) -> Check:
    """The bot polls: its liveness file (touched after every answered ``getUpdates``) is
    younger than ``bot.liveness_seconds``. Missing: the bot is not running, or it stopped
    because Telegram refused it (its log says why)."""
    path, limit = Path(settings.bot.liveness_file), settings.bot.liveness_seconds
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return Check("bot", False, f"not polling: no {path} (the bot is not running or "
                                   "stopped; see its log)")
    except OSError as exc:
        return Check("bot", False, f"{path}: {type(exc).__name__}: {exc}")
    if age > limit:
        return Check("bot", False, f"not polling: last answered poll {age:.0f} s ago "
                                   f"(bot.liveness_seconds {limit})")
    return Check("bot", True, f"polling (last answered poll {age:.0f} s ago)")


def run_checks(settings: Settings, *, worker: str | None = None, scheduler: bool = False,
               bot: bool = False, timeout: float = 3.0) -> list[Check]:
    checks = [check_database(settings), check_broker(settings, timeout)]
    if worker:
        checks.append(check_worker(settings, worker, timeout))
    if scheduler:
        checks.append(check_scheduler(settings, timeout))
    if bot:
        checks.append(check_bot(settings))
    return checks
