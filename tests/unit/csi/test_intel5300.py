"""Intel 5300 reader: exactness against the CSI Tool's MATLAB decodings, framing, fuzzing."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.io
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from invispose.csi.intel5300 import Intel5300Reader
from invispose.schemas import CsiFrame

REFERENCE_PAIRS = [
    ("example.dat", "intel5300_example.mat", 26),
    ("log.all_csi.6.7.6.dat", "intel5300_log.all_csi.6.7.6.mat", 29),
]
SUBCARRIERS_20 = [*range(-28, -1, 2), -1, *range(1, 28, 2), 28]
FUZZ = settings(max_examples=700, deadline=None, suppress_health_check=list(HealthCheck))


def split_records(data: bytes) -> list[bytes]:
    """Cut a capture into whole records by their big-endian length prefixes."""
    records = []
    pos = 0
    while pos < len(data):
        end = pos + 2 + int.from_bytes(data[pos : pos + 2], "big")
        records.append(data[pos:end])
        pos = end
    return records


def patch(record: bytes, at: int, value: bytes) -> bytes:
    """Overwrite bytes of a record (offsets count from the length prefix)."""
    return record[:at] + value + record[at + len(value) :]


def read_all(data: bytes, scaled: bool = False) -> tuple[list[CsiFrame], Intel5300Reader]:
    reader = Intel5300Reader("r1", scaled=scaled)
    frames = reader.feed(data, 1.0) + reader.flush()
    return frames, reader


def read_chunked(
    data: bytes, cuts: list[int], scaled: bool = False
) -> tuple[list[CsiFrame], Intel5300Reader]:
    reader = Intel5300Reader("r1", scaled=scaled)
    frames: list[CsiFrame] = []
    bounds = [0, *sorted(cuts), len(data)]
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        frames += reader.feed(data[lo:hi], 1.0)
    return frames + reader.flush(), reader


def summary(frames: list[CsiFrame], reader: Intel5300Reader) -> tuple[Any, ...]:
    """Everything a reader produced, in a form that compares with ==."""
    decoded = [
        (
            f.seq,
            f.device_time_s,
            f.csi.shape,
            f.csi.tobytes(),
            f.rssi_dbm,
            f.noise_dbm,
            f.agc_db,
            f.bandwidth_mhz,
        )
        for f in frames
    ]
    offsets = [e.offset for e in reader.errors]
    return decoded, reader.bad_records, reader.frames_decoded, offsets


def mat_field(record: Any, name: str) -> Any:
    return record[name][0, 0]


def scalar(record: Any, name: str) -> float:
    return float(np.asarray(mat_field(record, name)).ravel()[0])


@pytest.fixture(scope="module")
def example_records(shared_data: Path) -> list[bytes]:
    return split_records((shared_data / "intel5300" / "example.dat").read_bytes())


@pytest.mark.parametrize(("dat", "mat", "count"), REFERENCE_PAIRS)
def test_raw_csi_and_header_equal_reference(
    shared_data: Path, dat: str, mat: str, count: int
) -> None:
    frames, reader = read_all((shared_data / "intel5300" / dat).read_bytes())
    reference = scipy.io.loadmat(shared_data / "reference" / mat)["csi"][:, 0]
    assert len(frames) == len(reference) == count
    assert reader.bad_records == 0 and reader.frames_decoded == count
    for frame, record in zip(frames, reference, strict=True):
        n_tx, n_rx = int(scalar(record, "Ntx")), int(scalar(record, "Nrx"))
        expected = np.asarray(mat_field(record, "csi")).reshape(n_tx, n_rx, 30)
        assert frame.csi.dtype == np.complex64
        assert frame.shape == (n_tx, n_rx, 30)
        np.testing.assert_array_equal(frame.csi, expected)
        assert frame.seq == scalar(record, "bfee_count")
        assert frame.device_time_s * 1e6 == pytest.approx(scalar(record, "timestamp_low"), abs=1e-3)
        rssi = [scalar(record, k) for k in ("rssi_a", "rssi_b", "rssi_c")]
        rss = 10 * np.log10(sum(10 ** (r / 10) for r in rssi if r != 0)) - 44
        assert frame.rssi_dbm == pytest.approx(rss - scalar(record, "agc"), abs=1e-9)
        noise = scalar(record, "noise")
        assert frame.noise_dbm == (None if noise == -127 else noise)
        assert frame.agc_db == scalar(record, "agc")
        wide = int(scalar(record, "rate")) & 0x800
        assert frame.bandwidth_mhz == (40 if wide else 20)
        assert frame.subcarriers.tolist() == SUBCARRIERS_20
        assert (frame.format, frame.chipset, frame.router_id) == ("intel5300", "iwl5300", "r1")
        assert frame.arrival_time_s == 1.0


@pytest.mark.parametrize(("dat", "mat", "count"), REFERENCE_PAIRS)
def test_scaled_csi_matches_get_scaled_csi(
    shared_data: Path, dat: str, mat: str, count: int
) -> None:
    frames, _ = read_all((shared_data / "intel5300" / dat).read_bytes(), scaled=True)
    reference = scipy.io.loadmat(shared_data / "reference" / mat)["csi_scaled"][:, 0]
    assert len(frames) == count
    for frame, expected in zip(frames, reference, strict=True):
        expected = np.asarray(expected).reshape(frame.shape)
        np.testing.assert_allclose(frame.csi, expected, rtol=1e-6, atol=0)


def test_los_100_switches_between_two_and_three_receive_antennas(shared_data: Path) -> None:
    frames, reader = read_all((shared_data / "intel5300" / "los_100.dat").read_bytes())
    assert reader.bad_records == 0
    assert len(frames) == 1377
    assert Counter(f.shape for f in frames) == {(1, 3, 30): 1359, (1, 2, 30): 18}
    assert np.all(np.diff([f.seq for f in frames]) == 1)
    duration_s = frames[-1].device_time_s - frames[0].device_time_s
    assert 85 < duration_s < 95


def test_chunked_feeding_equals_one_feed(shared_data: Path, rng: np.random.Generator) -> None:
    records = split_records((shared_data / "intel5300" / "los_100.dat").read_bytes())
    head = b"".join(records[:200])
    data = head + b"\x00\x00\x01" + head[:5_000]  # a bad record and a truncated tail
    whole = summary(*read_all(data))
    for _ in range(5):
        cuts = rng.integers(0, len(data), size=int(rng.integers(1, 400))).tolist()
        assert summary(*read_chunked(data, cuts)) == whole
    one_byte = summary(*read_chunked(data[:3_000], list(range(1, 3_000))))
    assert one_byte == summary(*read_all(data[:3_000]))


def test_byte_by_byte_resynchronisation(example_records: list[bytes]) -> None:
    data = example_records[0] + b"\x00\x00\xbb\x01" + b"".join(example_records[1:4])
    whole = summary(*read_all(data))
    assert [seq for seq, *_ in whole[0]] == [5535, 5536, 5537, 5538]
    assert summary(*read_chunked(data, list(range(1, len(data))))) == whole


def test_other_codes_are_skipped_silently(example_records: list[bytes]) -> None:
    other = (9).to_bytes(2, "big") + b"\xc1" + bytes(range(8))
    frames, reader = read_all(example_records[0] + other + example_records[1])
    assert [f.seq for f in frames] == [5535, 5536]
    assert reader.bad_records == 0


def test_payload_length_mismatch_is_skipped_by_field_length(example_records: list[bytes]) -> None:
    bad = patch(example_records[1], 19, (371).to_bytes(2, "little"))
    data = example_records[0] + bad + example_records[2]
    frames, reader = read_all(data)
    assert [f.seq for f in frames] == [5535, 5537]
    assert reader.bad_records == 1
    assert reader.errors[0].offset == len(example_records[0])
    assert "payload length 371" in str(reader.errors[0])


def test_invalid_antenna_count_is_rejected(example_records: list[bytes]) -> None:
    bad = patch(example_records[1], 11, b"\x04")  # Nrx = 4
    frames, reader = read_all(example_records[0] + bad + example_records[2])
    assert [f.seq for f in frames] == [5535, 5537]
    assert reader.bad_records == 1


def test_impossible_field_length_resynchronises(example_records: list[bytes]) -> None:
    garbage = b"\x00\x00" + bytes(range(1, 200))  # field length 0, then unframed bytes
    data = example_records[0] + garbage + example_records[1] + example_records[2]
    frames, reader = read_all(data)
    assert [f.seq for f in frames] == [5535, 5536, 5537]
    assert reader.bad_records >= 1
    assert reader.errors[0].offset == len(example_records[0])


def test_garbage_at_end_of_stream_counts_once(example_records: list[bytes]) -> None:
    frames, reader = read_all(example_records[0] + b"\x00\x00\x01\x02\x03")
    assert len(frames) == 1
    assert reader.bad_records == 1


def test_oversized_beamforming_record_resynchronises(example_records: list[bytes]) -> None:
    garbage = (5000).to_bytes(2, "big") + b"\xbb" + bytes(40)
    frames, reader = read_all(garbage + example_records[3])
    assert [f.seq for f in frames] == [5538]
    assert reader.bad_records == 1 and reader.errors[0].offset == 0


def test_truncated_tail_counts_at_flush(example_records: list[bytes]) -> None:
    reader = Intel5300Reader()
    frames = reader.feed(example_records[0] + example_records[1][:100])
    assert len(frames) == 1 and reader.bad_records == 0
    assert reader.flush() == []
    assert reader.bad_records == 1
    assert reader.feed_datagram(example_records[2])[0].seq == 5537
    assert reader.bad_records == 1


def test_timestamp_wrap_is_unwrapped(example_records: list[bytes]) -> None:
    stamps = [2**32 - 300, 2**32 - 100, 50, 250]
    records = [
        patch(r, 3, ts.to_bytes(4, "little"))
        for r, ts in zip(example_records, stamps, strict=False)
    ]
    reader = Intel5300Reader()
    frames = reader.feed(b"".join(records[:2])) + reader.feed(b"".join(records[2:]))
    times_us = np.round(np.array([f.device_time_s for f in frames]) * 1e6)
    np.testing.assert_array_equal(np.diff(times_us), [200, 150, 200])


def test_40mhz_rate_flag_selects_40mhz_grouping(example_records: list[bytes]) -> None:
    rate = int.from_bytes(example_records[0][21:23], "little") | 0x800
    frames, _ = read_all(patch(example_records[0], 21, rate.to_bytes(2, "little")))
    assert frames[0].bandwidth_mhz == 40
    assert frames[0].subcarriers.tolist() == list(range(-58, 59, 4))


def test_zero_rssi_and_zero_csi_scale_to_zero(example_records: list[bytes]) -> None:
    silent = patch(example_records[0], 13, b"\x00\x00\x00")  # rssi_a/b/c
    blank = example_records[1][:23] + bytes(len(example_records[1]) - 23)
    frames, reader = read_all(silent + blank, scaled=True)
    assert reader.bad_records == 0
    assert frames[0].rssi_dbm is None
    assert not frames[0].csi.any() and not frames[1].csi.any()


@FUZZ
@given(data=st.binary(max_size=1500), cuts=st.lists(st.integers(0, 1500), max_size=20))
def test_fuzz_random_bytes(data: bytes, cuts: list[int]) -> None:
    frames, reader = read_all(data)
    assert reader.frames_decoded == len(frames)
    assert all(f.csi.shape[2] == 30 and 1 <= f.csi.shape[1] <= 3 for f in frames)
    chunked = read_chunked(data, [c for c in cuts if c <= len(data)])
    assert summary(*chunked) == summary(frames, reader)


@FUZZ
@given(
    picks=st.lists(st.integers(0, 25), min_size=1, max_size=6),
    payload_hits=st.lists(st.tuples(st.integers(0, 5), st.integers(23, 392), st.integers(0, 255))),
    header_hits=st.lists(st.integers(0, 5), max_size=3),
    cut=st.integers(0, 400),
)
def test_fuzz_mutated_records(
    example_records: list[bytes],
    picks: list[int],
    payload_hits: list[tuple[int, int, int]],
    header_hits: list[int],
    cut: int,
) -> None:
    records = [example_records[i] for i in picks]
    for which, at, value in payload_hits:  # payload bits are all valid CSI
        if which < len(records):
            records[which] = patch(records[which], at, bytes([value]))
    broken = {i for i in header_hits if i < len(records)}
    for i in broken:  # Nrx = 0 can never be decoded
        records[i] = patch(records[i], 11, b"\x00")
    data = b"".join(records)
    truncated = 0 < cut < len(records[-1])
    if truncated:
        data = data[: len(data) - cut]
    frames, reader = read_all(data)
    complete = len(records) - (1 if truncated else 0)
    expected_good = [i for i in range(complete) if i not in broken]
    assert len(frames) == len(expected_good)
    assert reader.bad_records == len(broken & set(range(complete))) + (1 if truncated else 0)
    for frame, i in zip(frames, expected_good, strict=True):
        assert frame.seq == int.from_bytes(records[i][7:9], "little")
    cuts = [len(data) // 3, len(data) // 2 + 1]
    assert summary(*read_chunked(data, cuts)) == summary(frames, reader)


@FUZZ
@given(code=st.integers(0, 255), body=st.binary(max_size=700), field_len=st.integers(0, 800))
def test_fuzz_length_framed_garbage_then_valid_record(
    example_records: list[bytes], code: int, body: bytes, field_len: int
) -> None:
    framed = (len(body) + 1).to_bytes(2, "big") + bytes([code]) + body
    garbage = [framed]
    if field_len == 0 or (code == 0xBB and not 21 <= field_len <= 573):
        # an impossible length: the reader must find the next record by its header
        garbage.append(field_len.to_bytes(2, "big") + bytes([code]) + body[:30])
    for bad in garbage:
        frames, _ = read_all(bad + example_records[4])
        assert frames and frames[-1].seq == 5539
        expected, _ = read_all(example_records[4])
        np.testing.assert_array_equal(frames[-1].csi, expected[0].csi)
