"""The API's security model (seed §7): credentials, scopes, rate limits, origins, versions.

No Ray and no web framework here: the gateway (``deployments/api/auth.py``), the stream
route and the ``invispose keys`` command build on it.

Credentials are either JWT bearer tokens (HS256 with a secret by default, RS256/ES256
from key files; ``sub``, ``iat``, ``exp`` and ``scopes`` as in the seed) or API keys
(``ivp_<id>_<secret>``), stored as SHA-256 digests: a key is 256 random bits, so a
fast digest is as strong as a slow one and costs nothing per request. A token made by
the token endpoint from a key names that key (``kid`` claim) and dies with it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import math
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import jwt

from invispose.config import ApiVersion, AuthConfig, RateLimitConfig

POSE_READ = "pose:read"
ANALYTICS_READ = "analytics:read"
SYSTEM_READ = "system:read"
CONFIG_WRITE = "config:write"
ZONE_WRITE = "zone:write"
ADMIN_ALL = "admin:all"
STREAM_SUBSCRIBE = "stream:subscribe"
STREAM_PUBLISH = "stream:publish"
#: the seed's eight scopes; admin:all grants every other
SCOPES = (
    POSE_READ, ANALYTICS_READ, SYSTEM_READ, CONFIG_WRITE, ZONE_WRITE, ADMIN_ALL,
    STREAM_SUBSCRIBE, STREAM_PUBLISH,
)
TIERS = ("authenticated", "premium")  # what a credential may carry; the rest are per use

KEY_PREFIX = "ivp_"
KEY_ID = re.compile(r"[0-9a-f]{12}")
KEY_PATTERN = re.compile(r"ivp_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")
SECRET_FILE = "jwt-secret"

Reason = Literal[
    "missing", "malformed", "expired", "not_yet_valid", "bad_signature", "algorithm",
    "claims", "unknown_key", "revoked",
]


class AuthError(Exception):
    """No valid credential: HTTP 401, WebSocket close 4001. ``reason`` is a short code."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class ScopeError(Exception):
    """A valid credential without the scope a route needs: HTTP 403."""

    def __init__(self, scope: str) -> None:
        super().__init__(f"this credential lacks the scope {scope!r}")
        self.scope = scope


def check_scopes(values: Iterable[Any]) -> tuple[str, ...]:
    """The scopes, validated and de-duplicated in order (ValueError names a bad one)."""
    out: list[str] = []
    for value in values:
        if value not in SCOPES:
            raise ValueError(f"unknown scope {value!r}; scopes are {', '.join(SCOPES)}")
        if value not in out:
            out.append(value)
    return tuple(out)


@dataclass(frozen=True)
class Principal:
    """Who a request acts for, and what it may do."""

    subject: str
    scopes: frozenset[str]
    kind: Literal["jwt", "api_key", "anonymous"]
    key_id: str | None = None  # the API key, or the key a token was issued for
    tier: str = "authenticated"
    expires_s: float | None = None  # a token's exp (Unix seconds)

    def allows(self, scope: str) -> bool:
        """Whether this principal holds ``scope`` (admin:all holds all)."""
        return ADMIN_ALL in self.scopes or scope in self.scopes


#: what routes see when auth.enabled is false (a loopback bind): every scope
LOOPBACK = Principal("loopback", frozenset(SCOPES), "anonymous")


# -- JWT -------------------------------------------------------------------------------


def jwt_secret(auth: AuthConfig, state_dir: Path) -> str:
    """The HS256 secret: configured, else kept in ``state_dir/jwt-secret`` (made once,
    mode 0600), so tokens survive restarts and every gateway replica shares it."""
    if auth.jwt_secret is not None:
        return auth.jwt_secret
    path = state_dir / SECRET_FILE
    try:
        text = path.read_text().strip()
        if len(text) >= 32:
            return text
    except FileNotFoundError:
        pass
    state_dir.mkdir(parents=True, exist_ok=True)
    text = secrets.token_urlsafe(48)
    tmp = path.with_suffix(".tmp")
    tmp.touch(mode=0o600)
    tmp.chmod(0o600)
    tmp.write_text(text + "\n")
    tmp.replace(path)
    return text


class TokenCodec:
    """Issues and verifies JWTs with one configured algorithm and its key(s)."""

    def __init__(
        self,
        algorithm: str,
        verify_key: Any,
        signing_key: Any | None,
        *,
        leeway_s: float = 30.0,
        ttl_s: float = 86_400.0,
        issuer: str | None = None,
        audience: str | None = None,
    ) -> None:
        self.algorithm = algorithm
        self.verify_key = verify_key
        self.signing_key = signing_key
        self.leeway_s = leeway_s
        self.ttl_s = ttl_s
        self.issuer = issuer
        self.audience = audience

    @classmethod
    def from_config(cls, auth: AuthConfig, secret: str | None = None) -> TokenCodec:
        """The codec ``auth`` describes; HS256 needs ``secret`` (see ``jwt_secret``)."""
        verify: str | bytes | None
        sign: str | bytes | None
        if auth.algorithm == "HS256":
            verify = sign = secret or auth.jwt_secret
            if not verify:
                raise ValueError("HS256 needs a secret (auth.jwt_secret or the kept one)")
        else:
            assert auth.public_key_file is not None  # AuthConfig checks it
            verify = auth.public_key_file.read_bytes()
            sign = auth.private_key_file.read_bytes() if auth.private_key_file else None
        return cls(auth.algorithm, verify, sign, leeway_s=auth.leeway_s,
                   ttl_s=auth.token_ttl_s, issuer=auth.issuer, audience=auth.audience)

    @property
    def can_issue(self) -> bool:
        """Whether this server holds a signing key (RS256/ES256 may verify only)."""
        return self.signing_key is not None

    def issue(
        self,
        subject: str,
        scopes: Sequence[str],
        *,
        ttl_s: float | None = None,
        key_id: str | None = None,
        tier: str | None = None,
        now_s: float | None = None,
    ) -> tuple[str, float]:
        """A signed token and its lifetime in seconds."""
        if self.signing_key is None:
            raise ValueError("no signing key: this server verifies tokens only")
        now = math.floor(time.time() if now_s is None else now_s)
        life = float(self.ttl_s if ttl_s is None else ttl_s)
        claims: dict[str, Any] = {
            "sub": subject, "iat": now, "exp": now + math.ceil(life),
            "scopes": list(check_scopes(scopes)),
        }
        if key_id is not None:
            claims["kid"] = key_id
        if tier is not None and tier != "authenticated":
            claims["tier"] = tier
        if self.issuer is not None:
            claims["iss"] = self.issuer
        if self.audience is not None:
            claims["aud"] = self.audience
        return jwt.encode(claims, self.signing_key, algorithm=self.algorithm), life

    def verify(self, token: str) -> Principal:
        """The principal a token names; AuthError says why it is not valid."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError as exc:
            raise AuthError("malformed", "the bearer token is not a JWT") from exc
        if header.get("alg") != self.algorithm:  # `none` and algorithm confusion
            raise AuthError(
                "algorithm", f"tokens must be signed with {self.algorithm}, "
                f"not {header.get('alg')!r}",
            )
        try:
            claims = jwt.decode(
                token,
                self.verify_key,
                algorithms=[self.algorithm],
                leeway=self.leeway_s,
                issuer=self.issuer,
                audience=self.audience,
                options={"require": ["exp", "iat", "sub"], "verify_aud": bool(self.audience)},
            )
        except jwt.ExpiredSignatureError as exc:
            raise AuthError("expired", "the token has expired") from exc
        except jwt.ImmatureSignatureError as exc:
            raise AuthError("not_yet_valid", "the token is not valid yet") from exc
        except jwt.InvalidSignatureError as exc:
            raise AuthError("bad_signature", "the token's signature does not verify") from exc
        except (jwt.MissingRequiredClaimError, jwt.InvalidIssuedAtError,
                jwt.InvalidIssuerError, jwt.InvalidAudienceError) as exc:
            raise AuthError("claims", f"the token's claims are not valid: {exc}") from exc
        except jwt.InvalidTokenError as exc:
            raise AuthError("malformed", "the bearer token is not a valid JWT") from exc
        return self._principal(claims)

    def _principal(self, claims: dict[str, Any]) -> Principal:
        sub, raw = claims.get("sub"), claims.get("scopes", [])
        if isinstance(raw, str):  # OAuth2 style: space-separated
            raw = raw.split()
        if not isinstance(sub, str) or not sub or not isinstance(raw, list) or not all(
            isinstance(s, str) for s in raw
        ):
            raise AuthError("claims", "sub must be a string and scopes a list of strings")
        kid, tier = claims.get("kid"), claims.get("tier", "authenticated")
        return Principal(
            subject=sub,
            scopes=frozenset(s for s in raw if s in SCOPES),  # unknown scopes grant nothing
            kind="jwt",
            key_id=kid if isinstance(kid, str) else None,
            tier=tier if tier in TIERS else "authenticated",
            expires_s=float(claims["exp"]),
        )


# -- API keys --------------------------------------------------------------------------


@dataclass(frozen=True)
class ApiKey:
    """An API key's record (the secret itself is never kept)."""

    id: str
    name: str
    scopes: tuple[str, ...]
    tier: str = "authenticated"
    created_s: float = 0.0
    last_used_s: float | None = None
    revoked_s: float | None = None

    def public(self) -> dict[str, Any]:
        """What the API and CLI show of it."""
        def iso(t: float | None) -> str | None:
            return None if t is None else dt.datetime.fromtimestamp(t, dt.UTC).isoformat()

        return {
            "id": self.id, "name": self.name, "scopes": list(self.scopes), "tier": self.tier,
            "created_at": iso(self.created_s), "last_used_at": iso(self.last_used_s),
            "revoked_at": iso(self.revoked_s), "active": self.revoked_s is None,
        }


def key_digest(key: str) -> str:
    """The stored form of an API key."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_api_key(
    name: str, scopes: Sequence[str], tier: str = "authenticated", now_s: float | None = None
) -> tuple[ApiKey, str]:
    """A new key's record and the key itself (shown once, then only its digest is kept)."""
    if tier not in TIERS:
        raise ValueError(f"tier must be one of {', '.join(TIERS)}")
    if not name or len(name) > 200:
        raise ValueError("a key needs a name of 1 to 200 characters")
    key_id = secrets.token_hex(6)
    key = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    created_us = round((time.time() if now_s is None else now_s) * 1e6)  # as stored
    record = ApiKey(key_id, name, check_scopes(scopes), tier, created_us / 1e6)
    return record, key


class KeyRing:
    """The gateway's view of the stored keys: id → (digest, record), replaced whole when
    reloaded; last-used times collected for the store."""

    def __init__(self) -> None:
        self._keys: dict[str, tuple[str, ApiKey]] = {}
        self._used: dict[str, float] = {}
        self.loaded_s: float | None = None

    def replace(self, rows: Iterable[tuple[ApiKey, str]], now_s: float | None = None) -> None:
        """Adopt the store's keys (records with their digests)."""
        self._keys = {record.id: (digest, record) for record, digest in rows}
        self.loaded_s = time.time() if now_s is None else now_s

    def add(self, record: ApiKey, digest: str) -> None:
        """Know a key created here before the next reload."""
        self._keys[record.id] = (digest, record)

    def revoke(self, key_id: str, now_s: float | None = None) -> None:
        """Refuse a key at once (the store is told separately)."""
        entry = self._keys.get(key_id)
        if entry is not None:
            when = time.time() if now_s is None else now_s
            self._keys[key_id] = (entry[0], replace(entry[1], revoked_s=when))

    def verify(self, key: str, now_s: float | None = None) -> Principal:
        """The principal an API key stands for; AuthError if unknown or revoked."""
        match = KEY_PATTERN.fullmatch(key)
        if match is None:
            raise AuthError("malformed", "not an InvisPose API key")
        entry = self._keys.get(match.group(1))
        if entry is None or not hmac.compare_digest(entry[0], key_digest(key)):
            raise AuthError("unknown_key", "unknown API key")
        record = entry[1]
        if record.revoked_s is not None:
            raise AuthError("revoked", "this API key has been revoked")
        self._used[record.id] = time.time() if now_s is None else now_s
        return Principal(f"key:{record.id}", frozenset(record.scopes), "api_key",
                         key_id=record.id, tier=record.tier)

    def active(self, key_id: str) -> bool:
        """Whether the key exists and is not revoked."""
        entry = self._keys.get(key_id)
        return entry is not None and entry[1].revoked_s is None

    def take_used(self) -> dict[str, float]:
        """Last-used times since the previous call (to write to the store)."""
        used, self._used = self._used, {}
        return used


class Authenticator:
    """Turns a presented credential into a Principal, or says why it cannot."""

    def __init__(self, codec: TokenCodec, keys: KeyRing) -> None:
        self.codec = codec
        self.keys = keys

    def authenticate(self, credential: str | None) -> Principal:
        """A JWT or an API key (or None: missing)."""
        if not credential:
            raise AuthError(
                "missing", "a credential is required: Authorization: Bearer <token or API key>"
            )
        if credential.startswith(KEY_PREFIX):
            return self.keys.verify(credential)
        return self.still_valid(self.codec.verify(credential))

    def still_valid(self, principal: Principal, now_s: float | None = None) -> Principal:
        """The principal if it still holds (token not expired, key not revoked)."""
        now = time.time() if now_s is None else now_s
        if principal.kind == "anonymous":
            return principal
        if principal.expires_s is not None and now > principal.expires_s + self.codec.leeway_s:
            raise AuthError("expired", "the token has expired")
        if principal.key_id is not None and not self.keys.active(principal.key_id):
            raise AuthError("revoked", "the API key behind this credential has been revoked")
        return principal


def bearer(authorization: str | None) -> str | None:
    """The credential of an ``Authorization: Bearer`` header (AuthError if malformed)."""
    if authorization is None:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise AuthError("malformed", "Authorization must be 'Bearer <token or API key>'")
    return value.strip()


BEARER_PROTOCOL = "bearer"


def websocket_credential(
    authorization: str | None, query_token: str | None, protocols: Sequence[str]
) -> tuple[str | None, str | None]:
    """The credential a WebSocket upgrade carries, and the subprotocol to accept.

    The seed's ``?token=``; an ``Authorization`` header (non-browser clients); or, for
    browsers, which cannot set headers on a WebSocket, ``Sec-WebSocket-Protocol:
    bearer, <token>`` (the server then accepts the ``bearer`` subprotocol).
    """
    if authorization is not None:
        return bearer(authorization), None
    if BEARER_PROTOCOL in protocols:
        at = protocols.index(BEARER_PROTOCOL)
        if at + 1 < len(protocols):
            return protocols[at + 1], BEARER_PROTOCOL
        raise AuthError("malformed", "the bearer subprotocol must be followed by a token")
    return query_token or None, None


# -- rate limits -----------------------------------------------------------------------


@dataclass(frozen=True)
class RateDecision:
    """One request's standing in its rate-limit window."""

    allowed: bool
    policy: str
    limit: int
    remaining: int
    window_s: float
    reset_at_s: float  # when the window ends (Unix seconds)
    now_s: float

    @property
    def reset_s(self) -> int:
        """Whole seconds until the window ends (at least 1)."""
        return max(1, math.ceil(self.reset_at_s - self.now_s))

    def headers(self) -> dict[str, str]:
        """The seed's X-RateLimit-* headers and the IETF RateLimit / RateLimit-Policy
        fields (draft-ietf-httpapi-ratelimit-headers), plus Retry-After when refused."""
        out = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(math.ceil(self.reset_at_s)),
            "RateLimit-Policy": f'"{self.policy}";q={self.limit};w={math.ceil(self.window_s)}',
            "RateLimit": f'"{self.policy}";r={self.remaining};t={self.reset_s}',
        }
        if not self.allowed:
            out["Retry-After"] = str(self.reset_s)
        return out


class RateLimited(Exception):
    """A request over its rate-limit tier: HTTP 429 with Retry-After."""

    def __init__(self, decision: RateDecision, detail: str) -> None:
        super().__init__(detail)
        self.decision = decision
        self.detail = detail


@dataclass
class _Window:
    index: int
    count: int = 0


@dataclass
class RateLimiter:
    """Fixed-window counters per (policy, client): ``limit`` requests per ``window_s``,
    windows aligned to the Unix epoch (so every replica's windows coincide).

    ``share`` divides each limit among that many gateway replicas: each enforces its part
    (rounded up), so all together never admit more than the limit plus one request per
    replica; a client whose requests land unevenly on replicas is refused somewhat
    early. Counters of ended windows are dropped as the map grows.
    """

    policies: Mapping[str, tuple[int, float]]
    share: int = 1
    clock: Callable[[], float] = time.time
    max_clients: int = 100_000
    _counters: dict[tuple[str, str], _Window] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: RateLimitConfig, share: int = 1) -> RateLimiter:
        """The seed's tiers from the config."""
        tiers = {"default": config.default, "authenticated": config.authenticated,
                 "premium": config.premium, "streaming": config.streaming}
        return cls({k: (t.requests, t.window_s) for k, t in tiers.items()}, share=share)

    def hit(self, policy: str, client: str) -> RateDecision:
        """Count one request of ``client`` under ``policy`` (refused ones count too)."""
        return self._decide(policy, client, count=True)

    def over(self, policy: str, client: str) -> RateDecision | None:
        """The refusal ``client`` would get now under ``policy`` (None: it is within),
        counting nothing."""
        decision = self._decide(policy, client, count=False, next_request=True)
        return None if decision.allowed else decision

    def _decide(self, policy: str, client: str, *, count: bool,
                next_request: bool = False) -> RateDecision:
        limit, window_s = self.policies[policy]
        local = max(1, math.ceil(limit / self.share))
        now = self.clock()
        index = math.floor(now / window_s)
        counter = self._counters.get((policy, client))
        if counter is None or counter.index != index:
            if not count:
                counter = _Window(index)
            else:
                if counter is None and len(self._counters) >= self.max_clients:
                    self._sweep(now)
                counter = self._counters[(policy, client)] = _Window(index)
        if count:
            counter.count += 1
        used = counter.count + (1 if next_request else 0)
        # with replicas sharing the limit, this one's remainder times their number
        remaining = min(limit, max(0, local - used) * self.share)
        return RateDecision(used <= local, policy, limit, remaining, window_s,
                            (index + 1) * window_s, now)

    def _sweep(self, now: float) -> None:
        stale = [k for k, w in self._counters.items()
                 if w.index != math.floor(now / self.policies[k[0]][1])]
        for key in stale:
            del self._counters[key]
        if len(self._counters) >= self.max_clients:  # all live: forget the oldest half
            for key in list(self._counters)[: self.max_clients // 2]:
                del self._counters[key]


class WindowCounts:
    """The authoritative count of one limit across replicas: requests taken per
    (policy, client) in each fixed window. The limits actor holds one; replicas take
    leases of tokens from it (``LeasedLimiter``)."""

    def __init__(self, max_clients: int = 100_000) -> None:
        self._used: dict[tuple[str, str], tuple[int, int]] = {}  # -> (window index, used)
        self.max_clients = max_clients

    def take(self, policy: str, client: str, index: int, want: int, limit: int
             ) -> tuple[int, int]:
        """Grant up to ``want`` of the window's remaining tokens: (granted, used since)."""
        key = (policy, client)
        at, used = self._used.get(key, (index, 0))
        if at < index:
            at, used = index, 0
        elif at > index:  # a replica whose clock is behind: nothing for a past window
            return 0, limit
        if key not in self._used and len(self._used) >= self.max_clients:
            self._used = {k: v for k, v in self._used.items() if v[0] >= index}
        granted = max(0, min(want, limit - used))
        self._used[key] = (at, used + granted)
        return granted, used + granted


Take = Callable[[str, str, int, int, int], Awaitable[tuple[int, int]]]


@dataclass
class _Lease:
    index: int
    tokens: int = 0  # taken from the shared count, not yet used here
    used: int = 0  # the shared count at the last take


@dataclass
class LeasedLimiter:
    """One limit across gateway replicas, exact: the counts live in one place
    (``WindowCounts`` behind ``take``), and each replica takes tokens in leases of
    ``⌈limit / (4 · replicas)⌉`` (one at a time for small limits). All replicas together
    never admit more than the limit; a client is refused early by at most the tokens other
    replicas hold unused in their leases (a quarter of the limit at most). One shared call
    per lease, not per request."""

    policies: Mapping[str, tuple[int, float]]
    take: Take
    replicas: int = 2
    clock: Callable[[], float] = time.time
    _leases: dict[tuple[str, str], _Lease] = field(default_factory=dict)

    async def hit(self, policy: str, client: str) -> RateDecision:
        """Count one request of ``client`` under ``policy``."""
        limit, window_s = self.policies[policy]
        now = self.clock()
        index = math.floor(now / window_s)
        lease = self._leases.get((policy, client))
        if lease is None or lease.index != index:
            if len(self._leases) >= 100_000:
                self._leases = {k: v for k, v in self._leases.items() if v.index == index}
            lease = self._leases[(policy, client)] = _Lease(index)
        if lease.tokens == 0:
            size = max(1, math.ceil(limit / (4 * self.replicas)))
            granted, lease.used = await self.take(policy, client, index, size, limit)
            lease.tokens += granted
        allowed = lease.tokens > 0
        lease.tokens -= allowed
        remaining = max(0, limit - lease.used) + lease.tokens
        return RateDecision(allowed, policy, limit, min(remaining, limit), window_s,
                            (index + 1) * window_s, now)


# -- origins and versions ----------------------------------------------------------------


def origin_allowed(origin: str | None, host: str | None, allowed: Sequence[str]) -> bool:
    """Whether a browser page from ``origin`` may use the API served at ``host``.

    No Origin: not a browser (curl, an SDK): allowed, the credential decides. The API's
    own origin (same host and port) is always allowed; others only when listed.
    """
    if origin is None:
        return True
    origin = origin.strip().rstrip("/").lower()
    if "*" in allowed or origin in (o.rstrip("/").lower() for o in allowed):
        return True
    if host is None:
        return False
    return origin.split("://", 1)[-1] == host.strip().lower()


def requested_version(accept: str | None) -> str | None:
    """The ``version=`` parameter of an Accept header (``application/json; version=v1``)."""
    if not accept:
        return None
    for media in accept.split(","):
        for param in media.split(";")[1:]:
            name, _, value = param.partition("=")
            if name.strip().lower() == "version" and value.strip():
                return value.strip().strip('"')
    return None


def deprecation_headers(version: ApiVersion, version_name: str) -> dict[str, str]:
    """Deprecation (RFC 9745), Sunset (RFC 8594) and Link rel="deprecation" headers for a
    version marked deprecated; nothing otherwise."""
    if not (version.deprecated or version.status == "deprecated"):
        return {}
    out = {"Deprecation": _http_date_or_true(version.deprecated_since)}
    if version.sunset_date:
        out["Sunset"] = _http_date(version.sunset_date)
    guide = version.migration_guide or f"/docs#migration-{version_name}"
    out["Link"] = f'<{guide}>; rel="deprecation"; type="text/html"'
    return out


def _parse_date(text: str) -> dt.datetime:
    when = dt.datetime.fromisoformat(text)
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def _http_date(text: str) -> str:
    from email.utils import format_datetime

    return format_datetime(_parse_date(text).astimezone(dt.UTC), usegmt=True)


def _http_date_or_true(text: str | None) -> str:
    # RFC 9745: Deprecation is a structured-field date, "@" + Unix seconds
    return "true" if text is None else f"@{int(_parse_date(text).timestamp())}"
