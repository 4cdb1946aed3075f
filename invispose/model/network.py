"""PoseNet: per-router CSI windows in, up to K persons with 3-D keypoints out.

Reading order: ``PoseNetConfig`` (hyperparameters), ``ModelInputs`` (tensors and how
windows become them), the blocks (``LinkEncoder``, ``Attention``, ``Block``), then
``PoseNet`` itself. Shapes use B windows, L links (tx × rx antenna pairs, padded to the
batch's largest), T time steps, S subcarriers, K person slots, J = 17 keypoints, D width.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from invispose.errors import ModelError
from invispose.model.floor_encoder import (
    MapCells,
    MapEncoder,
    Reused,
    map_peaks,
    weights_key,
)
from invispose.model.inputs import MIN_ROOM_EDGE_M, ModelInputs, inputs_from_hops
from invispose.schemas import (
    ACTIVITIES,
    MAX_PERSONS,
    MAX_ROUTERS,
    N_KEYPOINTS,
    CsiWindow,
    Detection,
)

#: rooms are a few metres; dividing by this keeps the room-size features near 1
ROOM_SCALE_M = 5.0
#: scale of what moves within a window (receiver noise alone is ~0.03 in amplitude and
#: radians): × 10 brings it to the static pattern's size
MOTION_GAIN = 10.0
#: bound on the scaled moving part, so a phase that wraps at a deep fade cannot dominate
MOTION_CLIP = 8.0


@dataclass(frozen=True)
class PoseNetConfig:
    """Hyperparameters of PoseNet; stored in every checkpoint."""

    # The per-time-step projection is sized to the canonical subcarrier grid, so S is fixed.
    n_subcarriers: int = 32
    # Width of the per-link temporal conv stack: it runs B·L times per batch and dominates
    # CPU cost, so it stays narrower than the attention width.
    d_link: int = 64
    # Width of link tokens and person queries. The attention part sees ≤ 9 links and 4 slots,
    # so width is cheap there: 192 costs ~20 % more time than 128 for twice the parameters.
    d_model: int = 192
    n_heads: int = 6  # 32 channels per head
    # Two rounds of attention across links let each link see the geometry of the others.
    n_link_layers: int = 2
    # DETR-style decoder: self-attention between slots de-duplicates persons, cross-attention
    # reads the links; three layers are enough for four slots.
    n_decoder_layers: int = 3
    # MLP hidden width = ff_mult · d_model.
    ff_mult: int = 2
    max_persons: int = MAX_PERSONS
    n_keypoints: int = N_KEYPOINTS
    n_activities: int = len(ACTIVITIES)
    # The simulator draws fresh data every step, so there is little to overfit: no dropout.
    dropout: float = 0.0
    # Space inputs: each link's complex dynamic part, its carrier and antenna offsets in
    # wavelengths, and every router's floor map (``invispose.localise.maps``) as M·M tokens;
    # each person slot starts at a peak of the fused map. False: the first model's inputs.
    space_inputs: bool = False

    def __post_init__(self) -> None:
        if self.d_model % self.n_heads:
            raise ModelError(f"d_model {self.d_model} is not a multiple of n_heads {self.n_heads}")
        if self.d_link % 8:
            raise ModelError(f"d_link {self.d_link} is not a multiple of 8 (GroupNorm groups)")

    @classmethod
    def from_dict(cls, values: dict[str, object]) -> PoseNetConfig:
        """Build from a mapping, naming unknown keys (checkpoints, YAML)."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(values) - known)
        if unknown:
            raise ModelError(f"unknown model hyperparameters: {', '.join(unknown)}")
        return cls(**values)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, object]:
        """Plain mapping for checkpoints."""
        return asdict(self)


@dataclass(slots=True)
class PoseOutput:
    """Raw network outputs (logits) and keypoints in room metres."""

    presence_logit: Tensor  # (B, K)
    keypoints_m: Tensor  # (B, K, J, 3) room coordinates
    conf_logit: Tensor  # (B, K, J)
    fall_logit: Tensor  # (B, K)
    activity_logit: Tensor  # (B, K, A)


class LinkEncoder(nn.Module):
    """One link's time × subcarrier block → one feature vector (same weights for all links).

    People show up as small changes over time on top of a large static pattern (walls,
    furniture, the hardware's ripple): a few per cent of amplitude, a few hundredths of a
    radian. So each input is split into its window mean (the static pattern) and what
    moves around it, and the moving part is scaled up to the static part's size before
    anything is learned from it.
    """

    def __init__(
        self, n_subcarriers: int, d_link: int, d_model: int, dynamic: bool = False
    ) -> None:
        super().__init__()
        # per time step: static and moving amplitude, static and moving phase, relative
        # phase (already only moving), [the complex dynamic part,] for every subcarrier,
        # plus the valid flag
        self.dynamic = dynamic
        self.project = nn.Linear((7 if dynamic else 5) * n_subcarriers + 1, d_link)
        # strided temporal convs: 64 → 32 → 16 → 8 steps; motion (Doppler) lives along time
        self.convs = nn.ModuleList(
            [nn.Conv1d(d_link, d_link, kernel_size=5, stride=2, padding=2) for _ in range(3)]
        )
        # GroupNorm normalises each link on its own: padded links never touch real ones
        self.norms = nn.ModuleList([nn.GroupNorm(8, d_link) for _ in range(3)])
        # mean and max summarise the window, the last step is the moment we predict
        self.out = nn.Linear(3 * d_link, d_model)

    def forward(
        self, amplitude: Tensor, phase: Tensor, rel_phase: Tensor, valid: Tensor,
        dynamic: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Features (B, L, D) and per-link log gain and log motion level (B, L, 2).

        ``valid`` is (B, T) or per link (B, L, T); ``dynamic`` (B, L, T, S, 2) when the
        encoder was built for it.
        """
        b, n_links, n_time, n_sub = amplitude.shape
        per_link = valid if valid.dim() == 3 else valid[:, None, :]  # (B, L|1, T)
        v = per_link.to(amplitude.dtype)[..., None]  # (B, L|1, T, 1)
        steps = v.sum(dim=2, keepdim=True).clamp(min=1.0)  # (B, 1, 1, 1)
        # Amplitude scale varies with AGC and path loss: divide it out, keep it as a feature.
        gain = (amplitude * v).sum(dim=(2, 3), keepdim=True) / (steps * n_sub)  # (B, L, 1, 1)
        amp = amplitude / (gain + 1e-6)  # (B, L, T, S) around 1

        def split(x: Tensor) -> tuple[Tensor, Tensor]:  # (B, L, T, S) -> static, moving
            static = (x * v).sum(dim=2, keepdim=True) / steps  # (B, L, 1, S)
            moving = ((x - static) * v * MOTION_GAIN).clamp(-MOTION_CLIP, MOTION_CLIP)
            return static.expand_as(x) * v, moving

        amp_static, amp_moving = split(amp)
        phase_static, phase_moving = split(phase)
        rel = (rel_phase * v * MOTION_GAIN).clamp(-MOTION_CLIP, MOTION_CLIP)
        parts = [amp_static - v, amp_moving, phase_static, phase_moving, rel]
        if self.dynamic:
            if dynamic is None:
                raise ModelError("this encoder needs the dynamic channel parts")
            moving = (dynamic * v[..., None] * MOTION_GAIN).clamp(-MOTION_CLIP, MOTION_CLIP)
            parts += [moving[..., 0], moving[..., 1]]  # (B, L, T, S) each
        x = torch.cat([*parts, v.expand(b, n_links, n_time, 1)], dim=-1)  # (B, L, T, kS+1)
        h = F.gelu(self.project(x))  # (B, L, T, C)
        h = h.reshape(b * n_links, n_time, -1).transpose(1, 2)  # (B·L, C, T)
        for conv, norm in zip(self.convs, self.norms, strict=True):
            h = F.gelu(norm(conv(h)))  # (B·L, C, T/2 per layer)
        pooled = torch.cat([h.mean(-1), h.amax(-1), h[..., -1]], dim=-1)  # (B·L, 3C)
        feats = self.out(pooled).reshape(b, n_links, -1)  # (B, L, D)
        # how strong the link is, and how much of it moves (more people, nearer people)
        motion = (amp_moving.square().sum(dim=(2, 3)) / (steps[..., 0, 0] * n_sub)).sqrt()
        levels = torch.stack(
            [torch.log(gain.reshape(b, n_links) + 1e-6), torch.log(motion + 1e-3)], dim=-1
        )  # (B, L, 2)
        return feats, levels


class Attention(nn.Module):
    """Multi-head attention of queries over keys, ignoring keys where ``key_mask`` is False."""

    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.q = nn.Linear(d_model, d_model)
        self.kv = nn.Linear(d_model, 2 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self._cell_base = Reused()  # (M·M, 2D) at inference

    def forward(
        self, x: Tensor, memory: Tensor, key_mask: Tensor | None, cells: MapCells | None = None,
    ) -> Tensor:
        """Attend x (B, Q, D) over memory (B, M, D), and over the map cells when given
        (every cell is real); key_mask (B, M) True = real."""
        b, n_q, d = x.shape
        n_m = memory.shape[1]
        h = self.n_heads
        q = self.q(x).view(b, n_q, h, d // h).transpose(1, 2)  # (B, H, Q, D/H)
        k, v = self.kv(memory).view(b, n_m, 2, h, d // h).permute(2, 0, 3, 1, 4)  # (B, H, M, D/H)
        if cells is None:
            mask = None if key_mask is None else key_mask[:, None, None, :]  # (B, 1, 1, M)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, H, Q, D/H)
        else:
            y = self._with_cells(q, k, v, key_mask, cells)
        out: Tensor = self.out(y.transpose(1, 2).reshape(b, n_q, d))  # (B, Q, D)
        return out

    def _with_cells(
        self, q: Tensor, k: Tensor, v: Tensor, key_mask: Tensor | None, cells: MapCells,
    ) -> Tensor:
        """Attention over memory and the cell tokens out(f) + p, without making the cells'
        keys and values: kv and out are linear, so a cell's key is f · W_kᵀ + k(p) with
        W = W_kv · W_out (C wide), and q · key and Σ weight · value reassociate through f.
        The 576 cells of a window then cost C-wide products per query (four slots) instead
        of a D → 2D projection per cell, which was most of the model's time. (B, H, Q, D/H)"""
        h, dh = q.shape[1], q.shape[3]
        f = cells.features  # (B, N, C)
        w = (self.kv.weight @ cells.out.weight).view(2, h, dh, -1)  # (2, H, D/H, C)
        base = self._base(cells)  # (N, 2D)
        base_k, base_v = base.view(-1, 2, h, dh).permute(1, 2, 0, 3)  # (H, N, D/H)
        scale = dh ** -0.5
        scores_m = torch.matmul(q, k.transpose(-1, -2))  # (B, H, Q, M)
        if key_mask is not None:
            scores_m = scores_m.masked_fill(~key_mask[:, None, None, :], float("-inf"))
        b, n_q, n = q.shape[0], q.shape[2], f.shape[1]
        q_f = torch.einsum("bhqd,hdc->bhqc", q, w[0]).reshape(b, h * n_q, -1)  # (B, H·Q, C)
        q_h = q.transpose(0, 1).reshape(h, b * n_q, dh)  # (H, B·Q, D/H)
        scores_c = torch.bmm(q_f, f.transpose(1, 2)).view(b, h, n_q, n) + torch.bmm(
            q_h, base_k.transpose(1, 2)).view(h, b, n_q, n).transpose(0, 1)  # (B, H, Q, N)
        p = torch.softmax(torch.cat([scores_m, scores_c], dim=-1) * scale, dim=-1)
        p_m, p_c = torch.split(p, [k.shape[2], n], dim=-1)  # (B, H, Q, M), (B, H, Q, N)
        p_f = torch.bmm(p_c.reshape(b, h * n_q, n), f).view(b, h, n_q, -1)  # (B, H, Q, C)
        y: Tensor = (torch.matmul(p_m, v) + torch.einsum("bhqc,hdc->bhqd", p_f, w[1])
                     + torch.bmm(p_c.transpose(0, 1).reshape(h, b * n_q, n), base_v)
                     .view(h, b, n_q, dh).transpose(0, 1))  # (B, H, Q, D/H)
        return y

    def _base(self, cells: MapCells) -> Tensor:
        """kv(p + b_out) (M·M, 2D): weights alone, so computed once per set of weights at
        inference (at batch 1 it was a third of the forward pass)."""
        weights = weights_key(self.kv)
        key = None if weights is None or cells.key is None else (cells.key, weights)
        return self._cell_base.get(key, lambda: self.kv(cells.position + cells.out.bias))


class Block(nn.Module):
    """Pre-norm transformer block: self-attention, optional cross-attention, MLP."""

    def __init__(self, cfg: PoseNetConfig, cross: bool) -> None:
        super().__init__()
        d = cfg.d_model
        self.norm_self = nn.LayerNorm(d)
        self.self_attn = Attention(d, cfg.n_heads)
        self.norm_cross = nn.LayerNorm(d) if cross else None
        self.cross_attn = Attention(d, cfg.n_heads) if cross else None
        self.norm_mlp = nn.LayerNorm(d)
        self.mlp = nn.Sequential(
            nn.Linear(d, cfg.ff_mult * d), nn.GELU(), nn.Linear(cfg.ff_mult * d, d)
        )
        self.drop = nn.Dropout(cfg.dropout)

    def forward(
        self,
        x: Tensor,
        x_mask: Tensor | None,
        memory: Tensor | None = None,
        memory_mask: Tensor | None = None,
        cells: MapCells | None = None,
    ) -> Tensor:
        """x (B, Q, D) → (B, Q, D); memory (B, M, D) and map cells for cross-attention."""
        y = self.norm_self(x)
        x = x + self.drop(self.self_attn(y, y, x_mask))
        if self.cross_attn is not None and self.norm_cross is not None and memory is not None:
            x = x + self.drop(self.cross_attn(self.norm_cross(x), memory, memory_mask, cells))
        out: Tensor = x + self.drop(self.mlp(self.norm_mlp(x)))
        return out


class PoseNet(nn.Module):
    """Links → link tokens → attention across links → K person slots with keypoints."""

    def __init__(self, cfg: PoseNetConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or PoseNetConfig()
        d = cfg.d_model
        self.link_encoder = LinkEncoder(cfg.n_subcarriers, cfg.d_link, d, cfg.space_inputs)
        # tx/room, rx/room, (rx−tx)/room, room/ROOM_SCALE, log gain and log motion level:
        # where the link is, how strong it is, how much moves on it; with space inputs also
        # the carrier (GHz / 5) and the antenna offsets in wavelengths. Geometry is what
        # lets the model work in unseen rooms.
        n_geometry = 21 if cfg.space_inputs else 14
        self.geometry = nn.Sequential(nn.Linear(n_geometry, d), nn.GELU(), nn.Linear(d, d))
        if cfg.space_inputs:
            self.map_encoder = MapEncoder(MAX_ROUTERS, d)
            # a slot's anchor: where its peak is (room fractions) and how strong
            self.anchor = nn.Sequential(nn.Linear(3, d), nn.GELU(), nn.Linear(d, d))
        self.link_blocks = nn.ModuleList(
            [Block(cfg, cross=False) for _ in range(cfg.n_link_layers)]
        )
        self.link_norm = nn.LayerNorm(d)
        self.queries = nn.Parameter(0.02 * torch.randn(cfg.max_persons, d))  # (K, D)
        self.decoder = nn.ModuleList(
            [Block(cfg, cross=True) for _ in range(cfg.n_decoder_layers)]
        )
        self.slot_norm = nn.LayerNorm(d)
        j = cfg.n_keypoints
        self.presence_head = nn.Linear(d, 1)
        # A body is the same size in any room: its centre is predicted relative to the room
        # (normalised, then rescaled), its joints as offsets in metres from that centre.
        self.centre_head = nn.Linear(d, 3)
        self.offset_head = nn.Linear(d, 3 * j)
        self.conf_head = nn.Linear(d, j)
        self.fall_head = nn.Linear(d, 1)
        self.activity_head = nn.Linear(d, cfg.n_activities)
        nn.init.zeros_(self.centre_head.weight)
        nn.init.zeros_(self.centre_head.bias)  # every slot starts at the room centre
        # subtracted from the presence logits: set on validation (``calibrate_presence``)
        # so that 0.5 is the threshold that counts people best
        self.register_buffer("presence_offset", torch.zeros(()))
        # subtracted from the fall logits: set on validation (``calibrate_falls``) so that
        # 0.5 is the threshold of the best recall whose alarms are right at least half the time
        self.register_buffer("fall_offset", torch.zeros(()))

    def forward(self, x: ModelInputs) -> PoseOutput:
        """Predict K person slots per window."""
        b, n_links = x.link_mask.shape
        room = x.room_size_m.clamp(min=MIN_ROOM_EDGE_M)  # (B, 3)
        feats, levels = self._encode_links(x)  # (B, L, D), (B, L, 2)
        room_l = room[:, None, :].expand(b, n_links, 3)  # (B, L, 3)
        parts = [
            x.tx_pos_m / room_l,
            x.rx_pos_m / room_l,
            (x.rx_pos_m - x.tx_pos_m) / room_l,
            room_l / ROOM_SCALE_M,
            levels,
        ]
        if self.cfg.space_inputs:
            parts += [x.carrier_hz[..., None] / 5e9, x.antenna_offsets_wl]
        geom = torch.cat(parts, dim=-1)  # (B, L, 14 or 21)
        tokens = feats + self.geometry(geom)  # (B, L, D)
        # Padded links carry zeros; keep them exactly zero so they stay inert everywhere.
        tokens = tokens * x.link_mask[..., None].to(tokens.dtype)  # (B, L, D)
        for block in self.link_blocks:
            tokens = block(tokens, x.link_mask)  # (B, L, D)
        memory = self.link_norm(tokens)  # (B, L, D)
        memory_mask = x.link_mask  # (B, L)

        slots = self.queries[None].expand(b, -1, -1)  # (B, K, D)
        anchor_xy, cells = None, None
        if self.cfg.space_inputs:
            cells = self.map_encoder.cells(x.floor_maps)  # the M·M cell tokens, in parts
            anchor_xy, strength = map_peaks(x.floor_maps, self.cfg.max_persons)  # (B, K, 2)
            slots = slots + self.anchor(torch.cat([anchor_xy, strength[..., None]], dim=-1))
        for block in self.decoder:
            slots = block(slots, None, memory, memory_mask, cells)  # (B, K, D)
        slots = self.slot_norm(slots)  # (B, K, D)

        # Heads in float32 even under bf16 autocast: bf16 resolves 10 m only to ~4 cm.
        with torch.autocast(slots.device.type, enabled=False):
            slots = slots.float()  # (B, K, D)
            k, j = self.cfg.max_persons, self.cfg.n_keypoints
            shift = self.centre_head(slots)  # (B, K, 3) room fractions
            if anchor_xy is None:
                centre_m = (0.5 + shift) * room[:, None, :].float()  # (B, K, 3)
            else:  # each slot from its peak
                base = torch.cat([anchor_xy, torch.full_like(shift[..., 2:], 0.5)], dim=-1)
                centre_m = (base + shift) * room[:, None, :].float()
            offsets_m = self.offset_head(slots).view(b, k, j, 3)  # (B, K, J, 3)
            return PoseOutput(
                presence_logit=self.presence_head(slots).squeeze(-1)
                - self.presence_offset,  # (B, K)
                keypoints_m=centre_m[:, :, None, :] + offsets_m,  # (B, K, J, 3)
                conf_logit=self.conf_head(slots),  # (B, K, J)
                fall_logit=self.fall_head(slots).squeeze(-1) - self.fall_offset,  # (B, K)
                activity_logit=self.activity_head(slots),  # (B, K, A)
            )

    def _encode_links(self, x: ModelInputs) -> tuple[Tensor, Tensor]:
        """The link encoder on real links only (padding costs nothing): (B, L, D), (B, L, 2)."""
        b, n_links = x.link_mask.shape
        real = x.link_mask  # (B, L)
        valid = x.valid[:, None, :].expand(b, n_links, x.valid.shape[-1])  # (B, L, T)
        dynamic = x.dynamic[real][None] if self.cfg.space_inputs else None  # (1, N, T, S, 2)
        feats, levels = self.link_encoder(
            x.amplitude[real][None], x.phase[real][None], x.rel_phase[real][None],
            valid[real][None], dynamic,
        )  # (1, N, D), (1, N, 2)
        out = feats.new_zeros((b, n_links, feats.shape[-1]))  # (B, L, D)
        out[real] = feats[0]
        lv = levels.new_zeros((b, n_links, 2))  # (B, L, 2)
        lv[real] = levels[0]
        return out, lv

    def predict(self, windows: Sequence[CsiWindow], batch_size: int = 32) -> list[Detection]:
        """Run the model on runtime windows, each its own row; one Detection per window."""
        return [d for hop in self.predict_hops([[w] for w in windows], batch_size) for d in hop]

    def predict_hops(
        self, hops: Sequence[Sequence[CsiWindow]], batch_size: int = 32
    ) -> list[list[Detection]]:
        """Detections per space hop (a hop: the space's router windows of one hop).

        A space-input model takes each hop as one row (every router's links and floor map)
        and returns one Detection per hop; the first model runs per router window.
        """
        for w in (w for hop in hops for w in hop):
            if w.amplitude.ndim != 3 or w.amplitude.shape[2] != self.cfg.n_subcarriers:
                raise ModelError(
                    f"window of router {w.router_id!r} has shape {w.amplitude.shape}; "
                    f"the model expects (L, T, {self.cfg.n_subcarriers})"
                )
        rows = list(hops) if self.cfg.space_inputs else [[w] for hop in hops for w in hop]
        device = next(self.parameters()).device
        was_training = self.training
        self.eval()
        detections: list[Detection] = []
        try:
            with torch.inference_mode():
                for start in range(0, len(rows), batch_size):
                    chunk = rows[start : start + batch_size]
                    started = time.perf_counter()
                    out = self(inputs_from_hops(chunk, device, self.cfg.space_inputs))
                    presence = torch.sigmoid(out.presence_logit).float().cpu().numpy()  # (B, K)
                    keypoints = out.keypoints_m.float().cpu().numpy()  # (B, K, J, 3)
                    conf = torch.sigmoid(out.conf_logit).float().cpu().numpy()  # (B, K, J)
                    elapsed_ms = 1000.0 * (time.perf_counter() - started)
                    for i, row in enumerate(chunk):
                        detections.append(
                            Detection(
                                router_id="+".join(w.router_id for w in row),
                                space_id=row[0].space_id,
                                t_end_s=max(w.t_end_s for w in row),
                                presence=presence[i],
                                keypoints_m=keypoints[i],
                                keypoint_conf=conf[i],
                                latency_ms={"inference": elapsed_ms},
                            )
                        )
        finally:
            self.train(was_training)
        if not self.cfg.space_inputs:  # back to hops: the windows' detections, in order
            grouped, start = [], 0
            for hop in hops:
                grouped.append(detections[start : start + len(hop)])
                start += len(hop)
            return grouped
        return [[d] for d in detections]


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
