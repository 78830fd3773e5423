"""`kafka-twilio simulator`: serve the Twilio simulator in the foreground until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys

from consumer.simulator.config import SimulatorConfig


def _rates(text: str) -> dict[int, float]:
    """'20429=0.01,500=0.002' -> {20429: 0.01, 500: 0.002}."""
    rates: dict[int, float] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        code, _, rate = item.partition("=")
        rates[int(code)] = float(rate)
    return rates


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, SimulatorConfig]:
    p = argparse.ArgumentParser(prog="kafka-twilio simulator", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8099)
    p.add_argument("--latency-ms", type=float, default=50.0, help="mean response latency (default 50)")
    p.add_argument("--latency-jitter-ms", type=float, default=0.0, help="uniform +/- around the mean")
    p.add_argument("--error-rates", type=_rates, default={}, help="CODE=RATE,... e.g. 20429=0.01,500=0.001")
    p.add_argument("--timeout-rate", type=float, default=0.0, help="share of requests never answered")
    p.add_argument("--max-concurrency", type=int, default=0, help="in-flight limit, beyond it 429/20429")
    p.add_argument("--status-callback-delay-ms", type=float, default=100.0)
    p.add_argument("--stop-list", default="", help="comma-separated E.164 numbers that replied STOP")
    p.add_argument(
        "--validation",
        choices=["schema", "openapi"],
        default="schema",
        help="schema: compiled request schema from the spec (fast); openapi: full openapi-core",
    )
    p.add_argument("--spec", dest="spec_path", default=None, help="folder with twilio_api_v2010.json")
    p.add_argument("--account-sid", default=None)
    p.add_argument("--api-key-sid", default=None)
    p.add_argument("--api-key-secret", default=None)
    p.add_argument("--auth-token", default=None)
    p.add_argument(
        "--strict-credentials",
        action="store_true",
        help="accept only the configured credentials (default: any SK/AC user with a secret)",
    )
    p.add_argument("--uvloop", action="store_true", help="run on uvloop when installed")
    p.add_argument("--seed", type=int, default=None)
    args = p.parse_args(argv)
    config = SimulatorConfig(
        latency_ms=args.latency_ms,
        latency_jitter_ms=args.latency_jitter_ms,
        error_rates=args.error_rates,
        timeout_rate=args.timeout_rate,
        max_concurrency=args.max_concurrency,
        status_callback_delay_ms=args.status_callback_delay_ms,
        stop_list={n.strip() for n in args.stop_list.split(",") if n.strip()},
        validation=args.validation,
        spec_path=args.spec_path,
        accept_any_credentials=not args.strict_credentials,
        seed=args.seed,
    )
    overrides = {
        k: v
        for k in ("account_sid", "api_key_sid", "api_key_secret", "auth_token")
        if (v := getattr(args, k))
    }
    return args, config.replace(**overrides)


async def serve(config: SimulatorConfig, host: str, port: int) -> None:
    from consumer.simulator.handle import start_server

    simulator, runner, base_url = await start_server(config, host, port)
    spec = simulator.spec_dir or "not found: Twilio rules only"
    print(
        json.dumps(
            {
                "simulator": base_url,
                "account_sid": config.account_sid,
                "api_key_sid": config.api_key_sid,
                "validation": config.validation,
                "spec": str(spec),
            }
        ),
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def run(argv: list[str]) -> int:
    args, config = parse_args(argv)
    if args.uvloop:
        try:
            import uvloop
        except ImportError:
            print("kafka-twilio simulator: --uvloop given but uvloop is not installed", file=sys.stderr)
            return 2
        uvloop.run(serve(config, args.host, args.port))
    else:
        asyncio.run(serve(config, args.host, args.port))
    return 0
