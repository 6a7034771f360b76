"""The contract every model family implements.

A family is a binary classifier of "UP first" (label 1) vs "DOWN first" (label 0). The contract is
small on purpose: the constructor takes hyperparameters only, :meth:`fit` returns ``self``,
:meth:`predict_proba` returns P(UP) as a 1-D array, and the fitted model round-trips through
bytes. Families know nothing of Celery, Telegram or the database.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, Self

import numpy as np

from signalcast.errors import SignalcastError


class NotFittedError(SignalcastError, RuntimeError):
    """predict_proba or to_bytes was called before fit."""


class SignalModel(ABC):
    """Base of every family. Subclasses set ``family`` and implement the four methods."""

    family: ClassVar[str]

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

    # Shared checks, so each family file stays about fitting its library estimator.
    @staticmethod
    def _check_fit_input(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y)
        if X.ndim != 2 or y.ndim != 1 or len(X) != len(y):
            raise ValueError(f"expected X (n, d) and y (n,), got {X.shape} and {y.shape}")
        if len(X) == 0:
            raise ValueError("cannot fit on zero rows")
        if not np.isin(y, (0, 1)).all():
            raise ValueError("labels must be 0 (DOWN first) or 1 (UP first)")
        return X, y.astype(np.int8)

    def _check_fitted(self, fitted: object) -> None:
        if fitted is None:
            raise NotFittedError(f"{self.family} model is not fitted: call fit() first")
