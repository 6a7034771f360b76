"""A bot that dies loudly, and replies within Telegram's limit.

The real ``signalcast bot`` process polls the fake Bot API; when Telegram starts answering
``getUpdates`` with 401 (token revoked) or 409 (another poller), the process must end with a
non-zero exit status and say why, and ``signalcast health --bot`` must fail while it does not
poll. Replies go through one place that keeps them within 4,096 characters.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from signalcast.bot.app import PollWatch, build_application, serve
from signalcast.bot.reply import MESSAGE_LIMIT, fit_message, telegram_length
from signalcast.config import load_settings
from signalcast.db.engine import init_db
from signalcast.observability.health import check_bot
from tests.conftest import REDIS_URL, write_config
from tests.fakes.telegram_server import FakeTelegram
from tests.processes import signalcast_env, stop

ADMIN = 1001


@pytest.fixture
def tg() -> Iterator[FakeTelegram]:
    with FakeTelegram() as server:
        yield server


def bot_config(tmp_path: Path, **bot) -> Path:
    return write_config(tmp_path / "bot.yaml", {"bot": {
        "poll_timeout_seconds": 1, "liveness_seconds": 5, "health_check_minutes": 0,
        "liveness_file": str(tmp_path / "bot.alive"), **bot}})


def start_bot(tmp_path: Path, tg: FakeTelegram, config: Path) -> subprocess.Popen:
    env = signalcast_env(config, f"sqlite:///{tmp_path / 'bot.db'}", REDIS_URL,
                         SIGNALCAST_TELEGRAM_TOKEN=tg.token,
                         SIGNALCAST_TELEGRAM_API_URL=tg.base_url,
                         SIGNALCAST_TELEGRAM_ADMINS=str(ADMIN))
    init_db(env["SIGNALCAST_DATABASE_URL"])
    return subprocess.Popen([sys.executable, "-m", "signalcast.cli", "bot"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def health(tmp_path: Path, config: Path) -> subprocess.CompletedProcess:
    env = signalcast_env(config, f"sqlite:///{tmp_path / 'bot.db'}", REDIS_URL)
    return subprocess.run([sys.executable, "-m", "signalcast.cli", "health", "--bot"], env=env,
                          capture_output=True, text=True, timeout=60)


def wait_exit(proc: subprocess.Popen, timeout: float = 60) -> tuple[int, str]:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop(proc)
        out, _ = proc.communicate()
        raise AssertionError(f"the bot kept running after polling was refused:\n{out}") from None
    return proc.returncode, out


# -- the process -------------------------------------------------------------------------------


@pytest.mark.integration
def test_a_bot_whose_token_is_revoked_exits_non_zero_and_its_health_check_fails(tmp_path, tg):
    config = bot_config(tmp_path)
    proc = start_bot(tmp_path, tg, config)
    try:
        tg.wait_for(lambda t: len(t.calls_to("getUpdates")) >= 2, timeout=60)
        polling = health(tmp_path, config)
        assert polling.returncode == 0 and "ok   bot: polling" in polling.stdout
    finally:
        tg.fail("getUpdates", 401, times=10**6)  # the token was revoked in @BotFather
    code, out = wait_exit(proc)
    assert code != 0
    assert "bot stopped polling: Telegram refused getUpdates with 401 Unauthorized" in out
    assert "SIGNALCAST_TELEGRAM_TOKEN" in out and tg.token not in out  # the fix, no secret
    dead = health(tmp_path, config)
    assert dead.returncode == 1 and "FAIL bot: not polling" in dead.stdout


@pytest.mark.integration
def test_a_bot_that_keeps_meeting_another_poller_exits_non_zero(tmp_path, tg):
    config = bot_config(tmp_path, conflict_grace_seconds=1)
    proc = start_bot(tmp_path, tg, config)
    tg.wait_for(lambda t: len(t.calls_to("getUpdates")) >= 1, timeout=60)
    tg.fail("getUpdates", 409, times=10**6)
    code, out = wait_exit(proc)
    assert code != 0 and "409 Conflict" in out and "one `signalcast bot` per token" in out


def test_the_poll_watch_tells_a_refused_token_and_a_lasting_conflict_from_a_passing_one(tmp_path):
    settings = load_settings(bot_config(tmp_path, conflict_grace_seconds=30), broker_url=None)
    clock = [0.0]
    watch = PollWatch(settings, clock=lambda: clock[0])
    watch.saw(200)
    assert Path(settings.bot.liveness_file).exists() and watch.fatal is None
    watch.saw(409)
    clock[0] = 20.0
    watch.saw(409)
    assert watch.fatal is None  # a second poller during a restart: wait
    watch.saw(200)
    clock[0] = 60.0
    watch.saw(409)
    assert watch.fatal is None  # the conflict started again at 60 s
    clock[0] = 95.0
    watch.saw(409)
    assert "409 Conflict" in watch.fatal
    refused = PollWatch(settings)
    refused.saw(401)
    assert "401 Unauthorized" in refused.fatal and "SIGNALCAST_TELEGRAM_TOKEN" in refused.fatal


def test_health_fails_without_a_fresh_liveness_file(tmp_path):
    settings = load_settings(bot_config(tmp_path), broker_url=None)
    assert not check_bot(settings).ok and "not polling" in check_bot(settings).detail
    Path(settings.bot.liveness_file).touch()
    assert check_bot(settings).ok


# -- replies within Telegram's limit -----------------------------------------------------------


def test_a_reply_is_fitted_to_telegrams_limit_and_keeps_its_html_valid():
    lines = [f"<b>{n}</b> {'x' * 40}" for n in range(200)]
    fitted = fit_message("\n".join(lines))
    assert telegram_length(fitted) <= MESSAGE_LIMIT and fitted.endswith("message limit)</i>")
    assert all(line.count("<b>") == line.count("</b>") for line in fitted.splitlines())
    assert telegram_length(fit_message("\U0001F600" * 3000, html=False)) <= MESSAGE_LIMIT
    assert fit_message("short") == "short"


@pytest.mark.integration
def test_a_5000_character_argument_is_answered_within_telegrams_limit(tmp_path, tg):
    settings = load_settings(bot_config(tmp_path), database_url=f"sqlite:///{tmp_path / 'r.db'}",
                             broker_url=None, telegram_token=tg.token,
                             telegram_api_url=tg.base_url, telegram_admins=str(ADMIN))
    application = build_application(settings, init_db(settings.env.database_url))
    halt = threading.Event()
    runner = threading.Thread(target=lambda: asyncio.run(serve(application, halt)), daemon=True)
    runner.start()
    try:
        tg.wait_for(lambda t: len(t.calls_to("getUpdates")) >= 1, timeout=30)
        tg.push_message(ADMIN, ADMIN, "/signals " + "A" * 5000)
        tg.push_message(ADMIN, ADMIN, "/" + "z" * 5000)
        [usage, unknown] = tg.wait_for_messages(2, chat_id=ADMIN, timeout=30)
    finally:
        halt.set()
        runner.join(30)
    assert "Unknown asset" in usage["text"] and "trimmed" in usage["text"]
    assert "Unknown command" in unknown["text"]
    for message in (usage, unknown):
        assert telegram_length(message["text"]) <= MESSAGE_LIMIT
    assert not [c for c in tg.calls_to("sendMessage") if c.status != 200]  # none refused
