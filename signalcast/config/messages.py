"""Pydantic validation errors as the messages start-up stops with: the field path and the fix,
e.g. ``targets[1].pct must be > 0, got -0.02``, with a did-you-mean for a misspelt key."""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import BaseModel, ValidationError

from signalcast.core.errors import ConfigError


def format_loc(loc: tuple[Any, ...]) -> str:
    """A pydantic error location as a key path: ``("targets", 1, "pct")`` -> ``targets[1].pct``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


_BOUND_WORDS = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<",
                "less_than_equal": "<="}


def _known_fields(root: type[BaseModel], parent_loc: tuple[Any, ...]) -> list[str]:
    """Field names allowed at ``parent_loc`` (to suggest a fix for a misspelled key)."""
    model: Any = root
    for part in parent_loc:
        if isinstance(part, int):
            continue
        annotation = model.model_fields[part].annotation
        model = getattr(annotation, "__args__", (annotation,))[0]
    return sorted(model.model_fields) if hasattr(model, "model_fields") else []


def describe(error: dict[str, Any], root: type[BaseModel]) -> str:
    """One error of validating ``root`` as a sentence naming the key and what it must be."""
    where = format_loc(error["loc"])
    kind, ctx = error["type"], error.get("ctx") or {}
    got = error.get("input")
    if kind in _BOUND_WORDS:
        bound = next(iter(ctx.values()))
        return f"{where} must be {_BOUND_WORDS[kind]} {bound:g}, got {got!r}"
    if kind == "extra_forbidden":
        known = _known_fields(root, error["loc"][:-1])
        close = difflib.get_close_matches(str(error["loc"][-1]), known, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        return f"{where} is not a known setting; {hint}known here: {', '.join(known)}"
    if kind == "finite_number":
        return (f"{where} must be a finite number, got {got!r} (.inf and .nan are not "
                "allowed); write a number such as 30")
    if kind == "missing":
        return f"{where} is required but missing"
    if kind == "too_short":
        return f"{where} must not be empty"
    if kind == "value_error":
        msg = error["msg"].removeprefix("Value error, ")
        return f"{where}{msg}" if msg.startswith(".") else f"{where} {msg}"  # ".key ..." nests
    return f"{where}: {error['msg']}, got {got!r}"


def file_error(exc: ValidationError, root: type[BaseModel], source: str) -> ConfigError:
    """The error for an invalid YAML file ``source``: one line per problem."""
    problems = "\n  ".join(describe(e, root) for e in exc.errors())
    return ConfigError(f"invalid configuration in {source}:\n  {problems}")


def environment_error(exc: ValidationError) -> ConfigError:
    """The error for an invalid environment, naming each ``SIGNALCAST_*`` variable."""
    problems = "; ".join(
        f"SIGNALCAST_{format_loc(e['loc']).upper()}: {e['msg']}" for e in exc.errors()
    )
    return ConfigError(f"invalid environment: {problems}")
