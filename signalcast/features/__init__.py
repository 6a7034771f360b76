"""Features and labels: causal candle features (:mod:`.engineering`) and the one first-touch
labelling function (:mod:`.labels`) shared by training and live outcome resolution."""

from signalcast.features.engineering import (
    FEATURE_SET,
    MAX_LOOKBACK,
    compute_features,
    feature_names,
    latest_features,
    warm_rows,
)
from signalcast.features.labels import (
    DOWN,
    EXPIRED,
    PENDING,
    UP,
    first_touch_labels,
    resolve_first_touch,
)

__all__ = [
    "DOWN",
    "EXPIRED",
    "FEATURE_SET",
    "MAX_LOOKBACK",
    "PENDING",
    "UP",
    "compute_features",
    "feature_names",
    "first_touch_labels",
    "latest_features",
    "resolve_first_touch",
    "warm_rows",
]
