"""How many threads a process computes on: torch's and numpy's BLAS together.

The simulator's small matrix products (floor maps, calibration) ran at half speed when
OpenBLAS spread each over every core that the trainer and the other workers already fill,
so worker processes compute on one thread, and a trainer on as many as it is given.
"""

from __future__ import annotations

import torch
from threadpoolctl import threadpool_limits


def limit_threads(n: int) -> None:
    """Compute on ``n`` threads in this process, in torch and in numpy's BLAS."""
    torch.set_num_threads(n)
    threadpool_limits(n)


def single_threaded() -> None:
    """A worker process's initializer: one thread."""
    limit_threads(1)
