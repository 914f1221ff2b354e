"""Errors that the command line and notebooks report as one clear line."""

from __future__ import annotations


class SynthexError(Exception):
    """Base class: the message names the parameter or file and says what to do."""


class ConfigError(SynthexError, ValueError):
    """A parameter has an unknown or invalid value (unknown profile, negative size, ...)."""


class DataError(SynthexError):
    """A file is missing, truncated, corrupted or in the wrong layout."""


def require_positive(name: str, value: float, *, integer: bool = False) -> None:
    """Raise :class:`ConfigError` naming ``name`` unless ``value`` is a positive number."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and value > 0
    if ok and integer:
        ok = float(value).is_integer()
    if not ok:
        kind = "a positive integer" if integer else "a positive number"
        raise ConfigError(f"parameter '{name}' must be {kind}, got {value!r}")
