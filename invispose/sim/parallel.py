"""Batches generated in worker processes, so simulation runs beside training.

``parallel_batches`` yields ``generate_batch(split, base + i, batch_size)`` for i = 0, 1, …
in order, computed ahead by ``workers`` processes (each single-threaded), keeping at
most ``2 * workers`` batches in flight. Each batch is as deterministic as a direct
``generate_batch`` call with the same arguments.

A mixed-hardware batch is large (links padded to 9: ~150 MB per 1024 windows), too
large to pickle through a pipe at speed, so workers hand batches over in POSIX shared
memory: one copy in the worker, none in the parent, whose arrays are views of the
segment. The segment is unlinked as soon as it is mapped and unmapped when the last
array using it is garbage collected. (Linux: segments live in /dev/shm.)
"""

from __future__ import annotations

import mmap
import multiprocessing as mp
import os
from collections import deque
from collections.abc import Generator
from concurrent.futures import Future, ProcessPoolExecutor
from multiprocessing import resource_tracker, shared_memory
from pathlib import Path

import numpy as np

from invispose.schemas import WindowBatch
from invispose.sim.dataset import ARRAY_FIELDS, generate_batch
from invispose.threads import single_threaded

Layout = list[tuple[str, str, tuple[int, ...], int]]  # field, dtype, shape, byte offset
_ALIGN = 64
SHM_DIR = Path("/dev/shm")  # where POSIX shared memory segments appear (Linux)


def _batch_to_shm(
    split: str, seed: int, size: int, options: dict[str, object]
) -> tuple[str, Layout, list[str]]:
    """Generate one batch into a new shared-memory segment; returns its name and layout."""
    batch = generate_batch(split, seed, size, **options)  # type: ignore[arg-type]
    layout: Layout = []
    offset = 0
    for name in ARRAY_FIELDS:
        a = getattr(batch, name)
        layout.append((name, a.dtype.str, tuple(a.shape), offset))
        offset += -(-a.nbytes // _ALIGN) * _ALIGN
    shm = shared_memory.SharedMemory(create=True, size=max(offset, 1))
    # the parent unlinks the segment: keep this process's tracker from doing it again
    resource_tracker.unregister(shm._name, "shared_memory")  # type: ignore[attr-defined]
    try:
        for name, dtype, shape, start in layout:
            view = np.ndarray(shape, dtype=np.dtype(dtype), buffer=shm.buf, offset=start)
            view[...] = getattr(batch, name)
            del view
    finally:
        shm.close()
    return shm.name, layout, list(batch.hardware)


def _segment_path(name: str) -> Path:
    return SHM_DIR / name.lstrip("/")


def _attach(name: str, layout: Layout, hardware: list[str]) -> WindowBatch:
    """A batch whose arrays are views of the shared segment ``name`` (then unlinked).

    The mapping belongs to the arrays alone: it is unmapped when the last one is
    garbage collected; the name is removed right away.
    """
    path = _segment_path(name)
    fd = os.open(path, os.O_RDWR)
    try:
        mapping = mmap.mmap(fd, os.fstat(fd).st_size)
    finally:
        os.close(fd)
        path.unlink()
    base = np.frombuffer(mapping, dtype=np.uint8)  # (bytes,) holds the mapping
    arrays = {
        field: base[start : start + int(np.prod(shape)) * np.dtype(dtype).itemsize]
        .view(np.dtype(dtype))
        .reshape(shape)
        for field, dtype, shape, start in layout
    }
    return WindowBatch(hardware=hardware, **arrays)


def parallel_batches(
    split: str,
    seed: int,
    batch_size: int,
    n_batches: int | None = None,
    *,
    workers: int = 2,
    **options: object,
) -> Generator[WindowBatch, None, None]:
    """Batches of ``split`` with seeds ``seed * 1_000_003 + i``, forever if n_batches is None."""
    base = int(seed) * 1_000_003
    ctx = mp.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=single_threaded) as pool:
        pending: deque[Future[tuple[str, Layout, list[str]]]] = deque()
        issued = 0

        def issue() -> None:
            nonlocal issued
            if n_batches is None or issued < n_batches:
                pending.append(pool.submit(_batch_to_shm, split, base + issued, batch_size,
                                           options))
                issued += 1

        for _ in range(2 * workers):
            issue()
        try:
            while pending:
                name, layout, hardware = pending.popleft().result()
                issue()
                yield _attach(name, layout, hardware)
        finally:
            for future in pending:  # segments of batches nobody will read
                if future.cancel():
                    continue
                try:
                    name, _, _ = future.result()
                    _segment_path(name).unlink(missing_ok=True)
                except (OSError, RuntimeError):
                    pass
