"""Delivery reports reach the event loop that produced, in order, whatever thread serves them."""

from __future__ import annotations

import asyncio
import threading

from consumer.kafka.reports import DeliveryReports, on_loop
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


async def test_the_reports_thread_serves_the_producer_until_stopped() -> None:
    producer = FakeKafka()._producer({})
    acknowledged = asyncio.Event()
    reports = DeliveryReports(producer, wait_s=0.01).start()
    producer.produce("t", value=b"v", on_delivery=on_loop(lambda err, msg: acknowledged.set()))
    await asyncio.wait_for(acknowledged.wait(), timeout=10)
    await reports.stop()
    assert not reports._thread.is_alive()
