"""Simulator settings: who it accepts, how slow it is, which errors it injects, what it knows."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

DEFAULT_ACCOUNT_SID = "AC" + "5" * 32
DEFAULT_API_KEY_SID = "SK" + "5" * 32
# Documented test values, like Twilio's test credentials: the simulator is never a real account.
DEFAULT_API_KEY_SECRET = "simulator-secret"  # noqa: S105
DEFAULT_AUTH_TOKEN = "simulator-auth-token"  # noqa: S105
DEFAULT_SERVICE_SID = "MG" + "5" * 32

#: Messages per second (segments for SMS) each sender kind drains, from reference/twilio-api.md.
DEFAULT_SENDER_RATES: dict[str, float] = {
    "long_code": 1.0,
    "toll_free": 3.0,
    "short_code": 100.0,
    "whatsapp": 10.0,
    "messenger": 10.0,
    "alphanumeric": 10.0,
    "messaging_service": 100.0,
}


def sample_templates(account_sid: str = DEFAULT_ACCOUNT_SID) -> list[dict[str, Any]]:
    """A small catalogue of Content Templates covering the common types, with stable SIDs."""

    def template(n: int, name: str, types: dict[str, Any], variables: dict[str, str]) -> dict[str, Any]:
        sid = f"HX{n:032x}"
        return {
            "sid": sid,
            "account_sid": account_sid,
            "friendly_name": name,
            "language": "en",
            "variables": variables,
            "types": types,
            "date_created": "2025-01-01T00:00:00Z",
            "date_updated": "2025-01-01T00:00:00Z",
            "links": {},
        }

    return [
        template(
            1,
            "welcome_text",
            {"twilio/text": {"body": "Hi {{1}}, welcome to {{2}}!"}},
            {"1": "Ana", "2": "Acme"},
        ),
        template(
            2,
            "order_media",
            {
                "twilio/media": {
                    "body": "Your order {{1}} shipped",
                    "media": ["https://example.com/{{2}}.png"],
                }
            },
            {"1": "1234", "2": "box"},
        ),
        template(
            3,
            "confirm_quick_reply",
            {
                "twilio/quick-reply": {
                    "body": "Confirm your visit on {{1}}?",
                    "actions": [{"title": "Yes", "id": "yes"}, {"title": "No", "id": "no"}],
                },
                "twilio/text": {"body": "Confirm your visit on {{1}}? Reply YES or NO"},
            },
            {"1": "Monday"},
        ),
        template(
            4, "offer_card", {"twilio/card": {"title": "{{1}} off today", "subtitle": "Code {{2}}"}}, {}
        ),
        template(5, "static_notice", {"twilio/text": {"body": "Our store opens at 9."}}, {}),
    ]


@dataclass
class SimulatorConfig:
    """Everything the simulator does differently from a perfect, instant Twilio."""

    account_sid: str = DEFAULT_ACCOUNT_SID
    api_key_sid: str = DEFAULT_API_KEY_SID
    api_key_secret: str = DEFAULT_API_KEY_SECRET
    #: Signs status callbacks (X-Twilio-Signature), and is accepted as AccountSid:AuthToken.
    auth_token: str = DEFAULT_AUTH_TOKEN
    #: Accept any well-formed SK…/AC… user with any secret (demos); wrong-credential tests turn it off.
    accept_any_credentials: bool = False
    account_status: Literal["active", "suspended", "closed"] = "active"

    latency_ms: float = 0.0  # mean response latency of Messages create
    latency_jitter_ms: float = 0.0  # uniform +/- around the mean
    #: Twilio error code (or bare HTTP status 5xx) -> probability per Messages create request.
    error_rates: dict[int, float] = field(default_factory=dict)
    timeout_rate: float = 0.0  # probability to hold the request `hang_s` without answering
    disconnect_rate: float = 0.0  # probability to drop the connection after reading the request
    #: Probability to accept (store) the message, then drop the connection before answering: the
    #: classic in-doubt send, where Twilio has the message and the client cannot know it.
    drop_after_accept_rate: float = 0.0
    drop_after_accept_first: int = 0  # the first N messages lose their answer that way (deterministic)
    #: Probability to accept the message, then close mid-response (headers and half a body, as a crash).
    truncate_rate: float = 0.0
    #: "503": every Twilio route answers 503/20503; "refuse": the port refuses connections (set by
    #: POST /_sim/outage, which also ends it); "" is normal service.
    outage: Literal["", "503", "refuse"] = ""
    hang_s: float = 30.0
    max_concurrency: int = 0  # Messages create requests in flight; beyond -> 429/20429 (0 = unlimited)
    retry_after_s: float = 1.0  # Retry-After sent with 429

    sender_rates: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_SENDER_RATES))
    queue_seconds: float = 10 * 3600  # a sender's queue holds this much sending time; beyond -> 21611
    stop_list: set[str] = field(default_factory=set)  # recipients who replied STOP -> 21610
    whatsapp_window_closed: bool = False  # every WhatsApp free-form message gets 63016

    status_callback_delay_ms: float = 100.0  # from leaving the sender queue to "delivered"
    delivery_error_rates: dict[int, float] = field(default_factory=dict)  # e.g. {30003: 0.01} -> undelivered
    #: To address -> error code: every message to it ends undelivered with that code (deterministic tests).
    undelivered_to: dict[str, int] = field(default_factory=dict)
    whatsapp_read_rate: float = 0.5  # share of delivered WhatsApp messages then reported "read"
    #: With Advanced Opt-Out Twilio adds OptOutType (STOP, START, HELP) to inbound webhooks.
    advanced_opt_out: bool = True
    inbound_url: str = ""  # the number's inbound-message webhook (POST /_sim/inbound may name another)

    validation: Literal["schema", "openapi"] = "schema"
    spec_path: str | None = None  # folder holding twilio_api_v2010.json (default: found automatically)
    max_stored_messages: int = 200_000

    templates: list[dict[str, Any]] = field(default_factory=sample_templates)
    services: list[dict[str, Any]] = field(
        default_factory=lambda: [{"sid": DEFAULT_SERVICE_SID, "friendly_name": "Simulator service"}]
    )
    #: The number a Messaging Service sends from: Twilio reports the pool number it picked as `from`.
    service_number: str = "+15017122661"
    seed: int | None = None  # random seed for latency and error injection (reproducible runs)

    def replace(self, **changes: Any) -> SimulatorConfig:
        """A copy with `changes`; unknown names raise TypeError naming them."""
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise TypeError(f"unknown simulator setting(s): {', '.join(unknown)}")
        if "stop_list" in changes:
            changes["stop_list"] = set(changes["stop_list"])
        if "error_rates" in changes:
            changes["error_rates"] = {int(k): float(v) for k, v in changes["error_rates"].items()}
        if "undelivered_to" in changes:
            changes["undelivered_to"] = {str(k): int(v) for k, v in changes["undelivered_to"].items()}
        if "delivery_error_rates" in changes:
            changes["delivery_error_rates"] = {
                int(k): float(v) for k, v in changes["delivery_error_rates"].items()
            }
        return dataclasses.replace(self, **changes)
