"""Nexmon CSI: exact decoding against nexmon_csi's MATLAB output, packed floats, grouping."""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from invispose.csi.nexmon import NexmonReader, unpack_float
from invispose.csi.pcap import PcapStream, udp_payload
from invispose.errors import ConfigError, CsiParseError
from invispose.schemas import CsiFrame

# --- helpers ---------------------------------------------------------------------------


def read(data: bytes, chunks: list[int] | None = None, **options: object) -> list[CsiFrame]:
    reader = NexmonReader("r1", **options)  # type: ignore[arg-type]
    return decode(reader, data, chunks)


def decode(reader: NexmonReader, data: bytes, chunks: list[int] | None = None) -> list[CsiFrame]:
    frames: list[CsiFrame] = []
    start = 0
    for stop in [*(chunks or []), len(data)]:
        frames += reader.feed(data[start:stop])
        start = stop
    return frames + reader.flush()


def payloads(data: bytes) -> list[tuple[bytes, float, int]]:
    """(UDP payload, record time, captured length) of every record of a pcap."""
    stream = PcapStream()
    out = []
    for rec in stream.feed(data) + stream.flush():
        assert not isinstance(rec, CsiParseError)
        out.append((udp_payload(rec.data, 1).payload, rec.timestamp_s, len(rec.data)))
    return out


def scalar_unpack_float(words: list[int], nman: int, nexp: int, nbits: int = 10) -> np.ndarray:
    """A plain, one-value-at-a-time transcription of nexmon_csi's unpack_float."""
    mag_mask, exp_mask, half = (1 << (nman - 1)) - 1, (1 << nexp) - 1, 1 << (nexp - 1)
    parts, exps, maxbit = [], [], -half
    for h in words:
        e = h & exp_mask
        e = e - 2 * half if e >= half else e
        re, im = (h >> (nexp + nman)) & mag_mask, (h >> nexp) & mag_mask
        if re | im:
            maxbit = max(maxbit, e + (re | im).bit_length() - 1)
        exps.append(e)
        parts.append([(re, h >> (nexp + 2 * nman - 1) & 1), (im, h >> (nexp + nman - 1) & 1)])
    out = []
    for e0, pair in zip(exps, parts, strict=True):
        row = []
        for v, negative in pair:
            e = e0 + nbits - maxbit
            v = 0 if e < -nman else (v >> -e if e < 0 else v << e)
            row.append(-v if negative else v)
        out.append(row)
    return np.array(out, dtype=np.int64).reshape(-1, 2)


def word(re: int, im: int, exp: int, nman: int = 12, nexp: int = 6) -> int:
    """Pack signed mantissas and an exponent the way bcm4358/bcm4366c0 firmware does."""

    def field(v: int) -> int:
        return (abs(v) | ((1 << (nman - 1)) if v < 0 else 0)) & ((1 << nman) - 1)

    return (field(re) << (nexp + nman)) | (field(im) << nexp) | (exp & ((1 << nexp) - 1))


@pytest.fixture(scope="module")
def pcap_43455c0(shared_data: Path) -> bytes:
    return (shared_data / "nexmon" / "example_43455c0.pcap").read_bytes()


@pytest.fixture(scope="module")
def pcap_4358(shared_data: Path) -> bytes:
    return (shared_data / "nexmon" / "example_4358.pcap").read_bytes()


@pytest.fixture(scope="module")
def pcap_4366c0(shared_data: Path) -> bytes:
    return (shared_data / "nexmon" / "example_4366c0.pcap").read_bytes()


# --- int16 chips: exact against the reference decoding ----------------------------------


def test_43455c0_matches_the_matlab_decoding_exactly(
    pcap_43455c0: bytes, shared_data: Path
) -> None:
    frames = read(pcap_43455c0)
    assert len(frames) == 566
    ref = scipy.io.loadmat(str(shared_data / "reference" / "nexmon_example_43455c0.mat"))
    csi_buff = ref["csi_buff"]  # (566, 256) complex, FFT order
    # the MATLAB script skips the 18 records that carry 4 bytes of Ethernet padding
    # (its size check uses the record length), leaving its last 18 rows zero
    plain = [i for i, (_, _, size) in enumerate(payloads(pcap_43455c0)) if size == 1084]
    assert len(plain) == 548
    assert not np.any(csi_buff[548:])
    ours = np.stack([np.fft.ifftshift(frames[i].csi[0, 0]) for i in plain])  # FFT order
    np.testing.assert_array_equal(ours, csi_buff[:548])


def test_padded_records_decode_like_their_unpadded_payload(pcap_43455c0: bytes) -> None:
    frames = read(pcap_43455c0)
    for i, (payload, _, size) in enumerate(payloads(pcap_43455c0)):
        if size != 1084:
            assert len(payload) == 1042
            (frame,) = read(payload, container="udp")
            np.testing.assert_array_equal(frames[i].csi, frame.csi)


def test_43455c0_frame_fields(pcap_43455c0: bytes) -> None:
    frames = read(pcap_43455c0)
    first = frames[0]
    assert first.shape == (1, 1, 256)
    assert first.csi.dtype == np.complex64
    assert first.subcarriers.dtype == np.int16
    np.testing.assert_array_equal(first.subcarriers, np.arange(-128, 128))
    assert first.csi[0, 0, 128] == 14373  # FFT bin 0 (DC) sits at subcarrier 0
    assert (first.format, first.chipset, first.router_id) == ("nexmon", "bcm43455c0", "r1")
    assert (first.bandwidth_mhz, first.channel, first.seq) == (80, 42, 0)
    assert first.source_mac == "98:de:d0:48:92:66"
    assert first.device_time_s == pytest.approx(1600957690.355509)
    assert first.arrival_time_s == first.device_time_s
    assert {f.rssi_dbm for f in frames} == {-58.0, -59.0}
    times = [f.device_time_s for f in frames]
    assert times == sorted(times)


def test_arrival_time_argument_wins_over_the_record_time(pcap_43455c0: bytes) -> None:
    reader = NexmonReader()
    frames = reader.feed(pcap_43455c0, arrival_time_s=42.0) + reader.flush()
    assert frames[0].arrival_time_s == 42.0
    assert frames[0].device_time_s == pytest.approx(1600957690.355509)


def test_random_chunking_equals_one_feed(pcap_43455c0: bytes, pcap_4358: bytes) -> None:
    rng = np.random.default_rng(11)
    for data, chipset in ((pcap_43455c0, None), (pcap_4358, "bcm4358")):
        whole = read(data, chipset=chipset)
        for _ in range(3):
            cuts = sorted(int(c) for c in rng.integers(0, len(data), size=25))
            chunked = read(data, cuts, chipset=chipset)
            assert len(chunked) == len(whole)
            for a, b in zip(whole, chunked, strict=True):
                np.testing.assert_array_equal(a.csi, b.csi)
                assert (a.seq, a.device_time_s, a.rssi_dbm) == (b.seq, b.device_time_s, b.rssi_dbm)


# --- packed-float chips ------------------------------------------------------------------


def test_unpack_float_on_hand_computed_words() -> None:
    # 4 x 2^2 = 16 is the peak: its top bit (4) lands on bit 10, a scale of 2^6
    words = [word(4, 0, 2), word(1, -1, -1), word(-3, 5, 0), word(5, 0, -8), word(1, 1, -32)]
    got = unpack_float(np.array(words, dtype=np.uint32), nman=12, nexp=6)
    expected = [
        [4 << 8, 0],  # 16 * 64
        [32, -32],  # 0.5 * 64
        [-192, 320],  # -3 * 64, 5 * 64
        [1, 0],  # 5/256 * 64 = 1.25, truncated
        [0, 0],  # 2^-32 * 64: shifted below the cut-off
    ]
    np.testing.assert_array_equal(got, expected)
    assert got.dtype == np.int32


def test_unpack_float_4358_layout_and_edge_cases() -> None:
    # 9-bit mantissas (8 magnitude bits), 5-bit exponent: 255 (top bit 7) is the peak,
    # so the packet is scaled by 2^3; the second word's exponent 3 adds to that
    words = np.array([word(255, -1, 0, 9, 5), word(-2, 3, 3, 9, 5)], dtype=np.uint32)
    got = unpack_float(words, nman=9, nexp=5)
    np.testing.assert_array_equal(got, [[255 << 3, -1 << 3], [-2 << 6, 3 << 6]])
    assert not unpack_float(np.zeros(8, np.uint32), nman=12, nexp=6).any()
    assert unpack_float(np.zeros(0, np.uint32), nman=12, nexp=6).shape == (0, 2)
    with pytest.raises(ValueError):
        unpack_float(words, nman=20, nexp=6)


@pytest.mark.parametrize(("nman", "nexp"), [(12, 6), (9, 5)])
def test_unpack_float_equals_the_scalar_algorithm(nman: int, nexp: int) -> None:
    rng = np.random.default_rng(5)
    for trial in range(40):
        n = int(rng.integers(1, 300))
        words = rng.integers(0, 1 << (nexp + 2 * nman), size=n, dtype=np.uint32)
        if trial % 2:  # many small mantissas and zero pairs, as in null subcarriers
            words &= np.uint32(~(((1 << (nman - 4)) - 1) << (nexp + 3)) & 0xFFFFFFFF)
        expected = scalar_unpack_float([int(w) for w in words], nman, nexp)
        np.testing.assert_array_equal(unpack_float(words, nman=nman, nexp=nexp), expected)


def test_4358_needs_the_chipset_option(pcap_4358: bytes) -> None:
    reader = NexmonReader()
    assert decode(reader, pcap_4358) == []
    assert reader.bad_records == 4
    assert all("0xdead" in str(e) and "chipset" in str(e) for e in reader.errors)


def test_4358_groups_cores_and_streams(pcap_4358: bytes) -> None:
    (frame,) = read(pcap_4358, chipset="bcm4358")
    assert frame.shape == (2, 2, 256)  # 2 spatial streams x 2 cores
    assert (frame.chipset, frame.channel, frame.bandwidth_mhz) == ("bcm4358", 155, 80)
    assert frame.seq == 0xB0
    assert frame.rssi_dbm is None  # older firmware layout: no RSSI
    assert frame.source_mac == "00:12:34:56:78:9b"
    assert np.isfinite(frame.csi).all()
    mag = np.abs(frame.csi)  # (2, 2, 256)
    k = frame.subcarriers.astype(int)
    data = (np.abs(k) >= 2) & (np.abs(k) <= 122)  # VHT80 data and pilot subcarriers
    nulls = (np.abs(k) <= 1) | (np.abs(k) >= 123)  # DC and guard bands
    for link in mag.reshape(4, 256):
        assert link[nulls].max() < 0.1 * np.median(link[data])
        assert np.median(link[data]) > 50
    # per packet scaling: each payload's largest component has its top bit on bit 10
    parts = np.abs(np.stack([frame.csi.real, frame.csi.imag]))
    peaks = parts.max(axis=(0, 3))  # (2, 2)
    assert ((peaks >= 1024) & (peaks < 2048)).all()


def test_4366c0_structure(pcap_4366c0: bytes) -> None:
    frames = read(pcap_4366c0)
    assert len(frames) == 293
    assert {f.shape for f in frames} == {(1, 1, 256)}
    assert {(f.chipset, f.channel, f.bandwidth_mhz) for f in frames} == {("bcm4366c0", 106, 80)}
    seqs = [f.seq for f in frames]
    assert seqs[:3] == [0xF260, 0xF270, 0xF280]
    mag = np.abs(np.stack([f.csi[0, 0] for f in frames]))  # (293, 256)
    assert np.isfinite(mag).all()
    assert (mag.max(axis=1) >= 1024).all() and (mag.max(axis=1) < 2048 * np.sqrt(2)).all()
    # a 20 MHz (52-subcarrier) frame in the lowest 20 MHz of channel 106/80: centre -96
    profile = mag.mean(axis=0)
    k = np.arange(-128, 128)
    offset = np.abs(k + 96)
    occupied = (offset >= 1) & (offset <= 26)
    assert profile[k == -96][0] < 0.05 * np.median(profile[occupied])
    assert profile[k >= -64].max() < 0.1 * np.median(profile[occupied])


# --- UDP container and grouping ----------------------------------------------------------


def test_udp_container_matches_pcap_and_emits_without_waiting(pcap_43455c0: bytes) -> None:
    from_file = read(pcap_43455c0)
    reader = NexmonReader("live", container="udp")
    live: list[CsiFrame] = []
    for i, (payload, _, _) in enumerate(payloads(pcap_43455c0)[:50]):
        got = reader.feed_datagram(payload, arrival_time_s=1000.0 + i)
        # the first payload waits for the next one; then each completes its own frame
        assert len(got) == (0 if i == 0 else (2 if i == 1 else 1))
        live += got
    live += reader.flush()
    assert len(live) == 50
    for a, b in zip(from_file, live, strict=False):
        np.testing.assert_array_equal(a.csi, b.csi)
    assert live[3].arrival_time_s == live[3].device_time_s == 1003.0


def test_udp_container_groups_a_received_frame_and_learns_its_size(pcap_4358: bytes) -> None:
    reader = NexmonReader(chipset="bcm4358", container="udp")
    parts = [p for p, _, _ in payloads(pcap_4358)]
    assert [len(reader.feed_datagram(p, 1.0)) for p in parts] == [0, 0, 0, 0]
    (first,) = reader.flush()
    # the second time the complete set of cores/streams is known: no wait for a next frame
    assert [len(reader.feed_datagram(p, 2.0)) for p in parts] == [0, 0, 0, 1]
    assert reader.incomplete_frames == 0
    assert first.shape == (2, 2, 256)


def test_a_lost_payload_leaves_zeros(pcap_4358: bytes) -> None:
    reader = NexmonReader(chipset="bcm4358", container="udp")
    parts = [p for p, _, _ in payloads(pcap_4358)]
    frames = [f for p in parts[:3] for f in reader.feed(p)] + reader.flush()
    (frame,) = frames
    assert frame.shape == (2, 2, 256)
    assert reader.incomplete_frames == 1
    assert not frame.csi[1, 1].any() and frame.csi[0, 0].any()  # core 1 / stream 1 was lost


def test_current_and_older_firmware_layouts_agree(pcap_4358: bytes) -> None:
    old = payloads(pcap_4358)[0][0]
    assert old[:4] == b"\x11" * 4
    new = b"\x11\x11" + bytes([256 - 61, 0x88]) + old[4:]
    (a,) = read(old, container="udp", chipset="bcm4358")
    (b,) = read(new, container="udp", chipset="bcm4358")
    np.testing.assert_array_equal(a.csi, b.csi)
    assert (a.rssi_dbm, b.rssi_dbm) == (None, -61.0)
    assert a.source_mac == b.source_mac


@pytest.mark.parametrize(
    ("mutate", "message", "offset"),
    [
        (lambda p: p[:10], "too short", 0),
        (lambda p: b"\x22\x22" + p[2:], "magic", 0),
        (lambda p: p[:-4], "CSI of 1020 bytes", 18),
        (lambda p: p + b"\x00", "CSI of 1025 bytes", 18),
        (lambda p: p[:16] + b"\x42\x00" + p[18:], "chip version 0x0042", 16),
    ],
)
def test_bad_payloads_are_rejected_and_the_next_one_decodes(
    pcap_43455c0: bytes, mutate: Callable[[bytes], bytes], message: str, offset: int
) -> None:
    good = payloads(pcap_43455c0)[0][0]
    reader = NexmonReader(container="udp")
    assert reader.feed_datagram(mutate(good)) == []
    assert reader.bad_records == 1
    (error,) = reader.errors
    assert message in str(error) and error.offset == offset
    reader.feed_datagram(good)
    assert len(reader.flush()) == 1


def test_bad_options_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="chipset"):
        NexmonReader(chipset="bcm9999")
    with pytest.raises(ConfigError, match="container"):
        NexmonReader(container="pcapng")


def test_non_pcap_stream_raises(pcap_43455c0: bytes) -> None:
    with pytest.raises(CsiParseError, match="not a pcap"):
        NexmonReader().feed(b"type,role,mac\n" + pcap_43455c0[:100])


def test_feed_datagram_in_pcap_container_reads_one_whole_file(pcap_4358: bytes) -> None:
    reader = NexmonReader(chipset="bcm4358")
    assert len(reader.feed_datagram(pcap_4358)) == 1
    assert len(reader.feed_datagram(pcap_4358)) == 1  # a new file: header expected again


# --- fuzzing -----------------------------------------------------------------------------

FUZZ = settings(
    max_examples=700,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
FUZZ_SLOW = settings(FUZZ, max_examples=400)


@pytest.fixture(scope="module")
def small_pcap(pcap_43455c0: bytes) -> bytes:
    offsets: list[int] = []
    at = 24
    while len(offsets) < 8:
        offsets.append(at)
        at += 16 + struct.unpack_from("<I", pcap_43455c0, at + 8)[0]
    return pcap_43455c0[:at]  # global header + 8 records


@FUZZ
@given(st.lists(st.binary(max_size=600), max_size=6))
def test_fuzz_udp_random_datagrams(datagrams: list[bytes]) -> None:
    reader = NexmonReader(container="udp")
    for d in datagrams:
        reader.feed_datagram(d)
    reader.flush()
    assert reader.frames_decoded == 0
    assert reader.bad_records == len(datagrams)


@pytest.fixture(scope="module")
def good_4358(pcap_4358: bytes) -> tuple[bytes, np.ndarray]:
    """One bcm4358 payload and its decoded CSI."""
    payload = payloads(pcap_4358)[0][0]
    return payload, read(payload, container="udp", chipset="bcm4358")[0].csi[0, 0]


@FUZZ
@given(data=st.data())
def test_fuzz_udp_mutated_payloads_then_a_good_one(
    good_4358: tuple[bytes, np.ndarray], data: st.DataObject
) -> None:
    good, expected = good_4358
    bad = bytearray(good[: data.draw(st.integers(0, len(good)))])
    for _ in range(data.draw(st.integers(0, 4))):
        if bad:
            bad[data.draw(st.integers(0, len(bad) - 1))] = data.draw(st.integers(0, 255))
    chipset = data.draw(st.sampled_from([None, "bcm4358", "bcm4366c0", "bcm4339"]))
    reader = NexmonReader(chipset=chipset, container="udp")
    reader.feed_datagram(bytes(bad))
    reader.flush()
    assert reader.bad_records + reader.frames_decoded == 1
    reader = NexmonReader(chipset="bcm4358", container="udp")
    frames = reader.feed_datagram(bytes(bad)) + reader.feed_datagram(good) + reader.flush()
    assert frames and np.isfinite(frames[-1].csi).all()
    # the good payload is a link of the last frame (a decodable mutant may share its frame)
    links = frames[-1].csi.reshape(-1, frames[-1].shape[2])
    assert any(np.array_equal(expected, link) for link in links)


@FUZZ
@given(data=st.data())
def test_fuzz_pcap_mutations_and_truncation(small_pcap: bytes, data: st.DataObject) -> None:
    raw = bytearray(small_pcap)
    for _ in range(data.draw(st.integers(0, 6))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    raw = raw[: data.draw(st.integers(0, len(raw)))]
    cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=4)))
    reader = NexmonReader()
    try:
        frames = decode(reader, bytes(raw), cuts)
    except CsiParseError:
        assert bytes(raw[:24]) != small_pcap[: min(24, len(raw))]  # a mutated global header
        return
    assert len(frames) == reader.frames_decoded <= 8
    if raw == small_pcap[: len(raw)]:  # truncated only: every whole record decodes
        ends_cleanly = len(raw) == 0 or (len(raw) >= 24 and (len(raw) - 24) % 1100 == 0)
        assert reader.frames_decoded == max(0, len(raw) - 24) // 1100
        assert reader.bad_records == (0 if ends_cleanly else 1)
    for f in frames:
        assert f.shape == (1, 1, 256) and np.isfinite(f.csi).all()


@FUZZ_SLOW
@given(
    st.lists(
        st.tuples(
            st.integers(0, 1084),
            st.lists(st.tuples(st.integers(0, 1083), st.binary(min_size=1, max_size=1))),
        ),
        min_size=1,
        max_size=5,
    )
)
def test_fuzz_pcap_cut_and_mutated_packets_in_sound_records(
    small_pcap: bytes, packets: list[tuple[int, list[tuple[int, bytes]]]]
) -> None:
    real = small_pcap[24 + 16 : 24 + 16 + 1084]  # one Ethernet/IPv4/UDP/Nexmon packet
    body = b""
    for cut, mutations in packets:
        packet = bytearray(real)
        for at, value in mutations:
            packet[at : at + 1] = value
        packet = packet[:cut]
        body += struct.pack("<IIII", 1, 2, len(packet), len(packet)) + packet
    reader = NexmonReader()
    frames = decode(reader, small_pcap[:24] + body)
    assert all(f.shape[2] == 256 and np.isfinite(f.csi).all() for f in frames)
    assert reader.frames_decoded + reader.bad_records <= len(packets)
    assert reader.bad_records >= sum(1 for cut, m in packets if cut < 1084 and not m)
    if not any(m for _, m in packets):
        assert reader.frames_decoded + reader.bad_records == len(packets)


@FUZZ
@given(st.binary(max_size=3000), st.integers(0, 3000))
def test_fuzz_pcap_random_bytes_after_a_valid_header(garbage: bytes, cut: int) -> None:
    reader = NexmonReader()
    data = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1) + garbage
    frames = decode(reader, data, [min(cut, len(data))])
    assert all(np.isfinite(f.csi).all() for f in frames)
    assert reader.bad_records <= 1 + len(garbage) // 16
    if garbage:
        assert reader.bad_records + reader.frames_decoded >= 1
