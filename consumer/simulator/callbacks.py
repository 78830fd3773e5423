"""Signed webhooks: each message's status changes posted to its StatusCallback, and injected replies.

A message goes queued → sent → delivered (or undelivered with its error code), and a delivered
WhatsApp message may then be read, each posted when the message reaches it, signed as Twilio signs
(X-Twilio-Signature with the account's Auth Token). `inbound` posts a recipient's reply (STOP,
START, …) to a number's inbound webhook, as Twilio does, and keeps the simulator's STOP list.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import uuid
from collections.abc import Callable
from urllib.parse import urlencode

from aiohttp import ClientError, ClientSession, ClientTimeout
from yarl import URL

from consumer.simulator.config import SimulatorConfig
from consumer.simulator.state import StoredMessage

log = logging.getLogger("consumer.simulator")

READ_DELAY_S = 0.05  # from delivered to read, for WhatsApp
STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"})
START_WORDS = frozenset({"START", "YES", "UNSTOP"})


def twilio_signature(auth_token: str, url: str, params: list[tuple[str, str]]) -> str:
    """X-Twilio-Signature: base64(HMAC-SHA1(auth token, URL + each name+value sorted by name))."""
    payload = url + "".join(k + v for k, v in sorted(params))
    return base64.b64encode(hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()).decode()


def sequence(message: StoredMessage, read: bool) -> list[tuple[str, float]]:
    """The statuses `message` goes through and when (loop time): Twilio's order, read only for WhatsApp.
    A scheduled message (SendAt) reports "scheduled" now; its later statuses come at its send time,
    which the simulator does not wait for."""
    if message.first("ScheduleType"):
        return [("scheduled", message.created_at)]
    steps = [
        ("queued", message.created_at),
        ("sent", message.sent_at),
        (message.final_status, message.done_at),
    ]
    if read and message.final_status == "delivered" and (message.first("To") or "").startswith("whatsapp:"):
        steps.append(("read", message.done_at + READ_DELAY_S))
    return steps


class Callbacks:
    """Posts status callbacks at the times the message reaches each status, signed like Twilio's."""

    def __init__(self, config: Callable[[], SimulatorConfig], draw: Callable[[], float]) -> None:
        self._config = config
        self._draw = draw
        self.tasks: set[asyncio.Task[None]] = set()
        self.session: ClientSession | None = None
        self.posted: dict[str, int] = {}  # answers by status code, for /_sim/stats

    @property
    def config(self) -> SimulatorConfig:
        return self._config()

    def schedule(self, message: StoredMessage, url: str, now: float) -> None:
        read = self._draw() < self.config.whatsapp_read_rate
        chain = asyncio.get_running_loop().create_task(self._chain(message, url, sequence(message, read)))
        self.tasks.add(chain)
        chain.add_done_callback(self.tasks.discard)

    async def _chain(self, message: StoredMessage, url: str, steps: list[tuple[str, float]]) -> None:
        # One task per message, posting in order: a status is posted once the one before was answered.
        loop = asyncio.get_running_loop()
        for status, when in steps:
            await asyncio.sleep(max(0.0, when - loop.time()))
            await self.post(url, self._status_params(message, status))

    def _status_params(self, message: StoredMessage, status: str) -> list[tuple[str, str]]:
        params = [
            ("AccountSid", self.config.account_sid), ("ApiVersion", "2010-04-01"),
            ("MessageSid", message.sid), ("SmsSid", message.sid),
            ("MessageStatus", status), ("SmsStatus", status),
            ("To", message.first("To") or ""),
            ("From", message.first("From") or self.config.service_number),
        ]  # fmt: skip
        if message.first("MessagingServiceSid"):
            params.append(("MessagingServiceSid", message.first("MessagingServiceSid") or ""))
        if status in ("undelivered", "failed") and message.error_code is not None:
            params.append(("ErrorCode", str(message.error_code)))
        return params

    async def inbound(self, url: str, sender: str, to: str, body: str, service_sid: str = "") -> int:
        """A reply from `sender` to our number `to`, posted to `url`; returns the answer's status."""
        word = body.strip().upper()
        bare = sender.removeprefix("whatsapp:")
        if word in STOP_WORDS:
            self.config.stop_list.add(bare)
        elif word in START_WORDS:
            self.config.stop_list.discard(bare)
        params = [
            ("AccountSid", self.config.account_sid), ("ApiVersion", "2010-04-01"),
            ("MessageSid", "SM" + uuid.uuid4().hex), ("SmsSid", "SM" + uuid.uuid4().hex),
            ("From", sender), ("To", to), ("Body", body), ("NumMedia", "0"), ("NumSegments", "1"),
        ]  # fmt: skip
        if service_sid:
            params.append(("MessagingServiceSid", service_sid))
        kind = (
            "STOP"
            if word in STOP_WORDS
            else "START"
            if word in START_WORDS
            else "HELP"
            if word == "HELP"
            else ""
        )
        if self.config.advanced_opt_out and kind:
            params.append(("OptOutType", kind))
        return await self.post(url, params)

    async def post(self, url: str, params: list[tuple[str, str]]) -> int:
        """Post a signed webhook; the answer's status (0 when there was none)."""
        headers = {
            "X-Twilio-Signature": twilio_signature(self.config.auth_token, url, params),
            "Content-Type": "application/x-www-form-urlencoded",
            "User-Agent": "TwilioProxy/1.1",
        }
        if self.session is None:
            self.session = ClientSession(timeout=ClientTimeout(total=10))
        try:
            # encoded=True: post the URL exactly as given (and signed), as Twilio does; yarl would
            # otherwise normalise its percent-escapes and the signature would no longer match it.
            target = URL(url, encoded=True)
            async with self.session.post(target, data=urlencode(params), headers=headers) as response:
                await response.read()
                status = response.status
        except (ClientError, TimeoutError) as exc:
            log.info("webhook to %s failed: %s", url, exc)
            status = 0
        self.posted[str(status)] = self.posted.get(str(status), 0) + 1
        return status

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.session is not None:
            await self.session.close()
