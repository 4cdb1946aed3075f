"""Webhook deliveries without the network: payloads, signatures, retries, address checks.

A delivery of one stored event to one endpoint is the seed's payload ``{event_type,
timestamp, data}`` with the seed's headers (``X-Event-Type``, ``X-Delivery-ID``,
``X-Timestamp``, ``X-Signature: sha256=<hex HMAC of the body>``) and the Standard
Webhooks headers (``webhook-id``, ``webhook-timestamp``, ``webhook-signature: v1,<base64
HMAC of "id.timestamp.body">``). Both signatures use the endpoint's secret as the key
bytes; a Standard Webhooks verifier takes ``Webhook(secret.encode())`` (or
``"whsec_" + base64(secret)``). The delivery id is the same on every retry.

The HTTP side (one connection to the address checked here, no redirects, timeouts) is
``actors/webhooks.py``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass

from invispose import __version__
from invispose.config import RetryPolicy, WebhookConfig
from invispose.schemas import Event

USER_AGENT = f"InvisPose/{__version__} (webhooks)"
METADATA_ADDRESSES = (ipaddress.ip_address("169.254.169.254"),
                      ipaddress.ip_address("fd00:ec2::254"))


def delivery_id(webhook_id: str, event_id: int) -> str:
    """The id of one event's delivery to one endpoint: the same on every attempt."""
    return f"msg_{webhook_id}_{event_id}"


def wants(webhook: WebhookConfig, event_type: str) -> bool:
    """Whether the endpoint receives events of this type."""
    return webhook.enabled and ("*" in webhook.events or event_type in webhook.events)


def seed_signature(secret: str, body: bytes) -> str:
    """The seed's ``X-Signature``: ``sha256=`` and the hex HMAC-SHA256 of the body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def standard_signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """Standard Webhooks ``webhook-signature``: ``v1,`` and the base64 HMAC-SHA256 of
    ``{id}.{timestamp}.{body}``."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def delivery_request(
    webhook: WebhookConfig, event: Event, event_id: int, now_s: float
) -> tuple[bytes, dict[str, str]]:
    """The body and headers of one attempt to deliver ``event``."""
    timestamp = event.timestamp.isoformat()
    body = json.dumps(
        {"event_type": event.type, "timestamp": timestamp, "data": event.data,
         "event_id": event_id, "space_id": event.space_id},
        separators=(",", ":"), default=str,
    ).encode()
    msg_id = delivery_id(webhook.id, event_id)
    sent_at = int(now_s)
    headers = {
        **webhook.headers,  # the endpoint's own first: ours below cannot be overridden
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Event-Type": event.type,
        "X-Delivery-ID": msg_id,
        "X-Timestamp": timestamp,
        "X-Signature": seed_signature(webhook.secret, body),
        "webhook-id": msg_id,
        "webhook-timestamp": str(sent_at),
        "webhook-signature": standard_signature(webhook.secret, msg_id, sent_at, body),
    }
    return body, headers


@dataclass(frozen=True)
class Attempt:
    """What one attempt came to."""

    delivered: bool
    status: int | None = None  # None: no HTTP answer (refused address, network, timeout)
    error: str | None = None
    retry_after_s: float | None = None  # the endpoint's Retry-After, if it sent one
    duration_ms: float = 0.0
    final: bool = False  # retrying cannot help (the address is refused)

    @property
    def gone(self) -> bool:
        """410 Gone: the endpoint asks never to be called again."""
        return self.status == 410


def retry_delay(
    policy: RetryPolicy, attempts: int, attempt: Attempt, rng: random.Random | None = None
) -> float | None:
    """Seconds until the next attempt after ``attempts`` made, or None to give up.

    Exponential backoff ``base · 2^(attempts-1)`` capped at ``max_delay_s``, with full
    jitter over its upper half; a ``Retry-After`` longer than that is honoured (up to the
    cap). Network errors and timeouts are retried; statuses only if listed.
    """
    if attempt.delivered or attempt.gone or attempt.final or attempts >= policy.max_attempts:
        return None
    if attempt.status is not None and attempt.status not in policy.retry_on_status:
        return None
    backoff = min(policy.max_delay_s, policy.base_delay_s * 2.0 ** (attempts - 1))
    delay = float(backoff * (0.5 + 0.5 * (rng or random).random()))
    if attempt.retry_after_s is not None:
        delay = max(delay, min(attempt.retry_after_s, policy.max_delay_s))
    return delay


def parse_retry_after(value: str | None, now_s: float) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delta seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    from email.utils import parsedate_to_datetime

    try:
        return max(0.0, float(parsedate_to_datetime(value).timestamp()) - now_s)
    except (TypeError, ValueError):
        return None


def address_allowed(address: str, allow_cidrs: Sequence[str]) -> bool:
    """Whether a delivery may connect to ``address``: public unicast addresses may;
    loopback, private, link-local, multicast, reserved, unspecified and cloud metadata
    addresses only inside ``allow_cidrs``."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is loopback
    for cidr in allow_cidrs:
        if ip in ipaddress.ip_network(cidr, strict=False):
            return True
    return ip.is_global and not ip.is_multicast and ip not in METADATA_ADDRESSES
