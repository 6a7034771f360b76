"""Walk-forward evidence for a training: which family serves, how it is calibrated, and the
held-out figures (each beside its benchmark) stored with the version.

One walk-forward over every resolved row (UP, DOWN and EXPIRED) on purged, embargoed folds
(purge = embargo = the target's horizon) evaluates each candidate family through
:func:`~signalcast.evaluation.selection.evaluate_candidates`; the chosen family is then fitted
on all rows (touch x direction) and served with monotone calibrators fitted on its pooled
out-of-fold predictions and kept only where they beat the raw forecast on held-out folds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from signalcast.config import Settings
from signalcast.config.models import AUTO
from signalcast.evaluation.folds import WalkForwardConfig
from signalcast.evaluation.selection import (
    CandidateReport,
    OutcomeSet,
    Selection,
    evaluate_candidates,
    final_calibrator,
    skill_gate,
)
from signalcast.features import FEATURE_SET, feature_names
from signalcast.features.labels import EXPIRED, UP
from signalcast.models import registry
from signalcast.models.artifact import ServedModel
from signalcast.models.three_outcome import TouchDirectionModel

ENSEMBLES = ("weighted_ensemble", "stacking_ensemble")


def candidate_families(settings: Settings) -> list[str]:
    """``models.candidates``, or every built-in single family whose library is installed
    (ensembles are opt-in; a lean install without the xgboost or river extra skips those)."""
    if settings.models.candidates:
        return list(settings.models.candidates)
    return [name for name in registry.BUILTIN
            if name not in ENSEMBLES and registry.is_installed(name)]


def family_params(settings: Settings, family: str, horizon: int) -> dict[str, Any]:
    """The configured parameters, with at least the target's ``horizon`` for a family that
    takes one (:func:`signalcast.models.registry.with_horizon`)."""
    return registry.with_horizon(family, settings.model_params(family), horizon)


@dataclass
class Evidence:
    selection: Selection
    family: str  # the family to train and store
    mode: str  # auto | fixed


def gather(settings: Settings, data: OutcomeSet, horizon: int, family: str, *,
           seed: int = 0) -> Evidence:
    """Evaluate ``family`` (or, for ``auto``, every candidate) walk-forward on ``data``."""
    names = candidate_families(settings) if family == AUTO else [family]
    for name in names:
        registry.family_class(name)  # an unknown candidate fails before any fit
    families = {name: family_params(settings, name, horizon) for name in names}
    cfg = WalkForwardConfig(folds=settings.training.folds,
                            calibration_fraction=settings.training.calibration_fraction,
                            min_fit_rows=min(200, settings.training.min_rows))
    selection = evaluate_candidates(data, horizon, families, cfg,
                                    n_boot=settings.training.bootstrap, seed=seed)
    chosen = selection.champion if family == AUTO else family
    return Evidence(selection, chosen, AUTO if family == AUTO else "fixed")


def fit_served(evidence: Evidence, data: OutcomeSet, params: dict[str, Any],
               horizon: int) -> ServedModel:
    """The chosen family fitted on every row (touch on all, direction on touched rows), with
    both factors' calibrators fitted on its pooled out-of-fold predictions."""
    sel = evidence.selection
    oof = sel.candidate(evidence.family).oof
    rows, fold = sel.rows, sel.row_folds
    labels, pos = data.labels[rows], data.positions[rows]
    touched = labels != EXPIRED
    cal_dir = final_calibrator(oof.p_dir[touched], (labels[touched] == UP).astype(float),
                               fold[touched], pos[touched], horizon)
    cal_touch = final_calibrator(oof.p_touch, touched.astype(float), fold, pos, horizon,
                                 intercept=True)
    model = TouchDirectionModel(evidence.family, params).fit(data.X, data.labels,
                                                             feature_names())
    return ServedModel(model.direction_, cal_dir, FEATURE_SET, feature_names(),
                       touch_model=model.touch_, touch_rate=model.touch_rate_,
                       touch_calibrator=cal_touch)


def _r(x: float | None, digits: int = 4) -> float | None:
    return None if x is None or not np.isfinite(x) else round(float(x), digits)


def metrics(evidence: Evidence, served: ServedModel, data: OutcomeSet) -> dict[str, Any]:
    """The held-out (walk-forward) figures of the chosen family, each beside its benchmark,
    the skill gate, the calibrators and the other candidates' figures (JSON)."""
    sel = evidence.selection
    c = sel.candidate(evidence.family)
    gate_open, gate_reason = skill_gate(c)
    three = c.three or {}
    t = three.get("test")
    return {
        "evaluation": "walk-forward", "folds": len(sel.plan.folds), "purge": sel.horizon,
        "embargo": sel.plan.embargo, "n_rows": int(len(data.labels)),
        "n_train": int(len(data.labels)),  # the served model is refitted on every row
        "n_scored": c.n_all, "n_direction": c.n_direction,
        "touch_rate": _r(three.get("touch_rate")),
        # direction P(up first | touched), calibrated forward, vs the causal base rate
        "brier": _r(c.brier_cal), "brier_raw": _r(c.brier_raw), "brier_ref": _r(c.brier_ref),
        "brier_skill": _r(c.skill.skill), "skill_lower": _r(c.skill.lower),
        "skill_p": _r(c.skill.p_value, 3),
        "auc": _r(c.auc_cal, 3), "auc_raw": _r(c.auc_raw, 3),
        "auc_null_mean": _r(c.auc_null.null_mean, 3), "auc_null_sd": _r(c.auc_null.null_sd, 3),
        "auc_p": _r(c.auc_null.p_value, 3),
        "hit_rate": _r(c.hit_rate), "majority_rate": _r(c.majority_rate),
        # the served unconditional forecast [p_up, p_down, p_none] vs the causal base rates
        "brier3": _r(three.get("brier_cal")), "brier3_ref": _r(three.get("brier_ref")),
        "skill3": _r(t.skill if t else None), "skill3_lower": _r(t.lower if t else None),
        "gate_open": bool(gate_open), "gate_reason": gate_reason,
        "selection": {"mode": evidence.mode, "chosen": evidence.family,
                      "by": "skill gate open, then the lower bound of the direction Brier "
                            "skill vs causal base rate (walk-forward), then the skill",
                      "candidates": [_candidate(x) for x in sel.candidates]},
        "calibration": {"direction": served.calibrator.to_dict(),
                        "touch": (None if served.touch_calibrator is None
                                  else served.touch_calibrator.to_dict()),
                        "touch_model": served.touch_model is not None},
        "seconds_walk_forward": round(sum(x.seconds for x in sel.candidates), 1),
    }


def _candidate(c: CandidateReport) -> dict[str, Any]:
    t = (c.three or {}).get("test")
    return {"family": c.family, "brier_skill": _r(c.skill.skill),
            "skill_lower": _r(c.skill.lower), "auc": _r(c.auc_cal, 3),
            "auc_raw": _r(c.auc_raw, 3), "skill3": _r(t.skill if t else None),
            "skill3_lower": _r(t.lower if t else None), "gate_open": skill_gate(c)[0],
            "seconds": round(c.seconds, 1)}
