"""What the weighted and the stacked ensemble share: members, their walk-forward calibration,
conflict detection, online learning and pickle-free serialisation.

Members are given as ``[{"family": "lightgbm", "params": {...}}, {"family": "river"}]`` (a bare
family name is accepted too) and are created through the registry, so any registered family,
plugins included, can be a member. All members use the ensemble's ``seed``.

Fitting: the members' out-of-fold probabilities are built walk-forward with a purge of
``horizon`` rows (:mod:`.oof`); each member gets a sigmoid calibrator fitted on its OOF
probabilities (``calibrate_members``), so members speak the same probability scale and "a member
says UP" means the same for all; then the subclass learns how to combine them (weights or a
meta-learner); finally every member is refitted on all rows. With too few rows for one OOF fold
the members stay uncalibrated and the subclass uses its fallback combination.

Conflict: a row is a conflict when one member says UP with at least ``0.5 + conflict_margin``
and another DOWN with at most ``0.5 - conflict_margin`` (ASX Portfolio OS's "one model buys,
another sells"); :meth:`EnsembleModel.predict_with_details` returns the flags.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Self

import numpy as np

from signalcast.ensemble.oof import MemberOOF, member_oof
from signalcast.models import registry
from signalcast.models.base import SignalModel, pack_arrays, unpack_arrays
from signalcast.models.calibration import SigmoidCalibrator

DEFAULT_MEMBERS: tuple[str, ...] = ("lightgbm", "lorentzian")


def normalise_members(members: Sequence[str | Mapping[str, Any]] | None) -> list[dict]:
    """``["lightgbm", {"family": "river", "params": {...}}]`` -> a list of
    ``{"family": ..., "params": {...}}``; each member is created once to fail fast."""
    out = []
    for i, member in enumerate(DEFAULT_MEMBERS if members is None else members):
        spec = {"family": member} if isinstance(member, str) else dict(member)
        unknown = set(spec) - {"family", "params"}
        if "family" not in spec or unknown:
            raise ValueError(f"member {i} must be a family name or {{family, params}}, "
                             f"got {member!r}")
        params = dict(spec.get("params") or {})
        if "seed" in params:
            raise ValueError("ensemble members take the ensemble's seed; remove member seeds")
        registry.create(spec["family"], **params)  # bad names or parameters fail now
        out.append({"family": str(spec["family"]), "params": params})
    if not out:
        raise ValueError("an ensemble needs at least one member")
    return out


class EnsembleModel(SignalModel):
    """Base of the ensemble families; subclasses implement ``_fit_combiner`` / ``_combine``."""

    def __init__(self, *, seed: int = 0, members: Sequence[str | Mapping[str, Any]] | None = None,
                 horizon: int = 24, folds: int = 4, min_fit_rows: int = 100,
                 calibrate_members: bool = True, conflict_margin: float = 0.1, **params: Any):
        if horizon < 1 or folds < 1 or min_fit_rows < 2:
            raise ValueError("horizon and folds must be >= 1 and min_fit_rows >= 2")
        if not 0 <= conflict_margin < 0.5:
            raise ValueError(f"conflict_margin must be in [0, 0.5), got {conflict_margin}")
        super().__init__(seed=seed, members=normalise_members(members), horizon=horizon,
                         folds=folds, min_fit_rows=min_fit_rows,
                         calibrate_members=calibrate_members, conflict_margin=conflict_margin,
                         **params)
        self.members_: list[SignalModel] | None = None
        self.calibrators_: list[SigmoidCalibrator] | None = None
        self.oof_: MemberOOF | None = None  # diagnostics of the last fit (not serialised)

    # -- subclass hooks ----------------------------------------------------------------------
    def _fit_combiner(self, oof: MemberOOF | None, calibrated: np.ndarray | None) -> None:
        """Learn the combination from OOF raw and calibrated member probabilities (None: too
        few rows for OOF; use the fallback)."""
        raise NotImplementedError

    def _combine(self, raw: np.ndarray, calibrated: np.ndarray) -> np.ndarray:
        """P(UP) per row from (n, members) raw and calibrated member probabilities."""
        raise NotImplementedError

    def _combiner_state(self) -> dict[str, Any]:
        raise NotImplementedError

    def _load_combiner(self, state: Mapping[str, Any]) -> None:
        raise NotImplementedError

    # -- fitting -----------------------------------------------------------------------------
    @property
    def member_specs(self) -> list[dict]:
        """The members as fitted: each takes the ensemble's horizon if it takes one."""
        return [{"family": s["family"],
                 "params": registry.with_horizon(s["family"], s["params"], self.params["horizon"])}
                for s in self.params["members"]]

    def _new_member(self, spec: Mapping[str, Any]) -> SignalModel:
        return registry.create(spec["family"], seed=self.seed, **spec["params"])

    def fit(self, X: np.ndarray, y: np.ndarray, *,
            feature_names: Sequence[str] | None = None) -> Self:
        X, y = self._check_fit_input(X, y)
        p = self.params
        oof = None
        if p["calibrate_members"] or self._needs_oof():
            oof = member_oof(X, y, self.member_specs, seed=self.seed, horizon=p["horizon"],
                             folds=p["folds"], min_fit_rows=p["min_fit_rows"])
        if oof is not None and p["calibrate_members"]:
            calibrators = [SigmoidCalibrator.fit(oof.probs[:, j], oof.y)
                           for j in range(len(self.member_specs))]
        else:
            calibrators = [SigmoidCalibrator() for _ in self.member_specs]
        calibrated = None if oof is None else np.column_stack(
            [cal(oof.probs[:, j]) for j, cal in enumerate(calibrators)])
        self.calibrators_ = calibrators
        self._fit_combiner(oof, calibrated)
        members = []
        for spec in self.member_specs:
            model = self._new_member(spec)
            members.append(model.fit(X, y) if feature_names is None
                           else model.fit_with_feature_names(X, y, feature_names))
        self.members_, self.oof_ = members, oof
        return self

    def _needs_oof(self) -> bool:
        """Whether the combiner learns from OOF predictions even without member calibration."""
        return True

    # -- predicting --------------------------------------------------------------------------
    def _member_probs(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self._check_fitted(self.members_)
        X = np.asarray(X, dtype=np.float64)
        raw = np.column_stack([np.asarray(m.predict_proba(X), dtype=np.float64)
                               for m in self.members_])
        calibrated = np.column_stack([cal(raw[:, j]) for j, cal in enumerate(self.calibrators_)])
        return raw, calibrated

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        raw, calibrated = self._member_probs(X)
        return np.clip(self._combine(raw, calibrated), 0.0, 1.0)

    def predict_with_details(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(p_up, conflict_flags, member_probs)``: the ensemble's P(UP) per row, True where
        members disagree on the direction (see the module docstring), and the calibrated
        probability of each member, shape (n, members)."""
        raw, calibrated = self._member_probs(X)
        p = np.clip(self._combine(raw, calibrated), 0.0, 1.0)
        return p, conflicts(calibrated, self.params["conflict_margin"]), calibrated

    # -- online learning ---------------------------------------------------------------------
    @property
    def learns_online(self) -> bool:
        return any(callable(getattr(m, "learn_one", None)) for m in self.members_ or [])

    def learn_one(self, x_row: np.ndarray, y: int) -> Self:
        """Pass one resolved outcome to every member that learns online (a River member)."""
        self._check_fitted(self.members_)
        online = [m for m in self.members_ if callable(getattr(m, "learn_one", None))]
        if not online:
            raise NotImplementedError("no member of this ensemble learns online")
        for member in online:
            member.learn_one(x_row, y)
        return self

    # -- bytes -------------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """Members' own payloads (pickle-free where the member's library allows) inside an
        ``.npz`` with the calibrators and the combiner as JSON."""
        self._check_fitted(self.members_)
        arrays = {f"member_{i}": np.frombuffer(m.to_bytes(), dtype=np.uint8)
                  for i, m in enumerate(self.members_)}
        meta = {"calibrators": [c.to_dict() for c in self.calibrators_],
                "combiner": self._combiner_state()}
        return pack_arrays(arrays, meta)

    @classmethod
    def from_bytes(cls, data: bytes, params: dict[str, Any]) -> Self:
        model = cls(**params)
        arrays, meta = unpack_arrays(data)
        model.members_ = [
            registry.family_class(spec["family"]).from_bytes(
                arrays[f"member_{i}"].tobytes(), {"seed": model.seed, **spec["params"]})
            for i, spec in enumerate(model.member_specs)]
        model.calibrators_ = [SigmoidCalibrator(**c) for c in meta["calibrators"]]
        model._load_combiner(meta["combiner"])
        return model


def conflicts(member_probs: np.ndarray, margin: float) -> np.ndarray:
    """True per row where one member is >= 0.5 + margin and another <= 0.5 - margin.

    >>> conflicts(np.array([[0.7, 0.2], [0.7, 0.45], [0.55, 0.6]]), 0.1).tolist()
    [True, False, False]
    """
    member_probs = np.atleast_2d(member_probs)
    return ((member_probs >= 0.5 + margin - 1e-12).any(axis=1)
            & (member_probs <= 0.5 - margin + 1e-12).any(axis=1))
