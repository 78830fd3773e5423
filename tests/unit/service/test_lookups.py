"""Schema look-ups: shared per schema, retried with backoff while the registry cannot be asked."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import pytest

from consumer.errors import DecodeError, RegistryError
from consumer.events.decode import Headers
from consumer.events.registry import RegistryKey
from consumer.metrics import Metrics
from consumer.service.lookups import Lookups


class Source:
    """A decoder's look-up half: answers from `answers` (errors raised), in order; then the schema."""

    def __init__(self, *answers: Exception) -> None:
        self.answers = list(answers)
        self.asked: list[RegistryKey] = []
        self.learned: dict[RegistryKey, str] = {}
        self.gate = threading.Event()
        self.gate.set()

    def registry_key(self, value: bytes | None, headers: Headers | None = None) -> RegistryKey | None:
        return None

    def fetch_schema(self, key: RegistryKey) -> str:
        self.gate.wait(30)
        self.asked.append(key)
        if self.answers:
            raise self.answers.pop(0)
        return f"schema {key}"

    def learn(self, key: RegistryKey, text: str) -> None:
        self.learned[key] = text


def unavailable(key: RegistryKey = 1) -> RegistryError:
    return RegistryError("down", reason="registry_unavailable", key=key)


def make(source: Source, sleeps: list[float]) -> tuple[Lookups, Metrics]:
    async def sleep(delay: float) -> None:
        sleeps.append(delay)
        await asyncio.sleep(0)

    metrics = Metrics()
    return Lookups(source, metrics, base_s=0.5, cap_s=4.0, sleep=sleep, rand=lambda: 1.0), metrics


async def test_concurrent_needs_of_one_schema_share_one_request() -> None:
    source = Source()
    source.gate.clear()
    lookups, metrics = make(source, [])
    waiters = [asyncio.create_task(lookups.schema(7)) for _ in range(5)]
    await asyncio.sleep(0.01)
    source.gate.set()
    await asyncio.gather(*waiters)
    assert source.asked == [7]
    assert source.learned == {7: "schema 7"}
    assert metrics.registry.get_sample_value("kafka_twilio_schema_lookups_total", {"result": "ok"}) == 1


async def test_an_unreachable_registry_is_asked_again_with_growing_backoff_until_it_answers() -> None:
    source = Source(unavailable(), unavailable(), unavailable(), unavailable(), unavailable())
    sleeps: list[float] = []
    lookups, metrics = make(source, sleeps)
    seen: list[str] = []

    async def watch() -> None:
        while not source.learned:
            seen.append(lookups.problem)
            await asyncio.sleep(0)

    watcher = asyncio.create_task(watch())
    await lookups.schema(3)
    await watcher
    assert sleeps == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert source.learned == {3: "schema 3"}
    assert "down" in seen, "while failing, the look-ups say why records wait"
    assert lookups.problem == ""
    unavailable_count = metrics.registry.get_sample_value(
        "kafka_twilio_schema_lookups_total", {"result": "registry_unavailable"}
    )
    assert unavailable_count == 5


async def test_refused_credentials_are_waited_out_like_an_outage() -> None:
    source = Source(RegistryError("401", reason="registry_refused", key=1))
    lookups, _ = make(source, [])
    await lookups.schema(1)
    assert source.asked == [1, 1]


async def test_an_id_the_registry_does_not_have_fails_every_waiter_and_is_asked_again_next_time() -> None:
    source = Source(DecodeError("no such schema", reason="unknown_schema"))
    source.gate.clear()
    lookups, metrics = make(source, [])
    waiters = [asyncio.create_task(lookups.schema(9)) for _ in range(2)]
    await asyncio.sleep(0.01)
    source.gate.set()
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert [getattr(r, "reason", None) for r in results] == ["unknown_schema", "unknown_schema"]
    assert (
        metrics.registry.get_sample_value("kafka_twilio_schema_lookups_total", {"result": "unknown_schema"})
        == 1
    )
    await lookups.schema(9)  # registered since: a new need asks again
    assert source.asked == [9, 9]


async def test_the_last_waiter_to_leave_cancels_the_look_up() -> None:
    source = Source(*(unavailable() for _ in range(10_000)))
    lookups, _ = make(source, [])
    first = asyncio.create_task(lookups.schema(5))
    second = asyncio.create_task(lookups.schema(5))
    await until(lambda: len(source.asked) >= 2)
    first.cancel()
    asked = len(source.asked)
    await until(lambda: len(source.asked) > asked + 2)  # the other waiter still waits: it goes on
    assert lookups.in_progress == 1
    second.cancel()
    with pytest.raises(asyncio.CancelledError):
        await second
    assert lookups.in_progress == 0
    assert lookups.problem == ""


async def until(condition: Callable[[], bool], timeout_s: float = 20) -> None:
    async def poll() -> None:
        while not condition():  # noqa: ASYNC110  the fake registry has no event to wait on
            await asyncio.sleep(0.001)

    await asyncio.wait_for(poll(), timeout_s)
