"""limit_threads: one setting for torch's threads and numpy's BLAS pool."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import json, numpy, torch
from threadpoolctl import threadpool_info
from invispose.threads import limit_threads
limit_threads(1)
blas = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
print(json.dumps({"torch": torch.get_num_threads(), "blas": blas}))
"""


def test_limit_threads_sets_torch_and_numpys_blas() -> None:
    # in a process of its own: the limits are process-wide
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                         check=True, timeout=120)
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["torch"] == 1
    assert seen["blas"], "numpy's BLAS pool was not found"
    assert set(seen["blas"]) == {1}
