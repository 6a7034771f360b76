"""The ``routing`` section: champion/challenger serving, shadows, A/B, fallbacks, promotion,
online learning and drift."""

from __future__ import annotations

import difflib
from typing import Literal

from pydantic import Field, field_validator, model_validator

from signalcast.config.base import Section, require_unique

ROUTE_FALLBACKS = ("previous_champion", "online")


def check_family(value: str | None) -> str | None:
    """A registered model family name (built-in or plugin), or None."""
    if value is None:
        return value
    from signalcast.models.registry import families

    known = families()
    if value not in known:
        close = difflib.get_close_matches(value, known, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ValueError(f"names unknown model family {value!r}; {hint}known: "
                         f"{', '.join(sorted(known))}")
    return value


class RoutePolicy(Section):
    """How one target is served (signalcast.routing).

    The version with the champion role serves; when no version holds it, the newest version of
    ``champion`` (default: ``models.champion``) does. The newest version of each ``shadows``
    family predicts on the same candles, recorded and never alerted. ``ab_share`` of the
    (asset, target, candle) decisions, picked by a hash, are served by the newest
    ``ab_challenger`` version instead. When the serving model fails (or its circuit breaker is
    open after ``breaker_failures`` consecutive failures, for ``breaker_cooldown_minutes`` of
    candle time) the ``fallback`` chain is tried in order: the previous champion version, then
    the online baseline (``routing.online_family``); nothing left means no signal and an
    operator alert. Retrains of the champion's family and challengers of other families
    trained since the champion shadow it too; a challenger is judged as a policy (the union of
    its successive versions' shadow predictions). It replaces the champion once they share
    ``promote_min_outcomes`` resolved outcomes and its three-outcome Brier loss is lower by
    ``promote_margin`` at ``promote_significance`` overall, however often it is checked (an
    always-valid e-value on the Diebold-Mariano statistic, Newey-West lags = 3 x horizon, read
    daily on the whole record; signalcast.routing.promotion);
    ``promote_mode`` ``auto`` promotes, ``command`` only notifies (an operator promotes with
    /promote).
    """

    champion: str | None = None
    shadows: list[str] = Field(default_factory=list)
    ab_share: float = Field(default=0.0, ge=0, le=1)
    ab_challenger: str | None = None
    fallback: list[Literal["previous_champion", "online"]] = Field(
        default_factory=lambda: list(ROUTE_FALLBACKS))
    breaker_failures: int = Field(default=3, ge=1, le=1000)
    breaker_cooldown_minutes: float = Field(default=60, gt=0)
    promote_min_outcomes: int = Field(default=300, ge=10)
    promote_margin: float = Field(default=0.0, ge=0, lt=1)
    promote_significance: float = Field(default=0.05, gt=0, lt=0.5)
    promote_mode: Literal["auto", "command"] = "auto"

    @field_validator("champion", "ab_challenger")
    @classmethod
    def _known_family(cls, value: str | None) -> str | None:
        return check_family(value)

    @field_validator("shadows")
    @classmethod
    def _known_families(cls, value: list[str]) -> list[str]:
        for name in value:
            check_family(name)
        return list(dict.fromkeys(value))


class TargetRoute(RoutePolicy):
    """A per-target override: only the keys written here replace ``routing.default``."""

    target: str = Field(min_length=1)


class RoutingConfig(Section):
    """Champion/challenger routing, online learning and drift (see :class:`RoutePolicy`).

    ``online_family`` models learn from every resolved outcome (``online_learning``), in
    batches: a version learns its pending outcomes once the oldest of them resolved
    ``learn_every_candles`` candles ago (24: about once a day on hourly candles; 1: at every
    tick). Each batch is a new stored state (signed, kept), so batching is what keeps a tick
    cheap: loading, updating, signing and writing a model once a day instead of every candle,
    for outcomes that already arrive a horizon late. Drift: a
    self-starting CUSUM on the champion's three-outcome Brier loss per block of ``horizon``
    candles (blocks do not overlap, so their losses are near independent) after
    ``drift_warmup_blocks`` blocks, slack ``drift_slack`` and threshold ``drift_threshold``
    standard deviations (signalcast.stats.drift); a drift notifies and, with
    ``drift_retrain``, enqueues a retrain that enters as a challenger. The artifacts of the
    ``keep_champions`` latest earlier champions are never purged (rollback, fallback).
    Operators change shadows and the A/B split at run time (``signalcast routing ...``), stored in
    the database and read on every prediction.
    """

    default: RoutePolicy = RoutePolicy()
    targets: list[TargetRoute] = Field(default_factory=list)
    online_family: str = "river"
    online_learning: bool = True
    max_learn_per_run: int = Field(default=5000, ge=1)
    learn_every_candles: int = Field(default=24, ge=1, le=10_000)
    drift_detection: bool = True
    drift_threshold: float = Field(default=5.0, gt=0, le=50)
    drift_slack: float = Field(default=0.5, ge=0, le=5)
    drift_warmup_blocks: int = Field(default=6, ge=2, le=1000)
    drift_retrain: bool = True
    keep_champions: int = Field(default=5, ge=1, le=100)

    @field_validator("online_family")
    @classmethod
    def _known_online_family(cls, value: str) -> str:
        return check_family(value)

    @field_validator("targets")
    @classmethod
    def _one_override_per_target(cls, value: list[TargetRoute]) -> list[TargetRoute]:
        require_unique([route.target for route in value], "target once")
        return value

    @model_validator(mode="after")
    def _ab_needs_a_challenger(self) -> RoutingConfig:
        for where, policy in [("default", self.default)] + [
                (f"targets {route.target}", self.policy(route.target)) for route in self.targets]:
            if policy.ab_share > 0 and policy.ab_challenger is None:
                raise ValueError(f"{where}: ab_share {policy.ab_share:g} needs ab_challenger "
                                 "(the family that serves that share)")
        return self

    def policy(self, target_key: str) -> RoutePolicy:
        """The default policy with the keys of ``target_key``'s override (if any) replaced."""
        for route in self.targets:
            if route.target == target_key:
                changed = {k: getattr(route, k) for k in route.model_fields_set if k != "target"}
                return self.default.model_copy(update=changed)
        return self.default



def check_routed_targets(routing: RoutingConfig, keys: list[str]) -> RoutingConfig:
    """Each per-target override names one of the configured target ``keys`` (none: unchecked)."""
    for i, route in enumerate(routing.targets):
        if keys and route.target not in keys:
            close = difflib.get_close_matches(route.target, keys, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ValueError(f"targets[{i}].target {route.target!r} is not a configured "
                             f"target; {hint}known: {', '.join(keys)}")
    return routing
