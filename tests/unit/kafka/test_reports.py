"""Delivery reports reach the event loop that produced, in order, whatever thread serves them."""

from __future__ import annotations

import asyncio
import threading

from consumer.kafka.reports import ReportPump, on_loop
from tests.fakes import FakeKafka


async def test_reports_from_another_thread_run_on_the_loop_in_order() -> None:
    loop_thread = threading.get_ident()
    seen: list[tuple[int, int]] = []
    done = asyncio.Event()

    def delivered(n: int) -> None:
        seen.append((n, threading.get_ident()))
        if n == 99:
            done.set()

    wrapped = on_loop(delivered)
    worker = threading.Thread(target=lambda: [wrapped(n) for n in range(100)])
    worker.start()
    worker.join()
    await asyncio.wait_for(done.wait(), timeout=10)
    assert [n for n, _ in seen] == list(range(100))
    assert {thread for _, thread in seen} == {loop_thread}


async def test_a_report_on_the_loop_itself_runs_at_once() -> None:
    seen: list[int] = []
    on_loop(seen.append)(1)
    assert seen == [1]


def test_without_a_running_loop_the_callback_is_used_as_it_is() -> None:
    def callback(n: int) -> None:
        raise AssertionError(n)

    assert on_loop(callback) is callback


async def test_the_pump_serves_outstanding_writes_and_sleeps_when_none_are() -> None:
    producer = FakeKafka()._producer({})
    polls = 0
    poll = producer.poll

    def counted(timeout: float = 0) -> int:
        nonlocal polls
        polls += 1
        return poll(timeout)

    producer.poll = counted  # type: ignore[method-assign]
    pump = asyncio.create_task(ReportPump(producer, look_s=0.001).run())
    acknowledged = asyncio.Event()
    producer.produce("t", value=b"v", on_delivery=on_loop(lambda err, msg: acknowledged.set()))
    await asyncio.wait_for(acknowledged.wait(), timeout=10)
    await asyncio.sleep(0.01)  # let the pump see that nothing is outstanding and go to sleep
    idle_polls = polls
    await asyncio.sleep(0.05)
    assert polls == idle_polls  # asleep on its doorbell: no looks while nothing is outstanding

    producer.held.add("t")  # the broker does not acknowledge yet: the write stays outstanding
    second = asyncio.Event()
    producer.produce("t", value=b"w", on_delivery=on_loop(lambda err, msg: second.set()))
    await asyncio.sleep(0.02)
    assert polls > idle_polls  # looking while the write is outstanding
    assert not second.is_set()
    producer.release("t")
    await asyncio.wait_for(second.wait(), timeout=10)
    pump.cancel()
