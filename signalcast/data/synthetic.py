"""A seeded synthetic market with hidden regimes and a ground-truth oracle.

Why: models, the demo and the tests need candles whose *true* signal is known. Here the market
follows a hidden Markov chain of regimes ("calm", "bull", "bear") that differ in drift,
volatility, persistence and volume. The drift is strong enough relative to volatility that the
probability of touching +X% before -X% differs clearly by regime, so a model has something real
to learn, and :meth:`SyntheticMarket.oracle_probability` says what a perfect model would answer.

How a candle is made: each candle is ``SUBSTEPS`` Gaussian log-price steps; ``open`` is the
previous close, ``high``/``low`` the extremes of the path (open included), ``close`` its end.
An asset's step is ``beta * market_step + idiosyncratic_step``: one market factor shared by all
assets (so they are correlated) plus noise of the asset's own. Parameters are *per candle*,
whatever the timeframe, so targets stay learnable at any timeframe.

Determinism: random numbers are drawn in fixed blocks of candles from streams keyed by
``(seed, stream, block)``. An asset's stream and parameters depend only on the seed and the
asset's name, so ``generate(n)`` is an exact prefix of ``generate(m)`` for ``n < m`` and adding
an asset does not change the others.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from signalcast.core.errors import UnknownNameError
from signalcast.core.timeframes import timeframe_to_timedelta, utc
from signalcast.features.labels import DOWN, EXPIRED, UP, first_touch_labels

COLUMNS = ["open", "high", "low", "close", "volume"]
DEFAULT_START = datetime(2023, 1, 1, tzinfo=UTC)

# Stream kinds in the seed sequence's spawn key (kept stable: changing them changes all data).
_MARKET, _ASSET, _PARAMS, _ORACLE, _INIT = 0, 1, 2, 3, 4


@dataclass(frozen=True)
class RegimeSpec:
    """One hidden regime of the market factor (all values per candle)."""

    name: str
    drift: float  # mean log return of the market factor per candle
    vol: float  # standard deviation of the market factor's log return per candle
    persistence: float  # probability of staying in this regime at the next candle
    volume: float  # multiplier of traded volume


@dataclass(frozen=True)
class MarketSpec:
    """Every default of the generator in one place.

    Leaving a regime goes to each other regime with equal probability, so the stationary share
    of a regime is proportional to its mean duration ``1 / (1 - persistence)``.
    """

    regimes: tuple[RegimeSpec, ...] = (
        RegimeSpec("calm", drift=0.0, vol=0.0025, persistence=0.995, volume=0.7),
        RegimeSpec("bull", drift=0.00046, vol=0.004, persistence=0.996, volume=1.0),
        RegimeSpec("bear", drift=-0.00118, vol=0.0065, persistence=0.99, volume=1.8),
    )
    substeps: int = 8  # Gaussian log steps inside one candle
    idio_ratio: float = 0.6  # idiosyncratic vol as a share of the regime's market vol
    beta_range: tuple[float, float] = (0.85, 1.25)
    idio_scale_range: tuple[float, float] = (0.8, 1.3)
    volume_noise: float = 0.3  # log-normal noise of volume
    dollar_volume: float = 5e6  # typical traded value per candle, in quote currency
    start_prices: dict[str, float] = field(
        default_factory=lambda: {"BTC": 30_000.0, "ETH": 2_000.0, "SOL": 20.0}
    )
    default_start_price: float = 100.0
    block: int = 1024  # candles per random block (the unit of the prefix property)
    oracle_paths: int = 3000  # Monte Carlo paths per starting regime

    def __post_init__(self) -> None:
        names = [r.name for r in self.regimes]
        if len(names) < 2 or len(set(names)) != len(names):
            raise ValueError(f"need at least two regimes with unique names, got {names}")
        for regime in self.regimes:
            if not (0 < regime.persistence < 1 and regime.vol > 0 and regime.volume > 0):
                raise ValueError(f"regime {regime.name!r} needs 0 < persistence < 1, vol > 0 "
                                 f"and volume > 0, got {regime}")
        if self.substeps < 1 or self.block < 1 or self.oracle_paths < 1:
            raise ValueError("substeps, block and oracle_paths must be >= 1")

    def transition_matrix(self) -> np.ndarray:
        """Row-stochastic matrix P[i, j] = P(regime j at t+1 | regime i at t)."""
        n = len(self.regimes)
        matrix = np.empty((n, n))
        for i, regime in enumerate(self.regimes):
            matrix[i, :] = (1.0 - regime.persistence) / (n - 1)
            matrix[i, i] = regime.persistence
        return matrix

    def stationary(self) -> np.ndarray:
        """Long-run share of time spent in each regime."""
        values, vectors = np.linalg.eig(self.transition_matrix().T)
        vector = np.real(vectors[:, np.argmin(np.abs(values - 1.0))])
        return vector / vector.sum()


DEFAULT_SPEC = MarketSpec()


@dataclass(frozen=True)
class AssetParams:
    """How one asset follows the market, fixed by the seed and the asset's name."""

    name: str
    start_price: float
    beta: float  # exposure to the market factor
    idio_scale: float  # multiplier of the idiosyncratic volatility
    base_volume: float  # typical volume per candle, in units of the asset


@dataclass(frozen=True)
class TouchProbabilities:
    """Outcome probabilities of one (pct, horizon) target from one starting regime."""

    p_up: float
    p_down: float
    p_expired: float

    @property
    def p_up_given_touch(self) -> float:
        """P(UP | a level is touched within the horizon): what a calibrated model predicts."""
        touched = self.p_up + self.p_down
        return self.p_up / touched if touched > 0 else float("nan")


def _stable_id(name: str) -> int:
    """A number for ``name`` that is the same in every process (``hash()`` is salted)."""
    return zlib.crc32(name.encode("utf-8"))


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=key)))


def _next_regimes(current: np.ndarray, uniforms: np.ndarray, cumulative: np.ndarray) -> np.ndarray:
    """One Markov step for many chains: the first j with ``u < cumsum(P[current])[j]``."""
    return (uniforms[:, None] >= cumulative[current]).sum(axis=1)


def _simulate_candles(
    regimes: np.ndarray,
    z_market: np.ndarray,
    z_idio: np.ndarray,
    z_volume: np.ndarray,
    asset: AssetParams,
    spec: MarketSpec,
) -> dict[str, np.ndarray]:
    """OHLCV arrays of shape (paths, T) from regimes (paths, T) and shocks (paths, T, substeps).

    This one function makes both the generated history and the oracle's Monte Carlo paths, so
    the oracle describes exactly the process the candles come from.
    """
    drift = np.array([r.drift for r in spec.regimes])[regimes]
    vol = np.array([r.vol for r in spec.regimes])[regimes]
    volume_factor = np.array([r.volume for r in spec.regimes])[regimes]
    steps = spec.substeps
    scale = (vol / np.sqrt(steps))[..., None]
    log_steps = asset.beta * (drift[..., None] / steps + scale * z_market)
    log_steps += spec.idio_ratio * asset.idio_scale * scale * z_idio

    paths, periods = regimes.shape
    log_start = np.log(asset.start_price)
    # Sequential cumulative sum: a prefix of the shocks gives a bit-identical prefix of prices.
    path = log_start + np.cumsum(log_steps.reshape(paths, periods * steps), axis=1)
    path = path.reshape(paths, periods, steps)
    log_close = path[..., -1]
    log_open = np.concatenate([np.full((paths, 1), log_start), log_close[:, :-1]], axis=1)
    log_high = np.maximum(log_open, path.max(axis=2))
    log_low = np.minimum(log_open, path.min(axis=2))

    candle_vol = vol * np.sqrt(asset.beta**2 + (spec.idio_ratio * asset.idio_scale) ** 2)
    activity = 0.5 + np.abs(log_close - log_open) / candle_vol  # big candles trade more
    noise = np.exp(spec.volume_noise * z_volume - spec.volume_noise**2 / 2)
    volume = asset.base_volume * volume_factor * activity * noise
    price_open = np.exp(log_open)
    price_open[:, 0] = asset.start_price  # exact, not exp(log(price))
    return {
        "open": price_open,
        "high": np.maximum(np.exp(log_high), price_open),
        "low": np.minimum(np.exp(log_low), price_open),
        "close": np.exp(log_close),
        "volume": volume,
    }


class SyntheticMarket:
    """Correlated candles for ``assets`` driven by one hidden regime chain.

    >>> market = SyntheticMarket(["BTC/USDT", "ETH/USDT"], seed=1)
    >>> frames = market.generate(100)
    >>> list(frames["BTC/USDT"].columns)
    ['open', 'high', 'low', 'close', 'volume']
    """

    def __init__(
        self,
        assets: Sequence[str],
        seed: int,
        timeframe: str = "1h",
        start: datetime | pd.Timestamp | str = DEFAULT_START,
        spec: MarketSpec = DEFAULT_SPEC,
    ):
        if not assets:
            raise ValueError("SyntheticMarket needs at least one asset")
        if len(set(assets)) != len(assets):
            raise ValueError(f"asset names must be unique, got {list(assets)}")
        self.assets = list(assets)
        self.seed = int(seed)
        self.timeframe = timeframe
        self.step = timeframe_to_timedelta(timeframe)
        self.start = utc(start)
        self.spec = spec
        self.regime_names = [r.name for r in spec.regimes]
        self._cumulative = np.cumsum(spec.transition_matrix(), axis=1)
        self._cumulative[:, -1] = 1.0  # guard against rounding: every uniform finds a regime
        self._params = {name: self._make_params(name) for name in self.assets}
        self._capacity = 0
        self._regimes = np.empty(0, dtype=np.int64)
        self._candles: dict[str, dict[str, np.ndarray]] = {}
        self._oracle: dict[tuple[str, float, int], dict[str, TouchProbabilities]] = {}

    # ----------------------------------------------------------------------------- parameters
    def _make_params(self, name: str) -> AssetParams:
        rng = _rng(self.seed, _PARAMS, _stable_id(name))
        base = name.split("/")[0].upper()
        start_price = self.spec.start_prices.get(base, self.spec.default_start_price)
        return AssetParams(
            name=name,
            start_price=start_price,
            beta=float(rng.uniform(*self.spec.beta_range)),
            idio_scale=float(rng.uniform(*self.spec.idio_scale_range)),
            base_volume=self.spec.dollar_volume / start_price,
        )

    def asset_params(self, asset: str) -> AssetParams:
        """Beta, idiosyncratic scale, start price and base volume of ``asset``."""
        self._check_asset(asset)
        return self._params[asset]

    def _check_asset(self, asset: str) -> None:
        if asset not in self._params:
            raise UnknownNameError("asset", asset, self.assets)

    # ----------------------------------------------------------------------------- history
    def _ensure(self, periods: int) -> None:
        """Simulate (and cache) at least ``periods`` candles, in whole random blocks."""
        if periods < 0:
            raise ValueError(f"periods must be >= 0, got {periods}")
        periods = max(periods, 1)  # so that even generate(0) has arrays to slice
        if periods <= self._capacity:
            return
        block = self.spec.block
        n_blocks = -(-periods // block)
        steps = self.spec.substeps
        market = [_rng(self.seed, _MARKET, 0, b) for b in range(n_blocks)]
        uniforms = np.concatenate([rng.random(block) for rng in market])
        z_market = np.concatenate([rng.standard_normal((block, steps)) for rng in market])

        first = _rng(self.seed, _INIT).choice(len(self.spec.regimes), p=self.spec.stationary())
        self._regimes = self._run_chain(int(first), uniforms)

        for name in self.assets:
            streams = [_rng(self.seed, _ASSET, _stable_id(name), b) for b in range(n_blocks)]
            draws = [(rng.standard_normal((block, steps)), rng.standard_normal(block))
                     for rng in streams]
            z_idio = np.concatenate([d[0] for d in draws])
            z_volume = np.concatenate([d[1] for d in draws])
            arrays = _simulate_candles(
                self._regimes[None, :], z_market[None], z_idio[None], z_volume[None],
                self._params[name], self.spec,
            )
            self._candles[name] = {col: values[0] for col, values in arrays.items()}
        self._capacity = n_blocks * block

    def _run_chain(self, first: int, uniforms: np.ndarray) -> np.ndarray:
        """Regime of every candle: ``first`` at t=0, then one Markov step per uniform."""
        n_regimes = len(self.spec.regimes)
        # For each current regime, the next regime each uniform would lead to (vectorised);
        # the walk itself is a cheap loop over plain lists.
        nxt = [
            _next_regimes(np.full(len(uniforms), r), uniforms, self._cumulative).tolist()
            for r in range(n_regimes)
        ]
        out = [first] * len(uniforms)
        current = first
        for t in range(1, len(uniforms)):
            current = nxt[current][t]
            out[t] = current
        return np.asarray(out, dtype=np.int64)

    def index(self, periods: int) -> pd.DatetimeIndex:
        """Open times of the first ``periods`` candles (UTC, named ``time``).

        ``freq`` is left unset, like the index of candles read from a file or the database, so
        frames from every source compare equal.
        """
        index = pd.date_range(
            self.start, periods=periods, freq=self.step, tz="UTC", name="time", unit="us"
        )
        return pd.DatetimeIndex(index, freq=None)

    def generate(self, periods: int) -> dict[str, pd.DataFrame]:
        """The first ``periods`` candles of every asset, as contract candle frames."""
        self._ensure(periods)
        index = self.index(periods)
        return {
            name: pd.DataFrame(
                {col: self._candles[name][col][:periods].copy() for col in COLUMNS}, index=index
            )
            for name in self.assets
        }

    def regimes(self, periods: int) -> pd.Series:
        """Hidden regime name of each of the first ``periods`` candles (same index)."""
        self._ensure(periods)
        names = np.array(self.regime_names)[self._regimes[:periods]]
        return pd.Series(names, index=self.index(periods), name="regime")

    # ----------------------------------------------------------------------------- oracle
    def regime_outcomes(
        self, asset: str, pct: float, horizon: int
    ) -> dict[str, TouchProbabilities]:
        """True (p_up, p_down, p_expired) of the target from each regime, by Monte Carlo.

        For every starting regime, ``spec.oracle_paths`` paths of ``horizon + 1`` candles are
        simulated with the same candle code as :meth:`generate` (the regime evolves along the
        path) and row 0 of each is labelled with :func:`first_touch_labels`. Cached per
        (asset, pct, horizon); seeded, so deterministic.
        """
        self._check_asset(asset)
        if pct <= 0 or horizon < 1:
            raise ValueError(f"pct must be > 0 and horizon >= 1, got pct={pct}, horizon={horizon}")
        key = (asset, float(pct), int(horizon))
        if key not in self._oracle:
            self._oracle[key] = {
                name: self._monte_carlo(asset, pct, horizon, regime)
                for regime, name in enumerate(self.regime_names)
            }
        return self._oracle[key]

    def _monte_carlo(self, asset: str, pct: float, horizon: int, regime: int) -> TouchProbabilities:
        n_paths, periods, steps = self.spec.oracle_paths, horizon + 1, self.spec.substeps
        rng = _rng(self.seed, _ORACLE, _stable_id(asset), regime)
        uniforms = rng.random((n_paths, periods))
        z_market = rng.standard_normal((n_paths, periods, steps))
        z_idio = rng.standard_normal((n_paths, periods, steps))
        z_volume = rng.standard_normal((n_paths, periods))

        regimes = np.empty((n_paths, periods), dtype=np.int64)
        regimes[:, 0] = regime
        for t in range(1, periods):
            regimes[:, t] = _next_regimes(regimes[:, t - 1], uniforms[:, t], self._cumulative)
        arrays = _simulate_candles(
            regimes, z_market, z_idio, z_volume, self._params[asset], self.spec
        )

        # Paths laid end to end: row 0 of a path sees exactly its own candles 1..horizon.
        # Labelled in chunks to bound the memory of the labeller's (rows x horizon) windows.
        labels = []
        chunk = max(1, 40_000 // periods)
        for lo in range(0, n_paths, chunk):
            frame = pd.DataFrame({col: arrays[col][lo:lo + chunk].ravel() for col in COLUMNS})
            labels.append(first_touch_labels(frame, pct, horizon)["label"].to_numpy()[::periods])
        first = np.concatenate(labels)
        return TouchProbabilities(
            p_up=float(np.mean(first == UP)),
            p_down=float(np.mean(first == DOWN)),
            p_expired=float(np.mean(first == EXPIRED)),
        )

    def oracle_probability(self, asset: str, pct: float, horizon: int, periods: int) -> pd.Series:
        """For each of the first ``periods`` candles, the true P(UP | touched) given its regime.

        This is the best any model can do: it knows the hidden regime, not the future shocks.
        """
        outcomes = self.regime_outcomes(asset, pct, horizon)
        by_regime = {name: outcomes[name].p_up_given_touch for name in self.regime_names}
        regimes = self.regimes(periods)
        return pd.Series(
            regimes.map(by_regime).to_numpy(dtype=float), index=regimes.index, name="oracle_p_up"
        )
