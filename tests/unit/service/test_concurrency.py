"""The concurrency gate: a limit on requests in flight that can move while tasks wait."""

from __future__ import annotations

import asyncio

import pytest

from consumer.service.concurrency import ConcurrencyGate


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_the_gate_admits_up_to_the_limit_and_holds_the_rest() -> None:
    gate = ConcurrencyGate(2)
    entered: list[int] = []
    release = asyncio.Event()

    async def worker(i: int) -> None:
        async with gate:
            entered.append(i)
            await release.wait()

    tasks = [asyncio.create_task(worker(i)) for i in range(5)]
    await settle()
    assert entered == [0, 1]
    assert (gate.in_flight, gate.waiting) == (2, 3)
    release.set()
    await asyncio.gather(*tasks)
    assert entered == [0, 1, 2, 3, 4]
    assert (gate.in_flight, gate.waiting) == (0, 0)


async def test_raising_the_limit_wakes_waiters_in_arrival_order() -> None:
    gate = ConcurrencyGate(1)
    entered: list[int] = []

    async def worker(i: int) -> None:
        await gate.acquire()
        entered.append(i)

    tasks = [asyncio.create_task(worker(i)) for i in range(4)]
    await settle()
    assert entered == [0]
    gate.limit = 3
    await settle()
    assert entered == [0, 1, 2]
    assert gate.in_flight == 3
    gate.release()
    await asyncio.gather(*tasks)
    assert entered == [0, 1, 2, 3]


async def test_lowering_the_limit_holds_new_entries_until_enough_slots_are_released() -> None:
    gate = ConcurrencyGate(3)
    for _ in range(3):
        await gate.acquire()
    gate.limit = 1
    waiter = asyncio.create_task(gate.acquire())
    gate.release()
    await settle()
    assert not waiter.done()
    gate.release()
    await settle()
    assert not waiter.done()  # in flight 1 == limit 1
    gate.release()
    await settle()
    assert waiter.done()
    assert gate.in_flight == 1


async def test_a_cancelled_waiter_does_not_leak_a_slot() -> None:
    gate = ConcurrencyGate(1)
    await gate.acquire()
    cancelled = asyncio.create_task(gate.acquire())
    later = asyncio.create_task(gate.acquire())
    await settle()
    cancelled.cancel()
    await settle()
    gate.release()
    await settle()
    assert later.done()
    assert (gate.in_flight, gate.waiting) == (1, 0)


async def test_a_waiter_cancelled_right_after_being_granted_passes_the_slot_on() -> None:
    gate = ConcurrencyGate(1)
    await gate.acquire()
    granted_then_cancelled = asyncio.create_task(gate.acquire())
    next_in_line = asyncio.create_task(gate.acquire())
    await settle()
    gate.release()  # hands the slot to the first waiter ...
    granted_then_cancelled.cancel()  # ... which is cancelled before it runs again
    await settle()
    assert granted_then_cancelled.cancelled()
    assert next_in_line.done()
    assert gate.in_flight == 1


async def test_a_zero_limit_pauses_everything_until_raised() -> None:
    gate = ConcurrencyGate(0)
    task = asyncio.create_task(gate.acquire())
    await settle()
    assert not task.done()
    gate.limit = 1
    await settle()
    assert task.done()


def test_releasing_more_than_acquired_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="more times than acquire"):
        ConcurrencyGate(1).release()
