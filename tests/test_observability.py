"""Observability: structured logs with context fields, the Prometheus exporter, health checks
and the cluster part of `signalcast status`, against real SQLite, Redis and worker processes."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from typer.testing import CliRunner

from signalcast.cli.render import render_status
from signalcast.config.runtime import configure_logging_from_env
from signalcast.core.logs import (
    JsonFormatter,
    configure_logging,
    current_context,
    log_context,
    set_service_level,
)
from signalcast.db.engine import init_db, session_scope
from signalcast.db.tables import (
    AlertOutbox,
    Candle,
    CandleGap,
    ModelVersion,
    Outcome,
    Prediction,
    ScheduledEnqueue,
    TaskRun,
)
from signalcast.features.labels import DOWN, EXPIRED, UP
from signalcast.observability.health import check_scheduler, check_worker, run_checks
from signalcast.observability.metrics import METRIC_NAMES, MetricsServer, SignalcastCollector
from signalcast.ops import summary
from signalcast.ops.status import collect_status
from signalcast.scheduler.leader import LOCK_KEY
from signalcast.tasks.enqueuer import probe_for
from tests.processes import signalcast_env, workers

NOW = datetime(2024, 5, 1, 12, 0, 20, tzinfo=UTC)
HOUR = timedelta(hours=1)
CLOSED_PORT_REDIS = "redis://127.0.0.1:1/0"  # nothing listens on port 1


@pytest.fixture
def root_logging():
    """Restore the root logger's handlers and level after a test reconfigures them."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield root
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(scope="module")
def private_redis(tmp_path_factory):
    """A throwaway redis-server on a free port for this module: the queues, locks and worker
    pings seen here are ours alone, whatever else runs against the shared Redis."""
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(tmp_path_factory.mktemp("redis"))],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}"
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            assert proc.poll() is None and time.monotonic() < deadline, "redis-server failed"
            time.sleep(0.05)
    yield url
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def redis_url(private_redis):
    """Database 1 of the private Redis, emptied first (shadows conftest's shared Redis here;
    database 0 belongs to the module's worker)."""
    url = f"{private_redis}/1"
    redis.Redis.from_url(url).flushdb()
    return url


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# -- logs ---------------------------------------------------------------------------------------


def test_json_logs_carry_the_context_fields_of_nested_blocks(root_logging):
    out = io.StringIO()
    configure_logging("json", "INFO", stream=out)
    log = logging.getLogger("signalcast.tasks.tasks")
    with log_context(task_id="tick:BTC/USDT:predict", task="predict"):
        with log_context(asset="BTC/USDT", target="2pct_72"):
            log.info("predicted %s", "0.81")
        log.info("stored")
    log.info("outside")
    inner, outer, outside = json_lines(out.getvalue())
    assert inner["message"] == "predicted 0.81" and inner["level"] == "INFO"
    assert inner["logger"] == "signalcast.tasks.tasks" and inner["time"].endswith("Z")
    assert (inner["asset"], inner["target"], inner["task_id"], inner["task"]) == (
        "BTC/USDT", "2pct_72", "tick:BTC/USDT:predict", "predict")
    assert outer["task_id"] == "tick:BTC/USDT:predict" and "asset" not in outer
    assert "task_id" not in outside and current_context() == {}


def test_context_is_restored_when_the_block_raises(root_logging):
    with pytest.raises(RuntimeError), log_context(asset="ETH/USDT"):
        raise RuntimeError("boom")
    assert current_context() == {}


def test_each_thread_logs_its_own_context(root_logging):
    out = io.StringIO()
    configure_logging("json", "INFO", stream=out)
    log = logging.getLogger("signalcast.test")
    seen = threading.Event()

    def other_thread() -> None:
        with log_context(asset="SOL/USDT"):
            log.info("other")
            seen.set()

    with log_context(asset="BTC/USDT"):
        thread = threading.Thread(target=other_thread)
        thread.start()
        assert seen.wait(5)
        log.info("main")
        thread.join()
    by_message = {line["message"]: line for line in json_lines(out.getvalue())}
    assert by_message["other"]["asset"] == "SOL/USDT"
    assert by_message["main"]["asset"] == "BTC/USDT"


def test_json_logs_keep_the_traceback_and_extra_fields(root_logging):
    out = io.StringIO()
    configure_logging("json", "INFO", stream=out)
    try:
        raise ValueError("bad candle")
    except ValueError:
        logging.getLogger("signalcast.x").exception("ingest failed", extra={"rows": 3})
    (line,) = json_lines(out.getvalue())
    assert line["level"] == "ERROR" and line["rows"] == 3
    assert "ValueError: bad candle" in line["exc_info"]


def test_text_logs_append_the_context_in_brackets(root_logging):
    out = io.StringIO()
    configure_logging("text", "INFO", stream=out)
    with log_context(asset="BTC/USDT", task_id="t-1"):
        logging.getLogger("signalcast.x").warning("fallback used")
    assert out.getvalue() == "WARNING signalcast.x: fallback used [asset=BTC/USDT task_id=t-1]\n"


def test_configuring_twice_leaves_one_handler(root_logging):
    configure_logging("text", stream=io.StringIO())
    configure_logging("json", stream=io.StringIO())
    ours = [h for h in root_logging.handlers if getattr(h, "_signalcast", False)]
    assert len(ours) == 1 and isinstance(ours[0].formatter, JsonFormatter)


def test_log_format_and_level_come_from_the_environment(root_logging, monkeypatch):
    monkeypatch.setenv("SIGNALCAST_LOG_FORMAT", "JSON")
    monkeypatch.setenv("SIGNALCAST_LOG_LEVEL", "error")
    handler = configure_logging_from_env(stream=io.StringIO())
    assert isinstance(handler.formatter, JsonFormatter)
    assert root_logging.level == logging.ERROR
    set_service_level(logging.INFO)  # a service's usual level does not override the choice
    assert root_logging.level == logging.ERROR


def test_without_a_chosen_level_a_service_raises_verbosity_to_info(root_logging, monkeypatch):
    monkeypatch.delenv("SIGNALCAST_LOG_LEVEL", raising=False)
    monkeypatch.delenv("SIGNALCAST_LOG_FORMAT", raising=False)
    configure_logging_from_env(stream=io.StringIO())
    assert root_logging.level == logging.WARNING
    set_service_level(logging.INFO)
    assert root_logging.level == logging.INFO


CELERY_LOGS = """
import logging
from celery.utils.log import get_task_logger
from signalcast.config.runtime import configure_logging_from_env
from signalcast.core.logs import log_context
from signalcast.tasks.app import route_celery_logging
from signalcast.tasks.app import app

configure_logging_from_env()
route_celery_logging()
app.log.setup_logging_subsystem(loglevel="INFO")  # what a worker does at start
with log_context(task_id="tick:BTC/USDT:2024-05-01T11:00:00+00:00:predict", asset="BTC/USDT"):
    get_task_logger("signalcast.tasks.tasks").info("task logger line")
    logging.getLogger("celery.app.trace").info("trace line")
"""


@pytest.mark.slow
def test_a_celery_worker_logs_json_through_our_handler(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNALCAST_")}
    env["SIGNALCAST_LOG_FORMAT"] = "json"
    done = subprocess.run([sys.executable, "-c", CELERY_LOGS], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = json_lines(done.stderr)  # every line is JSON: Celery added no handler of its own
    assert {line["message"] for line in lines} == {"task logger line", "trace line"}
    for line in lines:
        assert line["asset"] == "BTC/USDT" and line["task_id"].endswith(":predict")


# -- metrics ------------------------------------------------------------------------------------


def _version(**kw) -> ModelVersion:
    values = dict(asset="BTC/USDT", target="1pct_24", family="lightgbm", version=1,
                  role="champion", created_at=NOW - timedelta(days=2), feature_set="v1",
                  train_start=NOW - timedelta(days=300), train_end=NOW - timedelta(days=2),
                  n_rows=1000, data_fingerprint="f" * 64, sha256="0" * 64, artifact=b"x")
    return ModelVersion(**{**values, **kw})


def seed_figures(engine) -> None:
    """Known rows: 4 served BTC 1pct_24 predictions (one by a fallback), 4 shadow ones, 3
    resolved outcomes (2 hits: P(up) 0.3 beside P(down) 0.2 says up) and one expired, alerts
    sent/waiting/failed, task runs, a tick."""
    candles = [NOW.replace(minute=0, second=0) - HOUR * k for k in (4, 3, 2, 1)]  # 08..11h
    with session_scope(engine) as session:
        champion, shadow = _version(), _version(family="river", role="challenger",
                                                data_fingerprint="e" * 64)
        session.add_all([champion, shadow])
        session.flush()
        probs, labels = [0.7, 0.3, 0.8, 0.4], [UP, UP, DOWN, EXPIRED]
        downs = [None, 0.2, None, None]  # None: a row from before three outcomes
        stored_after = [10, 20, 30, 40]  # seconds from the candle's close
        for i, candle in enumerate(candles):
            close = candle + HOUR
            session.add(Prediction(
                asset="BTC/USDT", target="1pct_24", model_version_id=champion.id,
                candle_time=candle, prob_up=probs[i], prob_down=downs[i], served=True,
                fallback="lightgbm v1 failed" if i == 2 else None,
                created_at=close + timedelta(seconds=stored_after[i])))
            session.add(Prediction(
                asset="BTC/USDT", target="1pct_24", model_version_id=shadow.id,
                candle_time=candle, prob_up=0.5, served=False, role="shadow",
                created_at=close + timedelta(seconds=5)))
            session.add(Outcome(asset="BTC/USDT", target="1pct_24", candle_time=candle,
                                label=labels[i], bars=0 if labels[i] == EXPIRED else 3))
            session.add(Candle(asset="BTC/USDT", timeframe="1h", time=candle, open=1, high=1,
                               low=1, close=1, volume=1))
        for candle, delay in ((candles[2], 45), (candles[3], 5)):  # signal alerts sent
            session.add(AlertOutbox(chat_id="42", asset="BTC/USDT", target="1pct_24",
                                    candle_time=candle, kind="signal", status="sent",
                                    sent_at=candle + HOUR + timedelta(seconds=delay)))
        session.add(AlertOutbox(chat_id="43", asset="BTC/USDT", target="1pct_24",
                                candle_time=candles[3], kind="signal", status="pending",
                                created_at=NOW - timedelta(seconds=90)))
        session.add(AlertOutbox(chat_id="42", asset="BTC/USDT", target="1pct_24",
                                candle_time=candles[0], kind="outcome", status="failed"))
        session.add_all([TaskRun(task_id="p1", name="predict", status="done"),
                         TaskRun(task_id="p2", name="predict", status="done"),
                         TaskRun(task_id="t1", name="train", status="failed")])
        session.add(ScheduledEnqueue(job="tick:BTC/USDT", fire_time=candles[3]))
        session.add(CandleGap(asset="ETH/USDT", timeframe="1h", first_missing=candles[0],
                              last_missing=candles[0] + 4 * HOUR, missing=5))


def scrape(port: int) -> dict[tuple[str, frozenset], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert response.status == 200
        text = response.read().decode()
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(samples, name: str, **labels) -> float:
    return samples[(name, frozenset(labels.items()))]


BTC = {"asset": "BTC/USDT", "target": "1pct_24"}


def test_metrics_endpoint_serves_our_figures_over_http(sqlite_url, make_settings):
    engine = init_db(sqlite_url)
    seed_figures(engine)
    settings = make_settings(sqlite_url)
    collector = SignalcastCollector(engine, settings, window=timedelta(hours=6),
                                    clock=lambda: NOW)
    server = MetricsServer(collector, port=0).start()  # port 0: the OS picks a free one
    try:
        samples = scrape(server.port)
    finally:
        server.close()
    assert value(samples, "signalcast_up") == 1 and value(samples, "signalcast_database_up") == 1
    assert value(samples, "signalcast_predictions_served_total", **BTC) == 4
    assert value(samples, "signalcast_predictions_shadow_total", **BTC) == 4
    assert value(samples, "signalcast_prediction_fallbacks_total", **BTC) == 1
    assert value(samples, "signalcast_outcomes_resolved_total", **BTC) == 3
    assert value(samples, "signalcast_outcome_hits_total", **BTC) == 2
    with session_scope(engine, readonly=True) as session:
        summaries = summary.target_summaries(session)
        (expected,) = [s.hit_rate for s in summaries]
    assert value(samples, "signalcast_live_hit_rate", **BTC) == pytest.approx(expected) == 2 / 3
    (ups,) = [s.ups for s in summaries]
    assert value(samples, "signalcast_outcome_ups_total", **BTC) == ups
    assert value(samples, "signalcast_live_majority_rate", **BTC) == pytest.approx(
        max(ups, 3 - ups) / 3)
    assert value(samples, "signalcast_model_age_seconds", family="lightgbm", **BTC) == 2 * 86400
    # candle close -> stored: 10, 20, 30, 40 s; close -> alert sent: 45 and 5 s (nearest rank)
    assert [value(samples, "signalcast_tick_to_stored_seconds", quantile=q)
            for q in ("0.5", "0.95", "1")] == [20, 40, 40]
    assert [value(samples, "signalcast_alert_latency_seconds", quantile=q)
            for q in ("0.5", "0.95", "1")] == [5, 45, 45]
    assert value(samples, "signalcast_alerts_sent_total", kind="signal") == 2
    assert value(samples, "signalcast_alerts_failed_total", kind="outcome") == 1
    assert value(samples, "signalcast_alerts_waiting", kind="signal") == 1
    assert value(samples, "signalcast_alert_oldest_waiting_seconds") == 90
    assert value(samples, "signalcast_task_runs", task="train", status="failed") == 1
    assert value(samples, "signalcast_task_runs", task="predict", status="done") == 2
    eleven = datetime(2024, 5, 1, 11, tzinfo=UTC).timestamp()  # newest candle and tick
    assert value(samples, "signalcast_last_tick_timestamp_seconds") == eleven
    assert value(samples, "signalcast_last_candle_timestamp_seconds", asset="BTC/USDT") == eleven
    assert value(samples, "signalcast_open_candle_gaps", asset="ETH/USDT") == 5


def test_queue_depths_and_unacked_messages_come_from_redis(sqlite_url, make_settings,
                                                           redis_url):
    client = redis.Redis.from_url(redis_url)
    client.lpush("predict", "m1", "m2", "m3")
    client.lpush("train", "m4")
    client.hset("unacked", mapping={"tag1": "x", "tag2": "y"})
    settings = make_settings(sqlite_url, broker_url=redis_url)
    server = MetricsServer(SignalcastCollector(init_db(sqlite_url), settings), port=0).start()
    try:
        samples = scrape(server.port)
    finally:
        server.close()
    assert value(samples, "signalcast_broker_up") == 1
    assert [value(samples, "signalcast_queue_depth", queue=q)
            for q in ("predict", "train", "alerts")] == [3, 1, 0]
    assert value(samples, "signalcast_broker_unacked_messages") == 2


@pytest.mark.slow
def test_services_that_do_not_answer_are_reported_as_down_not_as_a_failed_scrape(
        config_path, make_settings, sqlite_url):
    broken_db = "postgresql://nobody@127.0.0.1:1/none"  # nothing listens on port 1
    settings = make_settings(broken_db, broker_url=CLOSED_PORT_REDIS)
    from signalcast.db.engine import get_engine

    collector = SignalcastCollector(get_engine(broken_db), settings)
    server = MetricsServer(collector, port=0).start()
    try:
        samples = scrape(server.port)
    finally:
        server.close()
    assert value(samples, "signalcast_up") == 1
    assert value(samples, "signalcast_database_up") == 0
    assert value(samples, "signalcast_broker_up") == 0


@pytest.mark.slow
def test_metrics_command_serves_until_sigterm(config_path, sqlite_url, tmp_path):
    init_db(sqlite_url)
    port = free_port()
    env = signalcast_env(config_path, sqlite_url, CLOSED_PORT_REDIS)
    env.pop("SIGNALCAST_BROKER_URL")
    proc = subprocess.Popen(
        [sys.executable, "-c", "import typer; from signalcast.cli.services import metrics; "
         "typer.run(metrics)", "--port", str(port)],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                samples = scrape(port)
                break
            except OSError:
                assert proc.poll() is None, proc.stdout.read()
                assert time.monotonic() < deadline, "the exporter did not answer in 30 s"
                time.sleep(0.2)
        assert {name for name, _ in samples} >= {"signalcast_up", "signalcast_database_up",
                                                  "signalcast_scrape_duration_seconds"}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_every_documented_metric_name_is_exposed_with_data(sqlite_url, make_settings,
                                                           redis_url):
    engine = init_db(sqlite_url)
    seed_figures(engine)
    settings = make_settings(sqlite_url, broker_url=redis_url)
    collector = SignalcastCollector(engine, settings, window=timedelta(hours=6),
                                    clock=lambda: NOW)
    exposed = {m.name if m.type != "counter" else f"{m.name}_total"
               for m in collector.collect()}
    assert exposed == set(METRIC_NAMES)
    docs = (Path(__file__).resolve().parents[1] / "docs" / "production.md").read_text()
    assert [name for name in METRIC_NAMES if name not in docs] == []


# -- health -------------------------------------------------------------------------------------


def test_health_passes_when_the_database_and_redis_answer(sqlite_url, make_settings, redis_url):
    checks = run_checks(make_settings(sqlite_url, broker_url=redis_url))
    assert [(c.name, c.ok) for c in checks] == [("database", True), ("broker", True)]


def test_health_command_names_the_service_that_does_not_answer(config_path, sqlite_url,
                                                               monkeypatch):
    import typer

    from signalcast.cli.services import health

    app = typer.Typer()
    app.command()(health)
    monkeypatch.setenv("SIGNALCAST_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("SIGNALCAST_BROKER_URL", CLOSED_PORT_REDIS)
    result = CliRunner().invoke(app, ["--config", str(config_path), "--timeout", "1"])
    assert result.exit_code == 1
    assert "ok   database: sqlite:///" in result.output
    assert "FAIL broker: redis://127.0.0.1:1/0: ConnectionError" in result.output


def test_scheduler_health_needs_some_replica_to_hold_the_leader_lock(sqlite_url, make_settings,
                                                                     redis_url):
    settings = make_settings(sqlite_url, broker_url=redis_url)
    nobody = check_scheduler(settings)
    assert not nobody.ok and "no scheduler holds the leader lock" in nobody.detail
    redis.Redis.from_url(redis_url).set(LOCK_KEY, "other-host:4242:abcdef", px=30_000)
    standby = check_scheduler(settings)
    assert standby.ok and standby.detail == "standby; leader other-host:4242"


# -- a live worker: health ping and the status cluster view --------------------------------------

@pytest.fixture(scope="module")
def train_worker(tmp_path_factory, private_redis):
    """One real `signalcast worker -Q train` process (named w0@host) on the private Redis."""
    from signalcast.config import load_settings
    from signalcast.tasks.app import app, configure
    from tests.conftest import write_config

    tmp = tmp_path_factory.mktemp("worker")
    config = write_config(tmp / "signalcast.yaml")
    url = f"sqlite:///{tmp / 'worker.db'}"
    init_db(url)
    broker = f"{private_redis}/0"
    configure(load_settings(config, database_url=url, broker_url=broker, telegram_token=None))
    with workers(signalcast_env(config, url, broker), app, queues="train"):
        yield broker


@pytest.mark.integration
def test_worker_health_pings_the_named_worker_of_this_host(train_worker, sqlite_url,
                                                           make_settings):
    settings = make_settings(sqlite_url, broker_url=train_worker)
    alive = check_worker(settings, "w0@%h")
    assert alive.ok and alive.detail == f"w0@{socket.gethostname()} answers"
    missing = check_worker(settings, "ghost@%h", timeout=1)
    assert not missing.ok and "did not answer a ping" in missing.detail


@pytest.mark.integration
def test_status_shows_workers_per_queue_depths_last_tick_and_failed_tasks(
        train_worker, sqlite_url, make_settings):
    engine = init_db(sqlite_url)
    seed_figures(engine)
    client = redis.Redis.from_url(train_worker)
    client.lpush("predict", "m1", "m2", "m3")
    try:
        settings = make_settings(sqlite_url, broker_url=train_worker)
        data = collect_status(engine, settings, now=NOW + 3 * HOUR, probe=probe_for(settings))
    finally:
        client.delete("predict")
    cluster = data["cluster"]
    assert cluster["workers_per_queue"] == {"predict": 0, "train": 1, "alerts": 0}
    assert cluster["queues"] == {"predict": 3, "train": 0, "alerts": 0}
    assert cluster["failed_tasks"] == {"train": 1}
    assert cluster["last_tick_age_seconds"] == 4 * 3600 + 20 and cluster["tick_late"]
    assert data["assets"][1]["gaps"][0]["missing"] == 5  # the fields others rely on stay
    json.dumps(data, default=str)  # `signalcast status --json`
    out = io.StringIO()
    render_status(data, Console(file=out, width=200))
    text = out.getvalue()
    assert "cluster: redis, 1 worker(s) answering" in text
    assert "no worker consumes it" in text  # predict: 3 waiting, nobody consumes
    assert "failed task runs: train 1" in text
    assert "candle 2024-05-01 11:00 UTC (4 h ago): late, is a scheduler running?" in text
    assert "open gaps" in text and "hit rate" in text and "task runs" in text


def test_status_in_embedded_mode_says_tasks_run_in_process(sqlite_url, make_settings):
    engine = init_db(sqlite_url)
    data = collect_status(engine, make_settings(sqlite_url), now=NOW)
    assert data["cluster"]["broker"] == "embedded" and data["cluster"]["last_tick"] is None
    out = io.StringIO()
    render_status(data, Console(file=out, width=200))
    assert "cluster: embedded" in out.getvalue() and "last tick: none yet" in out.getvalue()
    assert "queues" not in out.getvalue()
