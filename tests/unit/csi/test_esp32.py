"""Esp32Reader: the real ESP32 captures, every dialect, chunking, clock wrap and fuzzing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from invispose.csi.esp32 import MAX_LINE_BYTES, Esp32Reader
from invispose.errors import CsiParseError
from invispose.schemas import CsiFrame

AMPLITUDE = 20
MAC = "AA:BB:CC:01:02:03"
# 20 MHz, no secondary channel: ESP-IDF stores bins for subcarriers 0..31, then -32..-1
BINS_20 = np.r_[0:32, -32:0]


def phase_of(k: np.ndarray, offset: float = 0.5) -> np.ndarray:
    """The test phase of subcarrier k (any smooth function works)."""
    return np.angle(np.exp(1j * (0.21 * k + offset)))


def buffer_for(bins: np.ndarray, offset: float = 0.5) -> list[int]:
    """(imag, real) int8 pairs of amplitude 20 and phase ``phase_of(bin)`` for ``bins``."""
    theta = phase_of(bins, offset)
    pairs = np.stack([np.round(AMPLITUDE * np.sin(theta)), np.round(AMPLITUDE * np.cos(theta))])
    return [int(v) for v in pairs.T.ravel()]


def make_line(
    dialect: str,
    values: list[int],
    *,
    ts_us: int = 1_000_000,
    seq: int = 7,
    phy: tuple[int, int, int, int] = (0, 0, 0, 0),  # secondary, sig_mode, cwb, stbc
    first_word: int = 0,
    length: int | None = None,
    unsigned: bool = False,
) -> str:
    """One CSI line as the named firmware prints it."""
    second, sig_mode, cwb, stbc = phy
    n = len(values) if length is None else length
    if unsigned:
        values = [v & 0xFF for v in values]
    # rssi .. rx_state of rx_ctrl
    rx = f"-61,11,{sig_mode},0,{cwb},1,1,0,{stbc},0,0,-93,0,6,{second},{ts_us},0,120,0"
    if dialect == "csi-tool":
        return f"CSI_DATA,PASSIVE,{MAC},{rx},0,0.000000,{n},[{' '.join(map(str, values))} ]"
    data = '"[' + ",".join(map(str, values)) + ']"'
    if dialect == "esp-csi":
        return f"CSI_DATA,{seq},{MAC},{rx},{n},{first_word},{data}"
    assert dialect == "short"
    return f"CSI_DATA,{seq},{MAC},-61,11,-93,12,30,6,{ts_us},120,0,{n},{first_word},{data}"


def decode(lines: list[str]) -> tuple[Esp32Reader, list[CsiFrame]]:
    reader = Esp32Reader("node")
    frames = reader.feed(("\n".join(lines) + "\n").encode(), arrival_time_s=5.0)
    return reader, frames + reader.flush()


def angle_error(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(np.angle(np.exp(1j * (a - b))))


# ------------------------------------------------------------------ real captures


def test_example_data_is_60_lltf_frames(shared_data: Path) -> None:
    reader = Esp32Reader("esp")
    raw = (shared_data / "esp32" / "example_data.csv").read_bytes()
    frames = reader.feed(raw, arrival_time_s=1.0) + reader.flush()
    assert (len(frames), reader.bad_records) == (60, 0)
    first = frames[0]
    assert first.shape == (1, 1, 64) and first.csi.dtype == np.complex64
    assert np.array_equal(first.subcarriers, np.arange(-32, 32))
    assert first.subcarriers.dtype == np.int16
    # len says 384 (HT20 + STBC) but ESP32-CSI-Tool printed only the 128 LLTF values
    assert (first.bandwidth_mhz, first.channel, first.rssi_dbm, first.noise_dbm) == (
        20,
        6,
        -77,
        -97,
    )
    assert (first.source_mac, first.chipset, first.format) == (
        "d0:6e:de:27:6b:63",
        "esp32",
        "esp32",
    )
    assert first.device_time_s == pytest.approx(2.504852)
    assert [f.seq for f in frames] == list(range(60))  # no sequence field: running count
    row = first.csi[0, 0]
    # values "18 38 97 0 -20 -1 ...": bins 0 and 1 are the invalid first word, bin 2 = -1 - 20j
    assert row[32] == 0 and row[33] == 0
    assert row[34] == np.complex64(-1 - 20j)
    guards = np.abs(first.subcarriers) > 26
    data = ~guards & (first.subcarriers != 0) & (first.subcarriers != 1)
    assert not np.any(row[guards]) and np.all(row[data] != 0)


def test_pitraffic_skips_the_truncated_line(shared_data: Path) -> None:
    reader = Esp32Reader("esp")
    raw = (shared_data / "esp32" / "example_100hz_pitraffic.csv").read_bytes()
    assert raw.count(b"CSI_DATA,") == 834
    frames = reader.feed(raw) + reader.flush()
    assert (len(frames), reader.bad_records, reader.frames_decoded) == (833, 1, 833)
    assert reader.errors[0].line == 19 and "127" in str(reader.errors[0])
    assert all(f.shape == (1, 1, 64) for f in frames)
    t_s = np.array([f.device_time_s for f in frames])
    assert np.all(np.diff(t_s) > 0)
    # named "100hz", but its device clock says ~63 packets/s (13.1 s for 834 lines); the
    # host column real_timestamp agrees
    rate_hz = (len(t_s) - 1) / (t_s[-1] - t_s[0])
    assert 60.0 < rate_hz < 67.0


# ------------------------------------------------------------------ dialects and phase


@pytest.mark.parametrize("dialect", ["csi-tool", "esp-csi", "short"])
@pytest.mark.parametrize("unsigned", [False, True])
def test_known_phase_decodes_in_every_dialect(dialect: str, unsigned: bool) -> None:
    line = make_line(dialect, buffer_for(BINS_20), unsigned=unsigned)
    reader, frames = decode(["I (1234) wifi: connected", line])
    assert reader.bad_records == 0 and len(frames) == 1
    frame = frames[0]
    assert np.array_equal(frame.subcarriers, np.arange(-32, 32))
    k = frame.subcarriers.astype(np.float64)
    h = frame.csi[0, 0]
    kept = k != 0
    if dialect == "csi-tool":  # no first_word flag: bins 0 and 1 are zeroed
        kept &= k != 1
        assert h[33] == 0
    assert h[32] == 0  # DC
    assert np.allclose(np.abs(h[kept]), AMPLITUDE, atol=0.75)
    assert np.all(angle_error(np.angle(h[kept]), phase_of(k[kept])) < 0.04)
    assert frame.seq == (0 if dialect == "csi-tool" else 7)
    assert frame.device_time_s == pytest.approx(1.0) and frame.arrival_time_s == 5.0


def test_first_word_flag_zeroes_the_first_two_bins() -> None:
    values = buffer_for(BINS_20)
    _, frames = decode([make_line("esp-csi", values, first_word=flag) for flag in (0, 1)])
    valid, invalid = (f.csi[0, 0] for f in frames)
    assert valid[33] != 0 and invalid[33] == 0  # subcarrier +1 is buffer bin 1
    assert np.array_equal(valid[34:], invalid[34:])


def test_ht20_emits_the_ht_ltf() -> None:
    lltf, ht_ltf = buffer_for(BINS_20, offset=2.0), buffer_for(BINS_20, offset=-1.0)
    for phy, extra in (((0, 1, 0, 0), []), ((0, 1, 0, 1), buffer_for(BINS_20, offset=0.0))):
        reader, frames = decode([make_line("esp-csi", lltf + ht_ltf + extra, phy=phy)])
        assert reader.bad_records == 0
        frame = frames[0]
        k = frame.subcarriers.astype(np.float64)
        used = (np.abs(k) <= 28) & (k != 0)
        assert frame.bandwidth_mhz == 20 and frame.shape == (1, 1, 64)
        assert np.all(angle_error(np.angle(frame.csi[0, 0, used]), phase_of(k[used], -1.0)) < 0.04)


def test_ht40_and_secondary_channel_layouts() -> None:
    low = np.arange(0, 64)  # LLTF with the secondary channel below: bins 0..63
    ht40 = np.r_[0:64, -64:0]
    line40 = make_line("esp-csi", buffer_for(low, 3.0) + buffer_for(ht40), phy=(2, 1, 1, 0))
    line20 = make_line("esp-csi", buffer_for(low), phy=(2, 0, 0, 0))
    above20 = make_line("esp-csi", buffer_for(np.arange(-64, 0)), phy=(1, 0, 0, 0))
    reader, (f40, f20, fa) = decode([line40, line20, above20])
    assert reader.bad_records == 0
    assert f40.bandwidth_mhz == 40 and np.array_equal(f40.subcarriers, np.arange(-64, 64))
    k40 = f40.subcarriers.astype(np.float64)
    assert np.all(angle_error(np.angle(f40.csi[0, 0, k40 != 0]), phase_of(k40[k40 != 0])) < 0.04)
    # 20 MHz packets on a 40 MHz channel: indices relative to their own channel centre
    for frame, centre_bin in ((f20, 32), (fa, -32)):
        assert frame.bandwidth_mhz == 20 and np.array_equal(frame.subcarriers, np.arange(-32, 32))
        bins = frame.subcarriers.astype(np.float64) + centre_bin
        kept = frame.subcarriers != 0
        got = np.angle(frame.csi[0, 0, kept])
        assert np.all(angle_error(got, phase_of(bins[kept])) < 0.04)


def test_header_line_selects_columns() -> None:
    header = "type,seq,mac,rssi,rate,noise_floor,fft_gain,agc_gain,channel,local_timestamp,"
    header += "sig_len,rx_state,len,first_word,data"
    line = make_line("short", buffer_for(BINS_20), seq=41, ts_us=2_500_000)
    reader, frames = decode([header, line])
    assert reader.bad_records == 0
    assert (frames[0].seq, frames[0].rssi_dbm, frames[0].noise_dbm) == (41, -61, -93)
    assert frames[0].device_time_s == pytest.approx(2.5)


# ------------------------------------------------------------------ bad lines, streaming


@pytest.mark.parametrize(
    "bad",
    [
        make_line("esp-csi", buffer_for(BINS_20), length=130),  # len disagrees
        make_line("esp-csi", buffer_for(BINS_20))[:-30],  # truncated: no closing bracket
        make_line("esp-csi", buffer_for(BINS_20)).replace('"[', '"[x', 1),  # not a number
        make_line("esp-csi", [300] + buffer_for(BINS_20)[1:]),  # beyond 0..255
        make_line("esp-csi", buffer_for(BINS_20)[:126], length=126),  # no such layout
        "CSI_DATA,1,2,3,[1 2 3 4]",  # unknown field count
        "CSI_DATA,garbage",
    ],
)
def test_bad_lines_are_counted_and_skipped(bad: str) -> None:
    good = make_line("esp-csi", buffer_for(BINS_20), seq=9)
    reader, frames = decode([good, bad, "I (99) wifi: noise", good])
    assert [f.seq for f in frames] == [9, 9]
    assert reader.bad_records == 1 and isinstance(reader.errors[0], CsiParseError)
    assert reader.errors[0].line == 2


def test_chunked_feeding_matches_one_feed(shared_data: Path, rng: np.random.Generator) -> None:
    raw = (shared_data / "esp32" / "example_100hz_pitraffic.csv").read_bytes()
    raw = raw.replace(b"\n", b"\nI (55) wifi: log line\n", 3)  # log lines between records
    whole = Esp32Reader("a")
    expected = whole.feed(raw, 1.0) + whole.flush()
    cuts = np.sort(rng.choice(np.arange(1, len(raw)), size=400, replace=False))
    chunked = Esp32Reader("a")
    got: list[CsiFrame] = []
    for piece in np.split(np.frombuffer(raw, dtype=np.uint8), cuts):
        got += chunked.feed(piece.tobytes(), 1.0)
    got += chunked.flush()
    assert len(got) == len(expected) == 833 and chunked.bad_records == whole.bad_records == 1
    for a, b in zip(got, expected, strict=True):
        assert (a.seq, a.device_time_s, a.rssi_dbm) == (b.seq, b.device_time_s, b.rssi_dbm)
        assert np.array_equal(a.csi, b.csi)


def test_local_timestamp_wrap_is_unwrapped() -> None:
    stamps = [4_294_960_000, 4_294_967_000, 5_000, 12_000, 4_000_000]
    lines = [make_line("esp-csi", buffer_for(BINS_20), ts_us=ts) for ts in stamps]
    _, frames = decode(lines)
    t_s = [f.device_time_s for f in frames]
    wrap_s = 2**32 * 1e-6
    assert t_s == pytest.approx([4294.96, 4294.967, wrap_s + 0.005, wrap_s + 0.012, wrap_s + 4.0])


def test_datagram_line_and_flush_entry_points() -> None:
    line = make_line("esp-csi", buffer_for(BINS_20), seq=3)
    reader = Esp32Reader("node")
    assert reader.feed(line[:50].encode()) == []  # partial line waits in the stream
    datagram = f"{line}\n{line}".encode()  # whole lines, the last without newline
    assert [f.seq for f in reader.feed_datagram(datagram, 2.0)] == [3, 3]
    assert reader.feed(line[50:].encode() + b"\n")[0].seq == 3  # stream tail untouched
    frame = reader.feed_line(line, 4.0)
    assert frame is not None and frame.arrival_time_s == 4.0
    assert reader.feed_line("I (1) boot: hello") is None
    assert reader.feed(line.encode()) == []  # no newline yet
    assert [f.seq for f in reader.flush()] == [3]
    reader.feed(line[:80].encode())
    assert reader.flush() == [] and reader.bad_records == 1  # partial record at the end
    assert reader.frames_decoded == 5


def test_overlong_partial_lines_are_bounded() -> None:
    reader = Esp32Reader("node")
    good = make_line("esp-csi", buffer_for(BINS_20), seq=5).encode()
    noise = b"x" * (MAX_LINE_BYTES + 10)
    assert reader.feed(noise + good[:40]) == []  # keeps only the record start
    assert [f.seq for f in reader.feed(good[40:] + b"\n")] == [5]
    assert reader.feed(noise) == [] and reader.bad_records == 0  # not CSI: dropped silently
    assert reader.feed(b"CSI_DATA," + b"1 " * MAX_LINE_BYTES) == []  # too long: counted
    assert [f.seq for f in reader.feed(b"1 2]\n" + good + b"\n")] == [5]
    assert reader.bad_records == 1


# ------------------------------------------------------------------ fuzzing

_VALID = make_line("esp-csi", buffer_for(BINS_20), seq=123)
_SEEDS = [
    make_line("csi-tool", buffer_for(BINS_20)).encode(),
    make_line("esp-csi", buffer_for(BINS_20)).encode(),
    make_line("short", buffer_for(BINS_20), unsigned=True).encode(),
    make_line("esp-csi", buffer_for(np.r_[0:64, 0:64, -64:0]), phy=(2, 1, 1, 0)).encode(),
]


def _csi_line_count(data: bytes) -> int:
    """Lines the reader must turn into exactly one frame or one bad record."""
    return sum(b"CSI_DATA," in line for line in data.split(b"\n"))


def _feed_all(reader: Esp32Reader, data: bytes, cuts: list[int]) -> list[CsiFrame]:
    frames: list[CsiFrame] = []
    bounds = [0, *sorted(c % (len(data) + 1) for c in cuts), len(data)]
    try:
        for lo, hi in zip(bounds, bounds[1:], strict=False):
            frames += reader.feed(data[lo:hi])
        frames += reader.flush()
    except CsiParseError:
        pass  # allowed by the contract (the ESP32 reader does not need it)
    return frames


@settings(max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck))
@given(garbage=st.binary(max_size=600), newline=st.booleans())
def test_fuzz_garbage_then_resync(garbage: bytes, newline: bool) -> None:
    assume(b",len," not in garbage)  # a header would (rightly) re-map the columns
    reader = Esp32Reader("fuzz")
    data = garbage + (b"\n" if newline else b"") + _VALID.encode() + b"\n"
    frames = _feed_all(reader, data, [])
    assert frames and frames[-1].seq == 123
    assert np.allclose(np.abs(frames[-1].csi[0, 0, 34:58]), AMPLITUDE, atol=0.75)
    assert len(frames) + reader.bad_records == _csi_line_count(data)


_mutation = st.tuples(
    st.sampled_from(["replace", "delete", "insert", "truncate"]),
    st.integers(0, 10_000),
    st.binary(min_size=1, max_size=4),
)


@settings(max_examples=1200, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    picks=st.lists(st.integers(0, len(_SEEDS) - 1), min_size=1, max_size=4),
    mutations=st.lists(_mutation, max_size=6),
    cuts=st.lists(st.integers(0, 10_000), max_size=5),
)
def test_fuzz_mutated_lines(
    picks: list[int], mutations: list[tuple[str, int, bytes]], cuts: list[int]
) -> None:
    data = bytearray(b"\n".join(_SEEDS[i] for i in picks) + b"\n")
    for kind, pos, blob in mutations:
        at = pos % (len(data) + 1)
        if kind == "replace":
            data[at : at + len(blob)] = blob
        elif kind == "delete":
            del data[at : at + len(blob)]
        elif kind == "insert":
            data[at:at] = blob
        else:
            del data[at:]
    reader = Esp32Reader("fuzz")
    frames = _feed_all(reader, bytes(data), cuts)
    assert len(frames) + reader.bad_records == _csi_line_count(bytes(data))
    assert reader.bad_records == len(reader.errors) or len(reader.errors) == reader.errors.maxlen
    for frame in frames:
        assert frame.csi.dtype == np.complex64 and frame.csi.shape[-1] == frame.subcarriers.size
        assert np.all(np.diff(frame.subcarriers) > 0)
