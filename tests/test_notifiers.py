"""Webhook and Discord notifiers through the real outbox drainer and the real transports,
against a local fake HTTP server (stdlib): the JSON each receives, the HMAC signature, retries
on 429/5xx/timeouts by the outbox's backoff, 4xx failing for good, paused chats skipped, and
endpoints whose secret variable is missing waiting instead of failing the drain."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlmodel import select

from signalcast.alerts.drain import drain_outbox
from signalcast.alerts.rules import alert_chats, queue_model_event_alert
from signalcast.alerts.subscriptions import pause_alerts
from signalcast.config import load_settings
from signalcast.core.errors import ConfigError
from signalcast.db.engine import init_db, session_scope
from signalcast.db.tables import AlertOutbox
from signalcast.notifier.discord import CONTENT_LIMIT, SUPPRESS_NOTIFICATIONS, DiscordTransport
from signalcast.notifier.telegram import PermanentFailure, RetryLater
from signalcast.notifier.transports import transports_for
from signalcast.notifier.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, WebhookTransport
from tests.conftest import write_config

T0 = datetime(2024, 3, 1, 12, tzinfo=UTC)
SECRET = "webhook-signing-key"


class FakeEndpoint:
    """A local HTTP server that records each POST and answers from a script of
    ``(status, headers, body)`` (the last entry repeats); ``delay`` seconds before answering."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.script: list[tuple[int, dict[str, str], bytes]] = [(204, {}, b"")]
        self.delay = 0.0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                owner.received.append({"path": self.path, "headers": dict(self.headers),
                                       "body": body, "json": json.loads(body)})
                status, headers, answer = (owner.script.pop(0) if len(owner.script) > 1
                                           else owner.script[0])
                time.sleep(owner.delay)
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeEndpoint:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def endpoint() -> Iterator[FakeEndpoint]:
    with FakeEndpoint() as server:
        yield server


@pytest.fixture
def notifying(tmp_path: Path, sqlite_url: str, endpoint: FakeEndpoint, monkeypatch):
    """(engine, settings) with one signed webhook and one Discord channel on the fake server."""
    monkeypatch.setenv("SIGNALCAST_WEBHOOK_OPS_SECRET", SECRET)
    monkeypatch.setenv("SIGNALCAST_DISCORD_TEAM_URL", f"{endpoint.url}/api/webhooks/1/tok")

    def make(**alerts: Any):
        config = write_config(tmp_path / "n.yaml", {
            "alerts": {"console": False, "chat_interval_seconds": 0.0, **alerts},
            "notifiers": {
                "webhooks": [{"name": "ops", "url": f"{endpoint.url}/hook",
                              "secret_env": "SIGNALCAST_WEBHOOK_OPS_SECRET",
                              "timeout_seconds": 1.0}],
                "discord": [{"name": "team", "url_env": "SIGNALCAST_DISCORD_TEAM_URL"}]}})
        return init_db(sqlite_url), load_settings(config, database_url=sqlite_url,
                                                  broker_url=None)
    return make


def queue_model_alert(engine, settings, at: datetime = T0) -> int:
    with session_scope(engine) as session:
        return queue_model_event_alert(session, settings, "promoted", "BTC/USDT", "1pct_24",
                                       to_label="lightgbm v2", from_label="lightgbm v1",
                                       actor="cli:alice", reason="better Brier", at=at)


def rows(engine) -> dict[str, AlertOutbox]:
    with session_scope(engine, readonly=True) as session:
        return {r.chat_id: r for r in session.exec(select(AlertOutbox)).all()}


# -- through the outbox --------------------------------------------------------------------------


def test_configured_endpoints_are_chats_that_receive_alerts_through_the_outbox(
        notifying, endpoint):
    engine, settings = notifying()
    assert alert_chats(settings) == ["webhook:ops", "discord:team"]
    endpoint.script = [(200, {}, b"{}"), (200, {"Content-Type": "application/json"},
                                          b'{"id": "1234567890123456789"}')]
    assert queue_model_alert(engine, settings) == 2
    result = drain_outbox(engine, transports_for(settings), settings=settings)
    assert result.sent == 2 and result.failed == 0
    hook, discord = sorted(endpoint.received, key=lambda r: r["path"] != "/hook")
    assert hook["json"]["source"] == "signalcast" and hook["json"]["chat_id"] == "webhook:ops"
    assert "lightgbm v2" in hook["json"]["text"] and hook["json"]["silent"] is False
    assert discord["path"].startswith("/api/webhooks/1/tok")
    assert parse_qs(urlsplit(discord["path"]).query) == {"wait": ["true"]}
    assert discord["json"]["content"] == hook["json"]["text"]
    assert discord["json"]["allowed_mentions"] == {"parse": []}
    stored = rows(engine)
    assert {chat: r.status for chat, r in stored.items()} == {"webhook:ops": "sent",
                                                             "discord:team": "sent"}


def test_webhook_requests_carry_an_hmac_of_timestamp_and_body(notifying, endpoint):
    engine, settings = notifying()
    queue_model_alert(engine, settings)
    drain_outbox(engine, transports_for(settings), settings=settings)
    [hook] = [r for r in endpoint.received if r["path"] == "/hook"]
    headers = {k.lower(): v for k, v in hook["headers"].items()}
    timestamp = headers[TIMESTAMP_HEADER.lower()]
    expected = hmac.new(SECRET.encode(), timestamp.encode() + b"." + hook["body"],
                        hashlib.sha256).hexdigest()
    assert headers[SIGNATURE_HEADER.lower()] == f"sha256={expected}"
    assert abs(int(timestamp) - time.time()) < 600
    assert headers["content-type"] == "application/json"


def test_a_server_error_is_retried_later_by_the_outbox_backoff_and_then_sent(
        notifying, endpoint):
    engine, settings = notifying(max_wait_seconds=0)  # a wait ends the drain: retry later
    endpoint.script = [(503, {}, b"down"), (204, {}, b"")]
    queue_model_alert(engine, settings)
    route = transports_for(settings)
    first = drain_outbox(engine, lambda c: route(c) if c == "webhook:ops" else None,
                         settings=settings)
    assert first.retry == 1 and first.sent == 0
    row = rows(engine)["webhook:ops"]
    assert row.status == "pending" and "HTTP 503" in row.last_error
    assert row.next_attempt_at > datetime.now(UTC)  # backed off, not hammered
    later = row.next_attempt_at + timedelta(seconds=1)
    second = drain_outbox(engine, lambda c: route(c) if c == "webhook:ops" else None,
                          settings=settings, now=lambda: later)
    assert second.sent == 1 and rows(engine)["webhook:ops"].status == "sent"
    assert len([r for r in endpoint.received if r["path"] == "/hook"]) == 2


def test_a_client_error_fails_for_good_with_the_answer(notifying, endpoint):
    engine, settings = notifying()
    endpoint.script = [(400, {}, b"unknown field")]
    queue_model_alert(engine, settings)
    result = drain_outbox(engine, transports_for(settings), settings=settings)
    assert result.failed == 2
    for row in rows(engine).values():
        assert row.status == "failed" and "HTTP 400: unknown field" in row.last_error


def test_a_paused_endpoint_receives_nothing(notifying, endpoint):
    engine, settings = notifying()
    pause_alerts(engine, settings, "discord:team", actor="cli:alice")
    assert queue_model_alert(engine, settings) == 1  # webhook:ops only
    drain_outbox(engine, transports_for(settings), settings=settings)
    assert [r["path"] for r in endpoint.received] == ["/hook"]


def test_an_endpoint_whose_secret_is_not_set_waits_and_the_others_are_served(
        notifying, endpoint, monkeypatch, caplog):
    engine, settings = notifying()
    monkeypatch.delenv("SIGNALCAST_WEBHOOK_OPS_SECRET")
    queue_model_alert(engine, settings)
    result = drain_outbox(engine, transports_for(settings), settings=settings)
    assert result.sent == 1
    assert {c: r.status for c, r in rows(engine).items()} == {"webhook:ops": "pending",
                                                             "discord:team": "sent"}
    assert "SIGNALCAST_WEBHOOK_OPS_SECRET" in caplog.text


# -- the transports on their own -----------------------------------------------------------------


def test_webhook_429_asks_to_retry_after_the_servers_wait(endpoint):
    endpoint.script = [(429, {"Retry-After": "7"}, b"")]
    with pytest.raises(RetryLater) as caught:
        WebhookTransport(endpoint.url + "/hook", name="ops").send("webhook:ops", "hi")
    assert caught.value.seconds == 7 and caught.value.flood


def test_a_webhook_that_answers_too_late_may_have_delivered(endpoint):
    endpoint.delay = 1.0
    with pytest.raises(RetryLater) as caught:
        WebhookTransport(endpoint.url + "/hook", timeout=0.2, name="ops").send("x", "hi")
    assert caught.value.maybe_delivered and "within 0.2s" in str(caught.value)


def test_an_unreachable_webhook_is_retried_not_failed():
    with pytest.raises(RetryLater, match="unreachable"):
        WebhookTransport("http://127.0.0.1:1/hook", timeout=1.0, name="ops").send("x", "hi")


def test_discord_gets_the_message_id_silent_flag_and_text_within_its_limit(endpoint):
    endpoint.script = [(200, {"Content-Type": "application/json"}, b'{"id": "42"}')]
    sent = DiscordTransport(endpoint.url + "/api/webhooks/9/t?thread_id=5", name="team").send(
        "discord:team", "x" * (CONTENT_LIMIT + 500), silent=True)
    assert sent.message_id == 42
    [request] = endpoint.received
    assert len(request["json"]["content"]) == CONTENT_LIMIT
    assert request["json"]["flags"] == SUPPRESS_NOTIFICATIONS
    assert parse_qs(urlsplit(request["path"]).query) == {"thread_id": ["5"], "wait": ["true"]}


def test_discord_rate_limit_waits_its_retry_after(endpoint):
    endpoint.script = [(429, {"Content-Type": "application/json"},
                        b'{"message": "You are being rate limited.", "retry_after": 1.5}')]
    with pytest.raises(RetryLater) as caught:
        DiscordTransport(endpoint.url + "/api/webhooks/9/t").send("discord:team", "hi")
    assert caught.value.seconds == 1.5


def test_discord_404_fails_for_good_without_showing_the_url(endpoint):
    endpoint.script = [(404, {}, b'{"message": "Unknown Webhook"}')]
    with pytest.raises(PermanentFailure) as caught:
        DiscordTransport(endpoint.url + "/api/webhooks/9/secret-token", name="team").send(
            "discord:team", "hi")
    assert "Unknown Webhook" in str(caught.value) and "secret-token" not in str(caught.value)


# -- configuration -------------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint_config, message", [
    ({"name": "ops"}, "exactly one of url and url_env"),
    ({"name": "ops", "url": "http://a", "url_env": "X"}, "exactly one of url and url_env"),
    ({"name": "ops", "url": "ftp://a"}, "http:// or https://"),
    ({"name": "bad name", "url": "http://a"}, "name"),
    ({"name": "ops", "url": "http://a", "secret_env": "lower-case"}, "environment variable"),
])
def test_bad_notifier_config_stops_start_up_naming_the_field(tmp_path, endpoint_config,
                                                               message):
    config = write_config(tmp_path / "bad.yaml", {"notifiers": {"webhooks": [endpoint_config]}})
    with pytest.raises(ConfigError, match="notifiers") as caught:
        load_settings(config)
    assert message in str(caught.value)


def test_a_discord_url_in_the_file_is_refused_as_it_holds_the_token(tmp_path):
    config = write_config(tmp_path / "d.yaml", {"notifiers": {"discord": [
        {"name": "team", "url": "https://discord.com/api/webhooks/1/secret"}]}})
    with pytest.raises(ConfigError, match="holds its token") as caught:
        load_settings(config)
    assert "url_env" in str(caught.value)


def test_an_endpoint_listed_twice_is_refused(tmp_path):
    config = write_config(tmp_path / "twice.yaml", {"notifiers": {"discord": [
        {"name": "team", "url_env": "A"}, {"name": "team", "url_env": "B"}]}})
    with pytest.raises(ConfigError, match="repeated: team"):
        load_settings(config)
