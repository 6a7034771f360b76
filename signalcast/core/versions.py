"""One way to refer to a model version and one way to name it to people.

>>> label(VersionRef(1, "BTC/USDT", "2pct_72", "lightgbm", 3, "champion", None, "ab12"))
'lightgbm v3'
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


class Versioned(Protocol):
    family: str
    version: int


@dataclass(frozen=True)
class VersionRef:
    """What routing needs of a model version (its artifact is read only on a cache miss)."""

    id: int
    asset: str
    target: str
    family: str
    version: int
    role: str
    created_at: datetime | None
    sha256: str


def label(version: Versioned) -> str:
    """``"<family> v<version>"``: how every screen, alert and audit record names a version."""
    return f"{version.family} v{version.version}"


def optional_label(version: Versioned | None) -> str | None:
    return None if version is None else label(version)
