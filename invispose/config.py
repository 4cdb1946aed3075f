"""The configuration tree: site → spaces, routers, zones, and the services around them.

Every model forbids unknown keys and describes every field, so `invispose config check`
can name each mistake by its path. Secrets come from the environment through
``${NAME}`` (or ``${NAME:-default}``) anywhere in a string value.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from invispose.errors import ConfigError

Vec3 = tuple[float, float, float]
Vec2 = tuple[float, float]
ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) reaches this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _check_networks(entries: list[str], name: str) -> None:
    """ValueError naming the first entry that is not an address or CIDR block."""
    for entry in entries:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError as exc:
            raise ValueError(f"{name}: {entry!r} is not an address or CIDR block") from exc


def _check_url(url: str, schemes: str) -> None:
    """ValueError unless ``url`` is ``scheme://host[:port][/path]`` of one of ``schemes``."""
    names = schemes.split()
    pattern = rf"({'|'.join(names)})://[^\s/:?#]+(:\d+)?([/?]\S*)?"
    if not re.fullmatch(pattern, url):
        raise ValueError(f"url {url!r} must be {' or '.join(n + '://' for n in names)} host")


class Strict(BaseModel):
    """Base for config models: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class SpaceConfig(Strict):
    """A room that routers observe and a tracker covers."""

    id: str = Field(..., min_length=1, description="Unique space id, used in URLs and topics")
    name: str = Field("", description="Human-readable name")
    size_m: Vec3 = Field(..., description="Room width (x), depth (y), height (z) in metres")
    view: Literal["front", "floor"] = Field(
        "front", description="Projection for the seed's normalised keypoint x/y"
    )

    @model_validator(mode="after")
    def _positive_size(self) -> SpaceConfig:
        if min(self.size_m) <= 0:
            raise ValueError("size_m must be positive in every dimension")
        return self


class SimulatedSource(Strict):
    """CSI from the built-in physical simulator."""

    kind: Literal["simulated"] = Field("simulated", description="Source kind")
    hardware: Literal["esp32", "intel5300", "nexmon43455c0", "atheros"] = Field(
        "intel5300", description="Hardware profile the simulator imitates"
    )
    rate_hz: float = Field(100.0, gt=0, le=2000, description="Packets per second")
    people: int = Field(2, ge=0, le=4, description="Simulated people in the space")
    seed: int = Field(0, description="Random seed of the scene (deterministic replay)")
    epoch_s: float | None = Field(
        None, description="Scene clock origin (wall time); the runtime sets it at start"
    )
    loop_s: float | None = Field(
        None,
        gt=0,
        le=600,
        description="Simulate this many seconds once and replay them in a loop (cheap load "
        "for benchmarks); unset: simulate continuously",
    )


class UdpListener(Strict):
    """What every UDP source shares: which senders it accepts."""

    allow_from: list[str] | None = Field(
        None,
        description="Senders accepted, as addresses or CIDR blocks (e.g. 192.168.1.0/24); "
        "datagrams from anyone else are dropped and counted (spoofed). Unset: any sender",
    )

    @model_validator(mode="after")
    def _networks(self) -> UdpListener:
        _check_networks(self.allow_from or [], "allow_from")
        return self


class Esp32UdpSource(UdpListener):
    """ESP32 nodes sending their CSI lines as UDP datagrams."""

    kind: Literal["esp32-udp"] = Field("esp32-udp", description="Source kind")
    host: str = Field("0.0.0.0", description="Address to bind")
    port: int = Field(5566, ge=1, le=65535, description="UDP port to listen on")


class Esp32SerialSource(Strict):
    """An ESP32 printing CSI lines on a serial port."""

    kind: Literal["esp32-serial"] = Field("esp32-serial", description="Source kind")
    device: str = Field(..., description="Serial device, e.g. /dev/ttyUSB0")
    baudrate: int = Field(1_500_000, gt=0, description="Serial speed in baud")


class NexmonUdpSource(UdpListener):
    """A Nexmon-patched Broadcom chip broadcasting CSI over UDP."""

    kind: Literal["nexmon-udp"] = Field("nexmon-udp", description="Source kind")
    host: str = Field("0.0.0.0", description="Address to bind")
    port: int = Field(5500, ge=1, le=65535, description="UDP port to listen on")
    chipset: Literal["bcm43455c0", "bcm4339", "bcm4358", "bcm4366c0"] | None = Field(
        None, description="Chip (needed when the packets do not carry a known chip version)"
    )


class FileSource(Strict):
    """A recorded capture replayed at its recorded rate (or faster)."""

    kind: Literal["file"] = Field("file", description="Source kind")
    path: Path = Field(..., description="Capture file (ESP32 CSV, Nexmon pcap, Intel .dat)")
    format: Literal["esp32", "nexmon", "intel5300"] | None = Field(
        None, description="Format; detected from the file when omitted"
    )
    chipset: str | None = Field(None, description="Chip, for formats that cannot name it")
    speed: float = Field(1.0, gt=0, description="Replay speed: 1 = recorded rate, 0 < x")
    loop: bool = Field(True, description="Start again at the end of the file")


SourceConfig = Annotated[
    SimulatedSource | Esp32UdpSource | Esp32SerialSource | NexmonUdpSource | FileSource,
    Field(discriminator="kind"),
]
RouterKind = Literal["simulated", "esp32-udp", "esp32-serial", "nexmon-udp", "file"]


class RouterConfig(Strict):
    """One CSI receiver (router, ESP32 node, Pi) and where its antennas are."""

    id: str = Field(..., min_length=1, description="Unique router id")
    space: str = Field(..., description="Id of the space this router observes")
    kind: RouterKind = Field(..., description="Where the CSI comes from")
    source: SourceConfig = Field(..., description="Parameters of the source kind")
    tx_positions_m: list[Vec3] = Field(
        ..., min_length=1, description="Transmit antenna positions, room metres"
    )
    rx_positions_m: list[Vec3] = Field(
        ..., min_length=1, description="Receive antenna positions, room metres"
    )
    chain_phase_rad: list[list[float]] | None = Field(
        None,
        description="Measured phase of each tx/rx antenna pair, one row per transmit antenna "
        "(`invispose calibrate`); without it positions rest on an estimate from the static "
        "channel, which the room's multipath corrupts",
    )
    enabled: bool = Field(True, description="Start this router with the system")

    @model_validator(mode="before")
    @classmethod
    def _source_kind(cls, data: Any) -> Any:
        # The router's kind is the source's discriminator; users write it once.
        if isinstance(data, dict) and isinstance(data.get("source", {}), dict):
            source = dict(data.get("source") or {})
            source.setdefault("kind", data.get("kind"))
            data = {**data, "source": source}
        return data

    @model_validator(mode="after")
    def _kind_matches(self) -> RouterConfig:
        if self.source.kind != self.kind:
            raise ValueError(f"source.kind {self.source.kind!r} differs from kind {self.kind!r}")
        if self.chain_phase_rad is not None:
            want = (len(self.tx_positions_m), len(self.rx_positions_m))
            got = (len(self.chain_phase_rad), {len(row) for row in self.chain_phase_rad})
            if got[0] != want[0] or got[1] != {want[1]}:
                raise ValueError(
                    f"chain_phase_rad needs {want[0]} rows of {want[1]} phases (one row per "
                    "transmit antenna, one phase per receive antenna)"
                )
            if not all(math.isfinite(v) for row in self.chain_phase_rad for v in row):
                raise ValueError("chain_phase_rad must be finite")
        return self


class ZoneConfig(Strict):
    """A floor polygon whose occupancy is tracked."""

    id: str = Field(..., min_length=1, description="Unique zone id")
    space: str = Field(..., description="Id of the space the zone lies in")
    name: str = Field("", description="Human-readable name")
    polygon_m: list[Vec2] = Field(..., min_length=3, description="Floor polygon (x, y), metres")
    max_occupancy: int | None = Field(
        None, ge=0, description="Raise alert.high_occupancy above this many people"
    )
    restricted: bool = Field(False, description="Raise alert.restricted_zone_breach on entry")


class MqttConfig(Strict):
    """The MQTT bridge (seed topics and Home Assistant discovery)."""

    enabled: bool = Field(True, description="Run the MQTT bridge")
    url: str = Field("mqtt://127.0.0.1:1883", description="Broker URL (mqtt:// or mqtts://)")
    username: str | None = Field(None, description="Broker user name")
    password: str | None = Field(None, description="Broker password (use ${ENV})")
    topic_prefix: str = Field("invispose", description="Prefix of every published topic")
    discovery_prefix: str = Field("homeassistant", description="Home Assistant discovery prefix")
    embedded_broker: bool = Field(True, description="Start a local broker if none answers")
    ca_file: Path | None = Field(None, description="TLS: CA certificate(s) of the broker")
    cert_file: Path | None = Field(None, description="TLS: client certificate")
    key_file: Path | None = Field(None, description="TLS: client key")
    max_message_bytes: int = Field(
        256 * 1024, ge=1024, description="Largest message published or accepted (seed: 256 KB)"
    )
    pose_interval_s: float = Field(
        0.5, ge=0.05, description="pose/current and person updates at most this often per "
        "space (Home Assistant needs no 20 Hz)",
    )
    status_interval_s: float = Field(10.0, gt=0, description="system/status this often")

    @model_validator(mode="after")
    def _url(self) -> MqttConfig:
        _check_url(self.url, "mqtt mqtts ws wss")
        return self


class RetryPolicy(Strict):
    """How a failed delivery is retried (seed §5.2): exponential backoff plus jitter."""

    max_attempts: int = Field(3, ge=1, le=100, description="Attempts in all, the first included")
    retry_on_status: list[int] = Field(
        [408, 429, 500, 502, 503, 504],
        description="HTTP statuses worth another attempt (network errors and timeouts always "
        "are); any other non-2xx gives up",
    )
    base_delay_s: float = Field(2.0, gt=0, description="Delay before the second attempt")
    max_delay_s: float = Field(300.0, gt=0, description="Longest delay between attempts")


class WebhookConfig(Strict):
    """One webhook endpoint and the events it receives (seed ``WebhookConfig``)."""

    id: str = Field(..., min_length=1, description="Unique webhook id")
    url: str = Field(..., description="HTTP(S) URL to POST events to (see webhooks.allow_cidrs)")
    secret: str = Field(..., min_length=16, description="Signing secret (use ${ENV})")
    events: list[str] = Field(["*"], description="Event names (seed catalogue) or '*'")
    headers: dict[str, str] = Field(default_factory=dict, description="Extra request headers")
    retry_policy: RetryPolicy = Field(default_factory=RetryPolicy, description="Retries")
    timeout_s: float = Field(10.0, gt=0, le=120, description="Time allowed for one attempt")
    enabled: bool = Field(True, description="Deliver to this endpoint")

    @model_validator(mode="after")
    def _http_url(self) -> WebhookConfig:
        _check_url(self.url, "http https")
        return self


class WebhooksConfig(Strict):
    """Webhook endpoints and where deliveries may go."""

    allow_cidrs: list[str] = Field(
        default_factory=list,
        description="Non-public networks deliveries may reach (e.g. 192.168.0.0/16 for a Home "
        "Assistant on the LAN); loopback, private, link-local and metadata addresses are "
        "refused unless listed",
    )
    endpoints: list[WebhookConfig] = Field(default_factory=list, description="Endpoints")

    @model_validator(mode="before")
    @classmethod
    def _list_is_endpoints(cls, data: Any) -> Any:
        return {"endpoints": data} if isinstance(data, list) else data

    @model_validator(mode="after")
    def _networks(self) -> WebhooksConfig:
        _check_networks(self.allow_cidrs, "allow_cidrs")
        return self


class AlertConfig(Strict):
    """Alert rules each space watches (zone rules are the zones' own)."""

    latency_p95_ms: float = Field(
        1000.0, gt=0, description="alert.performance_degraded when a space's hop latency "
        "(newest packet to frame) has a p95 above this over window_s",
    )
    window_s: float = Field(30.0, gt=0, description="Window of the latency p95")
    consecutive_failures: int = Field(
        5, ge=1, description="alert.system_error after this many failed inferences in a row"
    )
    repeat_s: float = Field(300.0, gt=0, description="Repeat a lasting degradation this often")
    inactivity_s: float | None = Field(
        None, gt=0, description="analytics.threshold_exceeded (inactive_s) when a person "
        "present has stayed within inactivity_radius_m this long (e.g. 1800); None: off",
    )
    inactivity_radius_m: float = Field(
        0.5, gt=0, description="Movement within this radius does not count as movement"
    )


class StoreConfig(Strict):
    """Where history, persons and events are kept."""

    path: Path = Field(Path("var/invispose.db"), description="SQLite database file")
    history_days: float = Field(7.0, gt=0, description="Pose history kept, in days")


JWT_ALGORITHMS = ("HS256", "RS256", "ES256")
RATE_TIERS = ("default", "authenticated", "premium", "streaming")


class AuthConfig(Strict):
    """API credentials: JWT bearer tokens and API keys (invispose/security.py)."""

    enabled: bool = Field(
        True, description="Require a credential on every route but /api/v1/system/health; "
        "false is allowed only when serve.host is a loopback address (a warning at start)",
    )
    algorithm: Literal["HS256", "RS256", "ES256"] = Field(
        "HS256", description="JWT signature algorithm; tokens signed otherwise are refused"
    )
    jwt_secret: str | None = Field(
        None, description="HS256 signing secret (use ${ENV}); unset: generated on first start "
        "and kept beside the store (jwt-secret, mode 0600)",
    )
    private_key_file: Path | None = Field(
        None, description="RS256/ES256: PEM private key that signs issued tokens (unset: "
        "this server verifies tokens only, e.g. from an external issuer)",
    )
    public_key_file: Path | None = Field(
        None, description="RS256/ES256: PEM public key that verifies tokens"
    )
    issuer: str | None = Field(None, description="`iss` written and required, if set")
    audience: str | None = Field(None, description="`aud` written and required, if set")
    leeway_s: float = Field(30.0, ge=0, le=600, description="Clock skew allowed on exp/iat")
    token_ttl_s: float = Field(86_400.0, gt=0, description="Lifetime of issued JWTs, seconds")
    failures_per_minute: int = Field(
        20, ge=1, description="Failed authentications one address may make per minute; "
        "beyond it 429 until the minute ends",
    )
    recheck_s: float = Field(
        2.0, gt=0, le=60,
        description="Open WebSocket sessions re-check their credential (revoked key, expired "
        "token) this often; API keys are reloaded from the store as often",
    )

    @model_validator(mode="before")
    @classmethod
    def _empty_secret_is_unset(cls, data: Any) -> Any:
        # `${INVISPOSE_JWT_SECRET:-}` yields "" when the variable is unset.
        if isinstance(data, dict) and data.get("jwt_secret") == "":
            data = {**data, "jwt_secret": None}
        return data

    @model_validator(mode="after")
    def _keys_for_algorithm(self) -> AuthConfig:
        if self.algorithm == "HS256":
            if self.private_key_file or self.public_key_file:
                raise ValueError("key files are for RS256/ES256; HS256 uses jwt_secret")
            if self.jwt_secret is not None and len(self.jwt_secret) < 32:
                raise ValueError("jwt_secret must be at least 32 characters")
        elif self.public_key_file is None:
            raise ValueError(f"{self.algorithm} needs public_key_file")
        return self


class RateTier(Strict):
    """One rate limit: ``requests`` per ``window_s`` seconds."""

    requests: int = Field(..., ge=1, description="Requests allowed per window")
    window_s: float = Field(..., gt=0, le=86_400, description="Window length, seconds")


def _tier(requests: int, window_s: float) -> Any:
    return Field(
        default_factory=lambda: RateTier(requests=requests, window_s=window_s),
        description=f"Default {requests} per {window_s:g} s",
    )


class RateLimitConfig(Strict):
    """The seed's rate-limit tiers: anonymous callers per address (``default``), credentials
    per subject (``authenticated``; ``premium`` for keys or tokens of that tier), and
    WebSocket connections and messages per subject (``streaming``)."""

    enabled: bool = Field(True, description="Limit requests")
    default: RateTier = _tier(100, 3600)
    authenticated: RateTier = _tier(1000, 3600)
    premium: RateTier = _tier(10_000, 3600)
    streaming: RateTier = _tier(3600, 3600)


class CorsConfig(Strict):
    """Which web pages (origins) may call the API and open the stream."""

    allow_origins: list[str] = Field(
        default_factory=list,
        description="Origins (scheme://host[:port]) allowed besides the API's own; '*' any "
        "(only with allow_credentials false)",
    )
    allow_credentials: bool = Field(
        False, description="Let browsers send cookies and HTTP auth to allowed origins"
    )
    max_age_s: int = Field(600, ge=0, description="How long browsers may cache a preflight")

    @model_validator(mode="after")
    def _no_wildcard_with_credentials(self) -> CorsConfig:
        if "*" in self.allow_origins and self.allow_credentials:
            raise ValueError("allow_origins '*' together with allow_credentials lets every "
                             "web page act as the signed-in user; list the origins instead")
        for origin in self.allow_origins:
            if origin != "*" and not re.fullmatch(r"https?://[^/\s]+", origin):
                raise ValueError(f"origin {origin!r} must be scheme://host[:port] or '*'")
        return self


class ApiVersion(Strict):
    """One API version's lifecycle (seed §2.4)."""

    status: Literal["stable", "beta", "deprecated"] = Field("stable", description="Status")
    deprecated: bool = Field(False, description="Answer with Deprecation/Sunset/Link headers")
    deprecated_since: str | None = Field(
        None, description="When it was deprecated (ISO 8601 date), for the Deprecation header"
    )
    sunset_date: str | None = Field(None, description="When it goes (ISO 8601 date)")
    migration_guide: str | None = Field(None, description="URL of the migration guide")


class ApiConfig(Strict):
    """API versions, rate limits and CORS."""

    versions: dict[str, ApiVersion] = Field(
        default_factory=lambda: {"v1": ApiVersion()}, description="Versions served"
    )
    rate_limits: RateLimitConfig = Field(
        default_factory=RateLimitConfig, description="Rate-limit tiers"
    )
    cors: CorsConfig = Field(default_factory=CorsConfig, description="Allowed web origins")
    docs: bool = Field(True, description="Serve /docs and /openapi.json (to credentials)")


class InferenceConfig(Strict):
    """The batched PoseEstimator deployment."""

    max_batch_size: int = Field(32, ge=1, description="Windows per batch at most")
    batch_wait_timeout_s: float = Field(
        0.0, ge=0,
        description="Wait to fill a batch, seconds (0: take what is queued; requests that "
        "arrive while a batch runs form the next one)",
    )
    num_gpus: float = Field(0.0, ge=0, description="GPUs per replica (0 = CPU)")
    num_cpus: float = Field(1.0, gt=0, description="CPUs per replica")
    torch_threads: int = Field(
        1, ge=0, description="Torch CPU threads per replica (0 = torch's default)"
    )
    min_replicas: int = Field(1, ge=1, description="Autoscaling lower bound")
    max_replicas: int = Field(1, ge=1, description="Autoscaling upper bound")


class WebSocketConfig(Strict):
    """Bounds on each /ws/v1/stream client: one careless or hostile client costs the
    gateway a fixed amount and never reaches another."""

    queue_frames: int = Field(
        32, ge=1, description="Pose frames waiting for one client; beyond it the oldest drop"
    )
    queue_messages: int = Field(
        256, ge=1,
        description="Events and replies waiting for one client; beyond it the oldest event "
        "drops (the client is told the first id it missed) and new replies drop",
    )
    max_message_bytes: int = Field(
        64 * 1024, ge=256, description="Largest message a client may send"
    )
    messages_per_s: int = Field(20, ge=1, description="Sustained client messages per second")
    message_burst: int = Field(40, ge=1, description="Client messages allowed in one burst")
    idle_s: float = Field(
        60.0, gt=0, description="A client with no subscription that sends nothing is closed"
    )
    max_per_peer: int = Field(
        256, ge=1, description="Concurrent WebSocket connections from one address"
    )


class ServeConfig(Strict):
    """The HTTP gateway and inference deployments."""

    host: str = Field("127.0.0.1", description="Address the gateway binds")
    port: int = Field(8000, ge=1, le=65535, description="HTTP port of the gateway")
    gateway_replicas: int = Field(1, ge=1, description="Fixed gateway replicas")
    stream_port: int | None = Field(
        None, ge=0, le=65535,
        description="Port where each gateway replica serves /ws/v1/stream itself, past Serve's "
        "HTTP proxy (every message through the proxy costs both processes CPU); replicas on "
        "one machine share it (SO_REUSEPORT). None: port + 1; 0: only through the proxy",
    )
    inference: InferenceConfig = Field(default_factory=InferenceConfig, description="Batching")
    websocket: WebSocketConfig = Field(
        default_factory=WebSocketConfig, description="Per-client bounds of /ws/v1/stream"
    )

    @property
    def stream_port_resolved(self) -> int | None:
        """The direct stream port, or None when streams go through the proxy only."""
        if self.stream_port == 0:
            return None
        return self.port + 1 if self.stream_port is None else self.stream_port


class ModelConfig(Strict):
    """The pose model and the windows it consumes.

    ``model: classical`` (shorthand for ``{estimator: classical}``) runs the classical
    localiser (``invispose.localise``: back-projection, no weights) instead of a checkpoint.
    """

    estimator: Literal["learned", "classical"] = Field(
        "learned",
        description="learned: the checkpoint's network; classical: back-projection, no weights "
        "(also used, with a warning, when the checkpoint file is missing)",
    )
    checkpoint: Path = Field(Path("models/invispose-space.pt"), description="Weights file")
    rate_hz: float = Field(100.0, gt=0, description="Rate of the window's uniform time grid")
    window_samples: int = Field(64, ge=8, description="Time steps per window")
    hop_s: float = Field(0.05, gt=0, description="A window every hop_s seconds per router")
    n_subcarriers: int = Field(32, ge=4, description="Canonical subcarriers per link")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Inference device")


class RuntimeConfig(Strict):
    """How the actors share processes."""

    routers_per_process: int = Field(
        4, ge=1,
        description="Routers of one space that share an ingest process; the space's first "
        "process also runs its tracker (4: a space of up to four routers is one process)",
    )
    max_hops_in_flight: int = Field(
        2, ge=1, description="A space's hops awaiting inference at once; a newer hop "
        "replaces the one waiting behind them (counted)",
    )


class SiteConfig(Strict):
    """The whole installation."""

    name: str = Field("InvisPose", description="Site name shown in the dashboard")
    spaces: list[SpaceConfig] = Field(..., min_length=1, description="Rooms")
    routers: list[RouterConfig] = Field(default_factory=list, description="CSI receivers")
    zones: list[ZoneConfig] = Field(default_factory=list, description="Floor zones")
    mqtt: MqttConfig = Field(default_factory=MqttConfig, description="MQTT bridge")
    webhooks: WebhooksConfig = Field(default_factory=WebhooksConfig, description="Webhooks")
    store: StoreConfig = Field(default_factory=StoreConfig, description="History store")
    alerts: AlertConfig = Field(default_factory=AlertConfig, description="Alert rules")
    auth: AuthConfig = Field(default_factory=AuthConfig, description="API authentication")
    api: ApiConfig = Field(default_factory=ApiConfig, description="Versions, limits, CORS")
    serve: ServeConfig = Field(default_factory=ServeConfig, description="HTTP and inference")
    model: ModelConfig = Field(default_factory=ModelConfig, description="Pose model")
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig, description="Processes")

    @model_validator(mode="before")
    @classmethod
    def _model_shorthand(cls, data: Any) -> Any:
        # `model: classical` or `model: learned` names the estimator alone
        if isinstance(data, dict) and isinstance(data.get("model"), str):
            data = {**data, "model": {"estimator": data["model"]}}
        return data

    @model_validator(mode="after")
    def _references(self) -> SiteConfig:
        problems: list[str] = []
        spaces = {s.id: s for s in self.spaces}
        for kind, ids in (
            ("space", [s.id for s in self.spaces]),
            ("router", [r.id for r in self.routers]),
            ("zone", [z.id for z in self.zones]),
            ("webhook", [w.id for w in self.webhooks.endpoints]),
        ):
            dupes = sorted({i for i in ids if ids.count(i) > 1})
            if dupes:
                problems.append(f"duplicate {kind} ids: {', '.join(dupes)}")
        for item_id, space_id in [(r.id, r.space) for r in self.routers] + [
            (z.id, z.space) for z in self.zones
        ]:
            if space_id not in spaces:
                problems.append(f"{item_id}: unknown space {space_id!r}")
        worlds: dict[str, tuple[int, int]] = {}
        for router in self.routers:
            space = spaces.get(router.space)
            if space is None:
                continue
            if isinstance(router.source, SimulatedSource):
                world = (router.source.seed, router.source.people)
                if worlds.setdefault(router.space, world) != world:
                    problems.append(
                        f"{router.id}: simulated routers of space {router.space!r} must share "
                        "seed and people (they observe one simulated world)"
                    )
            for pos in [*router.tx_positions_m, *router.rx_positions_m]:
                if any(p < -0.5 or p > s + 0.5 for p, s in zip(pos, space.size_m, strict=True)):
                    problems.append(f"{router.id}: antenna at {pos} lies outside {space.id}")
                    break
        if not self.auth.enabled and not is_loopback(self.serve.host):
            problems.append(
                f"auth.enabled: false needs a loopback serve.host (127.0.0.1, ::1, localhost), "
                f"not {self.serve.host!r}: anyone who reaches the port would read every "
                "person's positions"
            )
        if "v1" not in self.api.versions:
            problems.append("api.versions must contain v1 (the routes live under /api/v1)")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def space(self, space_id: str) -> SpaceConfig:
        """The space with this id."""
        for space in self.spaces:
            if space.id == space_id:
                return space
        raise KeyError(space_id)


def interpolate_env(value: Any, env: dict[str, str], path: str = "") -> Any:
    """Replace ``${NAME}`` / ``${NAME:-default}`` in every string of a YAML tree."""
    if isinstance(value, dict):
        return {
            k: interpolate_env(v, env, f"{path}.{k}" if path else str(k)) for k, v in value.items()
        }
    if isinstance(value, list):
        return [interpolate_env(v, env, f"{path}.{i}") for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise ConfigError(
            f"{path}: environment variable {name} is not set",
            [(path, f"environment variable {name} is not set")],
        )

    return ENV_PATTERN.sub(substitute, value)


def parse_config(data: Any, env: dict[str, str] | None = None) -> SiteConfig:
    """Validate a YAML tree; every problem is reported with its field path."""
    if not isinstance(data, dict):
        raise ConfigError("config must be a mapping", [("", "config must be a mapping")])
    data = interpolate_env(data, dict(os.environ) if env is None else env)
    try:
        return SiteConfig.model_validate(data)
    except ValidationError as exc:
        problems = [
            (".".join(str(p) for p in err["loc"]) or "(root)", err["msg"]) for err in exc.errors()
        ]
        lines = "\n".join(f"  {loc}: {msg}" for loc, msg in problems)
        raise ConfigError(f"{len(problems)} problem(s) in config:\n{lines}", problems) from exc


def load_config(path: str | os.PathLike[str], env: dict[str, str] | None = None) -> SiteConfig:
    """Read and validate a YAML config file."""
    file_path = Path(path)
    try:
        data = yaml.safe_load(file_path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read {file_path}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file_path}: not valid YAML: {exc}") from exc
    return parse_config(data, env)


DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "default.yaml"


def resolve_paths(site: SiteConfig, base: Path | None = None) -> SiteConfig:
    """The same config with every relative path made absolute against ``base`` (or CWD).

    Actors run in other working directories (and on other nodes), so the process that
    reads the config resolves its paths before handing it on.
    """
    root = (base or Path.cwd()).resolve()

    def absolute(path: str) -> str:
        return str(path if Path(path).is_absolute() else (root / path).resolve())

    data = site.model_dump(mode="json")
    data["store"]["path"] = absolute(data["store"]["path"])
    data["model"]["checkpoint"] = absolute(data["model"]["checkpoint"])
    for router in data["routers"]:
        if router["kind"] == "file":
            router["source"]["path"] = absolute(router["source"]["path"])
    return SiteConfig.model_validate(data)
