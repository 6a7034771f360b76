"""Checks of the ``models`` section against the model registry, at start-up: the champion and
every ``models.params`` key name a registered family, and each family's parameters are
arguments its constructor takes (a misspelt one gets a did-you-mean). The registry is imported
inside the functions, so ``signalcast --help`` never loads it."""

from __future__ import annotations

import ast
import difflib
import importlib.util
import inspect
from pathlib import Path
from typing import TYPE_CHECKING

from signalcast.config.routing import check_family

if TYPE_CHECKING:
    from signalcast.config.models import ModelsConfig


AUTO = "auto"  # champion chosen by evidence among the candidates, not a family name


def check_models(models: ModelsConfig) -> ModelsConfig:
    """``models`` if its champion, candidates and parameters fit the registered families (else
    ValueError naming the key, with a did-you-mean)."""
    if models.champion != AUTO:
        try:
            check_family(models.champion)
        except ValueError as exc:
            raise ValueError(f".champion {exc} (or 'auto')") from None
    for i, name in enumerate(getattr(models, "candidates", None) or []):
        try:
            check_family(name)
        except ValueError as exc:
            raise ValueError(f".candidates[{i}] {exc}") from None
    for family, params in models.params.items():
        try:
            check_family(family)
        except ValueError as exc:
            raise ValueError(f".params key {family!r} {exc}") from None
        _check_params(family, params)
    return models


def _check_params(family: str, params: dict) -> None:
    accepted = constructor_parameters(family)
    if accepted is None:
        return  # the family takes any keyword: it checks them itself
    for name in params:
        if name not in accepted:
            close = difflib.get_close_matches(str(name), accepted, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ValueError(f".params.{family}.{name} is not a parameter of model family "
                             f"{family!r}; {hint}it takes: {', '.join(accepted)}")


def constructor_parameters(family: str) -> list[str] | None:
    """The keyword names the family's constructor takes (None: any keyword).

    Read from the module's source when the class defines ``__init__`` itself, so start-up does
    not import LightGBM or XGBoost just to check a name; otherwise from the imported class's
    signature."""
    from signalcast.models.registry import families, family_class

    module_name, _, attr = families()[family].partition(":")
    found = _parameters_from_source(module_name, attr)
    if found is not None:
        return found or None
    signature = inspect.signature(family_class(family).__init__)
    if any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values()):
        return None
    return [name for name, p in signature.parameters.items() if name != "self"
            and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def _parameters_from_source(module_name: str, attr: str) -> list[str] | None:
    """``__init__``'s keyword names as written in the module (``[]``: takes ``**kwargs``);
    None when the source or the method cannot be found."""
    try:
        spec = importlib.util.find_spec(module_name)
        tree = ast.parse(Path(spec.origin).read_text()) if spec and spec.origin else None
    except (ImportError, OSError, SyntaxError, ValueError):
        return None
    for node in tree.body if tree else []:
        if isinstance(node, ast.ClassDef) and node.name == attr:
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == "__init__":
                    if item.args.kwarg is not None:
                        return []
                    names = [a.arg for a in item.args.args + item.args.kwonlyargs]
                    return [n for n in names if n != "self"]
    return None
