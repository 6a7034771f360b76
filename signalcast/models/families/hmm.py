"""HMM family: volatility regimes from a Gaussian HMM, filtered causally from one feature row.

Model. Each candle's 1-candle log return is Gaussian with a mean and a volatility that depend on a
hidden regime; the regimes follow a Markov chain. hmmlearn's ``GaussianHMM`` is fitted on the
``ret1_lag0`` column of the training rows (in time order), best log-likelihood of ``n_restarts``
seeded starts; states are then sorted by fitted volatility and named (calm / normal / turbulent),
so the names do not depend on the seed (HMM label switching).

Causal filtering from one row. Serving gives one row, so regime probabilities are a forward
filter over the history *that row carries*; they never use later rows, unlike hmmlearn's
``predict_proba`` (forward-backward smoothing, see docs/ml-notes.md). Reading the row oldest first:

- blocks between feature windows, e.g. candles ``t-167..t-48``, ``t-47..t-24``, ..., ``t-11..t-6``
  with ``windows=(12, 24, 48, 168)``. A block's sum of returns ``R`` and sum of squared returns
  ``Q`` follow exactly from ``ret_w`` (sum of the last w returns) and ``rv_w`` (their sample std):
  ``Q_w = (w - 1) rv_w**2 + ret_w**2 / w``. ``(R, Q)`` are sufficient statistics, so a block's
  likelihood under a regime held for the whole block is exact; between blocks the regime moves
  by the block's length of transitions (``A**m``): a coarse-grained forward filter.
- then the last ``n_lags`` candles one by one from ``ret1_lag{n_lags-1} .. ret1_lag0``: the exact
  one-step forward recursion.

The filter starts from the stationary distribution. P(UP) is the regime probabilities times each
regime's up-rate, learned from the training labels weighted by the same filtered probabilities
(shrunk towards the base rate by ``prior_strength`` pseudo-rows). Rows with a missing input
get the stationary distribution.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from itertools import pairwise
from typing import Any, Self

import numpy as np

from signalcast.models.base import SignalModel, pack_arrays, unpack_arrays

log = logging.getLogger(__name__)

REGIME_NAMES = {2: ("calm", "turbulent"), 3: ("calm", "normal", "turbulent"),
                4: ("calm", "normal", "active", "turbulent")}


class HMMModel(SignalModel):
    family = "hmm"

    def __init__(self, *, seed: int = 0, n_states: int = 3, n_restarts: int = 4, n_iter: int = 100,
                 windows: Sequence[int] = (12, 24, 48, 168), n_lags: int = 6,
                 prior_strength: float = 20.0):
        windows = [int(w) for w in windows]  # a list: params round-trip through JSON unchanged
        if n_states < 2 or n_restarts < 1 or n_lags < 1 or windows != sorted(set(windows)):
            raise ValueError("need n_states >= 2, n_restarts >= 1, n_lags >= 1 and increasing "
                             f"windows, got {n_states}, {n_restarts}, {n_lags}, {windows}")
        if windows and windows[0] < n_lags:
            raise ValueError(f"the shortest window ({windows[0]}) must cover n_lags ({n_lags})")
        super().__init__(seed=seed, n_states=n_states, n_restarts=n_restarts, n_iter=n_iter,
                         windows=windows, n_lags=n_lags, prior_strength=prior_strength)
        self.mu_: np.ndarray | None = None  # per-candle mean return of each regime
        self.sigma_: np.ndarray | None = None  # per-candle volatility, ascending
        self.transmat_: np.ndarray | None = None
        self.up_rate_: np.ndarray | None = None  # P(UP | regime)
        self.feature_names_: list[str] | None = None

    @property
    def regime_names(self) -> tuple[str, ...]:
        k = self.params["n_states"]
        return REGIME_NAMES.get(k, tuple(f"vol{i}" for i in range(k)))

    def fit(self, X: np.ndarray, y: np.ndarray, *,
            feature_names: Sequence[str] | None = None) -> Self:
        """Fit on rows in time order; ``feature_names`` default to the current feature set's."""
        X, y = self._check_fit_input(X, y)
        self._set_columns(X.shape[1], feature_names)
        returns = X[:, self._cols[0]]  # ret1_lag0: each row's own candle
        scale = float(returns.std()) or 1.0  # hmmlearn's min_covar (1e-3) assumes unit scale
        best = max((self._fit_once(returns[:, None] / scale, i)
                    for i in range(self.params["n_restarts"])), key=lambda fit: fit[0])
        _, hmm = best
        order = np.argsort(hmm.covars_.ravel())
        self.mu_ = hmm.means_.ravel()[order] * scale
        self.sigma_ = np.sqrt(hmm.covars_.ravel()[order]) * scale
        transmat = hmm.transmat_[np.ix_(order, order)] + 1e-9  # no exact zeros: no 0/0 in filter
        self.transmat_ = transmat / transmat.sum(axis=1, keepdims=True)
        self._prepare()
        probs = self.regime_probabilities(X)
        a = self.params["prior_strength"]
        self.up_rate_ = (probs.T @ y + a * y.mean()) / (probs.sum(axis=0) + a)
        return self

    def _fit_once(self, z: np.ndarray, restart: int) -> tuple[float, Any]:
        from hmmlearn.hmm import GaussianHMM

        k = self.params["n_states"]
        rng = np.random.default_rng([self.seed, restart])
        hmm = GaussianHMM(n_components=k, covariance_type="diag", n_iter=self.params["n_iter"],
                          tol=1e-4, random_state=int(rng.integers(2**31)), init_params="")
        hmm.startprob_ = np.full(k, 1.0 / k)
        hmm.transmat_ = np.full((k, k), 0.05 / (k - 1)) + np.eye(k) * (0.95 - 0.05 / (k - 1))
        hmm.means_ = np.zeros((k, 1))
        spread = np.linspace(-1.0, 1.0, k) + (rng.normal(0.0, 0.3, k) if restart else 0.0)
        hmm.covars_ = np.sort(np.exp(spread))[:, None] * float(z.var() or 1.0)
        with _hmmlearn_logs_at_debug():
            hmm.fit(z)
            score = float(hmm.score(z))
        history = list(hmm.monitor_.history)  # hmmlearn calls reaching n_iter "converged"
        converged = len(history) >= 2 and history[-1] - history[-2] < hmm.monitor_.tol
        log.debug("hmm restart %d: log-likelihood %.2f after %d iterations (converged: %s%s)",
                  restart, score, hmm.monitor_.iter, converged,
                  "" if converged else "; raise n_iter")
        return score, hmm

    def regime_probabilities(self, X: np.ndarray) -> np.ndarray:
        """Filtered P(regime | the row's own history): shape (n, n_states), columns in
        :attr:`regime_names` order. Row ``i`` depends on row ``i`` only."""
        self._check_fitted(self.mu_)
        Z = np.asarray(X, dtype=np.float64)[:, self._cols]
        with np.errstate(invalid="ignore"):
            R = Z @ self._to_R  # (n, steps): sums of returns; Q: sums of squared returns
            Q = np.maximum((Z * Z) @ self._to_Q, R * R / self._lengths)  # Cauchy-Schwarz floor
            ll = Q[..., None] * self._ll_q + R[..., None] * self._ll_r + self._ll_const
            weights = np.exp(ll - ll.max(axis=2, keepdims=True))
            alpha = np.tile(self._stationary, (len(Z), 1))
            for step, weight in zip(self._steps, weights.transpose(1, 0, 2), strict=True):
                alpha = (alpha @ step) * weight
                alpha /= alpha.sum(axis=1, keepdims=True)
        alpha[~np.isfinite(alpha).all(axis=1)] = self._stationary  # a missing input
        return alpha

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        self._check_fitted(self.up_rate_)
        return self.regime_probabilities(X) @ self.up_rate_

    def to_bytes(self) -> bytes:
        self._check_fitted(self.up_rate_)
        return pack_arrays({"mu": self.mu_, "sigma": self.sigma_, "transmat": self.transmat_,
                            "up_rate": self.up_rate_}, {"feature_names": self.feature_names_})

    @classmethod
    def from_bytes(cls, data: bytes, params: dict[str, Any]) -> Self:
        model = cls(**params)
        arrays, meta = unpack_arrays(data)
        model.mu_, model.sigma_ = arrays["mu"], arrays["sigma"]
        model.transmat_, model.up_rate_ = arrays["transmat"], arrays["up_rate"]
        model._set_columns(len(meta["feature_names"]), meta["feature_names"])
        model._prepare()
        return model

    # --- the filter's structure -------------------------------------------------------------------
    def _set_columns(self, n_columns: int, feature_names: Sequence[str] | None) -> None:
        """Find the columns the filter reads; build the linear maps from them to each filter
        step's sum of returns (``_to_R``, on the columns) and sum of squared returns (``_to_Q``,
        on the squared columns), steps oldest first."""
        if feature_names is None:
            from signalcast.features import feature_names as current_names

            feature_names = current_names()
        names = list(feature_names)
        if len(names) != n_columns:
            raise ValueError(f"hmm got {n_columns} columns but {len(names)} feature names; pass "
                             "feature_names= matching X's columns")
        n_lags, windows = self.params["n_lags"], self.params["windows"]
        wanted = [f"ret1_lag{k}" for k in range(n_lags)]
        wanted += [f"{kind}_{w}" for w in windows for kind in ("ret", "rv")]
        missing = [name for name in wanted if name not in names]
        if missing:
            raise ValueError(f"hmm needs feature columns {missing} (from windows={windows}, "
                             f"n_lags={n_lags})")
        self.feature_names_ = names
        self._cols = [names.index(name) for name in wanted]

        unit = np.eye(len(wanted))
        # Cumulative (R, Q) over the last n_lags candles, then over each window w:
        # R_w = ret_w, Q_w = (w - 1) * rv_w**2 + ret_w**2 / w (rv_w is a sample std).
        edges = [(n_lags, unit[:n_lags].sum(axis=0), unit[:n_lags].sum(axis=0))]
        for j, w in enumerate(windows):
            ret, rv = unit[n_lags + 2 * j], unit[n_lags + 2 * j + 1]
            edges.append((w, ret, (w - 1) * rv + ret / w))
        blocks = [(big - small, r_big - r_small, q_big - q_small)
                  for (small, r_small, q_small), (big, r_big, q_big) in pairwise(edges)
                  if big > small][::-1]
        blocks += [(1, unit[k], unit[k]) for k in reversed(range(n_lags))]
        self._lengths = np.array([length for length, _, _ in blocks], dtype=np.float64)
        self._to_R = np.column_stack([r for _, r, _ in blocks])
        self._to_Q = np.column_stack([q for _, _, q in blocks])

    def _prepare(self) -> None:
        """Derived from the fitted parameters: stationary distribution, each step's transition
        matrix (``A**length``) and the Gaussian log-likelihood of (R, Q) per regime:
        ``-Q / (2 var) + R mu / var - length * (log(2 pi var) + mu**2 / var) / 2``."""
        values, vectors = np.linalg.eig(self.transmat_.T)
        stationary = np.abs(np.real(vectors[:, np.argmin(np.abs(values - 1.0))]))
        self._stationary = stationary / stationary.sum()
        self._steps = [np.linalg.matrix_power(self.transmat_, int(m)) for m in self._lengths]
        var = self.sigma_**2
        self._ll_q, self._ll_r = -0.5 / var, self.mu_ / var
        per_candle = np.log(2 * np.pi * var) + self.mu_**2 / var
        self._ll_const = -0.5 * self._lengths[:, None] * per_candle


class _Demote(logging.Filter):
    """hmmlearn reports non-convergence as WARNING records: keep them, at DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return True


@contextmanager
def _hmmlearn_logs_at_debug() -> Iterator[None]:
    loggers, demote = [logging.getLogger(f"hmmlearn.{m}") for m in ("base", "hmm")], _Demote()
    for logger in loggers:
        logger.addFilter(demote)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(demote)
