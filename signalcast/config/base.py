"""What every section of the YAML file shares: no unknown keys, immutable, finite numbers
(``.inf`` and ``.nan`` are refused in every float field), and the "each listed once" check used
by the list sections."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def require_unique(values: list[str], what: str) -> None:
    dupes = sorted({v for v in values if values.count(v) > 1})
    if dupes:
        raise ValueError(f"must list each {what}; repeated: {', '.join(dupes)}")
