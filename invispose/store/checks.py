"""Argument checks shared by the store's modules: clear errors before any write."""

from __future__ import annotations

from invispose.errors import InvalidArgument

INT64_MAX = 2**63 - 1  # SQLite's largest integer


def check_int(value: object, name: str, low: int, high: int = INT64_MAX) -> int:
    """Return value if it is an int in [low, high], else raise InvalidArgument."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        bound = f"{low}..{high}" if high != INT64_MAX else f">= {low}"
        raise InvalidArgument(f"{name} must be an integer {bound}, got {value!r}")
    return value


def check_text(value: object, name: str, *, optional: bool = False) -> str | None:
    """Return value if it is a string SQLite can store (or None when optional)."""
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise InvalidArgument(f"{name} must be a string, got {value!r}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidArgument(f"{name} is not valid text: {value!r}") from exc
    return value


def check_id(value: object, name: str) -> str:
    """Return value if it is a non-empty string, else raise InvalidArgument."""
    if not check_text(value, name):
        raise InvalidArgument(f"{name} must be a non-empty string, got {value!r}")
    return str(value)
