"""HMM family: volatility regimes from a Gaussian HMM, filtered causally from one feature row.

Model. Each candle's 1-candle log return is Gaussian with a mean and a volatility that depend on a
hidden regime; the regimes follow a Markov chain. With ``range_emission`` (the default) the
candle's squared log range ``l**2 = log(high / low)**2`` is a second emission: Gamma with a mean
``m_k`` per regime and one shape ``alpha`` shared by all regimes, taken as independent of the
return given the regime. The range measures a candle's volatility several times more precisely
than its return does (Parkinson 1980: about five times the efficiency of the squared return), so
it is what tells calm from turbulent regimes quickly; the Gamma scale family is what range data of
any market look like once divided by their volatility, and with a shared shape a block of
candles' likelihood depends only on the block's sum of ``l**2``, which the feature row carries.

Fitting. EM on the training rows in time order, best log-likelihood of ``n_restarts`` seeded
starts: hmmlearn's ``GaussianHMM`` on ``ret1_lag0`` alone, or
:class:`~signalcast.models.families.hmm_emissions.ReturnRangeHMM` on ``(ret1_lag0, l**2)``
(one return variance for every regime: the range carries the volatility, the return the drift).
States are sorted by volatility (by the range where it is modelled) and named (calm / normal /
turbulent), so the names do not depend on the seed (HMM label switching). Range emission
switches itself off (recorded in the artifact) when the training candles carry no range (most
highs equal the lows, e.g. close-only data).

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
- the range's block sums come the same way: ``S_w = 4 log(2) w parkinson_w**2`` over a window,
  ``hl_lag{k}**2`` for one candle.

The filter starts from the stationary distribution. P(UP) is the regime probabilities times each
regime's up-rate, the up-rates regressed from the training labels on the same filtered
probabilities (bounded least squares, shrunk towards the base rate by ``prior_strength``
pseudo-rows; see :func:`_up_rates`). Rows with a missing input
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
    fits_unlabelled = True  # regimes from every candle; up-rates from the labelled ones

    def __init__(self, *, seed: int = 0, n_states: int = 3, n_restarts: int = 4, n_iter: int = 100,
                 windows: Sequence[int] = (12, 24, 48, 168), n_lags: int = 6,
                 prior_strength: float = 20.0, range_emission: bool = True):
        windows = [int(w) for w in windows]  # a list: params round-trip through JSON unchanged
        if n_states < 2 or n_restarts < 1 or n_lags < 1 or windows != sorted(set(windows)):
            raise ValueError("need n_states >= 2, n_restarts >= 1, n_lags >= 1 and increasing "
                             f"windows, got {n_states}, {n_restarts}, {n_lags}, {windows}")
        if windows and windows[0] < n_lags:
            raise ValueError(f"the shortest window ({windows[0]}) must cover n_lags ({n_lags})")
        super().__init__(seed=seed, n_states=n_states, n_restarts=n_restarts, n_iter=n_iter,
                         windows=windows, n_lags=n_lags, prior_strength=prior_strength,
                         range_emission=bool(range_emission))
        self.mu_: np.ndarray | None = None  # per-candle mean return of each regime
        self.sigma_: np.ndarray | None = None  # per-candle volatility, ascending
        self.transmat_: np.ndarray | None = None
        self.up_rate_: np.ndarray | None = None  # P(UP | regime)
        self.range_mean_: np.ndarray | None = None  # E[log(high/low)**2 | regime]; empty: unused
        self.range_shape_: float = 0.0  # the Gamma shape alpha shared by the regimes
        self.feature_names_: list[str] | None = None

    @property
    def regime_names(self) -> tuple[str, ...]:
        k = self.params["n_states"]
        return REGIME_NAMES.get(k, tuple(f"vol{i}" for i in range(k)))

    @property
    def volatility_(self) -> np.ndarray:
        """Each regime's volatility per candle, ascending: from the range where it is modelled
        (Parkinson: ``E[log(high/low)**2] = 4 log(2) var``), else the return's ``sigma_``."""
        self._check_fitted(self.sigma_)
        if self._uses_range:
            return np.sqrt(self.range_mean_ / (4.0 * np.log(2.0)))
        return self.sigma_

    @property
    def _uses_range(self) -> bool:
        """Fitted with the range emission (off by parameter, or for candles without a range)."""
        return self.range_mean_ is not None and self.range_mean_.size > 0

    def fit(self, X: np.ndarray, y: np.ndarray, *,
            feature_names: Sequence[str] | None = None) -> Self:
        """Fit on rows in time order; ``feature_names`` default to the current feature set's.

        Rows with ``y == -1`` count for the regimes only: a direction model's untouched candles
        keep the sequence whole (a gappy sequence would fit the wrong transitions)."""
        X, y = self._check_fit_input(X, y, unlabelled=True)
        self._set_columns(X.shape[1], feature_names)
        returns = X[:, self._cols[0]]  # ret1_lag0: each row's own candle
        scale = float(returns.std()) or 1.0  # hmmlearn's min_covar (1e-3) assumes unit scale
        z = returns[:, None] / scale
        range2 = X[:, self._range_col] ** 2 if self._range_col is not None else None
        if range2 is not None and not (np.isfinite(range2).all()
                                       and np.mean(range2 > 0) >= 0.5):
            log.info("hmm: the training candles carry no usable range (%d of %d highs above "
                     "their lows); fitting on returns only", int(np.sum(range2 > 0)), len(range2))
            range2 = None
        if range2 is not None:
            range_scale = float(range2.mean())
            z = np.column_stack([z, range2 / range_scale])
        _, hmm = max((self._fit_once(z, i) for i in range(self.params["n_restarts"])),
                     key=lambda fit: fit[0])
        if range2 is None:
            means, variances = hmm.means_[:, 0], np.diagonal(hmm.covars_, axis1=1, axis2=2)[:, 0]
            order = np.argsort(variances)
            self.range_mean_, self.range_shape_ = np.empty(0), 0.0
        else:  # volatility order by the range, a far less noisy measure than the return
            means, variances = hmm.means_, hmm.vars_
            order = np.argsort(hmm.range_means_)
            self.range_mean_ = hmm.range_means_[order] * range_scale
            self.range_shape_ = hmm.range_shape_
        self.mu_ = means[order] * scale
        self.sigma_ = np.sqrt(variances[order]) * scale
        transmat = hmm.transmat_[np.ix_(order, order)] + 1e-9  # no exact zeros: no 0/0 in filter
        self.transmat_ = transmat / transmat.sum(axis=1, keepdims=True)
        self._prepare()
        labelled = y >= 0
        probs, y = self.regime_probabilities(X[labelled]), y[labelled]
        a = self.params["prior_strength"]
        self.up_rate_ = _up_rates(probs, y.astype(np.float64), a)
        return self

    def _fit_once(self, z: np.ndarray, restart: int) -> tuple[float, Any]:
        """One seeded EM run: on returns (``z`` one column) or returns and ranges (two)."""
        from hmmlearn.hmm import GaussianHMM

        from signalcast.models.families.hmm_emissions import ReturnRangeHMM

        k = self.params["n_states"]
        rng = np.random.default_rng([self.seed, restart])
        seed, n_iter = int(rng.integers(2**31)), self.params["n_iter"]
        spread = np.exp(np.sort(np.linspace(-1.0, 1.0, k)
                                + (rng.normal(0.0, 0.3, k) if restart else 0.0)))
        if z.shape[1] == 1:
            hmm = GaussianHMM(n_components=k, covariance_type="diag", n_iter=n_iter, tol=1e-4,
                              random_state=seed, init_params="")
            hmm.means_ = np.zeros((k, 1))
            hmm.covars_ = spread[:, None] * float(z.var() or 1.0)
        else:
            # Regimes start apart by their range (x scales with the variance); the return
            # variance is one for all from the start, as every M-step keeps it (starting
            # outside that family, the first step could lower the likelihood and stop EM).
            # Converged once a step gains less than 1e-4 nats per candle (an absolute 1e-4 on
            # a log-likelihood of 1e4-1e5 ran 60+ steps for no change in any forecast).
            hmm = ReturnRangeHMM(k, n_iter=n_iter, tol=1e-4 * len(z), random_state=seed)
            hmm.vars_ = np.full(k, float(z[:, 0].var() or 1.0))
            hmm.range_means_ = spread / spread.mean()
        hmm.startprob_ = np.full(k, 1.0 / k)
        hmm.transmat_ = np.full((k, k), 0.05 / (k - 1)) + np.eye(k) * (0.95 - 0.05 / (k - 1))
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
            if self._uses_range:
                ll += ((Z * Z) @ self._to_S)[..., None] * self._ll_s
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
                            "up_rate": self.up_rate_, "range_mean": self.range_mean_},
                           {"feature_names": self.feature_names_,
                            "range_shape": self.range_shape_})

    @classmethod
    def from_bytes(cls, data: bytes, params: dict[str, Any]) -> Self:
        model = cls(**params)
        arrays, meta = unpack_arrays(data)
        model.mu_, model.sigma_ = arrays["mu"], arrays["sigma"]
        model.transmat_, model.up_rate_ = arrays["transmat"], arrays["up_rate"]
        model.range_mean_, model.range_shape_ = arrays["range_mean"], float(meta["range_shape"])
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
        n_returns = len(wanted)
        if self.params["range_emission"]:
            wanted += [f"hl_lag{k}" for k in range(n_lags)]
            wanted += [f"parkinson_{w}" for w in windows]
        missing = [name for name in wanted if name not in names]
        if missing:
            raise ValueError(f"hmm needs feature columns {missing} (from windows={windows}, "
                             f"n_lags={n_lags})")
        self.feature_names_ = names
        self._cols = [names.index(name) for name in wanted]
        self._range_col = self._cols[n_returns] if self.params["range_emission"] else None

        unit = np.eye(len(wanted))
        hl, has_range = n_returns, self.params["range_emission"]  # range columns follow returns
        # Cumulative (R, Q, S) over the last n_lags candles, then over each window w:
        # R_w = ret_w, Q_w = (w - 1) * rv_w**2 + ret_w**2 / w (rv_w is a sample std),
        # S_w = 4 log(2) * w * parkinson_w**2 (the window's sum of log(high/low)**2).
        no_range = np.zeros(len(wanted))
        lags_s = unit[hl:hl + n_lags].sum(axis=0) if has_range else no_range
        edges = [(n_lags, unit[:n_lags].sum(axis=0), unit[:n_lags].sum(axis=0), lags_s)]
        for j, w in enumerate(windows):
            ret, rv = unit[n_lags + 2 * j], unit[n_lags + 2 * j + 1]
            s_w = 4.0 * np.log(2.0) * w * unit[hl + n_lags + j] if has_range else no_range
            edges.append((w, ret, (w - 1) * rv + ret / w, s_w))
        blocks = [(big[0] - small[0], *(b - a for a, b in zip(small[1:], big[1:], strict=True)))
                  for small, big in pairwise(edges) if big[0] > small[0]][::-1]
        blocks += [(1, unit[k], unit[k], unit[hl + k] if has_range else no_range)
                   for k in reversed(range(n_lags))]
        self._lengths = np.array([block[0] for block in blocks], dtype=np.float64)
        self._to_R, self._to_Q, self._to_S = (np.column_stack([block[i] for block in blocks])
                                              for i in (1, 2, 3))

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
        if self._uses_range:
            # Gamma(alpha, m_k / alpha) per candle: -alpha (S / m_k + length log m_k) + terms
            # that do not depend on the regime (they cancel in the filter's normalisation)
            alpha, mean = self.range_shape_, self.range_mean_
            self._ll_s = -alpha / mean
            self._ll_const = self._ll_const - alpha * self._lengths[:, None] * np.log(mean)


def _up_rates(probs: np.ndarray, y: np.ndarray, prior_strength: float) -> np.ndarray:
    """P(UP | regime) such that ``probs @ rates`` best predicts ``y``: least squares with
    bounds [0.001, 0.999], shrunk toward the base rate by ``prior_strength`` pseudo-rows each.

    Not the regimes' probability-weighted label means: where the filter is unsure, a row of one
    regime counts toward the others, which pulls every rate toward the mean and leaves the
    forecast underconfident in its tails. If ``probs`` are the true posteriors,
    ``E[y | probs] = probs @ rates`` exactly, so the regression recovers the rates. Measured
    walk-forward (bench_honest, hmm, 9 synthetic series): direction Brier lower on 7 of 9
    (5% targets 0.1752 -> 0.1722, 0.1570 -> 0.1532, 0.1601 -> 0.1582), AUC unchanged."""
    from scipy.optimize import lsq_linear

    k = probs.shape[1]
    design = np.vstack([probs, np.sqrt(prior_strength) * np.eye(k)])
    target = np.concatenate([y, np.full(k, np.sqrt(prior_strength) * y.mean())])
    return lsq_linear(design, target, bounds=(1e-3, 1 - 1e-3)).x


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
