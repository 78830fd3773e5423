"""Whether a request may go to Twilio now: two gates every attempt passes.

`Halting`: a configuration error (bad credentials, sender not allowed) stops all sending until a
credential check passes, so a broken key does not burn the backlog into the dead-letter topic.

`Breaker`: a Twilio outage (5xx, no connection, no answer) is waited out, not retried into the
dead-letter topic. After `threshold` such failures in a row with no success between them the breaker
opens: attempts wait, the service pauses its partitions and reports not ready, and a probe asks
Twilio with backoff (`consumer.service.upkeep`); the first answer closes it. Attempts that fail while
Twilio is down do not count against a message's own retry budget.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from consumer.errors import TwilioError

log = logging.getLogger(__name__)


class Halting:
    """Whether sending is allowed: cleared by a configuration error, set again by a passing check."""

    def __init__(self) -> None:
        self._allowed = asyncio.Event()
        self._allowed.set()

    @property
    def halted(self) -> bool:
        return not self._allowed.is_set()

    async def wait(self) -> None:
        await self._allowed.wait()

    def halt(self, error: TwilioError) -> None:
        if not self.halted:
            log.error(
                "Twilio rejected our configuration; sending halts until the credential check passes: %s",
                error.message,
                extra={"twilio_code": error.code},
            )
            self._allowed.clear()

    def resume(self) -> None:
        if self.halted:
            log.warning("Twilio credential check passed; resuming sending")
            self._allowed.set()


class Breaker:
    """Opens after `threshold` systemic failures in a row; closed again by a success or a probe."""

    def __init__(self, threshold: int = 8, on_change: Callable[[bool], object] = lambda _up: None) -> None:
        self.threshold = threshold
        self.on_change = on_change  # called with True when Twilio is back, False when it goes down
        self._failures = 0
        self._closed = asyncio.Event()
        self._closed.set()
        on_change(True)

    @property
    def open(self) -> bool:
        return not self._closed.is_set()

    async def wait(self) -> None:
        await self._closed.wait()

    def failure(self, error: TwilioError) -> None:
        """A failure that says nothing about the message itself (see `is_systemic`)."""
        self._failures += 1
        if self._failures >= self.threshold and not self.open:
            log.error("Twilio is failing for every request (%s); waiting for it before sending more",
                      error.message)  # fmt: skip
            self._closed.clear()
            self.on_change(False)

    def success(self) -> None:
        """Twilio answered (any answer that is not a 5xx): it is up."""
        self._failures = 0
        if self.open:
            log.warning("Twilio answers again; resuming sending")
            self._closed.set()
            self.on_change(True)


def is_systemic(error: TwilioError) -> bool:
    """True when the failure is Twilio's or the network's, not the message's: a 5xx or no answer."""
    return error.status is None or error.status >= 500
