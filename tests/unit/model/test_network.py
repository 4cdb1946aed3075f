"""PoseNet: size, any number of links, padding invariance, the runtime predict helper."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

from invispose.errors import ModelError
from invispose.model.floor_encoder import MapEncoder
from invispose.model.inputs import inputs_from_batch, inputs_from_hops, inputs_from_windows
from invispose.model.network import Attention, PoseNet, PoseNetConfig, count_parameters
from invispose.schemas import CsiWindow, Detection, WindowBatch

SMALL = PoseNetConfig(
    n_heads=4, n_subcarriers=8, d_link=32, d_model=64, n_link_layers=1, n_decoder_layers=1
)
SPACE = PoseNetConfig(
    n_heads=4, n_subcarriers=8, d_link=32, d_model=64, n_link_layers=1, n_decoder_layers=1,
    space_inputs=True,
)


def window(rng: np.random.Generator, n_links: int, n_time: int = 16, n_sub: int = 8) -> CsiWindow:
    """A random runtime window in a 6 × 5 × 2.7 m room."""
    return CsiWindow(
        router_id=f"r{n_links}",
        space_id="room",
        t_end_s=12.5,
        amplitude=rng.uniform(0.5, 1.5, (n_links, n_time, n_sub)).astype(np.float32),
        phase=rng.normal(0, 0.3, (n_links, n_time, n_sub)).astype(np.float32),
        rel_phase=rng.normal(0, 0.05, (n_links, n_time, n_sub)).astype(np.float32),
        dynamic=(0.1 * rng.normal(size=(n_links, n_time, n_sub, 2))).astype(np.float32)
        .view(np.complex64)[..., 0],
        static=np.ones((n_links, n_sub), np.complex64),
        subcarrier_hz=np.linspace(-8.75e6, 8.75e6, n_sub, dtype=np.float32),
        valid=rng.random(n_time) > 0.1,
        tx_pos_m=rng.uniform(0, 2.5, (n_links, 3)).astype(np.float32),
        rx_pos_m=rng.uniform(0, 2.5, (n_links, 3)).astype(np.float32),
        rate_hz=100.0,
        carrier_hz=5.18e9,
        room_size_m=np.array([6.0, 5.0, 2.7], np.float32),
    )


def test_default_model_is_small() -> None:
    n = count_parameters(PoseNet())
    assert 500_000 < n <= 10_000_000


@pytest.mark.parametrize("n_links", [1, 9])
def test_accepts_one_and_nine_links(rng: np.random.Generator, n_links: int) -> None:
    torch.manual_seed(0)
    model = PoseNet(SMALL).eval()
    with torch.inference_mode():
        out = model(inputs_from_windows([window(rng, n_links), window(rng, n_links)]))
    assert out.presence_logit.shape == (2, 4)
    assert out.keypoints_m.shape == (2, 4, 17, 3)
    assert out.conf_logit.shape == (2, 4, 17)
    assert out.fall_logit.shape == (2, 4)
    assert out.activity_logit.shape == (2, 4, 6)
    assert torch.isfinite(out.keypoints_m).all()


def test_padded_batch_equals_windows_alone(rng: np.random.Generator) -> None:
    torch.manual_seed(0)
    model = PoseNet(SMALL).eval()
    windows = [window(rng, 1), window(rng, 9), window(rng, 4)]
    with torch.inference_mode():
        together = model(inputs_from_windows(windows))
        for i, w in enumerate(windows):
            alone = model(inputs_from_windows([w]))
            for name in ("presence_logit", "keypoints_m", "conf_logit", "fall_logit"):
                torch.testing.assert_close(
                    getattr(together, name)[i], getattr(alone, name)[0], atol=1e-5, rtol=1e-4
                )


@pytest.mark.parametrize("space", [False, True], ids=["first", "space"])
def test_padding_content_is_ignored(make_batch: Callable[..., WindowBatch], space: bool) -> None:
    torch.manual_seed(0)
    model = PoseNet(SPACE if space else SMALL).eval()
    batch = make_batch(3, 6, n_links=(1, 9))
    garbage = inputs_from_batch(batch)
    pad = ~garbage.link_mask[..., None, None]  # (B, L, 1, 1)
    garbage.amplitude = torch.where(pad, 7.0, garbage.amplitude)
    garbage.dynamic = torch.where(pad[..., None], 5.0, garbage.dynamic)
    garbage.tx_pos_m = torch.where(pad[..., 0], 3.0, garbage.tx_pos_m)
    with torch.inference_mode():
        clean_out, garbage_out = model(inputs_from_batch(batch)), model(garbage)
    torch.testing.assert_close(clean_out.keypoints_m, garbage_out.keypoints_m)


def test_predict_returns_one_detection_per_window(rng: np.random.Generator) -> None:
    model = PoseNet(SMALL)
    windows = [window(rng, n) for n in (1, 3, 9, 2, 9)]
    detections = model.predict(windows, batch_size=2)
    assert model.training  # predict restores the mode it found
    assert len(detections) == 5
    for w, d in zip(windows, detections, strict=True):
        assert isinstance(d, Detection)
        assert (d.router_id, d.space_id, d.t_end_s) == (w.router_id, w.space_id, w.t_end_s)
        assert d.presence.shape == (4,) and d.keypoints_m.shape == (4, 17, 3)
        assert d.keypoint_conf.shape == (4, 17)
        assert ((d.presence >= 0) & (d.presence <= 1)).all()
        assert d.latency_ms["inference"] >= 0
    # batching does not change results
    again = model.predict(windows[2:3])
    np.testing.assert_allclose(again[0].keypoints_m, detections[2].keypoints_m, atol=1e-5)


def test_bad_windows_are_model_errors(rng: np.random.Generator) -> None:
    model = PoseNet(SMALL)
    with pytest.raises(ModelError, match="expects"):
        model.predict([window(rng, 3, n_sub=30)])
    no_room = window(rng, 3)
    no_room.room_size_m = np.zeros(3, np.float32)
    with pytest.raises(ModelError, match="room size"):
        model.predict([no_room])
    with pytest.raises(ModelError, match="shape"):
        inputs_from_windows([window(rng, 3), window(rng, 3, n_time=8)])
    with pytest.raises(ModelError, match="unknown model hyperparameters: width"):
        PoseNetConfig.from_dict({"width": 3})



def test_space_model_takes_a_hop_of_mixed_routers(rng: np.random.Generator) -> None:
    torch.manual_seed(0)
    model = PoseNet(SPACE)
    hops = [[window(rng, 9), window(rng, 1)], [window(rng, 3)]]
    detections = model.predict_hops(hops)
    assert [len(d) for d in detections] == [1, 1]  # one per space hop, routers fused
    assert detections[0][0].router_id == "r9+r1" and detections[1][0].router_id == "r3"
    inputs = inputs_from_hops(hops)
    assert inputs.link_mask.sum(1).tolist() == [10, 3]
    assert inputs.floor_maps.shape == (2, 4, 24, 24)
    assert inputs.floor_maps[0, 1].abs().sum() == 0  # a one-link router has no map
    assert inputs.floor_maps[0, 0].abs().sum() > 0
    # the first model runs per router window, even when handed hops
    first = PoseNet(SMALL).predict_hops(hops)
    assert [len(d) for d in first] == [2, 1] and first[0][1].router_id == "r1"


def test_untrained_space_slots_start_at_the_map_peaks(rng: np.random.Generator) -> None:
    torch.manual_seed(0)
    model = PoseNet(SPACE).eval()
    torch.nn.init.zeros_(model.offset_head.weight)  # joints at the centre: keypoints = centre
    torch.nn.init.zeros_(model.offset_head.bias)
    inputs = inputs_from_hops([[window(rng, 9)]], floor_maps=False)
    inputs.floor_maps = torch.ones_like(inputs.floor_maps)
    inputs.floor_maps[0, 0, 18, 5] = 50.0  # one strong peak at cell (18, 5) of 24
    with torch.inference_mode():
        out = model(inputs)
    hip = out.keypoints_m[0, :, 11:13].mean(dim=1)  # (K, 3) hip centres
    want = torch.tensor([(18 + 0.5) / 24 * 6.0, (5 + 0.5) / 24 * 5.0])
    torch.testing.assert_close(hip[0, :2], want)
    assert not torch.allclose(hip[1, :2], want)  # the next slot starts elsewhere


def test_attention_over_map_cells_equals_attention_over_their_tokens() -> None:
    # the decoder reads the 576 map cells through their C-wide features (kv and the map
    # encoder's output layer reassociated); that must be attention over the tokens themselves,
    # in value and in every gradient, padded memory keys ignored
    torch.manual_seed(0)
    attn, encoder = Attention(64, 4), MapEncoder(4, 64)
    x = torch.randn(3, 4, 64)  # (B, Q, D)
    memory = torch.randn(3, 5, 64)  # (B, M, D)
    mask = torch.ones(3, 5, dtype=torch.bool)
    mask[1, 2:] = False
    maps = torch.rand(3, 4, 24, 24) * 3
    tokens = encoder(maps)  # (B, M·M, D)
    explicit = attn(x, torch.cat([memory, tokens], 1),
                    torch.cat([mask, torch.ones(3, tokens.shape[1], dtype=torch.bool)], 1))
    explicit.square().sum().backward()
    want = [p.grad.clone() for p in (*attn.parameters(), *encoder.parameters())]
    attn.zero_grad(), encoder.zero_grad()
    folded = attn(x, memory, mask, encoder.cells(maps))
    folded.square().sum().backward()
    torch.testing.assert_close(folded, explicit, atol=1e-5, rtol=1e-4)
    for got, expected in zip((*attn.parameters(), *encoder.parameters()), want, strict=True):
        torch.testing.assert_close(got.grad, expected, atol=1e-4, rtol=1e-3)


def test_weights_only_parts_are_reused_at_inference_and_follow_new_weights(
    rng: np.random.Generator,
) -> None:
    # the cells' positions and key/value bases are computed once per set of weights at
    # inference; a reused one must equal a fresh computation, and change with the weights
    torch.manual_seed(0)
    model = PoseNet(SPACE).eval()
    inputs = inputs_from_hops([[window(rng, 9)]], floor_maps=False)
    inputs.floor_maps = torch.rand_like(inputs.floor_maps) * 3

    def fresh() -> torch.Tensor:
        with torch.enable_grad():  # nothing is reused while gradients are recorded
            return model(inputs).keypoints_m.detach()

    with torch.inference_mode():
        first = model(inputs).keypoints_m
        again = model(inputs).keypoints_m  # reuses both
    torch.testing.assert_close(first, fresh())
    torch.testing.assert_close(again, first)
    with torch.no_grad():
        model.map_encoder.position[0].weight.mul_(1.5)  # new weights, in place
        model.decoder[0].cross_attn.kv.bias.add_(0.3)
    with torch.inference_mode():
        changed = model(inputs).keypoints_m
    torch.testing.assert_close(changed, fresh())
    assert not torch.allclose(changed, first)


def test_a_model_that_ran_at_inference_copies_without_what_it_reused(
    rng: np.random.Generator,
) -> None:
    import copy
    import pickle

    model = PoseNet(SPACE).eval()
    inputs = inputs_from_hops([[window(rng, 9)]], floor_maps=False)
    with torch.inference_mode():
        want = model(inputs).keypoints_m  # fills the reused parts with inference tensors
    for clone in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        with torch.inference_mode():
            torch.testing.assert_close(clone(inputs).keypoints_m, want)
