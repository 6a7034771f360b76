"""Alert latency: candle close -> alert received by the (fake) Telegram Bot API server.

A replay on a simulated clock through the production path: real ``signalcast worker``
processes on Redis (one on ``predict``, one on ``alerts``, as deployed), the scheduler's
``candle_close_tick`` job enqueuing ingest -> predict -> resolve -> send_alerts per asset, the
outbox drained through the real python-telegram-bot client into the fake Bot API server from
``tests/fakes``, which timestamps every message it receives.

The simulated candle closes at the moment its tick is enqueued (``predict_delay_seconds: 0``;
a live scheduler adds that delay on purpose, to let the exchange publish the candle). Ticks run
one after the other, as hourly candles do, and the next candle closes only once the per-chat
rate limit no longer holds back a chat because of the previous tick's alerts. The alert
threshold is 0.501, so nearly every prediction alerts; repeats are not suppressed
(``alerts.debounce: false``) and only signal alerts are on, so every tick yields one alert per
(asset, target). Each asset's alerts go to their own private chat (a subscription), at
Telegram's pace of about one message per second per chat (a group chat would also be held to
20 messages a minute); charts are drawn and sent as photos unless ``--no-charts``.

    python bench/bench_alert_latency.py [--alerts 200] [--assets 2] [--no-charts]

Figures: median and p95 over every alert, and over the first alert of each chat per tick
(the pipeline without the per-chat rate limit's wait).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import redis
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the fake Bot API server and the worker helpers live in tests/

from signalcast.alerts.subscriptions import unsubscribe  # noqa: E402
from signalcast.cli.demo import wait_chain  # noqa: E402
from signalcast.config import load_settings  # noqa: E402
from signalcast.db.engine import init_db, session_scope  # noqa: E402
from signalcast.lifecycle.train import train_model  # noqa: E402
from signalcast.pipeline.ingest import ingest_asset  # noqa: E402
from signalcast.scheduler.jobs import candle_close_tick  # noqa: E402
from signalcast.tasks.app import app, configure  # noqa: E402
from tests.fakes.telegram_checks import signal_key  # noqa: E402
from tests.fakes.telegram_server import FakeTelegram  # noqa: E402
from tests.processes import signalcast_env, start_worker, stop, wait_for_workers  # noqa: E402

SYMBOLS = ["BTC/USDT", "ETH/USDT", "SOL/USDT", "XRP/USDT"]
HISTORY_DAYS = 150


def bench_config(assets: int, charts: bool) -> dict:
    return {
        "assets": [{"symbol": s, "timeframe": "1h"} for s in SYMBOLS[:assets]],
        "targets": [{"pct": 0.01, "horizon": 24, "alert_threshold": 0.501},
                    {"pct": 0.02, "horizon": 48, "alert_threshold": 0.501}],
        "models": {"champion": "lightgbm", "params": {"lightgbm": {"n_estimators": 50}}},
        "training": {"history_candles": 3000, "min_rows": 300},
        "schedule": {"predict_delay_seconds": 0},
        "data": {"source": "synthetic", "seed": 11, "start": "2023-01-01T00:00:00Z"},
        "alerts": {"console": False, "charts": charts, "debounce": False,
                   "kinds": {"signal": "on", "outcome": "off", "summary": "off", "model": "off",
                             "system": "off"}},
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run(alerts: int, assets: int, charts: bool, broker_url: str, workdir: Path) -> dict:
    config = workdir / "bench.yaml"
    config.write_text(yaml.safe_dump(bench_config(assets, charts)))
    database_url = f"sqlite:///{workdir / 'bench.db'}"
    redis.Redis.from_url(broker_url).flushdb()
    chats = {symbol: str(1000 + i) for i, symbol in enumerate(SYMBOLS[:assets])}
    with FakeTelegram() as tg:
        settings = load_settings(config, database_url=database_url, broker_url=broker_url,
                                 telegram_token=tg.token, telegram_api_url=tg.base_url,
                                 telegram_chat_ids=",".join(chats.values()))
        engine = init_db(database_url)
        for symbol, chat in chats.items():  # each asset's alerts to its own chat
            unsubscribe(engine, settings, chat, [s for s in chats if s != symbol], actor="bench")
        now = settings.data.start + timedelta(days=HISTORY_DAYS)
        started = time.perf_counter()
        with session_scope(engine) as session:
            for asset in settings.assets:
                ingest_asset(session, settings, asset.symbol, now)
        for asset in settings.assets:
            for target in settings.targets:
                train_model(engine, settings, asset.symbol, target.key, "lightgbm", now=now)
        print(f"history and {assets * 2} champions ready in {time.perf_counter() - started:.0f} s",
              flush=True)

        configure(settings)
        env = signalcast_env(config, database_url, broker_url,
                             SIGNALCAST_TELEGRAM_TOKEN=tg.token,
                             SIGNALCAST_TELEGRAM_API_URL=tg.base_url,
                             SIGNALCAST_TELEGRAM_CHAT_IDS=",".join(chats.values()))
        procs = [start_worker(env, "predict", "predict", concurrency=2,
                              log=workdir / "predict.log"),
                 start_worker(env, "alerts", "alerts", log=workdir / "alerts.log")]
        closes: dict[str, float] = {}  # candle "YYYY-mm-dd HH:MM" -> wall time of its close
        interval = settings.alerts.chat_interval_seconds
        try:
            wait_for_workers(app, ["predict", "alerts"])
            tick = 0
            while len(_received(tg)) < alerts:
                received = _received(tg)
                if received:  # as with hourly candles, no chat is still rate-limited by
                    # the previous tick's alerts when the next candle closes
                    time.sleep(max(0.0, received[-1][2] + interval - time.time()))
                tick += 1
                when = now + timedelta(hours=tick)
                candle = (when - timedelta(hours=1)).strftime("%Y-%m-%d %H:%M")
                closes[candle] = time.time()
                results = candle_close_tick(engine, settings, when, job="bench")
                failures = [f for f in (wait_chain(r, timeout=300) for r in results) if f]
                if failures:
                    raise RuntimeError(f"tick {tick} failed: {failures[0]}")
                if tick % 10 == 0:
                    print(f"  tick {tick}: {len(_received(tg))} alerts received", flush=True)
        finally:
            for proc in procs:
                stop(proc)

    latencies, first_per_chat = [], []
    seen: set[tuple[str, str]] = set()
    for chat, candle, at in _received(tg):
        latency = at - closes[candle]
        latencies.append(latency)
        if (chat, candle) not in seen:
            seen.add((chat, candle))
            first_per_chat.append(latency)
    return {"alerts": len(latencies), "ticks": tick, "assets": assets, "charts": charts,
            "all": _figures(latencies), "first_per_chat_and_tick": _figures(first_per_chat)}


def _received(tg: FakeTelegram) -> list[tuple[str, str, float]]:
    """(chat, candle, receive time) of every signal alert the server accepted, in order."""
    out = []
    for call in tg.calls:
        if call.method in ("sendMessage", "sendPhoto") and call.status == 200:
            key = signal_key(call.params.get("text") or call.params.get("caption") or "")
            if key is not None:
                out.append((str(call.params["chat_id"]), key[2], call.at))
    return out


def _figures(values: list[float]) -> dict[str, float]:
    return {"n": len(values), "median_s": statistics.median(values),
            "p95_s": percentile(values, 0.95), "max_s": max(values),
            "mean_s": statistics.fmean(values)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--alerts", type=int, default=200, help="alerts to measure (>= 200)")
    parser.add_argument("--assets", type=int, default=2, choices=range(1, len(SYMBOLS) + 1))
    parser.add_argument("--no-charts", action="store_true", help="text alerts only")
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/14",
                        help="Redis database to use (it is emptied first)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--workdir", type=Path, help="keep the database and worker logs here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-alerts-") as folder:
        workdir = args.workdir or Path(folder)
        workdir.mkdir(parents=True, exist_ok=True)
        result = run(args.alerts, args.assets, not args.no_charts, args.broker, workdir)
    print(f"\n{result['alerts']} alerts over {result['ticks']} ticks, {result['assets']} "
          f"asset(s) x 2 targets, charts {'on' if result['charts'] else 'off'}")
    for name, label in (("all", "every alert"),
                        ("first_per_chat_and_tick", "first alert per chat and tick")):
        f = result[name]
        print(f"  {label:<32} n={f['n']:<4} median {f['median_s']:.2f} s   "
              f"p95 {f['p95_s']:.2f} s   max {f['max_s']:.2f} s")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
