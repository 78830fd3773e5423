"""Run the simulator in a background thread (own event loop) for tests and demos."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from aiohttp import web

from consumer.simulator.config import SimulatorConfig
from consumer.simulator.rates import SenderRate
from consumer.simulator.server import Simulator, build_app

T = TypeVar("T")


class SimulatorHandle:
    """A running simulator: where it listens, the credentials it accepts, and test controls."""

    def __init__(self, simulator: Simulator, loop: asyncio.AbstractEventLoop, base_url: str) -> None:
        self._simulator = simulator
        self._loop = loop
        self.base_url = base_url

    @property
    def config(self) -> SimulatorConfig:
        return self._simulator.config

    @property
    def account_sid(self) -> str:
        return self.config.account_sid

    @property
    def api_key_sid(self) -> str:
        return self.config.api_key_sid

    @property
    def api_key_secret(self) -> str:
        return self.config.api_key_secret

    @property
    def auth_token(self) -> str:
        return self.config.auth_token

    def messages(self) -> list[dict[str, Any]]:
        """Accepted messages in arrival order (see server.sim_messages for the fields)."""
        return self._call(self._snapshot)

    def stats(self) -> dict[str, Any]:
        """Answer counts by status/code, and concurrency seen."""

        def read() -> dict[str, Any]:
            s = self._simulator.state
            return {
                "accepted": len(s.messages),
                "peak_in_flight": s.peak_in_flight,
                "answers": dict(s.answers),
            }

        return self._call(read)

    def inbound(self, url: str, sender: str, to: str, body: str, service_sid: str = "") -> int:
        """Inject a reply from `sender` to `to`, posted signed to `url` (as POST /_sim/inbound does)."""
        coro = self._simulator.callbacks.inbound(url, sender, to, body, service_sid)
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)

    def sender_rate(self, sender: str, window_s: float) -> SenderRate | None:
        """What arrived from `sender` (its From or Messaging Service SID): totals and the most segments
        within any `window_s` seconds, whichever client sent them."""
        return self._call(lambda: self._simulator.state.rates.of(sender, window_s))

    def reset(self) -> None:
        self._call(self._simulator.state.reset)

    def outage(self, mode: str, seconds: float | None = None) -> None:
        """Start ("503", "refuse") or end ("") an outage, as POST /_sim/outage does."""
        asyncio.run_coroutine_threadsafe(self._simulator.outage(mode, seconds), self._loop).result(timeout=10)

    def configure(self, **changes: Any) -> None:
        """Change settings while running, e.g. `configure(error_rates={20429: 1.0})` for a 429 storm."""
        self._call(lambda: self._simulator.apply(self._simulator.config.replace(**changes)))

    def _snapshot(self) -> list[dict[str, Any]]:
        now = self._loop.time()
        return [m.summary(now) for m in self._simulator.state.messages]

    def _call(self, fn: Callable[[], T]) -> T:
        async def run() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout=10)


async def start_server(config: SimulatorConfig, host: str, port: int) -> tuple[Simulator, web.AppRunner, str]:
    """Start serving on host:port (0 = any free port); return the simulator, runner and base URL."""
    simulator = Simulator(config)
    runner = web.AppRunner(build_app(simulator), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024, reuse_address=True)
    await site.start()
    bound = int(runner.addresses[0][1])
    sites = [site]

    async def listening(on: bool) -> None:
        # An outage that refuses connections closes the port; it opens again on the same number.
        if on and not sites:
            sites.append(web.TCPSite(runner, host, bound, backlog=1024, reuse_address=True))
            await sites[0].start()
        elif not on and sites:
            await sites.pop().stop()

    simulator.listening = listening
    return simulator, runner, f"http://{host}:{bound}"


@contextmanager
def running_simulator(config: SimulatorConfig | None = None, port: int = 0) -> Iterator[SimulatorHandle]:
    """Start a simulator on 127.0.0.1 in a background thread; stop it cleanly on exit."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="twilio-simulator", daemon=True)
    thread.start()

    def run(coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=30)

    try:
        simulator, runner, base_url = run(start_server(config or SimulatorConfig(), "127.0.0.1", port))
    except BaseException:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        loop.close()
        raise
    try:
        yield SimulatorHandle(simulator, loop, base_url)
    finally:
        try:
            run(runner.cleanup())
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
            loop.close()
