"""invispose.security: tokens, API keys, rate limits, origins and versions (no server)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import stat
import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from invispose.config import ApiVersion, AuthConfig, parse_config
from invispose.errors import ConfigError
from invispose.security import (
    ADMIN_ALL,
    POSE_READ,
    SYSTEM_READ,
    Authenticator,
    AuthError,
    KeyRing,
    LeasedLimiter,
    RateLimiter,
    TokenCodec,
    WindowCounts,
    bearer,
    deprecation_headers,
    jwt_secret,
    key_digest,
    new_api_key,
    origin_allowed,
    requested_version,
    websocket_credential,
)

SECRET = "s" * 40


def hs256() -> TokenCodec:
    return TokenCodec.from_config(AuthConfig(jwt_secret=SECRET))


def reason(fn, *args) -> str:
    with pytest.raises(AuthError) as info:
        fn(*args)
    return info.value.reason


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(claims: dict) -> str:
    header = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{header}.{b64(json.dumps(claims).encode())}."


def hmac_signed(key: bytes, claims: dict) -> str:
    """HS256 by hand, with any bytes as the key (PyJWT refuses a PEM key, rightly)."""
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = f"{header}.{b64(json.dumps(claims).encode())}"
    return f"{body}.{b64(hmac.new(key, body.encode(), hashlib.sha256).digest())}"


def pem_pair(private_key) -> tuple[bytes, bytes]:
    private = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())
    public = private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, public


def key_file_codec(tmp_path: Path, algorithm: str, private_key) -> tuple[TokenCodec, bytes]:
    """A codec over PEM files of ``private_key`` (k.pem, k.pub), and the public PEM."""
    private, public = pem_pair(private_key)
    (tmp_path / "k.pem").write_bytes(private)
    (tmp_path / "k.pub").write_bytes(public)
    codec = TokenCodec.from_config(AuthConfig(
        algorithm=algorithm, private_key_file=tmp_path / "k.pem",
        public_key_file=tmp_path / "k.pub"))
    return codec, public


def test_an_issued_token_verifies_with_its_subject_scopes_and_expiry() -> None:
    codec = hs256()
    token, life = codec.issue("alice", [POSE_READ, SYSTEM_READ], ttl_s=60)
    principal = codec.verify(token)
    assert principal.subject == "alice" and principal.kind == "jwt"
    assert principal.scopes == {POSE_READ, SYSTEM_READ} and life == 60
    assert principal.allows(POSE_READ) and not principal.allows(ADMIN_ALL)
    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert set(claims) == {"sub", "iat", "exp", "scopes"}  # the seed's claims


def test_tokens_that_must_not_pass_are_refused_with_their_reason() -> None:
    codec = hs256()
    now = time.time()
    expired, _ = codec.issue("a", [POSE_READ], now_s=now - 3600, ttl_s=60)
    assert reason(codec.verify, expired) == "expired"
    other, _ = TokenCodec.from_config(AuthConfig(jwt_secret="o" * 40)).issue("a", [POSE_READ])
    assert reason(codec.verify, other) == "bad_signature"
    claims = {"sub": "a", "iat": int(now), "exp": int(now) + 60, "scopes": [ADMIN_ALL]}
    assert reason(codec.verify, unsigned(claims)) == "algorithm"
    assert reason(codec.verify, "not-a-token") == "malformed"
    no_exp = jwt.encode({"sub": "a", "iat": int(now)}, SECRET, algorithm="HS256")
    assert reason(codec.verify, no_exp) == "claims"
    future = jwt.encode({"sub": "a", "iat": int(now) + 3600, "exp": int(now) + 7200},
                        SECRET, algorithm="HS256")
    assert reason(codec.verify, future) == "not_yet_valid"


def test_leeway_accepts_a_clock_a_little_behind() -> None:
    codec = hs256()  # 30 s of leeway
    token, _ = codec.issue("a", [POSE_READ], now_s=time.time() - 70, ttl_s=60)  # 10 s ago
    assert codec.verify(token).subject == "a"


def test_unknown_scopes_in_a_token_grant_nothing() -> None:
    now = int(time.time())
    token = jwt.encode({"sub": "a", "iat": now, "exp": now + 60,
                        "scopes": ["pose:read", "root"]}, SECRET, algorithm="HS256")
    assert hs256().verify(token).scopes == {POSE_READ}


def test_rs256_verifies_its_own_tokens_and_refuses_algorithm_confusion(tmp_path: Path) -> None:
    codec, public = key_file_codec(
        tmp_path, "RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048))
    token, _ = codec.issue("svc", [POSE_READ])
    assert codec.verify(token).subject == "svc"
    # the classic confusion: HS256 "signed" with the public key as the HMAC secret
    now = int(time.time())
    forged = hmac_signed(public, {"sub": "x", "iat": now, "exp": now + 60,
                                  "scopes": [ADMIN_ALL]})
    assert reason(codec.verify, forged) == "algorithm"
    verify_only = TokenCodec.from_config(AuthConfig(
        algorithm="RS256", public_key_file=tmp_path / "k.pub"))
    assert not verify_only.can_issue and verify_only.verify(token).subject == "svc"


def test_es256_round_trip(tmp_path: Path) -> None:
    codec, _ = key_file_codec(tmp_path, "ES256", ec.generate_private_key(ec.SECP256R1()))
    token, _ = codec.issue("svc", [SYSTEM_READ])
    assert codec.verify(token).scopes == {SYSTEM_READ}
    assert reason(hs256().verify, token) == "algorithm"


def test_auth_config_refuses_weak_or_mismatched_keys() -> None:
    with pytest.raises(ValueError, match="32 characters"):
        AuthConfig(jwt_secret="short")
    with pytest.raises(ValueError, match="public_key_file"):
        AuthConfig(algorithm="RS256")


def test_api_keys_verify_by_digest_and_stop_when_revoked() -> None:
    record, key = new_api_key("ci", [POSE_READ])
    ring = KeyRing()
    ring.replace([(record, key_digest(key))])
    assert key not in repr(ring.__dict__)  # only the digest is held
    principal = ring.verify(key)
    assert principal.kind == "api_key" and principal.key_id == record.id
    assert ring.take_used().keys() == {record.id} and ring.take_used() == {}
    assert reason(ring.verify, key[:-1] + ("A" if key[-1] != "A" else "B")) == "unknown_key"
    assert reason(ring.verify, "ivp_nonsense") == "malformed"
    ring.revoke(record.id)
    assert reason(ring.verify, key) == "revoked"


def test_a_token_issued_for_a_key_dies_with_the_key() -> None:
    record, key = new_api_key("ci", [POSE_READ])
    ring = KeyRing()
    ring.replace([(record, key_digest(key))])
    auth = Authenticator(hs256(), ring)
    token, _ = auth.codec.issue("key:" + record.id, [POSE_READ], key_id=record.id)
    principal = auth.authenticate(token)
    assert auth.authenticate(key).key_id == record.id
    ring.revoke(record.id)
    assert reason(auth.authenticate, token) == "revoked"
    assert reason(auth.still_valid, principal) == "revoked"
    assert reason(auth.authenticate, None) == "missing"


def test_an_open_session_learns_its_token_expired() -> None:
    auth = Authenticator(hs256(), KeyRing())
    token, _ = auth.codec.issue("a", [POSE_READ], ttl_s=5)
    principal = auth.authenticate(token)
    assert auth.still_valid(principal) is principal
    assert reason(auth.still_valid, principal, time.time() + 5 + 31) == "expired"


def test_credentials_from_headers_query_and_subprotocol() -> None:
    assert bearer("Bearer abc") == "abc" and bearer("bearer  abc ") == "abc"
    assert bearer(None) is None
    assert reason(bearer, "Basic dXNlcjpwdw==") == "malformed"
    assert websocket_credential(None, "q", []) == ("q", None)
    assert websocket_credential("Bearer h", "q", []) == ("h", None)
    assert websocket_credential(None, None, ["bearer", "tok"]) == ("tok", "bearer")
    assert reason(websocket_credential, None, None, ["bearer"]) == "malformed"


def test_the_secret_is_made_once_and_kept_private(tmp_path: Path) -> None:
    auth = AuthConfig()
    first = jwt_secret(auth, tmp_path / "var")
    assert len(first) >= 32 and jwt_secret(auth, tmp_path / "var") == first
    assert stat.S_IMODE((tmp_path / "var" / "jwt-secret").stat().st_mode) == 0o600
    assert jwt_secret(AuthConfig(jwt_secret=SECRET), tmp_path / "var") == SECRET


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_a_rate_limit_trips_and_recovers_with_the_seed_and_ietf_headers() -> None:
    clock = Clock(1000.0)
    limiter = RateLimiter({"authenticated": (3, 10.0)}, clock=clock)
    decisions = [limiter.hit("authenticated", "alice") for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions] == [2, 1, 0, 0]
    assert limiter.hit("authenticated", "bob").allowed  # per client
    headers = decisions[-1].headers()
    assert headers["X-RateLimit-Limit"] == "3" and headers["X-RateLimit-Remaining"] == "0"
    assert headers["X-RateLimit-Reset"] == "1010" and headers["Retry-After"] == "10"
    assert headers["RateLimit-Policy"] == '"authenticated";q=3;w=10'
    assert headers["RateLimit"] == '"authenticated";r=0;t=10'
    assert "Retry-After" not in decisions[0].headers()
    assert limiter.over("authenticated", "alice") is not None
    clock.t = 1010.0  # the next window
    assert limiter.over("authenticated", "alice") is None
    assert limiter.hit("authenticated", "alice").allowed


def test_replicas_sharing_a_limit_never_admit_more_than_it_together() -> None:
    clock = Clock(0.0)
    replicas = [RateLimiter({"default": (10, 60.0)}, share=3, clock=clock) for _ in range(3)]
    admitted = sum(r.hit("default", "ip:1").allowed for _ in range(20) for r in replicas)
    assert 10 <= admitted <= 10 + 3 - 1 + 1  # ceil(10/3) = 4 each


def test_the_counter_map_stays_bounded() -> None:
    clock = Clock(0.0)
    limiter = RateLimiter({"default": (5, 1.0)}, clock=clock, max_clients=100)
    for i in range(1000):
        clock.t = i * 0.01
        limiter.hit("default", f"ip:{i}")
    assert len(limiter._counters) <= 100


def test_origins() -> None:
    assert origin_allowed(None, "h:8000", [])  # not a browser
    assert origin_allowed("http://h:8000", "h:8000", [])  # the API's own page
    assert not origin_allowed("https://evil.example", "h:8000", [])
    assert origin_allowed("https://app.example", "h:8000", ["https://app.example"])
    assert origin_allowed("https://any.example", "h:8000", ["*"])


def test_versions_and_deprecation_headers() -> None:
    assert requested_version("application/json; version=v2") == "v2"
    assert requested_version("text/html, application/json;q=0.9;version=v1") == "v1"
    assert requested_version("application/json") is None and requested_version(None) is None
    assert deprecation_headers(ApiVersion(), "v1") == {}
    headers = deprecation_headers(ApiVersion(
        deprecated=True, deprecated_since="2026-06-01", sunset_date="2027-01-01",
        migration_guide="https://docs.example/v2"), "v1")
    assert headers["Deprecation"] == "@1780272000"
    assert headers["Sunset"] == "Fri, 01 Jan 2027 00:00:00 GMT"
    assert headers["Link"].startswith('<https://docs.example/v2>; rel="deprecation"')


def test_auth_off_is_for_loopback_binds_only_and_cors_never_wildcards_credentials() -> None:
    space = {"spaces": [{"id": "a", "size_m": [3, 3, 3]}]}
    parse_config({**space, "auth": {"enabled": False}}, env={})
    with pytest.raises(ConfigError, match="loopback"):
        parse_config({**space, "auth": {"enabled": False}, "serve": {"host": "0.0.0.0"}},
                     env={})
    with pytest.raises(ConfigError, match="allow_credentials"):
        parse_config({**space, "api": {"cors": {"allow_origins": ["*"],
                                                "allow_credentials": True}}}, env={})


def replicas_sharing(counts: WindowCounts, n: int, clock: Clock, limit: int = 100
                     ) -> list[LeasedLimiter]:
    async def take(policy: str, client: str, index: int, want: int, lim: int
                   ) -> tuple[int, int]:
        return counts.take(policy, client, index, want, lim)

    return [LeasedLimiter({"authenticated": (limit, 60.0)}, take, replicas=n, clock=clock)
            for _ in range(n)]


def test_a_shared_limit_is_exact_however_requests_land() -> None:
    clock = Clock(600.0)
    counts = WindowCounts()
    replicas = replicas_sharing(counts, 3, clock)

    async def run(order: list[int]) -> int:
        return sum([(await replicas[i].hit("authenticated", "alice")).allowed for i in order])

    assert asyncio.run(run([i % 3 for i in range(300)])) == 100  # spread: exactly the limit
    clock.t = 660.0  # next window
    assert asyncio.run(run([0] * 300)) == 100  # all on one replica: all of it there
    clock.t = 720.0
    early = asyncio.run(run([1, 2] * 5))  # two replicas hold leases of ceil(100/12) = 9
    late = asyncio.run(run([0] * 200))
    assert early == 10 and late >= 100 - 10 - 2 * 9 and early + late <= 100
    decision = asyncio.run(replicas[0].hit("authenticated", "alice"))
    assert not decision.allowed and decision.headers()["Retry-After"] == "60"
