"""The dashboard in a real browser: headless Chromium (Debian's package) driven by Playwright,
against a database filled by a short real pipeline run (synthetic history, LightGBM champion
and a random-forest shadow trained through the train task, hourly ticks through the scheduler's
job and the Celery tasks on the embedded worker, a promotion and a rollback by the admin
service). Each test asserts what a person sees against the database, and leaves a screenshot
in ``test-artifacts/``."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func
from sqlalchemy.orm import aliased
from sqlmodel import col, select

from signalcast.core.errors import ConfigError, DataError
from signalcast.db.engine import session_scope
from signalcast.db.tables import AlertOutbox, ModelVersion, Outcome, Prediction, TaskRun
from signalcast.web.server import WebServer, check_access
from tests.conftest import write_config

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
ASSET, TARGET, HELD_TARGET = "BTC/USDT", "1pct_48", "1pct_36"
TOKEN = "web-test-token-" + "x" * 24


def fill_database(workdir: Path, ticks: int = 48, history_days: int = 150):
    """A short real pipeline run into ``workdir/web.db``: returns (engine, settings)."""
    from signalcast.cli.demo import demo_settings
    from signalcast.core.timeframes import timeframe_to_timedelta
    from signalcast.db.engine import init_db
    from signalcast.lifecycle.admin import promote_version, rollback
    from signalcast.notifier.transports import set_console_writer
    from signalcast.ops.runs import recorded_run
    from signalcast.scheduler.jobs import candle_close_tick
    from signalcast.tasks.enqueuer import train_signatures
    from signalcast.tasks.runner import task_runtime, wait_chain, wait_tick
    from signalcast.tasks.tasks import ingest

    workdir.mkdir(parents=True, exist_ok=True)
    config = write_config(workdir / "web.yaml", {
        "assets": [{"symbol": ASSET, "timeframe": "1h"}],
        # +-1% within 48 h is nearly always touched, so probabilities pass a 52% threshold
        "targets": [{"pct": 0.01, "horizon": 48, "alert_threshold": 0.52},
                    {"pct": 0.01, "horizon": 36, "alert_threshold": 0.52}],
        # the first target alerts whatever its skill; the second's alerts wait for the gate
        "models": {"champion": "lightgbm", "alert_without_skill": [TARGET],
                   "params": {"lightgbm": {"n_estimators": 30}}},
        "routing": {"default": {"shadows": ["random_forest"]}},
    })
    settings = demo_settings((workdir / "web.db").resolve(), config)
    engine = init_db(settings.env.database_url)
    t0 = settings.data.start + timedelta(days=history_days)
    step = timeframe_to_timedelta("1h")
    delay = timedelta(seconds=settings.schedule.predict_delay_seconds)
    set_console_writer(lambda text: None)
    try:
        with task_runtime(settings):
            assert wait_chain(ingest.delay(ASSET, t0.isoformat())) is None
            for signature in train_signatures(settings, t0,
                                              families=["lightgbm", "random_forest"]):
                assert wait_chain(signature.apply_async()) is None
            for i in range(1, ticks + 1):
                assert wait_tick(candle_close_tick(engine, settings, t0 + i * step + delay)) == []
    finally:
        set_console_writer(None)
    promote_version(engine, settings, ASSET, TARGET, "random_forest v1", "cli:web-test",
                    "to see it on the dashboard")
    rollback(engine, settings, ASSET, TARGET, "cli:web-test", "and back")
    with pytest.raises(DataError):  # one failed task run, recorded as a worker records it
        with recorded_run(engine, "web-test-failed-run", 0, "train",
                          {"asset": ASSET, "target": TARGET}, max_lost=3):
            raise DataError("no candles for DOGE/USDT (a failure the dashboard lists)")
    return engine, settings


@pytest.fixture(scope="module")
def filled(tmp_path_factory):
    return fill_database(tmp_path_factory.mktemp("web"))


@pytest.fixture(scope="module")
def server(filled):
    engine, settings = filled
    server = WebServer(engine, settings, port=0).start()
    yield server
    server.close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.requested = []  # every URL the page asked for
    page.on("request", lambda request: page.requested.append(request.url))
    yield page
    context.close()


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"web-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000  # a drawn page, not a blank one
    return path


def count(engine, query) -> int:
    with session_scope(engine, readonly=True) as session:
        return session.exec(query).one()


def cells(page, table_id: str) -> list[list[str]]:
    return [[c.strip() for c in row.locator("td").all_inner_texts()]
            for row in page.locator(f"#{table_id} tbody tr").all()]


# -- what a person sees --------------------------------------------------------------------------


@pytest.mark.isolated
def test_overview_shows_champions_alerts_tasks_and_the_last_tick_from_the_database(
        page, server, filled):
    engine, _ = filled
    response = page.goto(server.url + "/")
    assert response.status == 200
    sent = count(engine, select(func.count()).select_from(AlertOutbox)
                 .where(AlertOutbox.status == "sent"))
    with session_scope(engine, readonly=True) as session:
        served = dict(session.exec(select(Prediction.target, func.count()).where(
            Prediction.served).group_by(Prediction.target)).all())
        held = dict(session.exec(select(Prediction.target, func.count()).where(
            Prediction.served, col(Prediction.alert_held).is_not(None))
            .group_by(Prediction.target)).all())
        champions = {v.target: v for v in session.exec(select(ModelVersion).where(
            ModelVersion.role == "champion"))}
        newest = session.exec(select(func.max(Prediction.candle_time))).one()
    assert sent > 0 and served == {TARGET: 48, HELD_TARGET: 48}
    assert held.get(HELD_TARGET, 0) > 0 and TARGET not in held
    assert page.inner_text("#card-champions b") == "2 / 2"
    assert page.inner_text("#card-sent b") == str(sent)
    assert page.inner_text("#card-held b") == str(sum(held.values()))
    rows = {row[1]: row for row in cells(page, "served")}
    for target in (TARGET, HELD_TARGET):
        assert rows[target][:3] == [ASSET, target, str(served[target])]
        assert rows[target][7] == str(held.get(target, 0))
    signals = count(engine, select(func.count()).select_from(AlertOutbox).where(
        AlertOutbox.status == "sent", AlertOutbox.kind == "signal"))
    assert 0 < signals <= sent
    assert rows[TARGET][6] == str(signals)  # every sent signal alert is this target's
    for row in cells(page, "assets"):
        champion = champions[row[1]]
        assert row[2].startswith(f"{champion.family} v{champion.version}")
    assert f"{newest:%Y-%m-%d %H:%M}" in page.inner_text("#last-tick")
    tasks = {r[0]: r[1:] for r in cells(page, "tasks")}
    assert tasks["train"][2] == "1"  # the one recorded failure
    assert page.get_by_text("failed task runs: train 1").is_visible()
    screenshot(page, "overview")


@pytest.mark.isolated
def test_target_page_draws_price_probabilities_alerts_reliability_and_comparison(
        page, server, filled):
    engine, _ = filled
    page.goto(server.url + "/")
    page.locator("#assets a", has_text=TARGET).click()  # the overview links each pair
    page.wait_for_load_state()
    assert page.inner_text("h1") == f"{ASSET} · {TARGET}"
    with session_scope(engine, readonly=True) as session:
        signal_candles = set(session.exec(select(AlertOutbox.candle_time).where(
            AlertOutbox.kind == "signal", AlertOutbox.target == TARGET)).all())
        resolved = session.exec(select(func.count()).select_from(Prediction).join(
            Outcome, (Outcome.asset == Prediction.asset) & (Outcome.target == Prediction.target)
            & (Outcome.candle_time == Prediction.candle_time)).where(
            Prediction.served, Prediction.target == TARGET)).one()
        champ, shadow = aliased(Prediction), aliased(Prediction)
        shared = session.exec(select(func.count()).select_from(champ).join(
            shadow, (shadow.candle_time == champ.candle_time) & (shadow.target == TARGET)
            & (shadow.id != champ.id)).join(
            Outcome, (Outcome.candle_time == champ.candle_time) & (Outcome.target == TARGET))
            .where(champ.served, champ.target == TARGET, col(shadow.served).is_(False))).one()
    # the price chart: one line of closes, the two served probabilities, a marker per alert
    price = page.locator("#price svg")
    assert price.locator("polyline.price-line").count() == 1
    assert int(price.locator("polyline.price-line").get_attribute("data-points")) == 240
    lines = price.locator("polyline.prob-line")
    assert lines.count() == 2
    assert [lines.nth(i).get_attribute("data-points") for i in range(2)] == ["48", "48"]
    assert signal_candles and price.locator("polygon.alert-marker").count() == len(signal_candles)
    assert page.inner_text("#n-signals") == str(len(signal_candles))
    # the reliability diagram covers every resolved served prediction, once per direction
    points = page.locator("#reliability circle.reliability-point")
    assert points.count() > 0
    for direction in ("up", "down"):
        counts = page.locator(f'#reliability circle[data-direction="{direction}"]')
        assert sum(int(counts.nth(i).get_attribute("data-n"))
                   for i in range(counts.count())) == resolved
    assert page.inner_text("#n-resolved") == str(resolved) and resolved > 0
    # champion against the shadow on the outcomes both predicted
    assert page.locator("#compare svg .curve").count() == 2
    [pair] = cells(page, "pairs")
    assert pair[:3] == ["lightgbm v1", "random_forest v1", str(shared)] and shared > 0
    # the model history shows the promotion and the rollback with who and why
    events = [row[1:5] for row in cells(page, "events")]
    assert events[:2] == [["rolled_back", "random_forest v1", "lightgbm v1", "cli:web-test"],
                          ["promoted", "lightgbm v1", "random_forest v1", "cli:web-test"]]
    with session_scope(engine, readonly=True) as session:
        stored = {f"{v.family} v{v.version}": v.role for v in session.exec(
            select(ModelVersion).where(ModelVersion.target == TARGET))}
    assert {row[1]: row[2] for row in cells(page, "versions")} == stored
    assert stored["lightgbm v1"] == "champion"
    assert page.inner_text("#n-held") == "0"
    screenshot(page, "target")


def test_signals_the_skill_gate_held_are_marked_on_the_price_chart(page, server, filled):
    engine, _ = filled
    page.goto(server.url + "/")
    page.locator("#assets a", has_text=HELD_TARGET).click()
    page.wait_for_load_state()
    with session_scope(engine, readonly=True) as session:
        held = session.exec(select(Prediction.alert_held).where(
            Prediction.served, Prediction.target == HELD_TARGET,
            col(Prediction.alert_held).is_not(None))).all()
        signals = session.exec(select(func.count()).select_from(AlertOutbox).where(
            AlertOutbox.target == HELD_TARGET, AlertOutbox.kind == "signal")).one()
    markers = page.locator("#price svg circle.held-marker")
    assert held and markers.count() == len(held) and page.inner_text("#n-held") == str(len(held))
    assert held[0] in markers.first.locator("title").text_content()  # why, on hover
    assert signals == 0 and page.locator("#price svg polygon.alert-marker").count() == 0
    screenshot(page, "target-held")


def test_alerts_log_lists_the_newest_alerts_and_filters_by_status(page, server, filled):
    engine, _ = filled
    page.goto(server.url + "/alerts")
    total = count(engine, select(func.count()).select_from(AlertOutbox))
    rows = cells(page, "alert-log")
    assert len(rows) == min(total, 200) and total > 0
    with session_scope(engine, readonly=True) as session:
        newest = session.exec(select(AlertOutbox).order_by(col(AlertOutbox.id).desc())).first()
    assert rows[0][0] == str(newest.id) and rows[0][2] == newest.chat_id
    assert rows[0][7] == newest.status
    screenshot(page, "alerts")
    page.get_by_role("link", name="failed").click()
    page.wait_for_load_state()
    assert cells(page, "alert-log") == [["none"]]  # the console delivered every alert


def test_task_runs_page_lists_runs_and_shows_the_failure_with_its_error(page, server, filled):
    engine, _ = filled
    page.goto(server.url + "/tasks")
    total = count(engine, select(func.count()).select_from(TaskRun))
    assert len(cells(page, "task-log")) == min(total, 200)
    page.get_by_role("link", name="failed").click()
    page.wait_for_load_state()
    [failed] = cells(page, "task-log")
    assert failed[1] == "train" and failed[3] == "failed"
    assert "DataError: no candles for DOGE/USDT" in failed[7]
    screenshot(page, "tasks")


def test_pages_load_nothing_from_anywhere_but_the_dashboard(page, server):
    for path in ("/", f"/target?asset={ASSET}&target={TARGET}", "/alerts", "/tasks"):
        response = page.goto(server.url + path)
        assert response.status == 200
        assert "default-src 'none'" in response.headers["content-security-policy"]
    assert page.requested and all(url.startswith(server.url) for url in page.requested)


def test_an_unknown_asset_is_a_page_that_names_the_known_ones(page, server):
    response = page.goto(server.url + "/target?asset=DOGE/USDT&target=1pct_48")
    assert response.status == 404
    assert "Known: BTC/USDT" in page.inner_text("main")


# -- access --------------------------------------------------------------------------------------


def test_serving_beyond_loopback_without_a_token_is_refused_at_start_up():
    with pytest.raises(ConfigError, match="SIGNALCAST_WEB_TOKEN"):
        check_access("0.0.0.0", None)
    check_access("0.0.0.0", TOKEN)
    check_access("127.0.0.1", None)


def test_with_a_token_every_page_asks_for_it_and_the_sign_in_form_opens_them(
        browser, filled):
    engine, settings = filled
    server = WebServer(engine, settings, port=0, token=TOKEN).start()
    try:
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(server.url + "/alerts", timeout=10)
        assert refused.value.code == 401
        bearer = urllib.request.Request(server.url + "/alerts",
                                        headers={"Authorization": f"Bearer {TOKEN}"})
        assert urllib.request.urlopen(bearer, timeout=10).status == 200
        assert urllib.request.urlopen(server.url + "/healthz", timeout=10).read() == b"ok"

        context = browser.new_context()
        page = context.new_page()
        assert page.goto(server.url + "/").status == 401
        page.fill("input[name=token]", "wrong")
        page.click("button[type=submit]")
        assert page.get_by_text("Wrong token.").is_visible()
        page.fill("input[name=token]", TOKEN)
        page.click("button[type=submit]")
        page.wait_for_load_state()
        assert page.inner_text("h1") == "Overview"
        [cookie] = context.cookies()
        assert cookie["httpOnly"] and TOKEN not in cookie["value"]
        assert page.goto(server.url + "/tasks").status == 200
        screenshot(page, "signed-in")
        context.close()
    finally:
        server.close()


@pytest.mark.slow
def test_web_command_serves_until_sigterm_and_refuses_a_wide_bind_without_a_token(filled):
    _, settings = filled
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("SIGNALCAST_WEB")},
           "SIGNALCAST_CONFIG": str(settings.source), "SIGNALCAST_ARTIFACT_KEY": "k" * 32,
           "SIGNALCAST_DATABASE_URL": settings.env.database_url}
    env.pop("SIGNALCAST_BROKER_URL", None)
    refused = subprocess.run([sys.executable, "-m", "signalcast.cli", "web", "--host",
                              "0.0.0.0", "--port", "0"], env=env, capture_output=True,
                             text=True, timeout=120, cwd=REPO)
    assert refused.returncode == 2 and "SIGNALCAST_WEB_TOKEN" in refused.stdout
    process = subprocess.Popen([sys.executable, "-m", "signalcast.cli", "web", "--port", "0"],
                               env=env, stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        line = ""
        while "serving the dashboard on" not in line:
            line = process.stderr.readline()
            assert line, "signalcast web ended before serving"
        url = re.search(r"http://127\.0\.0\.1:\d+", line).group(0)
        body = urllib.request.urlopen(url + "/", timeout=30).read().decode()
        assert "Overview" in body and ASSET in body
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
