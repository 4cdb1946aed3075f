"""Machine-readable output: a ``--json`` command prints exactly one JSON document on stdout.

Everything else a command (or a library it drives) writes goes to stderr while
``json_stdout`` holds: Python's ``sys.stdout`` and file descriptor 1 both point there, so
the processes it starts (Ray's raylet and workers) inherit stderr too. Only
``print_json`` reaches the real stdout.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from typing import Any, TextIO

_channel: TextIO | None = None  # the real stdout while json_stdout holds


@contextlib.contextmanager
def json_stdout() -> Iterator[None]:
    """Reserve stdout for ``print_json`` for the duration of the block."""
    global _channel
    saved_stdout = sys.stdout
    saved_stdout.flush()
    try:
        on_fd1 = saved_stdout.fileno() == 1
    except (AttributeError, OSError, ValueError):  # a captured or in-memory stdout
        on_fd1 = False
    fd1 = os.dup(1)
    channel = os.fdopen(os.dup(fd1), "w", encoding="utf-8") if on_fd1 else saved_stdout
    os.dup2(2, 1)
    _channel, sys.stdout = channel, sys.stderr
    try:
        yield
    finally:
        sys.stdout, _channel = saved_stdout, None
        sys.stderr.flush()
        channel.flush()
        os.dup2(fd1, 1)
        os.close(fd1)
        if channel is not saved_stdout:
            channel.close()


def print_json(document: Any, indent: int | None = None) -> None:
    """Write one JSON document (and a newline) to the real stdout."""
    out = _channel if _channel is not None else sys.stdout
    out.write(json.dumps(document, indent=indent) + "\n")
    out.flush()
