"""A stub of the Twilio client for unit tests of the service: creates and lists messages as Twilio
would, or answers from a script."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

from consumer.errors import ErrorClass, TwilioError
from consumer.twilio.client import SendResult

SENT = SendResult(sid="SM" + "0" * 32, status="queued", num_segments=1, error_code=None, latency_s=0.0)


@dataclass(frozen=True)
class Accepted:
    """A scripted answer: Twilio creates the message, then the client sees `error` (a lost answer)."""

    error: TwilioError


class FakeTwilio:
    """Creates every message (or answers from `script`) and lists them as Twilio would; `hold` keeps
    sends waiting until set; `list_errors` are raised by the next list calls; `down` fails everything
    with a 503 until cleared."""

    def __init__(self, *script: TwilioError | SendResult | Accepted) -> None:
        self.script = list(script)
        self.requests: list[tuple[tuple[str, str], ...]] = []
        self.created: list[dict[str, Any]] = []  # what Twilio has, as its Messages list shows it
        self.hold: Any = None  # an asyncio.Event that sends wait for, when set by the test
        self.credentials_error: TwilioError | None = None
        self.list_errors: list[TwilioError] = []
        self.lists = 0
        self.down = False
        self.clock: Any = time.time  # when Twilio creates a message (tests with a fixed clock set theirs)

    async def send(self, params: tuple[tuple[str, str], ...]) -> SendResult:
        self.requests.append(tuple(params))
        if self.hold is not None:
            await self.hold.wait()
        if self.down:
            raise TwilioError("outage", error_class=ErrorClass.MAY_HAVE_SENT, code=20503, status=503)
        answer = self.script.pop(0) if self.script else SENT
        if isinstance(answer, Accepted):
            self._create(params)
            raise answer.error
        if isinstance(answer, TwilioError):
            raise answer
        sid = self._create(params)
        return SendResult(sid=sid, status=answer.status, num_segments=1, error_code=None, latency_s=0.0)

    def _create(self, params: tuple[tuple[str, str], ...]) -> str:
        first = dict(reversed(params))
        sid = f"SM{len(self.created):032x}"
        self.created.append({
            "sid": sid, "to": first.get("To"), "from": first.get("From", "+15017122661"),
            "messaging_service_sid": first.get("MessagingServiceSid"), "body": first.get("Body", ""),
            "num_media": str(sum(1 for k, _ in params if k == "MediaUrl")), "status": "queued",
            "date_created": format_datetime(datetime.fromtimestamp(self.clock(), UTC), usegmt=True),
        })  # fmt: skip
        return sid

    async def list_messages(self, to: str, sender: str | None = None) -> list[dict[str, Any]]:
        self.lists += 1
        if self.down:
            raise TwilioError("outage", error_class=ErrorClass.MAY_HAVE_SENT, code=20503, status=503)
        if self.list_errors:
            raise self.list_errors.pop(0)
        return [
            m for m in reversed(self.created) if m["to"] == to and (sender is None or m["from"] == sender)
        ]

    async def probe(self) -> bool:
        return not self.down

    async def check_credentials(self) -> dict[str, Any]:
        if self.credentials_error is not None:
            raise self.credentials_error
        return {"status": "active"}

    async def list_content(self) -> list[dict[str, Any]]:
        return []

    async def aclose(self) -> None:
        return None


def twilio_error(cls: ErrorClass, code: int | None = None, status: int | None = 400) -> TwilioError:
    return TwilioError(f"error {code}", error_class=cls, code=code, status=status)
