"""Delivery drills, counted: the outbox drain through the real TelegramTransport into the fake
Bot API server, with Telegram's faults injected; one table row per drill.

    python bench/drill_delivery.py                  # the drain as it is
    python bench/drill_delivery.py --drain FILE.py  # another drain module (e.g. an old one:
                                                    # git show REV:signalcast/alerts/drain.py)

Columns: alerts queued; faults injected; delivered (unique); lost (never delivered and not
reported); doubled (extra copies); reordered (chats whose signals arrived out of queue order);
late (signals delivered after their age); reported (alerts marked maybe_delivered / expired,
each named in a system notice).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the fake Bot API server lives in tests/

from sqlmodel import select  # noqa: E402

from signalcast.config import load_settings  # noqa: E402
from signalcast.db.engine import init_db, session_scope  # noqa: E402
from signalcast.db.tables import AlertOutbox  # noqa: E402
from signalcast.notifier.telegram import TelegramTransport  # noqa: E402
from tests.conftest import write_config  # noqa: E402
from tests.fakes.telegram_checks import signal_key  # noqa: E402
from tests.fakes.telegram_server import FakeTelegram  # noqa: E402

PRIVATE, GROUP = "101", "-202"
HOUR = timedelta(hours=1)


def signal(candle: datetime) -> dict[str, Any]:
    return {"asset": "BTC/USDT", "target": "1pct_24", "pct": 0.01, "horizon": 24,
            "timeframe": "1h", "direction": "UP", "probability": 0.8, "threshold": 0.6,
            "model": "lightgbm v1", "candle_time": candle.isoformat(), "price": 100.0,
            "up_level": 101.0, "down_level": 99.0, "fallback": None, "conflict": False}


def run(drain_outbox, folder: Path, name: str, per_chat: int, faults: list[dict],
        stale: int = 0, age: int | None = 100 * 3600, backoff: float = 0.2) -> dict[str, Any]:
    url = f"sqlite:///{folder / f'{name}.db'}"
    alerts = {"console": False, "charts": False, "chat_interval_seconds": 0.02}
    if age is not None:
        alerts["max_signal_age_seconds"] = age
    config = write_config(folder / f"{name}.yaml", {"alerts": alerts})
    last = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - HOUR
    with FakeTelegram() as tg, TelegramTransport(tg.token, tg.base_url, timeout=0.5,
                                                 network_backoff=backoff) as transport:
        settings = load_settings(config, database_url=url, broker_url=None,
                                 telegram_token=tg.token, telegram_api_url=tg.base_url,
                                 telegram_chat_ids=f"{PRIVATE},{GROUP}")
        engine = init_db(url)
        candles = [last - n * HOUR for n in range(per_chat + stale - 1, -1, -1)]
        with session_scope(engine) as session:
            for chat in (PRIVATE, GROUP):
                session.add_all(AlertOutbox(chat_id=chat, asset="BTC/USDT", target="1pct_24",
                                            candle_time=c, kind="signal", payload=signal(c))
                                for c in candles)
        for fault in faults:
            tg.fail("sendMessage", **fault)
        for _ in range(60):
            drain_outbox(engine, lambda chat: transport, settings=settings)
            with session_scope(engine, readonly=True) as session:
                open_rows = session.exec(select(AlertOutbox).where(
                    AlertOutbox.status.in_(("pending", "sending")))).all()
            if not open_rows:
                break
        time.sleep(2.0)  # late answers land
        with session_scope(engine, readonly=True) as session:
            rows = session.exec(select(AlertOutbox)).all()
        engine.dispose()
        fresh = {f"{c:%Y-%m-%d %H:%M}" for c in candles[stale:]}
        got: dict[str, list[str]] = {}
        for message in tg.sent_messages():
            key = signal_key(message["text"])
            if key is not None:
                got.setdefault(str(message["chat_id"]), []).append(key[2])
        counts = Counter((chat, c) for chat, cs in got.items() for c in cs)
        reported = {(r.chat_id, f"{r.candle_time:%Y-%m-%d %H:%M}") for r in rows
                    if r.kind == "signal" and r.status in ("maybe_delivered", "expired")}
        wanted = {(chat, c) for chat in (PRIVATE, GROUP) for c in fresh}
        lost = [k for k in wanted if k not in counts and k not in reported]
        order = sum(got.get(chat, []) != sorted(got.get(chat, [])) for chat in (PRIVATE, GROUP))
        return {"drill": name, "queued": 2 * len(candles), "faults": sum(
                    f.get("times", 1) for f in faults), "delivered": len(counts),
                "lost": len(lost), "doubled": sum(n - 1 for n in counts.values()),
                "reordered": order, "late": sum(1 for (_, c) in counts if c not in fresh),
                "reported": len(reported),
                "notices": sum(1 for r in rows if r.kind == "system")}


DRILLS = [  # name, signals per chat, faults, stale signals per chat, backoff after a failure
    ("timeouts, delivered 1.5 s late, pause 0.2 s", 8, [{"delay": 1.5, "times": 3}], 0, 0.2),
    ("timeouts, delivered 1.5 s late, pause 2 s", 8, [{"delay": 1.5, "times": 3}], 0, 2.0),
    ("timeouts, then dropped", 8, [{"status": 500, "delay": 1.5, "times": 3}], 0, 0.2),
    ("429 burst (retry_after 1)", 12, [{"status": 429, "retry_after": 1, "times": 4}], 0, 0.2),
    ("5xx burst (502, 500)", 12, [{"status": 502, "times": 2}, {"status": 500, "times": 3}],
     0, 0.2),
    ("stale signals (age 1 candle)", 2, [], 4, 0.2),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drain", type=Path, help="a drain module to drill instead")
    args = parser.parse_args()
    if args.drain:
        spec = importlib.util.spec_from_file_location("drilled_drain", args.drain)
        module = importlib.util.module_from_spec(spec)
        sys.modules["drilled_drain"] = module  # dataclasses look their module up
        spec.loader.exec_module(module)
        drain = module.drain_outbox
    else:
        from signalcast.alerts.drain import drain_outbox as drain
    print("| drill | queued | faults | delivered | lost | doubled | reordered chats | late | "
          "reported | notices |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for i, (name, per_chat, faults, stale, backoff) in enumerate(DRILLS):
            r = run(drain, Path(folder), f"d{i}", per_chat, faults, stale=stale,
                    age=None if stale else 100 * 3600, backoff=backoff)
            print(f"| {name} | {r['queued']} | {r['faults']} | {r['delivered']} | {r['lost']} "
                  f"| {r['doubled']} | {r['reordered']} | {r['late']} | {r['reported']} "
                  f"| {r['notices']} |")


if __name__ == "__main__":
    main()
