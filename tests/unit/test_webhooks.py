"""invispose.webhooks: address checks, retry schedule, Retry-After, signatures."""

from __future__ import annotations

import datetime as dt
import random

from standardwebhooks.webhooks import Webhook

from invispose.config import RetryPolicy, WebhookConfig
from invispose.schemas import Event
from invispose.webhooks import (
    Attempt,
    address_allowed,
    delivery_request,
    parse_retry_after,
    retry_delay,
)


def test_only_public_addresses_unless_allowed() -> None:
    for address in ("127.0.0.1", "10.1.2.3", "192.168.1.10", "172.16.0.1", "169.254.169.254",
                    "::1", "fe80::1", "::ffff:127.0.0.1", "0.0.0.0", "224.0.0.1", "fc00::1"):
        assert not address_allowed(address, []), address
    assert address_allowed("93.184.215.14", []) and address_allowed("2606:4700::1111", [])
    assert address_allowed("192.168.1.10", ["192.168.0.0/16"])
    assert address_allowed("192.169.1.10", ["192.168.0.0/16"])  # public anyway


def test_backoff_grows_with_jitter_and_gives_up() -> None:
    policy = RetryPolicy(max_attempts=5, base_delay_s=2.0, max_delay_s=10.0)
    rng = random.Random(1)
    failed = Attempt(False, 503)
    delays = [retry_delay(policy, n, failed, rng) for n in range(1, 5)]
    for n, delay in enumerate(delays, start=1):
        nominal = min(10.0, 2.0 * 2 ** (n - 1))
        assert delay is not None and nominal / 2 <= delay <= nominal
    assert retry_delay(policy, 5, failed, rng) is None  # max_attempts reached
    assert retry_delay(policy, 1, Attempt(False, None, "timeout"), rng) is not None
    assert retry_delay(policy, 1, Attempt(False, 400), rng) is None
    slow = retry_delay(policy, 1, Attempt(False, 429, retry_after_s=60.0), rng)
    assert slow == 10.0  # Retry-After honoured up to the cap


def test_retry_after_in_seconds_or_as_a_date() -> None:
    assert parse_retry_after("120", 0.0) == 120.0
    when = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    assert parse_retry_after("Tue, 01 Jan 2030 00:00:30 GMT", when.timestamp()) == 30.0
    assert parse_retry_after("soon", 0.0) is None and parse_retry_after(None, 0.0) is None


def test_the_endpoint_headers_cannot_replace_the_signature() -> None:
    hook = WebhookConfig(id="w", url="https://example.com/h", secret="s" * 20,
                         headers={"X-Signature": "forged", "Authorization": "Bearer t"})
    event = Event(type="system.started", timestamp=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    _, headers = delivery_request(hook, event, 7, 1_800_000_000.0)
    assert headers["Authorization"] == "Bearer t" and headers["X-Signature"] != "forged"
    assert headers["webhook-id"] == "msg_w_7" and headers["webhook-timestamp"] == "1800000000"
    now_body, now_headers = delivery_request(hook, event, 7, dt.datetime.now(dt.UTC).timestamp())
    assert Webhook(("s" * 20).encode()).verify(now_body, now_headers)["event_type"] \
        == "system.started"
