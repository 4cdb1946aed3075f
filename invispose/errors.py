"""The InvisPose exception tree.

    InvisPoseError
    ├── ConfigError            a configuration file or value is invalid
    ├── CsiParseError          bytes or text that are not valid CSI (names offset or line)
    │   └── UnknownFormatError a capture whose format cannot be recognised
    ├── SourceError            a live CSI source (UDP, serial, file) cannot be opened or read
    ├── SimulationError        a simulator scene or parameter is invalid
    ├── ModelError             a checkpoint cannot be loaded or does not fit the input
    └── InvalidArgument        a value a store method refuses (its type or range)

Third-party exceptions are translated once, at the boundary where they are raised
(``raise CsiParseError(...) from exc``); callers catch only this tree.
"""

from __future__ import annotations


class InvisPoseError(Exception):
    """Base of every error InvisPose raises on purpose."""


class ConfigError(InvisPoseError):
    """A configuration file or value is invalid; ``problems`` lists (field path, message)."""

    def __init__(self, message: str, problems: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.problems: list[tuple[str, str]] = problems or []


class CsiParseError(InvisPoseError):
    """Bytes or text that are not valid CSI; says where (byte offset or line number)."""

    def __init__(
        self,
        message: str,
        *,
        offset: int | None = None,
        line: int | None = None,
    ) -> None:
        where = ""
        if offset is not None:
            where = f" at byte offset {offset}"
        elif line is not None:
            where = f" at line {line}"
        super().__init__(f"{message}{where}")
        self.reason = message
        self.offset = offset
        self.line = line


class UnknownFormatError(CsiParseError):
    """A capture whose format cannot be recognised from its name or first bytes."""


class SourceError(InvisPoseError):
    """A live CSI source cannot be opened or read."""


class StoreWriteError(InvisPoseError):
    """The store could not write (database locked, disk full, closed): what was to be
    written is intact and a later attempt may succeed, unlike a rejected record."""


class SimulationError(InvisPoseError):
    """A simulator scene or parameter is invalid."""


class ModelError(InvisPoseError):
    """A checkpoint cannot be loaded, or does not fit the input it is given."""


class InvalidArgument(InvisPoseError):
    """A value a store method refuses (wrong type, out of range): the caller's mistake,
    which the API answers with 422, unlike a store that cannot read or write (503)."""
