"""How much of the causal-filter -> oracle AUC gap is information per-candle returns do not carry?

Exact causal forward filters P(regime_t | observations up to candle t) on the packaged synthetic
market (seed/start from the default config, the 3-asset market the benches use), with the TRUE
generator parameters (MarketSpec + AssetParams, true transition matrix, stationary start).

Emission sets (per candle; candles are exactly conditionally independent given the regime in
this generator, because each candle's shocks are fresh and r, range, volume are all measured
relative to the candle's own open):
  ret      own log close/open return: N(beta*drift_k, sigma_k^2), sigma_k = vol_k*sqrt(beta^2+c^2),
           c = idio_ratio*idio_scale (exact).
  +rng     joint (return, log range) density, EXACT up to Monte Carlo/KDE: the 8 sub-steps are iid
           Gaussian, so given the endpoint the path is a Gaussian bridge independent of the drift;
           range | (return, regime) depends on the regime only through sigma_k. Tabulated from
           Monte Carlo bridges: atom P(range == |return|) (path stays between open and close) and
           the density of log(range - |return|) on a grid of |return|/sigma.
  +vol     log volume | (return, regime) ~ N(log(base*mult_k*(0.5+|r|/sigma_k)) - s^2/2, s^2), exact
           (uses the constant base_volume, i.e. the raw volume level; a real system would have to
           learn that level, e.g. volume / long rolling median).
  simple variants (the brief's suggestion, approximations): range independent of the return,
           Gaussian on log(log(H/L)) per regime, and Gaussian on log(volume) per regime, both fitted
           on a separate stretch (candles TRAIN_LO..TRAIN_HI) with the true regimes.
  xret     extra: returns of all 3 assets jointly (multivariate Gaussian, exact; shared regime).
  xall     extra: all 3 returns + all 3 volumes + own range (exact: own bridge is independent of
           all endpoints; volumes are independent given the returns).

    OMP_NUM_THREADS=1 python bench/bench_information.py [ASSET ...] > results.txt  # ~1 minute

Results (and what they say about the HMM family's gap to the oracle):
bench/bench_information_results.txt. Nothing is asserted.

Direction forecast: P(UP | touched, info) = sum_k pi_k p_up_k / sum_k pi_k (p_up_k + p_down_k),
with p_*_k the oracle's own Monte Carlo values (market.regime_outcomes). Oracle = bench_honest's.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from scipy.interpolate import RegularGridInterpolator
from scipy.ndimage import gaussian_filter1d
from scipy.stats import rankdata

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from signalcast.config import load_settings
from signalcast.data.market_cache import shared_market
from signalcast.evaluation.folds import WalkForwardConfig, plan_folds
from signalcast.features.dataset import build_outcome_set
from signalcast.features.labels import DOWN, EXPIRED, UP, first_touch_labels
from signalcast.stats.skill import auc_null, brier, causal_base_rate, multi_brier, onehot3

T0 = time.perf_counter()
BENCH_N = 17520  # bench_honest --periods default
EVAL_N = 200_000  # long-run evaluation stretch [0, EVAL_N)
TRAIN_LO, TRAIN_HI = 200_000, 300_000  # separate stretch for the 'simple' fitted densities
LONG_SKIP = 2000  # long-run rows start here (filter burn-in irrelevant, but keep it clean)
M_BRIDGE = 40_000
X_MAX, DX = 16.0, 0.05
V_LO, V_HI, DV = -16.0, 3.0, 0.02
TARGET_ASSETS = sys.argv[1:] or ["ETH/USDT", "BTC/USDT", "SOL/USDT"]
N_BLOCKS = 10  # long run split into contiguous blocks for the SE of (filter - oracle) AUC
# hmm family (walk-forward, calibrated) AUC on the same bench rows, as given in the brief
HMM_FAMILY = {("ETH/USDT", "1pct_72"): 0.592, ("ETH/USDT", "2pct_72"): 0.669,
              ("ETH/USDT", "5pct_72"): 0.802}
summary: list[str] = []

settings = load_settings()
symbols = [a.symbol for a in settings.assets]
market = shared_market(symbols, settings.data.seed, "1h", settings.data.start)
spec = market.spec
frames = market.generate(TRAIN_HI)
regimes = market._regimes[:TRAIN_HI].copy()  # same values as market.regimes(n), as ints
assert (np.array(market.regime_names)[regimes[:BENCH_N]]
        == market.regimes(BENCH_N).to_numpy()).all()
K = len(spec.regimes)
drift = np.array([r.drift for r in spec.regimes])
vol = np.array([r.vol for r in spec.regimes])
vmult = np.array([r.volume for r in spec.regimes])
P = spec.transition_matrix()
pi0 = spec.stationary()


def log(msg=""):
    print(msg, flush=True)


log(f"seed {settings.data.seed} start {settings.data.start} assets {symbols}; regimes "
    f"{market.regime_names}; stationary {np.round(pi0, 4).tolist()}")
for s in symbols:
    log(f"  {market.asset_params(s)}")

# ------------------------------------------------------------------ per-candle observations
obs = {}
for s in symbols:
    f = frames[s]
    o, h, lo_, c, v = (f[k].to_numpy() for k in ("open", "high", "low", "close", "volume"))
    r = np.log(c) - np.log(o)
    R = np.log(h) - np.log(lo_)
    atom = (h == np.maximum(o, c)) & (lo_ == np.minimum(o, c))
    obs[s] = dict(r=r, R=R, atom=atom, logv=np.log(v))


def params(s):
    a = market.asset_params(s)
    cc = spec.idio_ratio * a.idio_scale
    return a, cc, vol * np.sqrt(a.beta ** 2 + cc ** 2)  # sigma_k of the candle return


# ------------------------------------------------------------------ bridge table (range | r)
t = time.perf_counter()
rng = np.random.default_rng(12345)
steps = spec.substeps
S = np.cumsum(rng.standard_normal((M_BRIDGE, steps)) / np.sqrt(steps), axis=1)
frac = np.arange(1, steps + 1) / steps
B = S - frac[None, :] * S[:, -1:]  # bridge at sub-steps 1..8 (B_8 = 0)
B_in = B[:, :-1]  # interior points 1..7
xg = np.arange(0.0, X_MAX + DX / 2, DX)
vg_edges = np.arange(V_LO, V_HI + DV / 2, DV)
vg = (vg_edges[:-1] + vg_edges[1:]) / 2
atom_p = np.empty(len(xg))
logf = np.empty((len(xg), len(vg)))
for i, x in enumerate(xg):
    path = x * frac[None, :-1] + B_in  # interior; endpoints 0 and x
    hi = np.maximum(path.max(axis=1), x)
    lo = np.minimum(path.min(axis=1), 0.0)
    is_atom = (path.min(axis=1) >= 0.0) & (path.max(axis=1) <= x)
    e = (hi - lo - x)[~is_atom]
    atom_p[i] = max(is_atom.mean(), 0.5 / M_BRIDGE)
    counts, _ = np.histogram(np.log(np.maximum(e, 1e-300)), bins=vg_edges)
    counts = gaussian_filter1d(counts.astype(float), sigma=3.0, mode="constant") + 1e-3
    logf[i] = np.log(counts / (M_BRIDGE * DV))  # density of v=log(excess) incl. (1-atom) mass
atom_interp = RegularGridInterpolator((xg,), np.log(atom_p), bounds_error=False, fill_value=None)
f_interp = RegularGridInterpolator((xg, vg), logf, bounds_error=False, fill_value=None)
log(f"bridge table: {M_BRIDGE} bridges, |x| grid 0..{X_MAX} step {DX}, atom P at x=0,1,2,3: "
    f"{[round(float(np.exp(atom_interp([[x]])[0])), 4) for x in (0, 1, 2, 3)]} "
    f"({time.perf_counter() - t:.1f}s)")


def ll_ret(s):
    a, cc, sig = params(s)
    r = obs[s]["r"][:, None]
    return -0.5 * ((r - a.beta * drift) / sig) ** 2 - np.log(sig)


def ll_range(s):
    """log p(range | return, regime), exact up to the bridge Monte Carlo."""
    _, _, sig = params(s)
    o = obs[s]
    n = len(o["r"])
    out = np.empty((n, K))
    absr = np.abs(o["r"])
    excess = np.maximum(o["R"] - absr, 1e-300)
    for k in range(K):
        x = np.clip(absr / sig[k], 0, X_MAX)
        v = np.clip(np.log(excess) - np.log(sig[k]), vg[0], vg[-1])
        cont = f_interp(np.column_stack([x, v])) - np.log(excess)  # density of raw excess
        out[:, k] = np.where(o["atom"], atom_interp(x[:, None]), cont)
    return out


def ll_volume(s):
    a, _, sig = params(s)
    o = obs[s]
    sd = spec.volume_noise
    mean = (np.log(a.base_volume * vmult)[None, :]
            + np.log(0.5 + np.abs(o["r"])[:, None] / sig[None, :]) - sd ** 2 / 2)
    return -0.5 * ((o["logv"][:, None] - mean) / sd) ** 2


def ll_joint_returns():
    betas = np.array([market.asset_params(s).beta for s in symbols])
    cs = np.array([spec.idio_ratio * market.asset_params(s).idio_scale for s in symbols])
    X = np.column_stack([obs[s]["r"] for s in symbols])
    out = np.empty((len(X), K))
    for k in range(K):
        cov = vol[k] ** 2 * (np.outer(betas, betas) + np.diag(cs ** 2))
        d = X - betas * drift[k]
        inv = np.linalg.inv(cov)
        out[:, k] = -0.5 * np.einsum("ij,jk,ik->i", d, inv, d) - 0.5 * np.linalg.slogdet(cov)[1]
    return out


def gauss_fit_ll(values, k_train, values_eval):
    """Per-regime Gaussian fitted on the training stretch, log density on values_eval."""
    out = np.empty((len(values_eval), K))
    for k in range(K):
        m, sd = values[k_train == k].mean(), values[k_train == k].std()
        out[:, k] = -0.5 * ((values_eval - m) / sd) ** 2 - np.log(sd)
    return out


def ll_simple(s):
    o = obs[s]
    tr = slice(TRAIN_LO, TRAIN_HI)
    lr = np.log(np.maximum(o["R"], 1e-12))
    rng_ll = gauss_fit_ll(lr[tr], regimes[tr], lr)
    vol_ll = gauss_fit_ll(o["logv"][tr], regimes[tr], o["logv"])
    return rng_ll, vol_ll


def forward(ll):
    """Filtered P(regime_t | obs_<=t), true transition matrix, stationary prior at t=0."""
    lik = np.exp(ll - ll.max(axis=1, keepdims=True))
    n = len(lik)
    out = np.empty((n, K))
    Pt = P.T.copy()
    a = pi0 * lik[0]
    a /= a.sum()
    out[0] = a
    for i in range(1, n):
        a = (Pt @ a) * lik[i]
        a /= a.sum()
        out[i] = a
    return out


def auc(y, p):
    y = np.asarray(y, float)
    ranks = rankdata(p)
    n1 = y.sum()
    return float((y @ ranks - n1 * (n1 + 1) / 2) / (n1 * (len(y) - n1)))


# ------------------------------------------------------------------ run
for asset in TARGET_ASSETS:
    t = time.perf_counter()
    n = EVAL_N
    base = {
        "ret": ll_ret(asset),
    }
    lrng, lvol = ll_range(asset), ll_volume(asset)
    srng, svol = ll_simple(asset)
    xret = ll_joint_returns()
    xvol = sum(ll_volume(s) for s in symbols)
    sets = {
        "ret": base["ret"],
        "ret+rng": base["ret"] + lrng,
        "ret+rng+vol": base["ret"] + lrng + lvol,
        "ret+rng(simple)": base["ret"] + srng,
        "ret+rng+vol(simple)": base["ret"] + srng + svol,
        "xret(3 assets)": xret,
        "xret+xvol+rng": xret + xvol + lrng,
    }
    post = {name: forward(ll[:n]) for name, ll in sets.items()}
    post["oracle"] = np.eye(K)[regimes[:n]]
    log(f"\n=== {asset}: filters over {n} candles ({time.perf_counter() - t:.1f}s)")

    # regime diagnostics (long run, after burn-in)
    true = regimes[LONG_SKIP:n]
    log(f"{'filter':<22}{'P(true regime)':>15}{'logscore':>10}{'acc':>7}{'calib err':>10}"
        )
    for name, pr in post.items():
        if name == "oracle":
            continue
        q = pr[LONG_SKIP:n]
        ptrue = q[np.arange(len(true)), true]
        # reliability: |mean predicted - observed| in 10 bins per regime, weighted
        errs = []
        for k in range(K):
            bins = np.minimum((q[:, k] * 10).astype(int), 9)
            for b in range(10):
                m = bins == b
                if m.any():
                    errs.append(m.sum() * abs(q[m, k].mean() - (true[m] == k).mean()))
        log(f"{name:<22}{ptrue.mean():>15.4f}{np.mean(np.log(np.maximum(ptrue, 1e-300))):>10.4f}"
            f"{(q.argmax(1) == true).mean():>7.4f}{sum(errs) / (K * len(true)):>10.4f}")
    # bridge-model check: predicted vs observed atom frequency per true regime
    _, _, sig = params(asset)
    for k in range(K):
        m = regimes[:n] == k
        x = np.clip(np.abs(obs[asset]["r"][:n][m]) / sig[k], 0, X_MAX)
        observed = obs[asset]["atom"][:n][m].mean()
        log(f"  atom check {market.regime_names[k]}: observed {observed:.5f}"
            f" predicted {np.exp(atom_interp(x[:, None])).mean():.5f}")

    for tg in settings.targets:
        oc = market.regime_outcomes(asset, tg.pct, tg.horizon)
        pu = np.array([oc[r].p_up for r in market.regime_names])
        pd_ = np.array([oc[r].p_down for r in market.regime_names])
        pe = np.array([oc[r].p_expired for r in market.regime_names])
        pug = np.array([oc[r].p_up_given_touch for r in market.regime_names])

        # bench rows: exactly bench_honest's oracle_scores row set
        data = build_outcome_set(frames[asset].iloc[:BENCH_N], "1h", tg.pct, tg.horizon)
        plan = plan_folds(data.positions, data.labels, tg.horizon, WalkForwardConfig(folds=6))
        fold = np.concatenate([np.full(len(f.test), f.index) for f in plan.folds])
        rows = plan.test_rows[fold >= 1]
        pos, labels = data.positions[rows], data.labels[rows]
        touched = labels != EXPIRED
        y = (labels[touched] == UP).astype(float)
        t_all = data.touched
        ref = causal_base_rate((data.labels[t_all] == UP).astype(float), data.positions[t_all],
                               pos[touched], tg.horizon)
        ref3 = causal_base_rate(onehot3(data.labels), data.positions, pos, tg.horizon,
                                prior=np.full(3, 1 / 3), strength=3.0)
        orc_check = market.oracle_probability(asset, tg.pct, tg.horizon, BENCH_N).to_numpy()[pos]

        # long-run rows: every resolved candle in [LONG_SKIP, EVAL_N)
        lab_long = first_touch_labels(frames[asset].iloc[:n], tg.pct,
                                      tg.horizon)["label"].to_numpy()
        lpos = np.flatnonzero(np.isin(lab_long, (UP, DOWN, EXPIRED)))
        lpos = lpos[lpos >= LONG_SKIP]
        llab = lab_long[lpos]
        ltouch = llab != EXPIRED
        ly = (llab[ltouch] == UP).astype(float)
        allpos = np.flatnonzero(np.isin(lab_long, (UP, DOWN, EXPIRED)))
        allt = allpos[lab_long[allpos] != EXPIRED]
        lref = causal_base_rate((lab_long[allt] == UP).astype(float), allt, lpos[ltouch],
                                tg.horizon)
        lref3 = causal_base_rate(onehot3(lab_long[allpos]), allpos, lpos, tg.horizon,
                                 prior=np.full(3, 1 / 3), strength=3.0)

        log(f"\n--- {asset} {tg.key}: bench rows {len(rows)} ({touched.sum()} touched); "
            f"long rows {len(lpos)} ({ltouch.sum()} touched); "
            f"P(up|touch,k) {np.round(pug, 4).tolist()}")
        log(f"{'filter':<22}{'AUC bench':>10}{'AUCmix':>8}{'skill':>9}{'skill3':>9}"
            f"{'AUC long':>10}{'skill':>9}{'skill3':>9}{'long-oracle (block SE)':>24}")
        blk = np.array_split(np.arange(ltouch.sum()), N_BLOCKS)
        res = {}
        oracle_long_blocks = None
        for name in ["oracle"] + [k for k in post if k != "oracle"]:  # oracle first
            pr = post[name]

            def scores(p_rows, tmask, yv, refv, labs, ref3v, pr=pr, pu=pu, pd_=pd_, pe=pe,
                       pug=pug):
                q = pr[p_rows]
                pdir = (q @ pu) / (q @ (pu + pd_))
                pmix = q @ pug
                probs3 = q @ np.column_stack([pu, pd_, pe])
                return (pdir[tmask], pmix[tmask],
                        1 - brier(yv, pdir[tmask]) / brier(yv, refv),
                        1 - multi_brier(onehot3(labs), probs3) / multi_brier(onehot3(labs), ref3v))
            bd, bm, bs, bs3 = scores(pos, touched, y, ref, labels, ref3)
            ld, _, ls, ls3 = scores(lpos, ltouch, ly, lref, llab, lref3)
            a_b = auc_null(y, bd, tg.horizon).auc
            if name == "oracle":
                assert np.allclose(bd, orc_check[touched])
            blocks = np.array([auc(ly[b], ld[b]) for b in blk])
            if oracle_long_blocks is None:
                oracle_long_blocks = blocks
            d = blocks - oracle_long_blocks
            res[name] = (a_b, auc(ly, ld), bs)
            log(f"{name:<22}{a_b:>10.4f}{auc(y, bm):>8.4f}{bs:>+9.4f}{bs3:>+9.4f}"
                f"{auc(ly, ld):>10.4f}{ls:>+9.4f}{ls3:>+9.4f}"
                f"{d.mean():>+14.4f} ({d.std(ddof=1) / np.sqrt(N_BLOCKS):.4f})")
        cols = ["ret", "ret+rng", "ret+rng+vol", "xret(3 assets)", "xret+xvol+rng", "oracle"]
        hmm = HMM_FAMILY.get((asset, tg.key))
        line = (f"{asset:<9}{tg.key:<9}" + "".join(f"{res[c][0]:>9.4f}" for c in cols)
                + (f"{hmm:>7.3f}" if hmm else f"{'-':>7}")
                + "  | long: " + "".join(f"{res[c][1]:>7.4f}" for c in cols))
        if hmm:
            gap = res["oracle"][0] - hmm
            line += "  | share of hmm->oracle gap closed (bench rows): " + " ".join(
                f"{(res[c][0] - hmm) / gap:.2f}" for c in cols[:3])
        summary.append(line)
    log(f"({asset} done, {time.perf_counter() - T0:.0f}s total)")

log("\n=== SUMMARY: direction AUC (touched rows). Bench rows = bench_honest's scored rows "
    "(17520 candles, folds 1-5 of 6); long = all touched rows of candles 2000..199999")
log(f"{'asset':<9}{'target':<9}" + "".join(f"{c:>9}" for c in
    ["ret", "+rng", "+rng+vol", "xret", "xall", "oracle"]) + f"{'hmmfam':>7}"
    + "  | long: ret  +rng +rng+vol  xret  xall oracle")
for line in summary:
    log(line)
log(f"\ntotal {time.perf_counter() - T0:.0f}s")

