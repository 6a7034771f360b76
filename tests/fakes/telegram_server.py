"""A fake Telegram Bot API server, so tests can drive the real python-telegram-bot client.

Telegram is unreachable from tests, and mocking our own functions would not catch a wrong
request shape, a parse-mode error or an unmapped exception. So this module serves the HTTP
Bot API on 127.0.0.1 (stdlib only: ``ThreadingHTTPServer`` in a background thread) and the
real ``telegram.Bot`` is pointed at it::

    with FakeTelegram() as tg:
        bot = telegram.Bot(tg.token, base_url=tg.base_url)   # base_url = "http://127.0.0.1:PORT/bot"
        ...
        assert tg.sent_messages(chat_id=42)[0]["text"] == "hi"

What it does, as Telegram does it:

- answers ``{"ok": true, "result": ...}`` with real object shapes (Message, User, Chat, Update);
- accepts form-encoded (what PTB sends), multipart (file uploads) and JSON bodies;
- rejects a wrong token with 401 and an unknown method with 404;
- with ``parse_mode=HTML`` refuses text Telegram would refuse (an unsupported or unclosed tag, a
  bare ``<`` or ``&``) with ``400 Bad Request: can't parse entities``: escaping bugs show up here;
- ``editMessageText`` changes the stored text, and refuses an identical text ("message is not
  modified") or an unknown message;
- ``getUpdates`` long-polls and follows the offset rules (updates below ``offset`` are confirmed
  and forgotten; a negative offset keeps only the last ``-offset`` updates);
- ``deleteWebhook(drop_pending_updates=True)`` drops the queue;
- ``setMyCommands`` keeps one list per scope (``commands_for(scope)``), checking names and
  descriptions as Telegram does; ``message_thread_id`` (a forum topic) is kept on sent messages;
- a text over 4,096 characters (a caption over 1,024), counted after the HTML is parsed, is
  refused with ``400 Bad Request: message is too long``.

Test controls: ``push_message`` / ``push_callback_query`` script incoming updates; ``fail`` injects
errors (429 with ``retry_after``, 400, 500, 502, ...) or delays for the next N calls; ``outage``
answers 502 to everything until turned off. Every call is recorded in ``calls``.

A delayed call that the client gave up on is still carried out, like a real send that timed
out on our side after Telegram had delivered it: tests can check that a retry doubles it.
"""

from __future__ import annotations

import html
import json
import re
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.parser import BytesParser
from email.policy import HTTP
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DEFAULT_TOKEN = "123456789:TEST-fake-token_AbCdEfGhIjKlMnOpQrStUvWxYz"

# Fields that are always strings in the Bot API; everything else arrives JSON-encoded from PTB.
_STRING_FIELDS = frozenset(
    {"text", "caption", "parse_mode", "callback_query_id", "url", "inline_message_id"}
)
_ERROR_DESCRIPTIONS = {
    400: "Bad Request: chat not found",
    401: "Unauthorized",
    403: "Forbidden: bot was blocked by the user",
    404: "Not Found",
    409: "Conflict: terminated by other getUpdates request; "
    "make sure that only one bot instance is running",
    500: "Internal Server Error",
    502: "Bad Gateway",
}
# Tags Telegram's HTML parse mode accepts (https://core.telegram.org/bots/api#html-style).
_HTML_TAGS = frozenset(
    "b strong i em u ins s strike del span tg-spoiler a code pre blockquote tg-emoji".split()
)
_HTML_TOKEN = re.compile(
    r"<(?P<close>/?)(?P<tag>[a-zA-Z][\w-]*)(?P<attrs>[^<>]*)>"
    r"|&(?P<entity>#\d+|#x[0-9a-fA-F]+|lt|gt|amp|quot);"
    r"|(?P<bare>[<&])"
)


class _ApiError(Exception):
    """Answer the current call with a Bot API error body."""

    def __init__(self, status: int, description: str | None = None, retry_after: int | None = None):
        super().__init__(description)
        self.status = status
        self.description = description or _ERROR_DESCRIPTIONS.get(status, HTTPStatus(status).phrase)
        self.retry_after = retry_after

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "ok": False,
            "error_code": self.status,
            "description": self.description,
        }
        if self.retry_after is not None:
            body["parameters"] = {"retry_after": self.retry_after}
        return body


@dataclass(frozen=True)
class UploadedFile:
    """A file part of a multipart request."""

    filename: str | None
    content_type: str
    data: bytes

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass(frozen=True)
class RecordedCall:
    """One HTTP call the client made: method name, decoded parameters, answer status."""

    method: str
    params: dict[str, Any]
    status: int
    at: float


@dataclass
class _Failure:
    method: str | None  # None: every method
    status: int | None  # None: answer normally (after the delay)
    times: int
    retry_after: int | None = None
    delay: float = 0.0
    description: str | None = None


@dataclass
class _StoredMessage:
    message: dict[str, Any]  # the Bot API Message object as last returned
    raw_text: str  # text or caption exactly as sent (HTML tags and all)
    parse_mode: str | None
    kind: str  # "text" | "photo"
    photo_size: int | None = None
    edits: int = 0


@dataclass
class _State:
    token: str
    bot_user: dict[str, Any]
    lock: threading.Condition = field(default_factory=threading.Condition)
    calls: list[RecordedCall] = field(default_factory=list)
    failures: list[_Failure] = field(default_factory=list)
    outage: bool = False
    messages: list[_StoredMessage] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)
    commands: list[dict[str, Any]] = field(default_factory=list)
    scoped_commands: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    answered_callbacks: list[dict[str, Any]] = field(default_factory=list)
    next_update_id: int = 100_000
    next_message_id: int = 1
    closing: threading.Event = field(default_factory=threading.Event)


class FakeTelegram:
    """The fake Bot API server; use it as a context manager (``with FakeTelegram() as tg:``).

    Attributes:
        token: the token the server accepts (any other gets 401).
        base_url: what ``telegram.Bot(token, base_url=...)`` needs: ``http://127.0.0.1:PORT/bot``
            (PTB appends the token, then ``/<method>``).
    """

    def __init__(self, token: str = DEFAULT_TOKEN, *, bot_username: str = "signalcast_test_bot"):
        bot_id = int(token.split(":", 1)[0]) if token.split(":", 1)[0].isdigit() else 1
        self.token = token
        self._state = _State(
            token=token,
            bot_user={
                "id": bot_id,
                "is_bot": True,
                "first_name": "Signalcast Test",
                "username": bot_username,
                "can_join_groups": True,
                "can_read_all_group_messages": False,
                "supports_inline_queries": False,
            },
        )
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> FakeTelegram:
        """Bind a free port on 127.0.0.1 and serve in a daemon thread."""
        handler = type("_BoundHandler", (_Handler,), {"state": self._state})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        server.block_on_close = False  # keep-alive handler threads must not block close()
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving; wakes pending long polls and delayed answers."""
        self._state.closing.set()
        with self._state.lock:
            self._state.lock.notify_all()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeTelegram:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("FakeTelegram is not started")
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/bot"

    @property
    def bot_user(self) -> dict[str, Any]:
        return dict(self._state.bot_user)

    # -- failure injection ---------------------------------------------------------------------

    def fail(
        self,
        method: str | None = None,
        status: int | None = None,
        *,
        retry_after: int | None = None,
        times: int = 1,
        delay: float = 0.0,
        description: str | None = None,
    ) -> None:
        """Make the next ``times`` calls of ``method`` (None: any method) fail.

        ``status`` is the HTTP status and Bot API ``error_code`` (default 429 when ``retry_after``
        is given, else 500). ``delay`` sleeps before answering, to trip the client's timeout;
        with a delay and no status the call then succeeds (and takes effect) late, like a send
        Telegram delivered after the client had given up.
        """
        if status is None and delay <= 0:
            status = 429 if retry_after is not None else 500
        if status == 429 and retry_after is None:
            retry_after = 1
        with self._state.lock:
            self._state.failures.append(
                _Failure(method, status, times, retry_after, delay, description)
            )

    def outage(self, on: bool = True) -> None:
        """While on, every call answers 502 Bad Gateway (a Telegram outage)."""
        with self._state.lock:
            self._state.outage = on

    def clear_failures(self) -> None:
        """Forget pending injected failures and end an outage."""
        with self._state.lock:
            self._state.failures.clear()
            self._state.outage = False

    # -- scripted incoming updates -------------------------------------------------------------

    def push_message(
        self,
        user_id: int,
        chat_id: int,
        text: str,
        edited: bool = False,
        date: datetime | int | None = None,
        *,
        message_id: int | None = None,
        first_name: str = "Tester",
        username: str | None = None,
    ) -> dict[str, Any]:
        """Queue an Update carrying a user's message (``edited_message`` when ``edited``).

        A leading ``/command`` gets its ``bot_command`` entity, as Telegram sends it. Returns the
        queued Update (its ``update_id`` and message ``message_id`` are there).
        """
        when = _timestamp(date)
        with self._state.lock:
            if message_id is None:
                message_id = self._new_message_id()
            sender: dict[str, Any] = {"id": user_id, "is_bot": False, "first_name": first_name}
            if username:
                sender["username"] = username
            message: dict[str, Any] = {
                "message_id": message_id,
                "date": when,
                "chat": _chat(chat_id, user_id=user_id, first_name=first_name),
                "from": sender,
                "text": text,
            }
            command = re.match(r"/[A-Za-z0-9_]+(@[A-Za-z0-9_]+)?", text)
            if command:
                message["entities"] = [
                    {"type": "bot_command", "offset": 0, "length": len(command.group(0))}
                ]
            if edited:
                message["edit_date"] = when
            return self._queue_update("edited_message" if edited else "message", message)

    def push_callback_query(
        self, user_id: int, chat_id: int, data: str, *, message_id: int | None = None
    ) -> dict[str, Any]:
        """Queue an Update for a press on an inline button of one of the bot's messages."""
        with self._state.lock:
            stored = next(
                (m for m in self._state.messages if m.message["message_id"] == message_id), None
            )
            message = (
                dict(stored.message)
                if stored
                else {
                    "message_id": message_id or self._new_message_id(),
                    "date": _timestamp(None),
                    "chat": _chat(chat_id, user_id=user_id, first_name="Tester"),
                    "from": self._state.bot_user,
                    "text": "",
                }
            )
            query = {
                "id": str(self._state.next_update_id * 10 + 7),
                "from": {"id": user_id, "is_bot": False, "first_name": "Tester"},
                "chat_instance": str(chat_id),
                "message": message,
                "data": data,
            }
            return self._queue_update("callback_query", query)

    # -- inspection ----------------------------------------------------------------------------

    @property
    def calls(self) -> list[RecordedCall]:
        """Every call so far (a snapshot), including failed ones."""
        with self._state.lock:
            return list(self._state.calls)

    def calls_to(self, method: str) -> list[RecordedCall]:
        return [call for call in self.calls if call.method == method]

    def sent_messages(self, chat_id: int | str | None = None) -> list[dict[str, Any]]:
        """Messages the bot sent (text and photos), oldest first, with edits applied.

        Each is ``{"chat_id", "message_id", "text", "parse_mode", "kind", "photo_size",
        "edits"}``; ``text`` is the text (or photo caption) as sent, HTML tags included
        (``bot_message`` has the rest: ``reply_markup``, ``message_thread_id``).
        ``chat_id`` filters by chat (compared as strings, so 42 and "42" match).
        """
        with self._state.lock:
            stored = list(self._state.messages)
        rows = [
            {
                "chat_id": m.message["chat"]["id"],
                "message_id": m.message["message_id"],
                "text": m.raw_text,
                "parse_mode": m.parse_mode,
                "kind": m.kind,
                "photo_size": m.photo_size,
                "edits": m.edits,
            }
            for m in stored
        ]
        if chat_id is None:
            return rows
        return [row for row in rows if str(row["chat_id"]) == str(chat_id)]

    def sent_photos(self, chat_id: int | str | None = None) -> list[dict[str, Any]]:
        """Photos the bot sent; ``text`` is the caption, ``photo_size`` the upload's byte size."""
        return [row for row in self.sent_messages(chat_id) if row["kind"] == "photo"]

    def message_text(self, message_id: int) -> str:
        """Current text (after edits) of a message the bot sent."""
        for row in self.sent_messages():
            if row["message_id"] == message_id:
                return row["text"]
        raise KeyError(f"no message {message_id} was sent")

    def bot_message(self, message_id: int) -> dict[str, Any]:
        """The Bot API Message object of a message the bot sent, as it is now (edits applied):
        its ``reply_markup`` (inline buttons), ``message_thread_id`` (forum topic), ..."""
        with self._state.lock:
            for stored in self._state.messages:
                if stored.message["message_id"] == message_id:
                    return json.loads(json.dumps(stored.message))
        raise KeyError(f"no message {message_id} was sent")

    @property
    def commands(self) -> list[dict[str, Any]]:
        """The command list last set with setMyCommands."""
        with self._state.lock:
            return list(self._state.commands)

    def commands_for(self, scope: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """The command list last set for ``scope`` (None: the default scope), e.g.
        ``commands_for({"type": "chat", "chat_id": 42})``."""
        with self._state.lock:
            return list(self._state.scoped_commands.get(_scope_key(scope), []))

    @property
    def answered_callbacks(self) -> list[dict[str, Any]]:
        with self._state.lock:
            return list(self._state.answered_callbacks)

    @property
    def pending_updates(self) -> int:
        with self._state.lock:
            return len(self._state.updates)

    def wait_for(self, predicate: Callable[[FakeTelegram], bool], timeout: float = 5.0) -> None:
        """Block until ``predicate(self)`` holds (for clients running in another thread)."""
        deadline = time.monotonic() + timeout
        with self._state.lock:
            while not predicate(self):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"condition not met within {timeout}s")
                self._state.lock.wait(min(remaining, 0.05))

    def wait_for_messages(
        self, count: int, chat_id: int | str | None = None, timeout: float = 5.0
    ) -> list[dict[str, Any]]:
        """Block until at least ``count`` messages were sent (to ``chat_id``); return them."""
        self.wait_for(lambda tg: len(tg.sent_messages(chat_id)) >= count, timeout)
        return self.sent_messages(chat_id)

    # -- internals (caller holds the lock) -----------------------------------------------------

    def _new_message_id(self) -> int:
        self._state.next_message_id += 1
        return self._state.next_message_id - 1

    def _queue_update(self, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
        update = {"update_id": self._state.next_update_id, kind: payload}
        self._state.next_update_id += 1
        self._state.updates.append(update)
        self._state.lock.notify_all()
        return update


# -- HTTP side ---------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    """Routes ``/bot<token>/<method>`` to the Bot API method implementations below."""

    state: _State  # set on the per-server subclass
    protocol_version = "HTTP/1.1"  # keep-alive, as httpx expects
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms stalls

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        self._serve()

    def do_POST(self) -> None:  # noqa: N802
        self._serve()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Silence per-request stderr lines."""

    def _serve(self) -> None:
        path, _, query = self.path.partition("?")
        match = re.fullmatch(r"/bot(?P<token>[^/]+)/(?P<method>\w+)", path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if not match:
            self._reply(404, _ApiError(404).body())
            return
        method = match.group("method")
        params = _decode_params(query, self.headers.get("Content-Type", ""), body)
        state = self.state
        try:
            if match.group("token") != state.token:
                raise _ApiError(401)
            failure = _take_failure(state, method)
            if failure is not None and failure.delay > 0:
                if state.closing.wait(failure.delay):
                    return  # shutting down: drop the connection
            if failure is not None and failure.status is not None:
                raise _ApiError(failure.status, failure.description, failure.retry_after)
            handler = _METHODS.get(method.lower())
            if handler is None:
                raise _ApiError(404)
            result = handler(state, params)
        except _ApiError as exc:
            status, answer = exc.status, exc.body()
        else:
            status, answer = 200, {"ok": True, "result": result}
        with state.lock:
            state.calls.append(RecordedCall(method, params, status, time.time()))
            state.lock.notify_all()
        self._reply(status, answer)

    def _reply(self, status: int, answer: dict[str, Any]) -> None:
        payload = json.dumps(answer).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client timed out and went away; the call still took effect


def _take_failure(state: _State, method: str) -> _Failure | None:
    with state.lock:
        if state.outage:
            return _Failure(method, 502, 1)
        for failure in state.failures:
            if failure.method in (None, method) and failure.times > 0:
                failure.times -= 1
                if failure.times == 0:
                    state.failures.remove(failure)
                return failure
    return None


def _decode_params(query: str, content_type: str, body: bytes) -> dict[str, Any]:
    """Query string + form / multipart / JSON body -> one dict of Bot API parameters."""
    params: dict[str, Any] = {}
    for key, value in urllib.parse.parse_qsl(query):
        params[key] = _coerce(key, value)
    mime = content_type.split(";", 1)[0].strip().lower()
    if mime == "application/json" and body:
        params.update(json.loads(body))
    elif mime == "application/x-www-form-urlencoded":
        for key, value in urllib.parse.parse_qsl(body.decode(), keep_blank_values=True):
            params[key] = _coerce(key, value)
    elif mime == "multipart/form-data":
        head = f"Content-Type: {content_type}\r\n\r\n".encode()
        message = BytesParser(policy=HTTP).parsebytes(head + body)
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            data = part.get_payload(decode=True) or b""
            filename = part.get_filename()
            if filename is not None or part.get_content_type() != "text/plain":
                params[name] = UploadedFile(filename, part.get_content_type(), data)
            else:
                params[name] = _coerce(name, data.decode())
    return params


def _coerce(key: str, value: str) -> Any:
    """PTB sends non-string parameters JSON-encoded; decode them (``"42"`` -> 42)."""
    if key in _STRING_FIELDS:
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def _timestamp(date: datetime | int | None) -> int:
    if date is None:
        return int(time.time())
    if isinstance(date, datetime):
        aware = date if date.tzinfo else date.replace(tzinfo=UTC)  # naive means UTC
        return int(aware.timestamp())
    return int(date)


def _chat(chat_id: int | str, *, user_id: int | None = None, first_name: str = "") -> dict:
    if isinstance(chat_id, str) and not chat_id.lstrip("-").isdigit():
        return {"id": -1001, "type": "channel", "title": chat_id, "username": chat_id.lstrip("@")}
    chat_id = int(chat_id)
    if chat_id > 0:
        return {"id": chat_id, "type": "private", "first_name": first_name or f"User {chat_id}"}
    kind = "supergroup" if str(chat_id).startswith("-100") else "group"
    return {"id": chat_id, "type": kind, "title": f"Test chat {chat_id}"}


def _html_to_plain(text: str) -> str:
    """Check ``text`` the way Telegram's HTML parse mode does; return the visible text."""
    plain: list[str] = []
    open_tags: list[str] = []
    position = 0
    for token in _HTML_TOKEN.finditer(text):
        plain.append(text[position : token.start()])
        position = token.end()
        offset = len(text[: token.start()].encode())
        if token.group("bare"):
            raise _ApiError(
                400,
                "Bad Request: can't parse entities: Unsupported start tag or unescaped "
                f"{token.group('bare')!r} at byte offset {offset}",
            )
        if token.group("entity"):
            plain.append(html.unescape(token.group(0)))
            continue
        tag = token.group("tag").lower()
        if tag not in _HTML_TAGS:
            raise _ApiError(
                400,
                f'Bad Request: can\'t parse entities: Unsupported start tag "{tag}" '
                f"at byte offset {offset}",
            )
        if token.group("close"):
            if not open_tags or open_tags[-1] != tag:
                raise _ApiError(
                    400,
                    f"Bad Request: can't parse entities: Unmatched end tag at byte offset "
                    f'{offset}, expected "</{open_tags[-1] if open_tags else ""}>", '
                    f'found "</{tag}>"',
                )
            open_tags.pop()
        else:
            open_tags.append(tag)
    if open_tags:
        raise _ApiError(
            400,
            "Bad Request: can't parse entities: Can't find end tag corresponding to start tag "
            f'"{open_tags[-1]}"',
        )
    plain.append(text[position:])
    return "".join(plain)


def _visible_text(text: str, parse_mode: str | None) -> str:
    if parse_mode and parse_mode.upper() == "HTML":
        return _html_to_plain(text)
    return text


# -- Bot API methods (state, params) -> result ------------------------------------------------


def _require(params: dict[str, Any], *names: str) -> None:
    for name in names:
        if params.get(name) in (None, ""):
            raise _ApiError(400, f"Bad Request: {name} is empty")


def _get_me(state: _State, params: dict[str, Any]) -> dict[str, Any]:
    return state.bot_user


def _store_message(
    state: _State, params: dict[str, Any], kind: str, extra: dict[str, Any]
) -> dict[str, Any]:
    with state.lock:
        message_id = state.next_message_id
        state.next_message_id += 1
        message = {
            "message_id": message_id,
            "date": int(time.time()),
            "chat": _chat(params["chat_id"]),
            "from": state.bot_user,
            **extra,
        }
        if params.get("message_thread_id") is not None:  # a forum topic
            message["message_thread_id"] = int(params["message_thread_id"])
            message["is_topic_message"] = True
        raw = params.get("text") if kind == "text" else params.get("caption")
        state.messages.append(
            _StoredMessage(
                message=message,
                raw_text=raw or "",
                parse_mode=params.get("parse_mode"),
                kind=kind,
                photo_size=extra["photo"][-1]["file_size"] if kind == "photo" else None,
            )
        )
        return message


MESSAGE_LIMIT, CAPTION_LIMIT = 4096, 1024  # characters after entity parsing, in UTF-16 units


def _check_length(text: str, limit: int, what: str) -> str:
    if len(text.encode("utf-16-le")) // 2 > limit:
        raise _ApiError(400, f"Bad Request: {what} is too long")
    return text


def _send_message(state: _State, params: dict[str, Any]) -> dict[str, Any]:
    _require(params, "chat_id")
    if not params.get("text"):
        raise _ApiError(400, "Bad Request: message text is empty")
    text = _check_length(_visible_text(params["text"], params.get("parse_mode")),
                         MESSAGE_LIMIT, "message")
    extra: dict[str, Any] = {"text": text}
    if "reply_markup" in params:
        extra["reply_markup"] = params["reply_markup"]
    return _store_message(state, params, "text", extra)


def _send_photo(state: _State, params: dict[str, Any]) -> dict[str, Any]:
    _require(params, "chat_id", "photo")
    photo = params["photo"]
    if not isinstance(photo, UploadedFile):
        raise _ApiError(400, "Bad Request: wrong remote file identifier specified")
    if not photo.data:
        raise _ApiError(400, "Bad Request: IMAGE_PROCESS_FAILED")
    extra: dict[str, Any] = {
        "photo": [
            {
                "file_id": f"fake-photo-{state.next_message_id}",
                "file_unique_id": f"fp{state.next_message_id}",
                "width": 640,
                "height": 480,
                "file_size": photo.size,
            }
        ]
    }
    if params.get("caption"):
        extra["caption"] = _check_length(_visible_text(params["caption"], params.get("parse_mode")),
                                         CAPTION_LIMIT, "message caption")
    return _store_message(state, params, "photo", extra)


def _edit_message_text(state: _State, params: dict[str, Any]) -> dict[str, Any]:
    _require(params, "chat_id", "message_id", "text")
    text = _check_length(_visible_text(params["text"], params.get("parse_mode")), MESSAGE_LIMIT,
                         "message")
    with state.lock:
        for stored in state.messages:
            same_chat = str(stored.message["chat"]["id"]) == str(params["chat_id"])
            if same_chat and stored.message["message_id"] == int(params["message_id"]):
                break
        else:
            raise _ApiError(400, "Bad Request: message to edit not found")
        if stored.kind != "text":
            raise _ApiError(400, "Bad Request: there is no text in the message to edit")
        if stored.raw_text == params["text"] and "reply_markup" not in params:
            raise _ApiError(
                400,
                "Bad Request: message is not modified: specified new message content and reply "
                "markup are exactly the same as a current content and reply markup of the message",
            )
        stored.raw_text = params["text"]
        stored.parse_mode = params.get("parse_mode")
        stored.edits += 1
        stored.message = {**stored.message, "text": text, "edit_date": int(time.time())}
        if "reply_markup" in params:
            stored.message["reply_markup"] = params["reply_markup"]
        else:  # as Telegram: an edit without reply_markup removes the inline keyboard
            stored.message.pop("reply_markup", None)
        return stored.message


def _get_updates(state: _State, params: dict[str, Any]) -> list[dict[str, Any]]:
    offset = int(params.get("offset") or 0)
    limit = max(1, min(100, int(params.get("limit") or 100)))
    timeout = float(params.get("timeout") or 0)
    allowed = params.get("allowed_updates") or None
    deadline = time.monotonic() + timeout
    with state.lock:
        while True:
            if offset > 0:
                state.updates = [u for u in state.updates if u["update_id"] >= offset]
            elif offset < 0:
                state.updates = state.updates[offset:]
            ready = [u for u in state.updates if not allowed or set(u) & set(allowed)]
            remaining = deadline - time.monotonic()
            if ready or remaining <= 0 or state.closing.is_set():
                return ready[:limit]
            state.lock.wait(min(remaining, 0.25))


def _delete_webhook(state: _State, params: dict[str, Any]) -> bool:
    if params.get("drop_pending_updates"):
        with state.lock:
            state.updates.clear()
    return True


def _scope_key(scope: dict[str, Any] | None) -> str:
    scope = scope or {"type": "default"}
    return json.dumps({k: str(v) for k, v in scope.items()}, sort_keys=True)


def _set_my_commands(state: _State, params: dict[str, Any]) -> bool:
    commands = list(params.get("commands") or [])
    for command in commands:
        if not re.fullmatch(r"[a-z0-9_]{1,32}", command.get("command", "")):
            raise _ApiError(400, "Bad Request: BOT_COMMAND_INVALID")
        if not 1 <= len(command.get("description", "")) <= 256:
            raise _ApiError(400, "Bad Request: BOT_COMMAND_DESCRIPTION_INVALID")
    key = _scope_key(params.get("scope"))
    with state.lock:
        state.scoped_commands[key] = commands
        if key == _scope_key(None):
            state.commands = commands
    return True


def _get_my_commands(state: _State, params: dict[str, Any]) -> list[dict[str, Any]]:
    with state.lock:
        return list(state.scoped_commands.get(_scope_key(params.get("scope")), []))


def _answer_callback_query(state: _State, params: dict[str, Any]) -> bool:
    _require(params, "callback_query_id")
    with state.lock:
        state.answered_callbacks.append(dict(params))
    return True


def _get_chat(state: _State, params: dict[str, Any]) -> dict[str, Any]:
    _require(params, "chat_id")
    chat = _chat(params["chat_id"])
    return {**chat, "accent_color_id": 0, "max_reaction_count": 11}


def _get_webhook_info(state: _State, params: dict[str, Any]) -> dict[str, Any]:
    with state.lock:
        pending = len(state.updates)
    return {"url": "", "has_custom_certificate": False, "pending_update_count": pending}


def _true(state: _State, params: dict[str, Any]) -> bool:
    return True


_METHODS: dict[str, Callable[[_State, dict[str, Any]], Any]] = {
    "getme": _get_me,
    "sendmessage": _send_message,
    "sendphoto": _send_photo,
    "editmessagetext": _edit_message_text,
    "getupdates": _get_updates,
    "deletewebhook": _delete_webhook,
    "getwebhookinfo": _get_webhook_info,
    "setmycommands": _set_my_commands,
    "getmycommands": _get_my_commands,
    "deletemycommands": _true,
    "answercallbackquery": _answer_callback_query,
    "getchat": _get_chat,
    "sendchataction": _true,
    "close": _true,
    "logout": _true,
}
