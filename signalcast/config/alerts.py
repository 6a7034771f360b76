"""Telegram-facing sections: ``alerts`` (what alerts say, who gets them, how fast) and ``bot``
(the command bot)."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from signalcast.config.base import Section

ALERT_KINDS = ("signal", "outcome", "summary", "model", "system")
DeliveryMode = Literal["on", "silent", "off"]
DEFAULT_KIND_MODES: dict[str, str] = {
    "signal": "on", "outcome": "silent", "summary": "silent", "model": "on", "system": "on"}


class AlertsConfig(Section):
    """What alerts say, who gets them and how fast they go out.

    The console (``console``: the demo's pseudo-chat) prints the ``console_kinds``. A signal's
    confidence band is ``high`` from ``alert_threshold + high_band_margin``, else ``medium``; a
    signal with the direction and band of the last one a chat got within its horizon is not
    sent again (``debounce``). ``kinds`` is each kind's default delivery (``on``, ``silent``: no
    notification sound, ``off``); a chat overrides it with /subscribe. Telegram's limits are
    kept by the drainer: one message per ``chat_interval_seconds`` per chat,
    ``group_per_minute`` per group chat, ``global_per_second`` overall. A wait longer than
    ``max_wait_seconds`` (a long 429, an outage) ends the drain and the alert waits for the
    next one. A worker unseen for ``worker_silent_minutes``, or ``task_failures`` failed runs
    of one task within ``failure_window_minutes``, raise a system alert.

    A signal is never sent more than ``max_signal_age_seconds`` after its candle closed (unset:
    one candle of the signal's timeframe, when the next candle's signal replaces it): its
    price levels are those of then. It is marked ``expired`` and the operator is told once.
    """

    console: bool = True
    console_kinds: list[Literal["signal", "outcome", "summary", "model", "system"]] = Field(
        default_factory=lambda: ["signal", "outcome"])
    charts: bool = True
    chart_candles: int = Field(default=72, ge=10, le=1000)
    high_band_margin: float = Field(default=0.1, gt=0, lt=0.5)
    kinds: dict[str, DeliveryMode] = Field(default_factory=lambda: dict(DEFAULT_KIND_MODES))
    debounce: bool = True  # a repeated signal (same direction and band within its horizon)
    summary_days: int = Field(default=7, ge=1, le=365)
    # the summary's reliability chart of what was served: Mondays (UTC), every day, or never
    summary_chart: Literal["weekly", "daily", "off"] = "weekly"
    chat_interval_seconds: float = Field(default=1.0, ge=0, le=60)
    group_per_minute: int = Field(default=20, ge=1, le=60)
    global_per_second: int = Field(default=30, ge=1, le=30)
    max_wait_seconds: float = Field(default=10.0, ge=0, le=120)
    drain_seconds: float = Field(default=50.0, gt=0, le=3600)
    worker_silent_minutes: int = Field(default=10, ge=1)
    task_failures: int = Field(default=3, ge=1)
    failure_window_minutes: int = Field(default=60, ge=1)
    max_signal_age_seconds: int | None = Field(default=None, ge=1)  # unset: one candle

    @field_validator("kinds", mode="before")
    @classmethod
    def _known_kinds(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        unknown = sorted(set(map(str, value)) - set(ALERT_KINDS))
        if unknown:
            raise ValueError(f"has unknown alert kind(s) {', '.join(unknown)}; known: "
                             f"{', '.join(ALERT_KINDS)}")
        # YAML 1.1 reads a bare on/off as true/false
        modes = {k: {True: "on", False: "off"}.get(v, v) if isinstance(v, bool) else v
                 for k, v in value.items()}
        return {**DEFAULT_KIND_MODES, **modes}


class BotConfig(Section):
    """The Telegram command bot (``signalcast bot``).

    A command older than ``command_max_age_seconds`` (sent while the bot was down) is answered
    as expired and not run. A /retrain reply is edited at most every
    ``progress_interval_seconds`` and followed for ``progress_timeout_minutes``.

    The bot touches ``liveness_file`` after every answered poll; ``signalcast health --bot``
    fails when it is missing or older than ``liveness_seconds``. A refused poll (401: the token
    is wrong or revoked), or a 409 Conflict (another process polls this token) lasting
    ``conflict_grace_seconds``, ends the bot with a non-zero exit status.

    /promote, /rollback and a /retrain of several targets first answer with Confirm / Cancel
    buttons; an admin's Confirm within ``confirm_seconds`` runs the command (pending
    confirmations live in the bot's memory: a restart forgets them). ``topics`` maps a forum
    chat id to the ``message_thread_id`` (topic) its alerts go to, e.g. ``{"-1001234567890": 5}``;
    other chats get alerts in their main thread.
    """

    command_max_age_seconds: int = Field(default=120, ge=1)
    progress_interval_seconds: float = Field(default=1.0, ge=1.0, le=60)
    progress_timeout_minutes: float = Field(default=60, gt=0)
    status_timeout_seconds: float = Field(default=1.0, gt=0, le=30)
    poll_timeout_seconds: int = Field(default=10, ge=0, le=50)
    health_check_minutes: int = Field(default=5, ge=0)  # 0: the bot runs no system check
    liveness_file: str = "/tmp/signalcast-bot.alive"  # touched after every answered poll
    liveness_seconds: int = Field(default=90, ge=5, le=3600)  # older: health --bot fails
    conflict_grace_seconds: float = Field(default=30.0, ge=0, le=600)  # 409s, then exit
    confirm_seconds: int = Field(default=60, ge=5, le=3600)  # Confirm button of /promote ...
    topics: dict[str, int] = Field(default_factory=dict)  # forum chat id -> message_thread_id

    @field_validator("topics", mode="before")
    @classmethod
    def _chat_keys_as_text(cls, value: Any) -> Any:  # YAML reads an unquoted -100123 as a number
        return {str(k): v for k, v in value.items()} if isinstance(value, dict) else value

    @field_validator("topics")
    @classmethod
    def _topics_are_chats_and_threads(cls, value: dict[str, int]) -> dict[str, int]:
        for chat, thread in value.items():
            if not re.fullmatch(r"-?\d+", chat.strip()):
                raise ValueError(f"has chat {chat!r}: a key must be a numeric Telegram chat id "
                                 "(a forum supergroup's starts with -100)")
            if thread < 1:
                raise ValueError(f"maps chat {chat} to topic {thread}: a message_thread_id is "
                                 "a positive number (the topic's id, from a link to it)")
        return {chat.strip(): thread for chat, thread in value.items()}

    @model_validator(mode="after")
    def _liveness_outlasts_a_poll(self) -> BotConfig:
        if self.liveness_seconds <= self.poll_timeout_seconds:
            raise ValueError(f"liveness_seconds ({self.liveness_seconds}) must be longer than "
                             f"poll_timeout_seconds ({self.poll_timeout_seconds}): a healthy "
                             "bot answers a poll at least that often")
        return self
