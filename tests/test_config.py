"""Settings: packaged defaults, validation messages that name the field and the fix, env."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from signalcast.config import load_settings
from signalcast.core.errors import ConfigError, UnknownNameError


def write(tmp_path, data) -> str:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return str(path)


REPO = Path(__file__).resolve().parents[1]
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


# -- start-up validation of the items a run would otherwise fail on later -------------------------

@pytest.mark.parametrize(
    "change, message",
    [
        ({"models": {"champion": "nosuchfamily"}},
         "models.champion names unknown model family 'nosuchfamily'"),
        ({"models": {"champion": "lightgbn"}}, "did you mean 'lightgbm'?"),
        ({"models": {"params": {"lightgbm": {"n_estimatorz": 10}}}},
         "models.params.lightgbm.n_estimatorz is not a parameter of model family 'lightgbm'; "
         "did you mean 'n_estimators'?"),
        ({"models": {"params": {"xgbost": {}}}},
         "models.params key 'xgbost' names unknown model family 'xgbost'; did you mean "
         "'xgboost'?"),
        ({"schedule": {"leader_ttl_seconds": float("inf")}},
         "schedule.leader_ttl_seconds must be a finite number, got inf"),
        ({"data": {"close_grace_seconds": float("nan")}},
         "data.close_grace_seconds must be a finite number, got nan"),
        ({"targets": [{"pct": 0.02, "horizon": 72, "alert_threshold": float("inf")}]},
         "targets[0].alert_threshold must be a finite number"),
        ({"assets": [{"symbol": "BTC/USDT"}, {"symbol": "btc/usdt"}]},
         "must list each symbol once (symbols are compared in upper case); repeated: BTC/USDT"),
        ({"assets": [{"symbol": "BTC/USDT", "timeframe": "45m"}]},
         "assets[0].timeframe '45m' does not divide a day evenly"),
        ({"assets": [{"symbol": "BTC/USDT", "timeframe": "90m"}]}, "use one of 1m, 2m"),
        ({"assets": [{"symbol": "BTC/USDT", "timeframe": "5h"}]}, "'5h' does not divide a day"),
        ({"assets": [{"symbol": "BTC/USDT", "timeframe": "3d"}]}, "'3d' does not divide a day"),
        ({"assets": [{"symbol": "EURUSD", "calendar": "nyse"}]},
         "assets[0].calendar: Input should be '24/7', 'fx' or 'equity'"),
    ],
)
def test_startup_refuses_what_would_fail_later(tmp_path, change, message):
    with pytest.raises(ConfigError) as err:
        load_settings(write(tmp_path, {**BASE, **change}))
    assert message in str(err.value)


def test_yaml_inf_is_refused_as_written_in_a_file(tmp_path):
    text = yaml.safe_dump(BASE) + "schedule:\n  leader_ttl_seconds: .inf\n"
    with pytest.raises(ConfigError, match="leader_ttl_seconds must be a finite number"):
        load_settings(write(tmp_path, text))


def test_symbols_are_upper_case_and_found_in_any_case(tmp_path):
    settings = load_settings(write(tmp_path, {**BASE, "assets": [{"symbol": " btc/usdt "}]}))
    assert [a.symbol for a in settings.assets] == ["BTC/USDT"]
    assert settings.asset("Btc/Usdt").symbol == "BTC/USDT"


def test_good_family_parameters_and_day_dividing_timeframes_pass(tmp_path):
    change = {"models": {"champion": "xgboost", "params": {"xgboost": {"max_depth": 3},
                                                           "lightgbm": {"num_leaves": 7}}},
              "assets": [{"symbol": s, "timeframe": tf} for s, tf in
                         (("A", "5m"), ("B", "30m"), ("C", "4h"), ("D", "12h"), ("E", "1d"))]}
    settings = load_settings(write(tmp_path, {**BASE, **change}))
    assert settings.model_params("xgboost") == {"max_depth": 3}
    assert [a.timeframe for a in settings.assets] == ["5m", "30m", "4h", "12h", "1d"]


@pytest.mark.slow
def test_family_parameters_are_read_without_importing_the_library():
    import subprocess
    import sys

    code = ("import sys; from signalcast.config.params import constructor_parameters as c; "
            "print('n_estimators' in c('lightgbm'), 'lightgbm' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=REPO).stdout.split()
    assert out == ["True", "False"]


@pytest.mark.slow
def test_status_with_the_database_down_prints_one_line_and_exits_2(tmp_path):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNALCAST_")}
    env["SIGNALCAST_DATABASE_URL"] = "postgresql://postgres:pw@127.0.0.1:1/signalcast"
    env["PYTHONPATH"] = str(REPO)  # this checkout, whatever is installed
    run = subprocess.run([sys.executable, "-m", "signalcast.cli", "status"], env=env,
                         cwd=tmp_path, capture_output=True, text=True, timeout=60)
    lines = (run.stdout + run.stderr).strip().splitlines()
    assert run.returncode == 2
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: cannot use the database at "
                               "postgresql://postgres:***@127.0.0.1:1/signalcast")
    assert "Connection refused" in lines[0] and "SIGNALCAST_DATABASE_URL" in lines[0]
    assert "pw@" not in lines[0]


def test_a_training_without_auc_is_described_not_a_traceback():
    from signalcast.cli.progress import describe_training

    result = {"asset": "BTC/USDT", "target": "2pct_72", "family": "lightgbm", "version": 1,
              "metrics": {"auc": None, "brier": float("nan")}}
    assert describe_training(result) == "BTC/USDT 2pct_72 lightgbm v1 AUC n/a Brier n/a"
    result["metrics"] = {"auc": 0.61234, "brier": 0.2}
    assert describe_training(result).endswith("AUC 0.612 Brier 0.200")
