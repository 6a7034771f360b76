"""The contract every model family implements.

A family is a binary classifier of "UP first" (label 1) vs "DOWN first" (label 0). The contract is
small on purpose: the constructor takes hyperparameters only, :meth:`fit` returns ``self``,
:meth:`predict_proba` returns P(UP) as a 1-D array, and the fitted model round-trips through
bytes. Families know nothing of Celery, Telegram or the database.

Column names. A family that reads named columns (the HMM reads returns and volatilities) declares
a keyword-only ``feature_names`` parameter on its ``fit`` and keeps the names as
``feature_names_``. Callers use :meth:`SignalModel.fit_with_feature_names`, which passes the names
only to families that declare the keyword, so families and plugins written without it still work.

Serialisation helpers. :func:`pack_arrays` / :func:`unpack_arrays` store named numpy arrays plus a
JSON header as ``.npz`` bytes, loaded with ``allow_pickle=False``: the pickle-free format of the
families that have no library format of their own.
"""

from __future__ import annotations

import inspect
import io
import json
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any, ClassVar, Self

import numpy as np

from signalcast.core.errors import SignalcastError


class NotFittedError(SignalcastError, RuntimeError):
    """predict_proba or to_bytes was called before fit."""


LEAF_OUTCOMES = 5.0  # independent outcomes a tree family's leaf must hold (see leaf_rows)


def leaf_rows(horizon: int, outcomes: float = LEAF_OUTCOMES) -> int:
    """Least rows in a leaf of a boosted tree so that it holds about ``outcomes`` independent
    outcomes: ``ceil(outcomes * horizon)``.

    Labels ``horizon`` candles long overlap: neighbouring rows share nearly one outcome, so a
    leaf of 40 rows of a 72-candle target is less than one outcome, and boosting fitted the
    paths of single episodes. Measured walk forward on the packaged market (docs/ml-notes.md):
    leaves of at least 5 horizons raised LightGBM's mean AUC 0.617 -> 0.635 and XGBoost's
    0.622 -> 0.648, turned their mean Brier skill positive, and left calibration no between-fold
    reordering to lose AUC to. Training passes the target's horizon to every family that takes
    ``horizon`` (``models.registry.with_horizon``); a family made without one (``horizon=1``)
    keeps its own ``min_child_samples`` / ``min_child_weight``."""
    if int(horizon) < 1 or not float(outcomes) >= 0:
        raise ValueError(f"horizon must be >= 1 candle and leaf_outcomes >= 0, got "
                         f"horizon={horizon!r}, leaf_outcomes={outcomes!r}")
    return int(np.ceil(float(outcomes) * int(horizon)))


class SignalModel(ABC):
    """Base of every family. Subclasses set ``family`` and implement the four methods."""

    family: ClassVar[str]
    # True for families that learn from every candle, labelled or not (the HMM's regimes): their
    # ``fit`` takes y == -1 on rows whose label does not apply, e.g. the untouched rows of a
    # direction model, and keeps those rows out of everything fitted to labels.
    fits_unlabelled: ClassVar[bool] = False

    def __init__(self, *, seed: int = 0, **params: Any):
        self.seed = seed
        self.params = params

    def get_params(self) -> dict[str, Any]:
        return {"seed": self.seed, **self.params}

    @abstractmethod
    def fit(self, X: np.ndarray, y: np.ndarray) -> Self:
        """Fit on features ``X`` (n, d) float and labels ``y`` (n,) in {0, 1}."""

    @abstractmethod
    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """P(UP) for each row of ``X``: shape (n,), values in [0, 1]."""

    @abstractmethod
    def to_bytes(self) -> bytes:
        """Serialise the fitted model (pickle-free where the library allows)."""

    @classmethod
    @abstractmethod
    def from_bytes(cls, data: bytes, params: dict[str, Any]) -> Self:
        """Rebuild a fitted model from :meth:`to_bytes` output and its hyperparameters."""

    def fit_with_feature_names(self, X: np.ndarray, y: np.ndarray,
                               feature_names: Sequence[str]) -> Self:
        """Fit, giving the column names to families whose ``fit`` takes ``feature_names``.

        Training code calls this; families without the keyword are fitted as ``fit(X, y)``.
        """
        if _fit_takes_feature_names(type(self)):
            return self.fit(X, y, feature_names=list(feature_names))
        return self.fit(X, y)

    # Shared checks, so each family file stays about fitting its library estimator.
    @staticmethod
    def _check_fit_input(X: np.ndarray, y: np.ndarray, *,
                         unlabelled: bool = False) -> tuple[np.ndarray, np.ndarray]:
        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y)
        if X.ndim != 2 or y.ndim != 1 or len(X) != len(y):
            raise ValueError(f"expected X (n, d) and y (n,), got {X.shape} and {y.shape}")
        if len(X) == 0:
            raise ValueError("cannot fit on zero rows")
        if not np.isin(y, (0, 1, -1) if unlabelled else (0, 1)).all():
            raise ValueError("labels must be 0 (DOWN first) or 1 (UP first)"
                             + (" or -1 (no label)" if unlabelled else ""))
        if unlabelled and not (y >= 0).any():
            raise ValueError("cannot fit on rows without a single label")
        return X, y.astype(np.int8)

    def _check_fitted(self, fitted: object) -> None:
        if fitted is None:
            raise NotFittedError(f"{self.family} model is not fitted: call fit() first")


@cache
def _fit_takes_feature_names(cls: type[SignalModel]) -> bool:
    return "feature_names" in inspect.signature(cls.fit).parameters


_META = "__meta__"


def pack_arrays(arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any] | None = None) -> bytes:
    """Named arrays plus a JSON-able ``meta`` dict as uncompressed ``.npz`` bytes (no pickle).

    >>> arrays, meta = unpack_arrays(pack_arrays({"w": np.arange(3.0)}, {"k": 2}))
    >>> arrays["w"].tolist(), meta
    ([0.0, 1.0, 2.0], {'k': 2})
    """
    if _META in arrays:
        raise ValueError(f"{_META!r} is reserved for the JSON header")
    header = np.frombuffer(json.dumps(dict(meta or {})).encode(), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **{_META: header}, **{k: np.asarray(v) for k, v in arrays.items()})
    return buffer.getvalue()


def unpack_arrays(data: bytes) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Inverse of :func:`pack_arrays`; refuses object arrays (``allow_pickle=False``)."""
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    meta = json.loads(arrays.pop(_META).tobytes().decode())
    return arrays, meta
