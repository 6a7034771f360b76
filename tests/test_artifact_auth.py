"""Artifacts are authenticated (HMAC under a key outside the database) before any byte is
deserialised: a row rewritten by a database writer without the key never runs its payload."""

from __future__ import annotations

import json
import os
import pickle
import stat
import struct
from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import select

from signalcast.config.environment import EnvConfig
from signalcast.config.keys import resolve_artifact_keys
from signalcast.core.errors import ArtifactError, ConfigError
from signalcast.db.engine import session_scope
from signalcast.db.tables import ModelVersion
from signalcast.features import FEATURE_SET, feature_names
from signalcast.models.artifact import (
    MAGIC,
    ArtifactIdentity,
    ArtifactKeys,
    load_version,
    sha256,
    sign,
)
from signalcast.pipeline.predict import predict_asset
from tests.test_routing import BTC, T1, add_version, engine_keys, make_env

OLD, NEW = "o" * 64, "n" * 64


class Boom:
    """A pickle that creates ``path`` when loaded: stands in for arbitrary code."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def forged_artifact(marker: Path, family: str = "random_forest") -> bytes:
    header = json.dumps({"family": family, "params": {}, "feature_set": FEATURE_SET,
                         "features": feature_names(),
                         "calibration": {"a": 1.0, "b": 0.0}}).encode()
    return MAGIC + struct.pack(">I", len(header)) + header + pickle.dumps(Boom(marker))


def overwrite(engine, version_id: int, blob: bytes, mac: str | None = "keep") -> None:
    """What an attacker with database access does: new bytes, recomputed sha256."""
    with session_scope(engine) as session:
        row = session.get(ModelVersion, version_id)
        row.artifact, row.sha256 = blob, sha256(blob)
        if mac != "keep":
            row.artifact_mac = mac
        session.add(row)


def stored(engine, version_id: int) -> ModelVersion:
    with session_scope(engine, readonly=True) as session:
        row = session.exec(select(ModelVersion).where(ModelVersion.id == version_id)).one()
        session.expunge(row)
    return row


@pytest.fixture
def env(sqlite_url, tmp_path, monkeypatch):
    # the SQLite defaults under test: no key in the environment (conftest sets one for the rest)
    monkeypatch.delenv("SIGNALCAST_ARTIFACT_KEY", raising=False)
    monkeypatch.delenv("SIGNALCAST_ARTIFACT_KEY_FILE", raising=False)
    engine, settings, now = make_env(sqlite_url, tmp_path)
    return engine, settings, now


def test_the_payload_is_live_when_unpickled_directly(tmp_path):
    marker = tmp_path / "proof"
    pickle.loads(pickle.dumps(Boom(marker)))
    assert marker.exists()  # so the marker below not existing means it never ran


@pytest.mark.parametrize("family", ["lightgbm", "random_forest"])
def test_a_forged_artifact_in_the_row_is_refused_by_predict_and_never_runs(env, tmp_path,
                                                                           family):
    engine, settings, now = env
    champion = add_version(engine, family, role="champion", n_estimators=5)
    marker = tmp_path / "pwned"
    overwrite(engine, champion.id, forged_artifact(marker))
    with session_scope(engine) as session:
        result = predict_asset(session, settings, BTC, now - timedelta(hours=1))
    assert not marker.exists()
    assert T1 not in result.served
    assert "failed authentication" in result.skipped[T1]
    assert "SIGNALCAST_ARTIFACT_KEY" in result.skipped[T1]


def test_a_forged_unsigned_row_is_refused_and_says_to_retrain(env, tmp_path):
    engine, settings, _ = env
    champion = add_version(engine, "lightgbm", role="champion", n_estimators=5)
    marker = tmp_path / "pwned"
    overwrite(engine, champion.id, forged_artifact(marker), mac=None)
    with pytest.raises(ArtifactError, match=r"not signed.*signalcast train --all"):
        load_version(stored(engine, champion.id), settings.artifact_keys)
    assert not marker.exists()


def test_a_key_mismatch_names_the_variables(env, make_settings, sqlite_url):
    engine, _, _ = env
    champion = add_version(engine, "lightgbm", role="champion", n_estimators=5)
    other = make_settings(sqlite_url, artifact_key=NEW)
    with pytest.raises(ArtifactError) as exc:
        load_version(stored(engine, champion.id), other.artifact_keys)
    assert str(exc.value).startswith(
        f"artifact of lightgbm v{champion.version} {BTC} {T1} failed authentication")
    assert "SIGNALCAST_ARTIFACT_KEY" in str(exc.value)
    assert "SIGNALCAST_ARTIFACT_KEYS_OLD" in str(exc.value)
    assert "retrain" in str(exc.value)


def test_rotation_accepts_listed_old_keys_and_signs_with_the_current_one(env, make_settings,
                                                                         sqlite_url):
    engine, _, _ = env
    row = stored(engine, add_version(engine, "lightgbm", n_estimators=5).id)
    before = make_settings(sqlite_url, artifact_key=OLD)
    row.artifact_mac = sign(row.artifact, ArtifactIdentity.of(row), before.artifact_keys)
    after = make_settings(sqlite_url, artifact_key=NEW, artifact_keys_old=f"{'x' * 40}, {OLD}")
    assert load_version(row, after.artifact_keys).family == "lightgbm"
    with pytest.raises(ArtifactError, match="failed authentication"):  # old key not listed
        load_version(row, make_settings(sqlite_url, artifact_key=NEW).artifact_keys)
    assert sign(row.artifact, ArtifactIdentity.of(row), after.artifact_keys) == sign(
        row.artifact, ArtifactIdentity.of(row), ArtifactKeys(NEW.encode()))


def test_a_header_family_other_than_the_rows_is_refused_even_when_signed(env, tmp_path):
    engine, settings, _ = env
    row = stored(engine, add_version(engine, "lightgbm", n_estimators=5).id)
    marker = tmp_path / "pwned"
    row.artifact = forged_artifact(marker, family="random_forest")
    row.sha256 = sha256(row.artifact)
    row.artifact_mac = sign(row.artifact, ArtifactIdentity.of(row), settings.artifact_keys)
    with pytest.raises(ArtifactError, match="header says family 'random_forest'.*'lightgbm'"):
        load_version(row, settings.artifact_keys)
    assert not marker.exists()


def test_an_artifact_moved_to_another_row_is_refused(env):
    engine, settings, _ = env
    first = stored(engine, add_version(engine, "lightgbm", n_estimators=5).id)
    second = stored(engine, add_version(engine, "lightgbm", n_estimators=5).id)
    second.artifact, second.sha256, second.artifact_mac = (first.artifact, first.sha256,
                                                           first.artifact_mac)
    assert load_version(first, settings.artifact_keys)
    with pytest.raises(ArtifactError, match="failed authentication"):
        load_version(second, settings.artifact_keys)


# -- where the key comes from ----------------------------------------------------------------------

def test_sqlite_without_a_key_generates_one_local_key_file(tmp_path, env):
    engine, settings, _ = env
    key_file = tmp_path / "signalcast.db.artifact-key"
    assert settings.artifact_keys == engine_keys(engine)  # every process on the host agrees
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert settings.artifact_keys.current == key_file.read_text().strip().encode()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_postgres_without_a_key_refuses_with_how_to_make_one(monkeypatch):
    monkeypatch.delenv("SIGNALCAST_ARTIFACT_KEY", raising=False)
    monkeypatch.delenv("SIGNALCAST_ARTIFACT_KEY_FILE", raising=False)
    env = EnvConfig(database_url="postgresql+psycopg://u@db/signalcast", _env_file=None)
    with pytest.raises(ConfigError, match=r"SIGNALCAST_ARTIFACT_KEY is not set.*token_hex\(32\)"):
        resolve_artifact_keys(env)


def test_key_file_short_keys_and_in_memory_databases(tmp_path, monkeypatch):
    monkeypatch.delenv("SIGNALCAST_ARTIFACT_KEY", raising=False)
    secret = tmp_path / "artifact.key"
    secret.write_text(NEW + "\n")
    keys = resolve_artifact_keys(EnvConfig(database_url="postgresql://u@db/x",
                                           artifact_key_file=secret, _env_file=None))
    assert keys.current == NEW.encode()
    with pytest.raises(ConfigError, match="at least 32 characters"):
        resolve_artifact_keys(EnvConfig(artifact_key="short", _env_file=None))
    memory = resolve_artifact_keys(EnvConfig(database_url="sqlite://", _env_file=None))
    assert memory == resolve_artifact_keys(EnvConfig(database_url="sqlite://", _env_file=None))


def test_config_show_masks_the_artifact_keys(make_settings, sqlite_url):
    settings = make_settings(sqlite_url, artifact_key=NEW, artifact_keys_old=OLD)
    shown = json.dumps(settings.redacted())
    assert NEW not in shown and OLD not in shown
    assert settings.redacted()["environment"]["artifact_key"] == "********"
