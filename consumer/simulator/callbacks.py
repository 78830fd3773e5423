"""Signed status callbacks: the simulator posts each message's status changes to its StatusCallback."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
from collections.abc import Callable
from urllib.parse import urlencode

from aiohttp import ClientError, ClientSession, ClientTimeout

from consumer.simulator.config import SimulatorConfig
from consumer.simulator.state import StoredMessage

log = logging.getLogger("consumer.simulator")


def twilio_signature(auth_token: str, url: str, params: list[tuple[str, str]]) -> str:
    """X-Twilio-Signature: base64(HMAC-SHA1(auth token, URL + each name+value sorted by name))."""
    payload = url + "".join(k + v for k, v in sorted(params))
    return base64.b64encode(hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()).decode()


class Callbacks:
    """Posts status callbacks at the times the message reaches each status, signed like Twilio's."""

    def __init__(self, config: Callable[[], SimulatorConfig]) -> None:
        self._config = config
        self.tasks: set[asyncio.Task[None]] = set()
        self.session: ClientSession | None = None

    @property
    def config(self) -> SimulatorConfig:
        return self._config()

    def schedule(self, message: StoredMessage, url: str, now: float) -> None:
        loop = asyncio.get_running_loop()
        statuses = [("sent", message.sent_at), (message.final_status, message.done_at)]
        for status, when in statuses:
            loop.call_at(max(when, now), self._post, message, url, status)

    def _post(self, message: StoredMessage, url: str, status: str) -> None:
        task = asyncio.get_running_loop().create_task(self._deliver(message, url, status))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _deliver(self, message: StoredMessage, url: str, status: str) -> None:
        params = [
            ("AccountSid", self.config.account_sid),
            ("ApiVersion", "2010-04-01"),
            ("MessageSid", message.sid),
            ("SmsSid", message.sid),
            ("MessageStatus", status),
            ("SmsStatus", status),
            ("To", message.first("To") or ""),
            ("From", message.first("From") or message.first("MessagingServiceSid") or ""),
        ]
        if message.first("MessagingServiceSid"):
            params.append(("MessagingServiceSid", message.first("MessagingServiceSid") or ""))
        if status in ("undelivered", "failed") and message.error_code is not None:
            params.append(("ErrorCode", str(message.error_code)))
        headers = {
            "X-Twilio-Signature": twilio_signature(self.config.auth_token, url, params),
            "Content-Type": "application/x-www-form-urlencoded",
            "User-Agent": "TwilioProxy/1.1",
        }
        if self.session is None:
            self.session = ClientSession(timeout=ClientTimeout(total=10))
        try:
            async with self.session.post(url, data=urlencode(params), headers=headers) as response:
                await response.read()
        except (ClientError, TimeoutError) as exc:
            log.info("status callback to %s failed: %s", url, exc)

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.session is not None:
            await self.session.close()
