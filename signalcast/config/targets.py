"""The ``targets`` section: what is predicted (a +-pct move within a horizon of candles)."""

from __future__ import annotations

from pydantic import Field

from signalcast.config.base import Section, require_unique


class TargetConfig(Section):
    """Touch ``+pct`` before ``-pct`` within ``horizon`` candles."""

    pct: float = Field(gt=0, lt=1)
    horizon: int = Field(ge=1, le=10_000)
    # Reached by calibrated champions: unconditional two-sided chances seldom pass 0.65.
    alert_threshold: float = Field(default=0.60, gt=0.5, le=1)

    @property
    def key(self) -> str:
        """Stable identifier, e.g. ``2pct_72`` for +-2% within 72 candles."""
        return f"{self.pct * 100:g}pct_{self.horizon}"


def check_targets(targets: list[TargetConfig]) -> list[TargetConfig]:
    """The list as a whole: each (pct, horizon) listed once."""
    require_unique([t.key for t in targets], "(pct, horizon) once")
    return targets
