"""The ``notifiers`` section: where alerts go besides Telegram and the console.

Each endpoint is a chat of its own, ``webhook:<name>`` or ``discord:<name>``, and receives what
every configured chat receives (``alerts.kinds``, /pause and /subscribe preferences by that
chat id, the outbox's retries and rate limits). Secrets stay out of the file: a Discord webhook
URL holds its token, so it is read from the environment variable named by ``url_env``; a
webhook's HMAC key likewise from ``secret_env``.

.. code-block:: yaml

    notifiers:
      webhooks:
        - name: ops
          url: https://hooks.internal.example/signalcast
          secret_env: SIGNALCAST_WEBHOOK_OPS_SECRET   # optional: signs every request
      discord:
        - name: team
          url_env: SIGNALCAST_DISCORD_TEAM_URL
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from pydantic import Field, field_validator, model_validator

from signalcast.config.base import Section, require_unique
from signalcast.core.errors import ConfigError

WEBHOOK_PREFIX, DISCORD_PREFIX = "webhook:", "discord:"
_NAME = r"^[A-Za-z0-9_.-]{1,40}$"
_ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")


def read_env(variable: str) -> str | None:
    """``variable`` from the environment, else from a ``.env`` file in the working directory
    (where the other SIGNALCAST_ variables are read from too); None when unset or empty."""
    value = os.environ.get(variable)
    if not value and Path(".env").is_file():
        from dotenv import dotenv_values

        value = dotenv_values(".env").get(variable)
    return value or None


def _check_env_name(value: str | None) -> str | None:
    if value is not None and not _ENV_NAME.match(value):
        raise ValueError(f"must be an environment variable name (A-Z, 0-9, _), got {value!r}")
    return value


class Endpoint(Section):
    """An HTTP endpoint: its URL in the file (``url``) or in an environment variable
    (``url_env``), exactly one of them."""

    name: str = Field(pattern=_NAME)  # the chat is webhook:<name> or discord:<name>
    url: str | None = None  # the endpoint's URL, when it holds no secret
    url_env: str | None = None  # or: the environment variable holding the URL
    timeout_seconds: float = Field(default=10.0, gt=0, le=120)  # per request; then retried

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"must start with http:// or https://, got {value!r}")
        return value

    @field_validator("url_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        return _check_env_name(value)

    @model_validator(mode="after")
    def _one_url(self) -> Endpoint:
        if (self.url is None) == (self.url_env is None):
            raise ValueError(f"{self.name}: set exactly one of url and url_env")
        return self

    def resolved_url(self) -> str:
        """The URL, read from ``url_env`` when the file names a variable."""
        if self.url is not None:
            return self.url
        value = read_env(self.url_env)
        if value is None:
            raise ConfigError(f"notifier {self.name!r}: environment variable {self.url_env} is "
                              "not set; set it to the endpoint's URL (in .env for compose)")
        if not value.startswith(("http://", "https://")):
            raise ConfigError(f"notifier {self.name!r}: {self.url_env} must hold an http(s) URL")
        return value


class WebhookConfig(Endpoint):
    """A JSON POST per alert; with ``secret_env``, signed (HMAC-SHA256) in a header."""

    secret_env: str | None = None  # environment variable holding the HMAC key (optional)

    @field_validator("secret_env")
    @classmethod
    def _secret_env_name(cls, value: str | None) -> str | None:
        return _check_env_name(value)

    def resolved_secret(self) -> bytes | None:
        if self.secret_env is None:
            return None
        value = read_env(self.secret_env)
        if value is None:
            raise ConfigError(f"webhook {self.name!r}: environment variable {self.secret_env} "
                              "(its signing key) is not set; set it or drop secret_env")
        return value.encode()


class DiscordConfig(Endpoint):
    """A Discord channel webhook (Server settings > Integrations > Webhooks). Its URL holds
    the webhook's token, so it is only read from the environment (``url_env``)."""

    @field_validator("url")
    @classmethod
    def _not_in_the_file(cls, value: str | None) -> str | None:
        if value is not None:
            raise ValueError("a Discord webhook URL holds its token: put it in an environment "
                             "variable (e.g. SIGNALCAST_DISCORD_TEAM_URL in .env) and name that "
                             "variable in url_env")
        return value


class NotifiersConfig(Section):
    """Alert destinations besides Telegram: each endpoint is a chat (``webhook:<name>``,
    ``discord:<name>``) that receives what every configured chat receives, through the same
    outbox (kinds, /pause and /subscribe by that chat id, retries and rate limits). Secrets
    come from the environment: ``url_env`` names the variable holding a URL that contains a
    token (every Discord webhook URL does), ``secret_env`` the one holding a webhook's signing
    key (docs/production.md "Notifiers")."""

    webhooks: list[WebhookConfig] = Field(default_factory=list)  # JSON POSTs
    discord: list[DiscordConfig] = Field(default_factory=list)  # Discord channel webhooks

    @field_validator("webhooks", "discord")
    @classmethod
    def _unique_names(cls, endpoints: list[Endpoint]) -> list[Endpoint]:
        require_unique([e.name for e in endpoints], "name once")
        return endpoints

    @property
    def chat_ids(self) -> list[str]:
        """The chats these endpoints are, e.g. ``["webhook:ops", "discord:team"]``."""
        return ([WEBHOOK_PREFIX + w.name for w in self.webhooks]
                + [DISCORD_PREFIX + d.name for d in self.discord])
