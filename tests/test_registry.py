"""The model registry: built-ins by name, lazy imports, entry-point plugins, `families`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from signalcast.cli.models import models_cli
from signalcast.core.errors import ConfigError, UnknownNameError
from signalcast.models import registry
from signalcast.models.base import SignalModel
from tests.conftest import write_config

PLUGIN_SOURCE = Path(__file__).parent / "plugin_pkg"
REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", sorted(registry.BUILTIN))
def test_every_builtin_family_is_created_by_name(name):
    model = registry.create(name, seed=7)
    assert isinstance(model, SignalModel)
    assert model.family == name
    assert model.get_params()["seed"] == 7
    json.dumps(model.get_params())  # params go into the artifact's JSON header


def test_unknown_family_names_the_closest_one_and_the_known_ones():
    with pytest.raises(UnknownNameError) as caught:
        registry.create("xgbost")
    message = str(caught.value)
    assert "Did you mean 'xgboost'?" in message
    assert "lorentzian" in message and "random_forest" in message


@pytest.mark.parametrize("family", sorted(registry.OPTIONAL_LIBRARIES))
def test_a_family_whose_optional_library_is_missing_says_which_extra_to_install(
        family, monkeypatch):
    module, extra = registry.OPTIONAL_LIBRARIES[family]
    monkeypatch.setitem(sys.modules, module, None)  # how Python marks a module as absent
    with pytest.raises(registry.FamilyNotInstalledError) as caught:
        registry.create(family)
    message = str(caught.value)
    assert f"pip install 'signalcast[{extra}]'" in message and "signalcast[all]" in message
    assert repr(family) in message and repr(module) in message
    assert isinstance(caught.value, ConfigError)


def test_training_by_evidence_skips_families_whose_library_is_not_installed(monkeypatch,
                                                                            config_path):
    from signalcast.config import load_settings
    from signalcast.lifecycle.evidence import candidate_families

    settings = load_settings(config_path)
    assert {"xgboost", "river"} <= set(candidate_families(settings))
    monkeypatch.setitem(sys.modules, "xgboost", None)
    assert not registry.is_installed("xgboost") and registry.is_installed("lightgbm")
    families = candidate_families(settings)
    assert "xgboost" not in families and {"lightgbm", "river"} <= set(families)


def test_every_optional_library_is_an_extra_and_in_all():
    import tomllib

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "dependencies"]
    for module, extra in registry.OPTIONAL_LIBRARIES.values():
        assert any(req.startswith(module) for req in extras[extra]), extra
        assert any(req.startswith(module) for req in extras["all"]), module
        assert not any(req.startswith(module) for req in dependencies), module


def test_bad_parameters_name_the_family():
    with pytest.raises(ValueError, match="bad parameters for model family 'lorentzian'"):
        registry.create("lorentzian", n_trees=3)


def test_describe_families_gives_source_and_import_path_of_each():
    described = {name: (path, source) for name, path, source in registry.describe_families()}
    assert described["hmm"] == ("signalcast.models.families.hmm:HMMModel", "built-in")
    assert described["lightgbm"][1] == "built-in"
    assert set(registry.BUILTIN) <= set(described)


@pytest.mark.slow
def test_listing_families_imports_no_family_library():
    code = ("import sys; from signalcast.models import registry; registry.describe_families(); "
            "print([m for m in ('xgboost', 'hmmlearn', 'river', 'lightgbm', 'sklearn') "
            "if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=REPO)
    assert out.stdout.strip() == "[]"


def test_fit_with_feature_names_gives_names_only_to_families_that_take_them():
    class Plain(SignalModel):
        family = "plain"

        def fit(self, X, y):
            self.seen = "no names"
            return self

        predict_proba = to_bytes = from_bytes = None

    class Named(Plain):
        def fit(self, X, y, *, feature_names=None):
            self.seen = feature_names
            return self

    X, y = np.zeros((4, 2)), np.array([0, 1, 0, 1])
    assert Plain().fit_with_feature_names(X, y, ["a", "b"]).seen == "no names"
    assert Named().fit_with_feature_names(X, y, ("a", "b")).seen == ["a", "b"]


def test_families_command_lists_each_family_with_source_and_import_path():
    result = CliRunner().invoke(models_cli, ["families"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["FAMILY", "SOURCE", "IMPORT", "PATH"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[1:]}
    assert rows["xgboost"] == ["built-in", "signalcast.models.families.xgboost:XGBoostModel"]
    assert rows["random_forest"][0] == "built-in"
    assert set(registry.BUILTIN) <= set(rows)


PLUGIN_SCRIPT = textwrap.dedent("""
    import json, sys
    from datetime import timedelta
    from signalcast.config import load_settings
    from signalcast.db.engine import init_db, session_scope
    from signalcast.models import registry
    from signalcast.models.artifact import load_version
    from signalcast.pipeline.ingest import ingest_asset
    from signalcast.lifecycle.train import train_model

    config, url = sys.argv[1], sys.argv[2]
    settings = load_settings(config, database_url=url, broker_url=None, telegram_token=None)
    engine = init_db(url)
    now = settings.data.start + timedelta(hours=2000)
    with session_scope(engine) as session:
        ingest_asset(session, settings, "BTC/USDT", now)
    row = train_model(engine, settings, "BTC/USDT", "1pct_24", "base_rate", now=now)
    served = load_version(row, settings.artifact_keys)
    print(json.dumps({
        "families": registry.describe_families(),
        "family": row.family, "params": row.params, "n_train": row.metrics["n_train"],
        "prediction": float(served.model.predict_proba([[0.0] * len(row.features)])[0]),
    }))
""")


@pytest.mark.slow
def test_installed_plugin_is_listed_and_trained_by_name(tmp_path):
    """A real installation (pip, offline) of tests/plugin_pkg, discovered through its entry
    point in a fresh interpreter, then trained by name through the training service."""
    source, site = tmp_path / "plugin_src", tmp_path / "site"
    shutil.copytree(PLUGIN_SOURCE, source)  # pip builds in place: keep tests/ clean
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "--no-index", "--disable-pip-version-check",
                    "--target", str(site), str(source)], check=True, capture_output=True)
    config = write_config(tmp_path / "signalcast.yaml", {"training": {"history_candles": 2000,
                                                                      "min_rows": 300}})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO)])}
    out = subprocess.run(
        [sys.executable, "-c", PLUGIN_SCRIPT, str(config), f"sqlite:///{tmp_path / 'p.db'}"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])

    assert ["base_rate", "signalcast_base_rate_plugin:BaseRateModel",
            "signalcast-base-rate-plugin"] in result["families"]
    assert ["lightgbm", "signalcast.models.families.lightgbm:LightGBMModel",
            "built-in"] in result["families"]
    assert result["family"] == "base_rate"
    assert result["params"] == {"seed": 0, "prior_rows": 1.0}
    assert result["n_train"] >= 300
    assert 0.2 < result["prediction"] < 0.8
