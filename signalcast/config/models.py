"""The ``models`` section (which family is champion, per-family parameters) and the
``training`` section (how much history a model is fitted and calibrated on)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from signalcast.config.base import Section


class ModelsConfig(Section):
    champion: str = "lightgbm"
    keep_versions: int = Field(default=5, ge=1)
    params: dict[str, dict[str, Any]] = Field(default_factory=dict)


class TrainingConfig(Section):
    history_candles: int = Field(default=8760, ge=100)
    min_rows: int = Field(default=500, ge=50)
    calibration_fraction: float = Field(default=0.2, gt=0, lt=0.5)
