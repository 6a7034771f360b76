"""Settings: packaged defaults, validation messages that name the field and the fix, env."""

from __future__ import annotations

import pytest
import yaml

from signalcast.config import load_settings
from signalcast.core.errors import ConfigError, UnknownNameError


def write(tmp_path, data) -> str:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return str(path)


BASE = {"assets": [{"symbol": "BTC/USDT"}], "targets": [{"pct": 0.02, "horizon": 72}]}


def test_packaged_default_has_three_assets_and_three_targets():
    settings = load_settings(None, config=None)
    assert [a.symbol for a in settings.assets] == ["BTC/USDT", "ETH/USDT", "SOL/USDT"]
    assert [t.key for t in settings.targets] == ["1pct_72", "2pct_72", "5pct_72"]
    assert all(0.5 < t.alert_threshold <= 1 for t in settings.targets)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"targets": [{"pct": 0.01, "horizon": 5}, {"pct": -0.02, "horizon": 72}]},
         "targets[1].pct must be > 0, got -0.02"),
        ({"targets": [{"pct": 0.02, "horizon": 0}]}, "targets[0].horizon must be >= 1, got 0"),
        ({"targets": [{"pct": 0.02, "horizon": 7, "alert_threshold": 0.4}]},
         "targets[0].alert_threshold must be > 0.5, got 0.4"),
        ({"assets": [{"symbol": "BTC/USDT", "timeframe": "1x"}]},
         "assets[0].timeframe must look like 15m, 1h, 4h or 1d, got '1x'"),
        ({"modles": {}}, "modles is not a known setting; did you mean 'models'?"),
        ({"assets": [{"symbol": "A"}, {"symbol": "A"}]}, "must list each symbol once"),
        ({"schedule": {"retrain_cron": "every day"}}, "schedule.retrain_cron must be a crontab"),
        ({"assets": []}, "assets must not be empty"),
    ],
)
def test_invalid_values_name_the_field_and_the_fix(tmp_path, change, message):
    with pytest.raises(ConfigError) as err:
        load_settings(write(tmp_path, {**BASE, **change}))
    assert message in str(err.value)


def test_missing_and_unparsable_files_say_what_to_do(tmp_path):
    with pytest.raises(ConfigError, match="does not exist; set SIGNALCAST_CONFIG"):
        load_settings(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(write(tmp_path, "assets: [unclosed"))


def test_environment_supplies_urls_and_secrets(monkeypatch, tmp_path):
    monkeypatch.setenv("SIGNALCAST_CONFIG", write(tmp_path, BASE))
    monkeypatch.setenv("SIGNALCAST_DATABASE_URL", "postgresql://u:hunter2@db/x")
    monkeypatch.setenv("SIGNALCAST_TELEGRAM_TOKEN", "123:SECRET")
    monkeypatch.setenv("SIGNALCAST_TELEGRAM_ADMINS", "1, 2")
    settings = load_settings()
    assert settings.telegram_admins == {"1", "2"}
    shown = str(settings.redacted())
    assert "hunter2" not in shown and "SECRET" not in shown
    assert settings.env.telegram_token.get_secret_value() == "123:SECRET"


def test_unknown_asset_lookup_lists_the_configured_ones():
    settings = load_settings(None, config=None)
    with pytest.raises(UnknownNameError, match="Known: BTC/USDT, ETH/USDT, SOL/USDT"):
        settings.asset("DOGE/USDT")
    assert settings.asset("btc/usdt").symbol == "BTC/USDT"
