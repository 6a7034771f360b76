"""The dashboard's HTTP server: the standard library's threading server, a few GET routes, and
an access token.

Access: bound to a loopback address without ``SIGNALCAST_WEB_TOKEN`` the pages are open (only
this host reaches them); bound wider, a token is required (start-up refuses otherwise), and
with a token set every page asks for it: an ``Authorization: Bearer <token>`` header, or the
sign-in form, which sets an HttpOnly cookie holding an HMAC of the token (never the token).
``/healthz`` answers ``ok`` to anyone and shows nothing else.

Every response forbids scripts, frames and any fetch from elsewhere (Content-Security-Policy):
the pages are HTML with inline CSS and inline SVG only.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import socket
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from sqlalchemy.engine import Engine

from signalcast.config import Settings
from signalcast.core.errors import ConfigError, SignalcastError, UnknownNameError
from signalcast.core.ports import ClusterProbe
from signalcast.web import pages, queries

log = logging.getLogger(__name__)

COOKIE = "signalcast_web"
CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
MAX_FORM_BYTES = 4096


def is_loopback(host: str) -> bool:
    """Whether only this machine can reach ``host`` (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_access(host: str, token: str | None) -> None:
    """Refuse to serve beyond this machine without a token."""
    if token is None and not is_loopback(host):
        raise ConfigError(
            f"signalcast web --host {host} would serve the dashboard beyond this machine "
            "without a password: set SIGNALCAST_WEB_TOKEN (e.g. python -c \"import secrets; "
            "print(secrets.token_urlsafe(32))\") or bind to 127.0.0.1")


class Dashboard:
    """The pages, as ``path, query -> (status, html)``; no HTTP in here."""

    def __init__(self, engine: Engine, settings: Settings, probe: ClusterProbe | None = None):
        self.engine, self.settings, self.probe = engine, settings, probe

    def render(self, path: str, query: dict[str, str]) -> tuple[int, str]:
        status = query.get("status") or None
        if path == "/":
            from signalcast.ops.status import collect_status

            data = collect_status(self.engine, self.settings, probe=self.probe, timeout=0.5)
            return 200, pages.overview_page(data, [t.key for t in self.settings.targets],
                                            queries.held_counts(self.engine))
        if path == "/target":
            return 200, self.target(query.get("asset", ""), query.get("target", ""))
        if path == "/alerts":
            return 200, pages.alerts_page(queries.alerts_log(self.engine, status=status), status)
        if path == "/tasks":
            return 200, pages.tasks_page(queries.task_runs(self.engine, status=status), status)
        return 404, pages.message_page("Not found", f"No page at {path}.")

    def target(self, asset: str, target: str) -> str:
        from signalcast.lifecycle.admin import history, list_models

        symbol, cfg = self.settings.asset(asset).symbol, self.settings.target(target)
        bins, n_resolved = queries.reliability(self.engine, symbol, cfg.key)
        return pages.target_page(
            symbol, cfg.key, cfg.alert_threshold,
            queries.price_series(self.engine, self.settings, symbol, cfg.key), bins, n_resolved,
            queries.champion_vs_challengers(self.engine, symbol, cfg.key),
            queries.promotion_checks(self.engine, symbol, cfg.key),
            history(self.engine, self.settings, symbol, cfg.key, limit=50),
            list_models(self.engine, self.settings, symbol, cfg.key)[:50])


def _session_value(token: str) -> str:
    return hmac.new(token.encode(), b"signalcast-web-session", hashlib.sha256).hexdigest()


def _handler(dashboard: Dashboard, token: str | None) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "signalcast-web"
        sys_version = ""

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
            log.debug("web %s %s", self.address_string(), format % args)

        def _send(self, status: int, body: str, headers: dict[str, str] | None = None) -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Content-Security-Policy", CSP)
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Referrer-Policy", "no-referrer")
            self.send_header("Cache-Control", "no-store")
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def _authorised(self) -> bool:
            if token is None:
                return True
            bearer = self.headers.get("Authorization", "")
            if bearer.startswith("Bearer ") and hmac.compare_digest(
                    bearer[7:].strip().encode(), token.encode()):
                return True
            cookie = SimpleCookie(self.headers.get("Cookie", ""))
            return COOKIE in cookie and hmac.compare_digest(
                cookie[COOKIE].value.encode(), _session_value(token).encode())

        def do_HEAD(self) -> None:
            self.do_GET()

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path == "/healthz":
                self._send(200, "ok", {"Content-Type": "text/plain"})
                return
            if not self._authorised():
                self._send(401, pages.message_page(
                    "Sign in", "This dashboard needs its access token (SIGNALCAST_WEB_TOKEN).",
                    form=True))
                return
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            try:
                status, body = dashboard.render(url.path, query)
            except UnknownNameError as exc:
                status, body = 404, pages.message_page("Not found", str(exc))
            except SignalcastError as exc:
                status, body = 503, pages.message_page("Unavailable", str(exc))
            except Exception:
                log.exception("web page %s failed", url.path)
                status, body = 500, pages.message_page(
                    "Error", "This page failed; the web process's log has the details.")
            self._send(status, body)

        def do_POST(self) -> None:
            if urlsplit(self.path).path != "/login" or token is None:
                self._send(404, pages.message_page("Not found", "Nothing to post here."))
                return
            length = min(int(self.headers.get("Content-Length") or 0), MAX_FORM_BYTES)
            form = parse_qs(self.rfile.read(length).decode(errors="replace"))
            given = (form.get("token") or [""])[0]
            if not hmac.compare_digest(given.encode(), token.encode()):
                self._send(401, pages.message_page("Sign in", "Wrong token.", form=True))
                return
            self.send_response(HTTPStatus.SEE_OTHER)
            self.send_header("Location", "/")
            self.send_header("Set-Cookie", f"{COOKIE}={_session_value(token)}; HttpOnly; "
                                           "SameSite=Strict; Path=/")
            self.send_header("Content-Length", "0")
            self.end_headers()

    return Handler


class _IPv6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


class WebServer:
    """The dashboard on HOST:PORT in a background thread (port 0: any free one). Without a
    token it serves loopback addresses only:

    >>> is_loopback("127.0.0.1"), is_loopback("::1"), is_loopback("0.0.0.0")
    (True, True, False)
    """

    def __init__(self, engine: Engine, settings: Settings, *, host: str = "127.0.0.1",
                 port: int = 8080, token: str | None = None,
                 probe: ClusterProbe | None = None):
        check_access(host, token)
        self.dashboard = Dashboard(engine, settings, probe)
        server_class = _IPv6Server if ":" in host else ThreadingHTTPServer
        self._server = server_class((host, port), _handler(self.dashboard, token))
        self._server.daemon_threads = True
        self.host, self.port = host, self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="signalcast-web", daemon=True)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> WebServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def serve_until(stop: threading.Event, server: WebServer,
                on_start: Callable[[str], None] = print) -> None:
    server.start()
    on_start(server.url)
    try:
        stop.wait()
    finally:
        server.close()
