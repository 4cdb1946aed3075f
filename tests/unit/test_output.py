"""``--json`` commands: stdout carries one JSON document, whatever else writes to it."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

NOISY = textwrap.dedent(
    """
    import subprocess, sys
    from invispose.output import json_stdout, print_json
    with json_stdout():
        print("a library's warning")                      # Python-level print
        sys.stdout.write("more noise\\n")
        subprocess.run(["echo", "a child process line"], check=True)  # inherits fd 1
        print_json({"answer": 42})
    print("after the block, stdout is stdout again")
    """
)


def test_json_stdout_sends_everything_else_to_stderr() -> None:
    done = subprocess.run(
        [sys.executable, "-c", NOISY], capture_output=True, text=True, timeout=120, check=True
    )
    lines = done.stdout.splitlines()
    assert json.loads(lines[0]) == {"answer": 42}
    assert lines[1:] == ["after the block, stdout is stdout again"]
    for noise in ("a library's warning", "more noise", "a child process line"):
        assert noise in done.stderr


def test_a_json_command_prints_one_document(shared_data: Path) -> None:
    capture = next(p for p in sorted((shared_data).rglob("*.dat")))
    done = subprocess.run(
        [sys.executable, "-m", "invispose.cli", "csi", "info", "--json", str(capture)],
        capture_output=True, text=True, timeout=300, check=True,
    )
    document = json.loads(done.stdout)  # raises on anything but one JSON document
    assert isinstance(document, dict) and document
