"""Alert fairness: how long a private chat's alert waits behind a group chat's backlog.

The outbox holds ``--backlog`` signal alerts for one group chat (held by Telegram's limit of
20 messages a minute per group), queued first, plus a few rows for a chat no transport serves;
then one alert for a private chat is queued. One drain runs through the real
``TelegramTransport`` (python-telegram-bot) into the fake Bot API server from ``tests/fakes``,
which timestamps each message it receives. The figure is the private alert's latency: from
the drain's start to the server receiving it, over ``--runs`` runs (a fresh SQLite file each).

Before the fair read (each chat's head, oldest first) the drain read the 100 oldest due rows:
the private alert was 151st and waited for the group's backlog, about 2.5 minutes at 20 a
minute (and forever behind rows without a transport).

    python bench/bench_alert_fairness.py [--backlog 150] [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the fake Bot API server lives in tests/

from signalcast.alerts.drain import drain_outbox  # noqa: E402
from signalcast.config import load_settings  # noqa: E402
from signalcast.db.engine import init_db, session_scope  # noqa: E402
from signalcast.db.tables import AlertOutbox  # noqa: E402
from signalcast.notifier.telegram import TelegramTransport  # noqa: E402
from tests.conftest import write_config  # noqa: E402
from tests.fakes.telegram_checks import deliveries  # noqa: E402
from tests.fakes.telegram_server import FakeTelegram  # noqa: E402

PRIVATE, GROUP, NOWHERE = "101", "-202", "303"


def signal(candle: datetime) -> dict:
    return {"asset": "BTC/USDT", "target": "1pct_24", "pct": 0.01, "horizon": 24,
            "timeframe": "1h", "direction": "UP", "probability": 0.8, "threshold": 0.6,
            "model": "lightgbm v1", "candle_time": candle.isoformat(), "price": 100.0,
            "up_level": 101.0, "down_level": 99.0, "fallback": None, "conflict": False}


def one_run(folder: Path, backlog: int) -> tuple[float, int]:
    """(private alert latency in seconds, group alerts sent before it)."""
    url = f"sqlite:///{folder / 'fair.db'}"
    config = write_config(folder / "fair.yaml", {"alerts": {
        "console": False, "charts": False, "drain_seconds": 3.0,
        "max_signal_age_seconds": (backlog + 10) * 3600}})
    with FakeTelegram() as tg, TelegramTransport(tg.token, tg.base_url) as transport:
        settings = load_settings(config, database_url=url, broker_url=None,
                                 telegram_token=tg.token, telegram_api_url=tg.base_url)
        engine = init_db(url)
        now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
        with session_scope(engine) as session:
            for chat, count in ((NOWHERE, 5), (GROUP, backlog), (PRIVATE, 1)):
                for n in range(count, 0, -1):
                    candle = now - timedelta(hours=n - 1)
                    session.add(AlertOutbox(chat_id=chat, asset="BTC/USDT", target="1pct_24",
                                            candle_time=candle, kind="signal",
                                            payload=signal(candle)))
        transports = {PRIVATE: transport, GROUP: transport}
        started = time.time()
        drain_outbox(engine, transports.get, settings=settings)
        [private] = deliveries(tg, PRIVATE)
        before = [c for c in deliveries(tg, GROUP) if c.at < private.at]
        engine.dispose()
        return private.at - started, len(before)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backlog", type=int, default=150)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    latencies, ahead = [], []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as folder:
            latency, before = one_run(Path(folder), args.backlog)
        latencies.append(latency)
        ahead.append(before)
    print(f"backlog {args.backlog} group alerts (20/min), 5 rows without transport, "
          f"1 private alert queued last; {args.runs} runs")
    print(f"private alert latency: median {statistics.median(latencies) * 1000:.0f} ms, "
          f"max {max(latencies) * 1000:.0f} ms; group alerts sent before it: "
          f"median {statistics.median(ahead):.0f}, max {max(ahead)}")


if __name__ == "__main__":
    main()
