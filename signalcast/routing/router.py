"""Champion/challenger routing: which model version serves each (asset, target, candle).

Decision order for one target at one candle (policy: ``routing`` config + run-time override):

1. **Line-up**: the version with the champion role (none: the newest version of the policy's
   champion family); the newest version of each shadow family; the newest version of the A/B
   challenger family. Only versions with an artifact take part.
2. **A/B split**: ``ab_share`` of the decisions, picked by a hash of (asset, target, candle time)
   (:func:`ab_bucket`), are served by the A/B challenger (role ``ab``); the same candle always
   gets the same answer, on any worker.
3. **Fallback chain**: the serving candidate is tried; if it fails (raises, returns a non-finite
   probability, its artifact is corrupted) or its circuit breaker is open, the next one serves:
   (A/B challenger ->) champion -> previous champion version -> the online baseline (newest
   version of ``routing.online_family``). Every failure is counted by the version's breaker
   and written on the served prediction (``fallback``: which version failed and why). Nothing
   left: no signal, and a ``model`` alert for the operator.
4. **Shadows**: every other line-up version (shadows, the A/B challenger on other candles, the
   champion on A/B candles) predicts on the same candle and is recorded with ``served=False``;
   it is never alerted, and its failure never changes what is served (it runs after the decision).

The router reads everything it needs for one asset once (versions without their artifact bytes,
overrides, breakers) and calls back ``predict(version)`` to get a model's output, so it knows
nothing of caches or artifacts.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
from sqlmodel import Session, col, select

from signalcast.config import Settings
from signalcast.config.settings import RoutePolicy
from signalcast.core.versions import VersionRef, label
from signalcast.db.tables import ModelEvent, ModelVersion
from signalcast.routing.breaker import Breakers, breaker_rows
from signalcast.routing.overrides import apply_override, overrides_for, overrides_of

CHAMPION, AB, SHADOW, FALLBACK = "champion", "ab", "shadow", "fallback"
FALLBACK_CHARS = 200  # the predictions.fallback column


def ab_bucket(asset: str, target: str, candle_time: datetime) -> float:
    """A uniform number in [0, 1) fixed by (asset, target, candle time): the A/B coin.

    >>> from datetime import UTC
    >>> ab_bucket("BTC/USDT", "1pct_24", datetime(2024, 1, 1, tzinfo=UTC)) == ab_bucket(
    ...     "BTC/USDT", "1pct_24", datetime(2024, 1, 1, tzinfo=UTC))
    True
    """
    digest = hashlib.sha256(f"{asset}|{target}|{candle_time.isoformat()}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def serves_challenger(asset: str, target: str, candle_time: datetime, share: float) -> bool:
    """True when this (asset, target, candle) falls in the A/B challenger's share."""
    return share > 0 and ab_bucket(asset, target, candle_time) < share


@dataclass(frozen=True)
class ModelOutput:
    """What one model said about one candle: the unconditional chances that the up level is
    touched first (``p_up``) and that the down level is (``p_down``); the rest, ``1 - p_up -
    p_down``, is the chance that neither is touched within the horizon."""

    p_up: float
    conflict: bool = False  # ensemble members disagree on the direction
    member_probs: tuple[float, ...] = ()
    p_down: float | None = None  # None: 1 - p_up (a model that cannot say "neither")

    @property
    def down(self) -> float:
        return 1.0 - self.p_up if self.p_down is None else self.p_down


def model_output(served, x: np.ndarray) -> ModelOutput:
    """Calibrated unconditional [P(up first), P(down first)] of ``served`` (a
    :class:`~signalcast.models.artifact.ServedModel`) on one feature row ``x`` (1, d), with the
    ensemble conflict flag when the model has one. Raises ValueError on a probability outside
    [0, 1] (NaN included)."""
    details = getattr(served.model, "predict_with_details", None)
    conflict, members = False, ()
    if details is not None:
        raw, flags, member_rows = details(x)
        p_dir = served.calibrator(raw)
        conflict, members = bool(flags[0]), tuple(float(v) for v in member_rows[0])
    else:
        p_dir = served.predict(x)
    probs = served.combine(p_dir, x)[0]
    out = ModelOutput(float(probs[0]), conflict, members, float(probs[1]))
    for name, value in (("P(up first)", out.p_up), ("P(down first)", out.down)):
        if not 0.0 <= value <= 1.0:  # also False for NaN
            raise ValueError(f"returned {name} = {value}")
    if out.p_up + out.down > 1.0 + 1e-9:
        raise ValueError(f"returned P(up) + P(down) = {out.p_up + out.down} > 1")
    return out


@dataclass
class Lineup:
    policy: RoutePolicy
    champion: VersionRef | None
    ab_challenger: VersionRef | None
    shadows: list[VersionRef]

    def versions(self) -> list[VersionRef]:
        """Every version that predicts on each candle, champion first, without repeats."""
        seen: dict[int, VersionRef] = {}
        for v in [self.champion, self.ab_challenger, *self.shadows]:
            if v is not None:
                seen.setdefault(v.id, v)
        return list(seen.values())


@dataclass
class Decision:
    """The outcome for one target: what served (if anything), and every recorded output."""

    target: str
    served: VersionRef | None = None
    role: str | None = None  # champion | ab | fallback
    output: ModelOutput | None = None
    failures: list[str] = field(default_factory=list)  # "<version>: <why>", in chain order
    breaker_opened: list[str] = field(default_factory=list)
    unserved: list[tuple[VersionRef, str, ModelOutput]] = field(default_factory=list)
    shadow_failures: list[str] = field(default_factory=list)

    @property
    def fallback(self) -> str | None:
        """What failed before the served version (the prediction's ``fallback`` column)."""
        if not self.failures:
            return None
        text = "; ".join(self.failures)
        return text if len(text) <= FALLBACK_CHARS else text[:FALLBACK_CHARS - 3] + "..."


def version_rows(session: Session, asset: str) -> list[VersionRef]:
    """Every version of ``asset`` that still has its artifact, newest first (one light query:
    no artifact bytes, no JSON columns)."""
    return versions_of(session, [asset]).get(asset, [])


def versions_of(session: Session, assets: list[str]) -> dict[str, list[VersionRef]]:
    """:func:`version_rows` of several assets in one query."""
    rows = session.exec(select(ModelVersion.id, ModelVersion.asset, ModelVersion.target,
                               ModelVersion.family, ModelVersion.version, ModelVersion.role,
                               ModelVersion.created_at, ModelVersion.sha256)
                        .where(col(ModelVersion.asset).in_(assets),
                               ModelVersion.artifact.is_not(None))
                        .order_by(ModelVersion.created_at.desc(), ModelVersion.id.desc())).all()
    out: dict[str, list[VersionRef]] = {}
    for row in rows:
        out.setdefault(row[1], []).append(VersionRef(*row))
    return out


@dataclass
class RouterReads:
    """What a :class:`Router` reads of one asset, read for several assets at once (a predict
    batch: three queries for all its assets instead of three per asset)."""

    versions: list[VersionRef]
    overrides: dict
    breakers: list


def router_reads(session: Session, assets: list[str]) -> dict[str, RouterReads]:
    """:class:`RouterReads` of each of ``assets`` (unlocked: for a deferred, read-only
    decision)."""
    versions = versions_of(session, assets)
    overrides = overrides_of(session, assets)
    ids = [v.id for vs in versions.values() for v in vs]
    asset_of = {v.id: a for a, vs in versions.items() for v in vs}
    breakers: dict[str, list] = {}
    for row in breaker_rows(session, ids, lock=False):
        breakers.setdefault(asset_of[row.model_version_id], []).append(row)
    return {a: RouterReads(versions.get(a, []), overrides.get(a, {}), breakers.get(a, []))
            for a in assets}


def newest(versions: list[VersionRef], family: str | None,
           exclude: set[int] = frozenset()) -> VersionRef | None:
    """Newest version of ``family`` (versions are newest first) not in ``exclude``."""
    return next((v for v in versions if v.family == family and v.id not in exclude), None)


def make_lineup(settings: Settings, policy: RoutePolicy,
                versions: list[VersionRef]) -> Lineup:
    """The line-up of one target from its servable versions (with an artifact, newest first).

    Besides the configured shadows, every *policy* that may replace the champion shadows it
    until judged: the newest retrain of the champion's family (a version above the champion's)
    and the newest challenger of any other family trained since the champion (training under
    ``models.champion: auto`` picks the family by evidence, so a retrain can bring another)."""
    champion = next((v for v in versions if v.role == "champion"), None)
    if champion is None:
        champion = newest(versions, policy.champion or settings.models.champion)
    taken = {champion.id} if champion is not None else set()
    ab = newest(versions, policy.ab_challenger, taken) if policy.ab_share > 0 else None
    shadows = [v for v in (newest(versions, f, taken) for f in policy.shadows) if v is not None]
    if champion is not None:  # a retrain of the champion's family shadows it until promoted
        retrained = newest([v for v in versions if v.role != "retired"], champion.family,
                           taken | {v.id for v in shadows})
        if retrained is not None and retrained.version > champion.version:
            shadows.append(retrained)  # (a rolled-back champion does not come back by itself)
        covered = {champion.family, *policy.shadows, *([ab.family] if ab else [])}
        for v in versions:  # newest first: the first challenger of each other family
            if (v.family not in covered and v.role == "challenger"
                    and _not_older(v, champion)):
                shadows.append(v)
                covered.add(v.family)
    return Lineup(policy, champion, ab, shadows)


def _not_older(version: VersionRef, champion: VersionRef) -> bool:
    if version.created_at is None or champion.created_at is None:
        return True
    return version.created_at >= champion.created_at


def lineage(champion: VersionRef, challenger: VersionRef,
            versions: list[VersionRef]) -> list[int]:
    """Ids of the versions whose shadow predictions make the record of ``challenger``'s policy
    against ``champion``: its family's successive versions (a retrain on schedule replaces the
    challenger every day; its record is the union of them), without the champion and the
    family's earlier champions (retired), and for the champion's own family only versions above
    the champion's. The newest version (the one promoted) is ``challenger`` itself."""
    return [v.id for v in versions if v.family == challenger.family and v.id != champion.id
            and v.role != "retired" and v.version <= challenger.version
            and (v.family != champion.family or v.version > champion.version)]


class Router:
    """Routes every target of one asset at one candle (see the module docstring)."""

    def __init__(self, session: Session, settings: Settings, asset: str,
                 candle_time: datetime, *, lock: bool = True, defer: bool = False,
                 reads: RouterReads | None = None):
        """``defer``: breaker changes are kept in ``breakers.pending``, not written (a
        read-only decision; :func:`signalcast.routing.breaker.apply_pending` writes them).
        ``reads``: this asset's versions, overrides and breakers, read already (unlocked)."""
        self.session, self.settings = session, settings
        self.asset, self.candle_time = asset, candle_time
        if reads is None:
            self._servable = version_rows(session, asset)
            self._overrides = overrides_for(session, asset)
            rows = None
        else:
            self._servable, self._overrides, rows = reads.versions, reads.overrides, reads.breakers
        self.breakers = Breakers(session, [v.id for v in self._servable], lock=lock,
                                 defer=defer, rows=rows)

    def policy(self, target: str) -> RoutePolicy:
        return apply_override(self.settings.routing.policy(target), self._overrides.get(target))

    def lineup(self, target: str) -> Lineup:
        return make_lineup(self.settings, self.policy(target),
                           [v for v in self._servable if v.target == target])

    def previous_champion(self, champion: VersionRef) -> VersionRef | None:
        """The version the champion replaced (audit log), else the newest retired one before
        it; only versions with an artifact."""
        mine = {v.id: v for v in self._servable if v.target == champion.target}
        made = self.session.exec(select(ModelEvent.from_version_id).where(
            ModelEvent.to_version_id == champion.id,
            ModelEvent.event.in_(("retrained", "promoted")))
            .order_by(ModelEvent.id.desc())).first()
        if made is not None and made in mine and made != champion.id:
            return mine[made]
        return next((v for v in mine.values() if v.role == "retired"
                     and v.created_at <= champion.created_at and v.id != champion.id), None)

    def _chain(self, lineup: Lineup, target: str, use_ab: bool) -> Iterator[tuple[VersionRef,
                                                                                   str]]:
        """(version, role) candidates to serve, in order, computed lazily."""
        if use_ab:
            yield lineup.ab_challenger, AB
        if lineup.champion is None:
            return
        yield lineup.champion, CHAMPION
        for step in lineup.policy.fallback:
            if step == "previous_champion":
                previous = self.previous_champion(lineup.champion)
                if previous is not None:
                    yield previous, FALLBACK
            elif step == "online":
                online = newest([v for v in self._servable if v.target == target],
                                self.settings.routing.online_family)
                if online is not None:
                    yield online, FALLBACK

    def decide(self, target: str, predict: Callable[[VersionRef], ModelOutput], *,
               already_served: bool = False, recorded: set[int] = frozenset()) -> Decision:
        """Serve ``target`` (unless ``already_served``: a run before decided it) and run the
        line-up's other versions as shadows, skipping versions in ``recorded``."""
        lineup = self.lineup(target)
        decision = Decision(target)
        tried: set[int] = set()
        if not already_served:
            use_ab = lineup.ab_challenger is not None and serves_challenger(
                self.asset, target, self.candle_time, lineup.policy.ab_share)
            for version, role in self._chain(lineup, target, use_ab):
                if version.id in tried:
                    continue
                tried.add(version.id)
                output, why = self._try(version, lineup.policy, predict, decision)
                if output is not None:
                    decision.served, decision.role, decision.output = version, role, output
                    break
                decision.failures.append(f"{label(version)} {why}")
        for version in lineup.versions():
            if version.id in tried or version.id in recorded:
                continue
            output, why = self._try(version, lineup.policy, predict, decision)
            if output is None:
                decision.shadow_failures.append(f"{label(version)} {why}")
                continue
            role = CHAMPION if lineup.champion is not None and version.id == lineup.champion.id \
                else SHADOW
            decision.unserved.append((version, role, output))
        return decision

    def _try(self, version: VersionRef, policy: RoutePolicy,
             predict: Callable[[VersionRef], ModelOutput],
             decision: Decision) -> tuple[ModelOutput | None, str]:
        allowed, why = self.breakers.allows(version.id, self.candle_time, policy)
        if not allowed:
            return None, f"skipped: {why}"
        try:
            output = predict(version)
        except Exception as exc:  # any model failure falls back; the breaker counts it
            message = f"{type(exc).__name__}: {exc}"
            if self.breakers.failure(version.id, self.candle_time, message, policy):
                decision.breaker_opened.append(label(version))
            return None, f"failed: {message}"
        self.breakers.success(version.id, self.candle_time)
        return output, ""
