"""Model families by name.

Built-in families map to import paths and are imported only when chosen (a worker serving
LightGBM never imports hmmlearn). Third-party families register through the ``signalcast.models``
entry-point group::

    [project.entry-points."signalcast.models"]
    my_family = "my_package.module:MyModel"

An unknown name gets "Unknown model family 'lgbm'. Did you mean 'lightgbm'? Known: ...".
"""

from __future__ import annotations

import importlib
from functools import cache
from importlib.metadata import entry_points
from typing import Any

from signalcast.errors import UnknownNameError
from signalcast.models.base import SignalModel

ENTRY_POINT_GROUP = "signalcast.models"

BUILTIN: dict[str, str] = {
    "lightgbm": "signalcast.models.lightgbm_model:LightGBMModel",
}


@cache
def _plugins() -> dict[str, str]:
    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def families() -> dict[str, str]:
    """Every registered family name -> its import path (built-ins win over plugins)."""
    return {**_plugins(), **BUILTIN}


def family_class(name: str) -> type[SignalModel]:
    known = families()
    if name not in known:
        raise UnknownNameError("model family", name, known)
    module_name, _, attr = known[name].partition(":")
    cls = getattr(importlib.import_module(module_name), attr)
    if not (isinstance(cls, type) and issubclass(cls, SignalModel)):
        raise TypeError(f"{known[name]} is not a SignalModel subclass")
    return cls


def create(name: str, **params: Any) -> SignalModel:
    """A new, unfitted model of family ``name`` with hyperparameters ``params``."""
    cls = family_class(name)
    try:
        return cls(**params)
    except TypeError as exc:
        raise ValueError(f"bad parameters for model family {name!r}: {exc}") from None
