"""`invispose bench pipeline --json`: stdout is one JSON document, Ray's chatter on stderr.

Before json_stdout, the driver printed Ray's "(raylet) Task ... failed" lines on stdout
ahead of the JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_pipeline_bench_json_is_the_only_thing_on_stdout() -> None:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAY_AUTH_MODE"] = "disabled"
    done = subprocess.run(
        [sys.executable, "-m", "invispose.cli", "bench", "pipeline", "--json",
         "--routers", "1", "--clients", "1", "--duration", "1", "--integrations"],
        capture_output=True, text=True, timeout=900, env=env, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)  # anything else on stdout makes this raise
    assert report["routers"] == 1 and report["clients"] == 1
    assert "[bench pipeline]" in done.stderr  # progress still reaches the user
    # with the MQTT bridge (an embedded Mosquitto of its own) and a webhook of every event
    assert report["integrations"]["webhook_deliveries_all_cases"] > 0
