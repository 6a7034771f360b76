"""Model families by name.

Built-in families map to import paths and are imported only when chosen (a worker serving
LightGBM never imports hmmlearn). Third-party families register through the ``signalcast.models``
entry-point group::

    [project.entry-points."signalcast.models"]
    my_family = "my_package.module:MyModel"

An unknown name gets "Unknown model family 'lgbm'. Did you mean 'lightgbm'? Known: ...".

Families whose libraries are heavy are extras (``pip install 'signalcast[xgboost]'``, or
``signalcast[all]`` for every family): choosing one whose library is absent raises
:class:`FamilyNotInstalledError` saying which extra to install.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import logging
from functools import cache
from importlib.metadata import entry_points
from typing import Any

from signalcast.core.errors import ConfigError, UnknownNameError
from signalcast.models.base import SignalModel

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "signalcast.models"

BUILTIN_SOURCE = "built-in"

BUILTIN: dict[str, str] = {
    "lightgbm": "signalcast.models.families.lightgbm:LightGBMModel",
    "xgboost": "signalcast.models.families.xgboost:XGBoostModel",
    "hmm": "signalcast.models.families.hmm:HMMModel",
    "hmm_lightgbm": "signalcast.models.families.hmm_lightgbm:HMMLightGBMModel",
    "river": "signalcast.models.families.river:RiverModel",
    "random_forest": "signalcast.models.families.random_forest:RandomForestModel",
    "lorentzian": "signalcast.models.families.lorentzian:LorentzianModel",
    "weighted_ensemble": "signalcast.ensemble.weighted:WeightedEnsemble",
    "stacking_ensemble": "signalcast.ensemble.stacking:StackingEnsemble",
}

# Built-in families whose library is an extra: family -> (module it imports, extra that brings it)
OPTIONAL_LIBRARIES: dict[str, tuple[str, str]] = {
    "xgboost": ("xgboost", "xgboost"),
}


class FamilyNotInstalledError(ConfigError):
    """A configured model family whose library is not installed in this environment."""

    def __init__(self, family: str, module: str, extra: str):
        self.family, self.module, self.extra = family, module, extra
        super().__init__(
            f"model family {family!r} needs the {module!r} library, which is not installed "
            f"here. Install it with: pip install 'signalcast[{extra}]' (or 'signalcast[all]' "
            f"for every family), or choose another family in models.champion / routing")


def is_installed(family: str) -> bool:
    """Whether ``family``'s optional library (if it has one) can be imported here."""
    if family not in OPTIONAL_LIBRARIES:
        return True
    return importlib.util.find_spec(OPTIONAL_LIBRARIES[family][0]) is not None


def require_library(family: str) -> None:
    """Raise :class:`FamilyNotInstalledError` when ``family`` is a built-in whose optional
    library is missing (checked without importing it)."""
    if not is_installed(family):
        raise FamilyNotInstalledError(family, *OPTIONAL_LIBRARIES[family])


@cache
def _plugins() -> dict[str, tuple[str, str]]:
    """Entry-point families: name -> (import path, distribution that declares it)."""
    found = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist.name if ep.dist is not None else "unknown distribution"
        if ep.name in BUILTIN:
            log.warning("model family %r of plugin %s is ignored: a built-in family has that "
                        "name; rename the entry point", ep.name, dist)
        found[ep.name] = (ep.value, dist)
    return found


def families() -> dict[str, str]:
    """Every registered family name -> its import path (built-ins win over plugins)."""
    return {**{name: path for name, (path, _) in _plugins().items()}, **BUILTIN}


def describe_families() -> list[tuple[str, str, str]]:
    """``(name, import path, source)`` of every family, sorted by name; source is "built-in" or
    the distribution name of the plugin that registered it. Imports no family module."""
    plugins = _plugins()
    return [(name, path, BUILTIN_SOURCE if name in BUILTIN else plugins[name][1])
            for name, path in sorted(families().items())]


def family_class(name: str) -> type[SignalModel]:
    known = families()
    if name not in known:
        raise UnknownNameError("model family", name, known)
    require_library(name)
    module_name, _, attr = known[name].partition(":")
    cls = getattr(importlib.import_module(module_name), attr)
    if not (isinstance(cls, type) and issubclass(cls, SignalModel)):
        raise TypeError(f"{known[name]} is not a SignalModel subclass")
    return cls


def with_horizon(name: str, params: dict[str, Any], horizon: int) -> dict[str, Any]:
    """``params`` with ``horizon`` raised to at least ``horizon`` if family ``name`` takes one
    (the ensembles purge by it, the boosted trees size their leaves by it); else ``params``."""
    if "horizon" in inspect.signature(family_class(name).__init__).parameters:
        return {**params, "horizon": max(int(params.get("horizon", 0)), int(horizon))}
    return params


def create(name: str, **params: Any) -> SignalModel:
    """A new, unfitted model of family ``name`` with hyperparameters ``params``."""
    cls = family_class(name)
    try:
        return cls(**params)
    except TypeError as exc:
        raise ValueError(f"bad parameters for model family {name!r}: {exc}") from None
