"""The environment: ``SIGNALCAST_*`` variables (also read from a ``.env`` file) holding secrets
and service URLs, plus the helpers that read lists out of them and mask them for display."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def split_ids(value: Any) -> list[str]:
    """A comma-separated id list (``"1, 2,,3"``) as ``["1", "2", "3"]``."""
    if value is None or value == "":
        return []
    if isinstance(value, int | str):
        value = str(value).split(",")
    return [str(v).strip() for v in value if str(v).strip()]


class EnvConfig(BaseSettings):
    """What the environment holds (prefix ``SIGNALCAST_``; a ``.env`` file is read too)."""

    model_config = SettingsConfigDict(  # env_ignore_empty: VAR= in .env means unset
        env_prefix="SIGNALCAST_", env_file=".env", extra="ignore", frozen=True,
        env_ignore_empty=True,
    )

    config: Path | None = None  # the YAML file (default: the packaged default.yaml)
    database_url: str = "sqlite:///signalcast.db"  # SQLite on one host, postgresql:// on several
    broker_url: str | None = None  # Redis URL; unset: embedded mode (one process, no Redis)
    telegram_token: SecretStr | None = None  # from BotFather; unset: alerts print only
    telegram_api_url: str | None = None  # Bot API base URL of a self-hosted Bot API server
    telegram_chat_ids: str = ""  # comma-separated chat ids that receive alerts
    telegram_admins: str = ""  # comma-separated user ids allowed every bot command
    telegram_viewers: str = ""  # comma-separated user ids allowed read-only bot commands
    artifact_key: SecretStr | None = None  # signs model artifacts; unset: see docs/production.md
    artifact_key_file: Path | None = None  # a file holding the artifact key (e.g. a secret)
    artifact_keys_old: SecretStr | None = None  # comma-separated previous keys, verify only
    web_token: SecretStr | None = None  # the dashboard's access token; required off loopback
    log_format: Literal["text", "json"] = "text"  # json: one JSON object per line
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] | None = None  # unset: per command

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower_case(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_case(cls, value: Any) -> Any:
        return (value.strip().upper() or None) if isinstance(value, str) else value


def mask_url_password(url: str) -> str:
    """``url`` with its password (if any) masked, for display."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not an SQLAlchemy URL (e.g. redis://): mask by hand
        if "@" in url and ":" in url.split("@", 1)[0].split("//", 1)[-1]:
            scheme, rest = url.split("//", 1)
            creds, host = rest.split("@", 1)
            return f"{scheme}//{creds.split(':', 1)[0]}:***@{host}"
        return url
