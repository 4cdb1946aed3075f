"""Dataset splits of simulated windows with ground truth, and their npz shards.

``generate_batch(split, seed, n)`` is deterministic in (split, seed, n and options);
different seeds give different windows of the same split definition:

==============  ==================  =====================================================
split           layouts             hardware
==============  ==================  =====================================================
train           training family     esp32, intel5300, nexmon
val             training family     esp32, intel5300, nexmon (other windows and people)
same-layout     training family     esp32, intel5300, nexmon (the paper's same layout)
cross-layout    held-out family     esp32, intel5300, nexmon (rooms never trained on)
cross-hardware  training family     atheros only (3×3, 114 subcarriers, never trained on)
==============  ==================  =====================================================

Each window is one space: 1-4 routers (``ROUTER_COUNT_P``) of the split's hardware,
drawn per router (mixed), placed in the same room, seeing the same people; their links
follow one another on the link axis (``WindowBatch.link_router``).
People per window: 0-4 (weighted towards 0-2), each walking, standing, sitting, lying,
waving or falling (a fall overlapping the window, or someone already down), so that
falls are frequent enough to evaluate. Ground truth is taken at the window's end.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt

from invispose.errors import SimulationError
from invispose.localise.maps import MAP_CELLS
from invispose.localise.maps import floor_maps as maps_of
from invispose.localise.views import views_from_batch
from invispose.schemas import MAX_PERSONS, MAX_ROUTERS, N_KEYPOINTS, WindowBatch
from invispose.sim.body import keypoints
from invispose.sim.hardware import (
    HELD_OUT_HARDWARE,
    TRAIN_HARDWARE,
    HardwareProfile,
    get_profile,
    link_snr_db,
    tx_choices,
    with_tx,
)
from invispose.sim.layouts import LayoutArrays, layouts_for, router_layouts
from invispose.sim.motion import (
    FALL,
    LIE,
    SIT,
    STAND,
    WALK,
    WAVE,
    Motion,
    activity_at,
    falling_during,
    pose_at,
    random_motion,
)
from invispose.sim.windows import WindowSet, simulate_windows

logger = logging.getLogger(__name__)

SPLITS: dict[str, int] = {
    "train": 101, "val": 202, "same-layout": 303, "cross-layout": 404, "cross-hardware": 505,
}
PERSON_COUNT_P = (0.14, 0.34, 0.28, 0.14, 0.10)  # 0, 1, 2, 3, 4 people
# walk, stand, sit, lie, fall in the window, already fallen, wave
KIND_P = (0.29, 0.18, 0.16, 0.08, 0.11, 0.05, 0.13)
_KIND_OF = (WALK, STAND, SIT, LIE, FALL, FALL, WAVE)
MARGIN_M = (0.4, 0.4, 0.45, 1.0, 1.0, 0.5)  # wall clearance of the hip centre per kind
MIN_SEPARATION_M = 0.6
ROUTER_COUNT_P = (0.3, 0.35, 0.25, 0.1)  # 1, 2, 3, 4 routers in a space
CHUNK_ELEMENTS = 1 << 21  # windows per chunk: keep n·L·T·max(Q, S) near this (cache)
GROUP_BY_COUNT_FROM = 64  # windows of one hardware: below, one group with empty slots
ABSENT_M = 1.0e3  # where empty person slots stand (their paths are ~120 dB down)


def split_family(split: str) -> tuple[str, tuple[str, ...]]:
    """(layout family, hardware profiles) of a split."""
    if split not in SPLITS:
        raise SimulationError(f"unknown split {split!r} (known: {', '.join(SPLITS)})")
    if split == "cross-layout":
        return "held-out", TRAIN_HARDWARE
    if split == "cross-hardware":
        return "train", (HELD_OUT_HARDWARE,)
    return "train", TRAIN_HARDWARE


def _place_people(
    rng: np.random.Generator, motion: Motion, size_m: npt.NDArray[np.float64], window_s: float
) -> None:
    """Put persons (one room per row of ``size_m``) inside the room, apart, paths inside."""
    m = len(motion)
    margin = np.asarray(MARGIN_M, dtype=np.float32)[motion.kind.astype(np.intp)][:, None]
    lo, hi = margin, size_m[:, :2].astype(np.float32) - margin
    hi = np.maximum(hi, lo + 0.1)
    end = rng.uniform(0.0, 1.0, (m, 2)).astype(np.float32) * (hi - lo) + lo  # (M, 2)
    fwd = np.stack((np.cos(motion.heading), np.sin(motion.heading)), axis=-1)
    back = end - fwd * (motion.speed_mps * (window_s + 0.1))[:, None]  # where a walk started
    outside = np.any((back < lo) | (back > hi), axis=1)
    motion.heading[outside] += np.float32(np.pi)  # walk the other way instead
    motion.start_xy[:] = end
    pose = pose_at(motion, np.stack((np.full(m, -window_s - 0.1), np.zeros(m)), axis=1))
    root = pose.root_xy  # (M, 2, 2) at the window's start and end
    shift = np.maximum(0.0, lo - root.min(axis=1)) - np.maximum(0.0, root.max(axis=1) - hi)
    motion.start_xy[:] = end + shift


def _separate(rng: np.random.Generator, motion: Motion, n_persons: int, size: npt.NDArray[
        np.float64]) -> None:
    """Redraw still persons closer than MIN_SEPARATION_M to an earlier person of the window."""
    if n_persons < 2:
        return
    xy = motion.start_xy.reshape(-1, n_persons, 2)  # view: (n, c, 2)
    still = (motion.speed_mps == 0).reshape(-1, n_persons)
    for _ in range(4):
        d = np.linalg.norm(xy[:, :, None] - xy[:, None], axis=-1)  # (n, c, c)
        close = (np.tril(d < MIN_SEPARATION_M, k=-1).any(axis=2)) & still  # (n, c)
        if not close.any():
            return
        w, p = np.nonzero(close)
        xy[w, p] = rng.uniform(0.5, 1.0, (len(w), 2)) * (size[w, :2] - 1.0) + 0.25


def _sample_people(
    rng: np.random.Generator, n: int, c: int, size_m: npt.NDArray[np.float64], window_s: float
) -> tuple[Motion, npt.NDArray[np.bool_]]:
    """People of n windows with c persons each (window-major), and who falls in-window."""
    choice = rng.choice(len(KIND_P), n * c, p=KIND_P)  # (n*c,)
    kinds = np.asarray(_KIND_OF, dtype=np.int8)[choice]
    motion = random_motion(rng, kinds)
    in_window = choice == 4
    t_fall = np.where(
        in_window,
        rng.uniform(0.0, 1.0, n * c) * (window_s + motion.fall_s - 0.15) - window_s - motion.fall_s
        + 0.05,
        -rng.uniform(2.0, 30.0, n * c),
    )
    motion.t_fall_s[:] = np.where(kinds == FALL, t_fall, 0.0)
    sizes = np.repeat(size_m, c, axis=0) if c else size_m[:0]
    _place_people(rng, motion, sizes, window_s)
    _separate(rng, motion, c, size_m)
    return motion, in_window


def generate_batch(
    split: str,
    seed: int,
    n_windows: int,
    *,
    max_persons: int = MAX_PERSONS,
    hardware: str | None = None,
    routers: int | None = None,
    window_samples: int = 64,
    rate_hz: float = 100.0,
    exact_receiver: bool = False,
    floor_maps: bool = False,
    calibrated_rad: float | None = None,
) -> WindowBatch:
    """Simulate ``n_windows`` space windows of ``split`` with ground truth (module docstring).

    ``calibrated_rad``: multi-antenna routers carry measured chain phases (``link_phase``,
    as ``invispose calibrate`` gives them), the true ones plus a Gaussian error of this
    std; None: no router is calibrated (NaN), positions rest on the static estimate.
    ``floor_maps``: also back-project every router onto the room grid (``floor_maps``
    field, ~4 ms per router window; zeros otherwise).

    Each space holds 1-4 routers (``ROUTER_COUNT_P``, or exactly ``routers``), each of a
    hardware profile drawn from the split's (or ``hardware`` for all), placed in the same
    room and seeing the same people over the same 0.64 s. ``exact_receiver`` runs the full
    receiver model and ``window_features`` on the hardware's own subcarriers instead of
    the fast path (slower; for validation).
    """
    family, allowed = split_family(split)
    if hardware is not None:
        hardware = get_profile(hardware).name  # aliases (nexmon43455c0) to profile names
        if hardware == HELD_OUT_HARDWARE and split in ("train", "val"):
            raise SimulationError(f"hardware {hardware!r} is held out of the {split} split")
        allowed = (hardware,)
    if not 0 <= max_persons <= MAX_PERSONS:
        raise SimulationError(f"max_persons must be 0..{MAX_PERSONS}, got {max_persons}")
    if routers is not None and not 1 <= routers <= MAX_ROUTERS:
        raise SimulationError(f"routers must be 1..{MAX_ROUTERS}, got {routers}")
    if n_windows < 0 or window_samples < 2 or rate_hz <= 0:
        raise SimulationError("n_windows >= 0, window_samples >= 2 and rate_hz > 0 required")
    rng = np.random.default_rng(np.random.SeedSequence([SPLITS[split], int(seed)]))
    # calibration errors from a stream of their own: the windows stay those of the seed
    cal_rng = (None if calibrated_rad is None
               else np.random.default_rng(np.random.SeedSequence([SPLITS[split], int(seed), 1])))
    n, n_t, window_s = n_windows, window_samples, (window_samples - 1) / rate_hz
    if routers is None:
        n_routers = rng.choice(MAX_ROUTERS, n, p=ROUTER_COUNT_P) + 1  # (n,)
    else:
        n_routers = np.full(n, routers)
    hw_index = rng.integers(0, len(allowed), (n, MAX_ROUTERS))  # (n, R) profile per router
    tx_draw = rng.random((n, MAX_ROUTERS))  # (n, R) picks each router's transmit count
    n_tx = np.zeros((n, MAX_ROUTERS), np.int64)  # (n, R)
    for h_i, name in enumerate(allowed):
        choices = np.asarray(tx_choices(get_profile(name)))
        pick = np.minimum((tx_draw * len(choices)).astype(int), len(choices) - 1)
        n_tx = np.where(hw_index == h_i, choices[pick], n_tx)
    n_rx = np.asarray([get_profile(a).n_rx for a in allowed])[hw_index]  # (n, R)
    links = np.where(np.arange(MAX_ROUTERS)[None] < n_routers[:, None], n_tx * n_rx, 0)
    offsets = np.cumsum(links, axis=1) - links  # (n, R) first link of each router
    n_links = int(links.sum(axis=1).max(initial=1))
    p = np.asarray(PERSON_COUNT_P[: max_persons + 1])
    counts = rng.choice(len(p), n, p=p / p.sum())  # (n,)
    layouts = layouts_for(rng, n, family)
    c_all = max_persons
    motion, _ = _sample_people(rng, n, c_all, layouts.size_m, window_s)  # (n * C,)
    present = (np.arange(c_all)[None, :] < counts[:, None]).reshape(-1)  # (n * C,)
    motion.start_xy[~present] = ABSENT_M  # empty slots: far away, physically silent
    motion.speed_mps[~present] = 0.0
    s_out = 32
    batch = WindowBatch(
        amplitude=np.zeros((n, n_links, n_t, s_out), np.float32),
        phase=np.zeros((n, n_links, n_t, s_out), np.float32),
        rel_phase=np.zeros((n, n_links, n_t, s_out), np.float32),
        dynamic=np.zeros((n, n_links, n_t, s_out), np.complex64),
        static=np.zeros((n, n_links, s_out), np.complex64),
        subcarrier_hz=np.zeros((n, n_links, s_out), np.float32),
        carrier_hz=np.zeros((n, n_links), np.float32),
        link_router=np.full((n, n_links), -1, np.int8),
        valid=np.ones((n, n_t), bool),
        link_mask=np.zeros((n, n_links), bool),
        tx_pos_m=np.zeros((n, n_links, 3), np.float32),
        rx_pos_m=np.zeros((n, n_links, 3), np.float32),
        room_size_m=layouts.size_m.astype(np.float32),
        keypoints_m=np.zeros((n, MAX_PERSONS, N_KEYPOINTS, 3), np.float32),
        person_mask=np.zeros((n, MAX_PERSONS), bool),
        activity=np.full((n, MAX_PERSONS), -1, np.int8),
        falling=np.zeros((n, MAX_PERSONS), bool),
        n_routers=n_routers.astype(np.int8),
        floor_maps=np.zeros((n, MAX_ROUTERS, MAP_CELLS, MAP_CELLS), np.float32),
        hardware=["+".join(allowed[int(h)] for h in hw_index[i, : n_routers[i]])
                  for i in range(n)],
    )
    for r in range(MAX_ROUTERS):
        placed = router_layouts(rng, layouts, family, r)
        for h_i, name in enumerate(allowed):
            rows_h = np.flatnonzero((hw_index[:, r] == h_i) & (n_routers > r))
            if not len(rows_h):
                continue
            profile = with_tx(get_profile(name), int(n_tx[rows_h, r].max()))
            # few windows: one group with empty person slots beats many tiny groups
            if len(rows_h) < GROUP_BY_COUNT_FROM:
                groups = [(rows_h, int(counts[rows_h].max(initial=0)))]
            else:
                groups = [(rows_h[counts[rows_h] == c], c) for c in range(max_persons + 1)]
            for rows, c in groups:
                per_window = profile.n_links * n_t * max(c * 16, 32)  # 10 parts + 6 bounces
                size = max(4, CHUNK_ELEMENTS // per_window)
                for start in range(0, len(rows), size):
                    idx = rows[start : start + size]
                    persons = (idx[:, None] * c_all + np.arange(c)[None]).reshape(-1)
                    _fill(rng, batch, idx, r, offsets[idx, r], profile, placed.take(idx),
                          motion.take(persons), counts[idx], c, n_tx[idx, r], n_t, rate_hz,
                          exact_receiver, cal_rng, calibrated_rad or 0.0)
    if floor_maps:
        for i in range(n):
            batch.floor_maps[i] = maps_of(views_from_batch(batch, i), batch.room_size_m[i])
    return batch


def _fill(
    rng: np.random.Generator, batch: WindowBatch, idx: npt.NDArray[np.intp], router: int,
    offset: npt.NDArray[np.int64], profile: HardwareProfile, layouts: LayoutArrays,
    motion: Motion, counts: npt.NDArray[np.int64], c: int, n_tx: npt.NDArray[np.int64],
    n_t: int, rate_hz: float, exact: bool, cal_rng: np.random.Generator | None = None,
    cal_error_rad: float = 0.0,
) -> None:
    """Simulate router ``router`` of spaces ``idx`` (one profile, c person slots each).

    Its links go to ``offset`` (n,) onwards in each space's link axis; router 0 also
    writes the ground truth at its window's end. With ``cal_rng``, multi-antenna routers
    carry their chain phases with a Gaussian error of ``cal_error_rad`` (``link_phase``).
    """
    n = len(idx)
    distance_m = np.linalg.norm(layouts.tx_centre_m - layouts.rx_centre_m, axis=1)  # (n,)
    snr = link_snr_db(rng, profile, distance_m)
    loss = rng.uniform(*profile.loss, n)
    sim = simulate_windows(
        rng, profile, WindowSet(layouts, motion, snr, loss, c, n_tx), window_samples=n_t,
        rate_hz=rate_hz, exact=exact,
    )
    n_used = sim.link_mask.sum(axis=1)  # (n,) links of each window's router
    for start, k in {(int(o), int(u)) for o, u in zip(offset, n_used, strict=True)}:
        sel = np.flatnonzero((offset == start) & (n_used == k))  # windows laid out alike
        rows, links = idx[sel], slice(start, start + k)
        batch.amplitude[rows, links] = sim.amplitude[sel, :k]
        batch.phase[rows, links] = sim.phase[sel, :k]
        batch.rel_phase[rows, links] = sim.rel_phase[sel, :k]
        batch.dynamic[rows, links] = sim.dynamic[sel, :k]
        batch.static[rows, links] = sim.static[sel, :k]
        batch.subcarrier_hz[rows, links] = sim.subcarrier_hz
        batch.carrier_hz[rows, links] = np.float32(profile.carrier_hz)
        batch.link_router[rows, links] = router
        batch.link_mask[rows, links] = True
        batch.tx_pos_m[rows, links] = sim.tx_m[sel, :k]
        batch.rx_pos_m[rows, links] = sim.rx_m[sel, :k]
        if cal_rng is not None and k > 1:
            error = cal_rng.normal(0.0, cal_error_rad, (len(sel), k)).astype(np.float32)
            measured = sim.chain_phase[sel, :k] + error
            batch.link_phase[rows, links] = measured - measured[:, :1]  # type: ignore[index]
    batch.valid[idx] &= sim.valid
    if router or c == 0:
        return
    t_end = np.repeat(sim.t_end_s, c)  # (n*c,)
    pose = pose_at(motion, t_end[:, None])
    kp = keypoints(pose, motion.height_m[:, None])[:, 0]  # (n*c, 17, 3)
    present = (np.arange(c)[None, :] < counts[:, None]).reshape(-1)  # (n*c,)
    kp[~present] = 0.0
    mask = present.reshape(n, c)
    batch.keypoints_m[idx, :c] = kp.reshape(n, c, N_KEYPOINTS, 3)
    batch.person_mask[idx, :c] = mask
    batch.activity[idx, :c] = np.where(mask, activity_at(motion, t_end).reshape(n, c), -1)
    falls = falling_during(motion, np.repeat(sim.t_start_s, c), t_end)
    batch.falling[idx, :c] = falls.reshape(n, c) & mask


# --- shards --------------------------------------------------------------------------

ARRAY_FIELDS = ("amplitude", "phase", "rel_phase", "dynamic", "static", "subcarrier_hz",
                "carrier_hz", "link_router", "valid", "link_mask", "tx_pos_m", "rx_pos_m",
                "room_size_m", "keypoints_m", "person_mask", "activity", "falling", "n_routers",
                "floor_maps", "link_phase")

LINK_FIELDS = ("amplitude", "phase", "rel_phase", "dynamic", "static", "subcarrier_hz",
               "carrier_hz", "link_router", "link_mask", "tx_pos_m", "rx_pos_m",
               "link_phase")  # axis 1 = L
#: what padded links hold (zero unless named)
PAD_VALUES = {"link_router": -1, "link_phase": np.nan}
#: fields that shards written before them lack (read back as the dataclass default)
OPTIONAL_FIELDS = frozenset({"link_phase"})


def save_batch(batch: WindowBatch, path: Path) -> None:
    """Write one batch as an npz file."""
    arrays = {name: getattr(batch, name) for name in ARRAY_FIELDS}
    np.savez(path, hardware=np.asarray(batch.hardware, dtype=str), **arrays)


def load_batch(path: Path) -> WindowBatch:
    """Read one npz shard."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in ARRAY_FIELDS
                      if name in data.files or name not in OPTIONAL_FIELDS}
            hardware = [str(h) for h in data["hardware"]]
    except (OSError, KeyError, ValueError) as exc:
        raise SimulationError(f"cannot read shard {path}: {exc}") from exc
    return WindowBatch(hardware=hardware, **arrays)


def concat_batches(batches: list[WindowBatch]) -> WindowBatch:
    """One batch from several, padding links to the largest link count."""
    if not batches:
        raise SimulationError("no batches to concatenate")
    n_links = max(b.amplitude.shape[1] for b in batches)
    fields: dict[str, list[np.ndarray]] = {name: [] for name in ARRAY_FIELDS}
    for b in batches:
        pad = n_links - b.amplitude.shape[1]
        for name in ARRAY_FIELDS:
            a = getattr(b, name)
            if pad and name in LINK_FIELDS:
                widths = [(0, 0)] * a.ndim
                widths[1] = (0, pad)
                a = np.pad(a, widths, constant_values=PAD_VALUES.get(name, 0))
            fields[name].append(a)
    out = {name: np.concatenate(parts, axis=0) for name, parts in fields.items()}
    return WindowBatch(hardware=[h for b in batches for h in b.hardware], **out)


def shard_plan(n_windows: int, shard_size: int) -> list[int]:
    """Window counts of the shards of a dataset."""
    if shard_size < 1:
        raise SimulationError(f"shard_size must be >= 1, got {shard_size}")
    full, rest = divmod(n_windows, shard_size)
    return [shard_size] * full + ([rest] if rest else [])


def iter_shards(
    split: str, seed: int, n_windows: int, shard_size: int = 4096, **options: object
) -> Iterator[WindowBatch]:
    """Shards of a dataset: shard k is generate_batch(split, seed * 100_003 + k, size)."""
    for k, size in enumerate(shard_plan(n_windows, shard_size)):
        yield generate_batch(split, int(seed) * 100_003 + k, size, **options)  # type: ignore[arg-type]


def write_shards(
    split: str,
    seed: int,
    n_windows: int,
    out_dir: str | Path,
    shard_size: int = 4096,
    *,
    progress: bool = False,
    **options: object,
) -> list[Path]:
    """Write a split as npz shards ``{split}-{seed}-{k:05d}.npz``; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plan = shard_plan(n_windows, shard_size)
    paths: list[Path] = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n_windows, unit="win", desc=f"sim {split}")
    for k, batch in enumerate(iter_shards(split, seed, n_windows, shard_size, **options)):
        path = out / f"{split}-{seed}-{k:05d}.npz"
        save_batch(batch, path)
        paths.append(path)
        if bar is not None:
            bar.update(len(batch))
        logger.debug("wrote shard %s (%d of %d)", path, k + 1, len(plan))
    if bar is not None:
        bar.close()
    return paths


def load_shards(directory: str | Path) -> WindowBatch:
    """All npz shards of a directory, in name order, as one batch."""
    paths = sorted(Path(directory).glob("*.npz"))
    if not paths:
        raise SimulationError(f"no .npz shards in {directory}")
    return concat_batches([load_batch(p) for p in paths])
