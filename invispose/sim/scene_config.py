"""The scene file (YAML): a room, routers, and people with scripted or random activities.

Example (``invispose/sim/scenes/demo.yaml``)::

    seed: 7
    room: {size_m: [6.0, 5.0, 2.7], walls: drywall, floor: wood}
    routers:
      - id: router_a
        hardware: intel5300
        tx_positions_m: [[0.3, 0.2, 1.5], [0.33, 0.2, 1.5], [0.36, 0.2, 1.5]]
        rx_positions_m: [[5.7, 4.8, 1.2], [5.67, 4.8, 1.2], [5.64, 4.8, 1.2]]
    people:
      - id: alice
        start_m: [1.0, 1.5]
        script:
          - {activity: walk, to_m: [4.0, 3.0], speed_mps: 1.0}
          - {activity: sit, duration_s: 8}
          - {activity: fall, duration_s: 6}
      - {id: bob, random: true}
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from invispose.errors import ConfigError
from invispose.sim.hardware import ALIASES, PROFILES
from invispose.sim.motion import KIND_NAMES
from invispose.sim.room import MATERIALS

Vec3 = tuple[float, float, float]
Vec2 = tuple[float, float]


class RoomConfig(BaseModel):
    """The room: a box with one material for the walls, one for the floor and ceiling."""

    model_config = ConfigDict(extra="forbid")

    size_m: Vec3 = Field(..., description="width (x), depth (y), height (z) in metres")
    walls: str = Field("drywall", description=f"wall material: {', '.join(MATERIALS)}")
    floor: str = Field("wood", description="floor material")
    ceiling: str = Field("plaster", description="ceiling material")
    furniture: int | None = Field(None, ge=0, le=16, description="furniture scatterers (random)")

    @model_validator(mode="after")
    def _check(self) -> RoomConfig:
        if min(self.size_m) <= 1.0:
            raise ValueError("every room dimension must exceed 1 m")
        for name in (self.walls, self.floor, self.ceiling):
            if name not in MATERIALS:
                raise ValueError(f"unknown material {name!r}")
        return self


class RouterConfig(BaseModel):
    """One simulated router: a transmitter array and a receiver array of one hardware."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(..., min_length=1, description="router id (CsiFrame.router_id)")
    hardware: str = Field(..., description=f"hardware profile: {', '.join(PROFILES)}")
    tx_positions_m: list[Vec3] = Field(..., min_length=1, description="transmit antennas")
    rx_positions_m: list[Vec3] = Field(..., min_length=1, description="receive antennas")
    rate_hz: float = Field(100.0, gt=0, le=2000, description="packets per second")
    snr_db: float | None = Field(
        None, description="effective SNR (default: drawn per router, falling with link length)"
    )

    @model_validator(mode="after")
    def _check(self) -> RouterConfig:
        profile = PROFILES.get(ALIASES.get(self.hardware, self.hardware))
        if profile is None:
            raise ValueError(f"unknown hardware {self.hardware!r}")
        if len(self.tx_positions_m) > profile.n_tx or len(self.rx_positions_m) > profile.n_rx:
            raise ValueError(
                f"{self.hardware} has at most {profile.n_tx} transmit and {profile.n_rx} "
                "receive antennas"
            )
        return self


class StepConfig(BaseModel):
    """One scripted activity."""

    model_config = ConfigDict(extra="forbid")

    activity: str = Field(..., description=f"one of {', '.join(KIND_NAMES)}")
    duration_s: float | None = Field(None, gt=0, description="how long (all but walk)")
    to_m: Vec2 | None = Field(None, description="walk target on the floor plan")
    speed_mps: float = Field(1.0, gt=0, le=3.0, description="walking speed")
    support_z_m: float | None = Field(None, ge=0, le=1.2, description="bed height (lie)")

    @model_validator(mode="after")
    def _check(self) -> StepConfig:
        if self.activity not in KIND_NAMES:
            raise ValueError(f"unknown activity {self.activity!r}")
        if self.activity == "walk" and self.to_m is None:
            raise ValueError("a walk needs to_m")
        if self.activity != "walk" and self.duration_s is None:
            raise ValueError(f"{self.activity} needs duration_s")
        return self


class PersonConfig(BaseModel):
    """A person: a script of activities, or random activities (``random: true``)."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(None, description="person id (default p0, p1, …)")
    height_m: float | None = Field(None, ge=1.0, le=2.2, description="stature")
    start_m: Vec2 | None = Field(None, description="start position (default: random)")
    heading_deg: float = Field(0.0, description="initial facing, degrees from +x")
    script: list[StepConfig] = Field(default_factory=list, description="activities in order")
    random: bool = Field(False, description="random activities (after the script, if any)")
    fall_probability: float = Field(0.03, ge=0, le=1, description="random falls per activity")


class SceneConfig(BaseModel):
    """A whole scene."""

    model_config = ConfigDict(extra="forbid")

    seed: int = Field(0, ge=0, description="seeds people, furniture and radio impairments")
    room: RoomConfig
    routers: list[RouterConfig] = Field(..., min_length=1)
    people: list[PersonConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> SceneConfig:
        ids = [r.id for r in self.routers]
        if len(set(ids)) != len(ids):
            raise ValueError("router ids must be unique")
        return self


def load_scene_config(path: str | Path) -> SceneConfig:
    """Read and validate a scene YAML file (ConfigError naming every problem)."""
    file = Path(path)
    try:
        raw = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read scene {file}: {exc}") from exc
    try:
        return SceneConfig.model_validate(raw)
    except ValidationError as exc:
        problems = [(".".join(str(p) for p in e["loc"]), e["msg"]) for e in exc.errors()]
        summary = "; ".join(f"{where}: {msg}" for where, msg in problems)
        raise ConfigError(f"invalid scene {file}: {summary}", problems) from exc
