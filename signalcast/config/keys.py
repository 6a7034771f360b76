"""The artifact keys (``SIGNALCAST_ARTIFACT_KEY`` and friends) as :class:`ArtifactKeys`.

Precedence: ``SIGNALCAST_ARTIFACT_KEY``, else the file named by ``SIGNALCAST_ARTIFACT_KEY_FILE``,
else, for a file-backed SQLite database only, a local key generated once next to the database
(``<database file>.artifact-key``, mode 0600); an in-memory SQLite database gets a key for the
life of the process. Any other database without a key is a ConfigError: workers on several hosts
would each generate a different key. See :mod:`signalcast.models.artifact` for what the key
protects.
"""

from __future__ import annotations

import logging
import os
import secrets
from functools import cache
from pathlib import Path

from signalcast.config.environment import EnvConfig, split_ids
from signalcast.core.errors import ConfigError
from signalcast.models.artifact import KEY_VARIABLE, OLD_KEYS_VARIABLE, ArtifactKeys

log = logging.getLogger(__name__)

KEY_FILE_SUFFIX = ".artifact-key"
MAKE_KEY = 'python -c "import secrets; print(secrets.token_hex(32))"'
MIN_KEY_CHARS = 32


def resolve_artifact_keys(env: EnvConfig) -> ArtifactKeys:
    old = tuple(_checked(k, OLD_KEYS_VARIABLE).encode() for k in split_ids(
        env.artifact_keys_old.get_secret_value() if env.artifact_keys_old else ""))
    if env.artifact_key is not None and env.artifact_key_file is not None:
        raise ConfigError(f"set {KEY_VARIABLE} or {KEY_VARIABLE}_FILE, not both")
    if env.artifact_key is not None:
        key, source = env.artifact_key.get_secret_value().strip(), KEY_VARIABLE
    elif env.artifact_key_file is not None:
        key, source = _read_key_file(env.artifact_key_file), f"{KEY_VARIABLE}_FILE"
    else:
        key, source = _default_key(env.database_url)
    return ArtifactKeys(_checked(key, source).encode(), old, source)


def _checked(key: str, variable: str) -> str:
    if len(key) < MIN_KEY_CHARS:
        raise ConfigError(f"{variable}: an artifact key must be at least {MIN_KEY_CHARS} "
                          f"characters; make one with: {MAKE_KEY}")
    return key


def _read_key_file(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"{KEY_VARIABLE}_FILE: cannot read {path}: {exc.strerror}") from None


def _default_key(database_url: str) -> tuple[str, str]:
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    if url.get_backend_name() != "sqlite":
        raise ConfigError(
            f"{KEY_VARIABLE} is not set: model artifacts are signed with a key that is not in "
            f"the database, and a {url.get_backend_name()} deployment must configure one (the "
            f"same on every host). Make one with: {MAKE_KEY} and set {KEY_VARIABLE} (or "
            f"{KEY_VARIABLE}_FILE) in the environment of every signalcast process")
    if not url.database or url.database == ":memory:" or url.database.startswith("file::memory"):
        return _process_key(), "a per-process key (in-memory SQLite)"
    path = Path(url.database).with_name(Path(url.database).name + KEY_FILE_SUFFIX)
    return local_key(path), f"the local key file {path}"


@cache
def _process_key() -> str:
    return secrets.token_hex(32)


def local_key(path: Path) -> str:
    """The key in ``path``, created (0600, atomically: concurrent processes agree) if absent."""
    if not path.exists():
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32) + "\n")
            os.link(tmp, path)
            log.warning("no %s set: generated a local artifact key in %s (keep it with the "
                        "database; set %s for a deployment)", KEY_VARIABLE, path, KEY_VARIABLE)
        except FileExistsError:
            pass  # another process made it first: use theirs
        except OSError as exc:
            raise ConfigError(f"{KEY_VARIABLE} is not set and the local key file {path} cannot "
                              f"be created ({exc.strerror}); set {KEY_VARIABLE}: {MAKE_KEY}"
                              ) from None
        finally:
            tmp.unlink(missing_ok=True)
    return _read_key_file(path)
