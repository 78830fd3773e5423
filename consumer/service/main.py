"""`kafka-twilio run`: read the settings, start one replica on the fastest event loop, exit with a code."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from consumer.errors import ConsumerError, MappingError, SettingsError, TwilioError
from consumer.logs import configure_logging
from consumer.service.parts import Parts
from consumer.service.service import Service
from consumer.settings import load_settings

# Young-generation size and the two promotion ratios for gc.set_threshold (see tune_gc).
GC_THRESHOLDS = (20_000, 20, 20)


def main(argv: list[str]) -> int:
    """`kafka-twilio run`: the service."""
    parser = argparse.ArgumentParser(
        prog="kafka-twilio run", description="Consume events and send Twilio messages."
    )
    parser.add_argument("--env-file", type=Path, help="read settings from this file (the environment wins)")
    parser.add_argument("--mappings", type=Path, help="mapping file (overrides CONSUMER_MAPPINGS)")
    parser.add_argument("--exit-when-idle", type=float, metavar="SECONDS",
                        help="stop after SECONDS with nothing left to do (batch runs, the demo)")  # fmt: skip
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.env_file)
        if args.mappings:
            settings.service.mappings = args.mappings
        configure_logging(settings.service.log_level)
        parts = Parts.real(settings)
    except SettingsError as error:
        print(f"kafka-twilio: {error}", file=sys.stderr)
        return 2
    # httpx logs every request at INFO: a line per message sent is noise, and URLs carry account SIDs.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    return run_service(Service(settings, parts, exit_when_idle_s=args.exit_when_idle))


def run_service(service: Service) -> int:
    """Run the service to completion with the fastest available event loop; map errors to exit codes."""
    tune_gc()
    try:
        return run_loop(service.run())
    except MappingError as error:
        print(f"kafka-twilio: {error.message}", file=sys.stderr)
        for problem in error.problems:
            print(f"  - {problem}", file=sys.stderr)
        return 2
    except TwilioError as error:
        print(f"kafka-twilio: Twilio check failed: {error.message}", file=sys.stderr)
        return 3
    except ConsumerError as error:
        print(f"kafka-twilio: {error}", file=sys.stderr)
        return 1


def tune_gc() -> None:
    """Make the cyclic garbage collector cheap for a process that runs the service.

    Thousands of buffered records keep ~a million objects alive, and with CPython's default
    thresholds full collections rescanned them (and every module, schema and phone-number table)
    several times a second: a fifth of the event loop's CPU at 2,000 messages/s (bench/bench_e2e.py).
    Freezing what start-up built and collecting the young generation every 20,000 allocations
    instead of 700 cuts that to ~2%; cycles are still collected, only less often.
    Process-wide, so only the process entry point calls it (not in-process tests).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def run_loop(coro: Coroutine[Any, Any, int]) -> int:
    """On uvloop when installed (the service and the receiver are CPU-bound on their event loop)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    code: int = uvloop.run(coro)
    return code
