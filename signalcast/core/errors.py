"""One exception hierarchy; each name says what the operator should do.

- ``ConfigError``: fix the configuration file or environment, then restart.
- ``DataError``: the input data is wrong (file, candles); fix or re-ingest it.
- ``UnknownNameError``: a name (asset, target, family, version) is not known; the message lists
  the valid choices.
- ``ArtifactError``: a stored model cannot be served (checksum or feature mismatch); retrain.
- ``TemporaryError``: an outside service is briefly unavailable; retrying later is right.

Messages are written for people: they name what is wrong and how to fix it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class SignalcastError(Exception):
    """Base of every error signalcast raises on purpose."""


class ConfigError(SignalcastError):
    """The configuration is invalid; the message names the field and the fix."""


class DataError(SignalcastError):
    """Input data (a candle file, a candle frame) is malformed."""


class UnknownNameError(SignalcastError, KeyError):
    """A name that is not registered or configured; the message lists the known ones."""

    def __init__(self, kind: str, name: str, known: Iterable[str]):
        self.kind, self.name = kind, name
        self.known = sorted(known)
        close = difflib.get_close_matches(name, self.known, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        msg = f"Unknown {kind} {name!r}.{hint} Known: {', '.join(self.known) or '(none)'}"
        super().__init__(msg)

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.args[0]


class ArtifactError(SignalcastError):
    """A stored model artifact cannot be loaded or served."""


class TemporaryError(SignalcastError):
    """A dependency is briefly unavailable; the operation may be retried."""
