"""HTTP stack benchmark: Messages create throughput against the simulator at 50 ms latency.

Side by side in one run, at 128 and 256 requests in flight (closed loop: each worker sends its next
request when the previous answer arrives):
- kafka-twilio TwilioClient (httpx API on the httpx-aiohttp transport, the shipped default)
- the same TwilioClient on httpx's default transport (httpcore)
- plain aiohttp posting the same form
- the official twilio-python async client (AsyncTwilioHttpClient, as shipped)

The simulator runs as a separate `kafka-twilio simulator` process (uvloop, spec-schema validation
on), so it does not share the client's event loop. Prints a table and writes
bench/results/bench_http.json.

    .venv/bin/python bench/bench_http.py [--seconds 4] [--latency-ms 50] [--levels 128,256]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from consumer.send import TwilioClient  # noqa: E402
from consumer.settings import TwilioSettings  # noqa: E402
from consumer.simulator.config import (  # noqa: E402
    DEFAULT_ACCOUNT_SID,
    DEFAULT_API_KEY_SECRET,
    DEFAULT_API_KEY_SID,
)

PARAMS = [
    ("To", "+15551230001"),
    ("MessagingServiceSid", "MG" + "5" * 32),
    ("Body", "Your order 1234 has shipped. Track it at https://example.com/t/1234"),
    ("StatusCallback", "http://127.0.0.1:9/status"),
]
# No StatusCallback in the measured form: the callbacks would load the simulator process.
PARAMS = PARAMS[:3]


def start_simulator(port: int, latency_ms: float) -> subprocess.Popen[str]:
    cmd = [
        sys.executable,
        "-m",
        "consumer.cli",
        "simulator",
        "--port",
        str(port),
        "--latency-ms",
        str(latency_ms),
    ]
    cmd += ["--uvloop", "--strict-credentials"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise SystemExit(f"simulator did not start: {cmd}")
    print(f"simulator: {line.strip()}")
    return proc


async def closed_loop(send: Callable[[], Awaitable[None]], in_flight: int, seconds: float) -> dict[str, Any]:
    done = errors = 0
    stop_at = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done, errors
        while time.perf_counter() < stop_at:
            try:
                await send()
                done += 1
            except Exception:  # noqa: BLE001  any failure counts as an error; the run goes on
                errors += 1

    started, cpu_started = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    # Client CPU per request is steadier than req/s on a shared machine: it ignores time spent waiting.
    return {
        "requests": done,
        "errors": errors,
        "seconds": round(elapsed, 2),
        "rps": round(done / elapsed, 1),
        "client_cpu_us_per_request": round(cpu / max(done, 1) * 1e6, 1),
    }


async def run_twilio_client(
    base: str, in_flight: int, seconds: float, default_transport: bool
) -> dict[str, Any]:
    settings = TwilioSettings(
        account_sid=DEFAULT_ACCOUNT_SID,
        api_key_sid=DEFAULT_API_KEY_SID,
        api_key_secret=DEFAULT_API_KEY_SECRET,  # type: ignore[arg-type]
        base_url=base,
    )
    transport = None
    if default_transport:
        limits = httpx.Limits(max_connections=in_flight, max_keepalive_connections=in_flight)
        transport = httpx.AsyncHTTPTransport(limits=limits)
    client = TwilioClient(settings, max_connections=in_flight, transport=transport)

    async def send() -> None:
        await client.send(PARAMS)

    try:
        await closed_loop(send, in_flight, 0.5)  # warm the pool
        return await closed_loop(send, in_flight, seconds)
    finally:
        await client.aclose()


async def run_aiohttp(base: str, in_flight: int, seconds: float) -> dict[str, Any]:
    url = f"{base}/2010-04-01/Accounts/{DEFAULT_ACCOUNT_SID}/Messages.json"
    token = base64.b64encode(f"{DEFAULT_API_KEY_SID}:{DEFAULT_API_KEY_SECRET}".encode()).decode()
    headers = {"Authorization": f"Basic {token}", "Content-Type": "application/x-www-form-urlencoded"}
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=in_flight))

    async def send() -> None:
        async with session.post(url, data=urlencode(PARAMS).encode(), headers=headers) as response:
            body = await response.json()
            if response.status != 201:
                raise RuntimeError(body)

    try:
        await closed_loop(send, in_flight, 0.5)
        return await closed_loop(send, in_flight, seconds)
    finally:
        await session.close()


async def run_twilio_python(base: str, in_flight: int, seconds: float) -> dict[str, Any]:
    from twilio.http.async_http_client import AsyncTwilioHttpClient
    from twilio.rest import Client

    http = AsyncTwilioHttpClient()
    client = Client(DEFAULT_API_KEY_SID, DEFAULT_API_KEY_SECRET, DEFAULT_ACCOUNT_SID, http_client=http)
    client.api.base_url = base
    to, service, body = (v for _, v in PARAMS)

    async def send() -> None:
        await client.messages.create_async(to=to, messaging_service_sid=service, body=body)

    try:
        await closed_loop(send, in_flight, 0.5)
        return await closed_loop(send, in_flight, seconds)
    finally:
        await http.close()


CLIENTS: dict[str, Callable[[str, int, float], Awaitable[dict[str, Any]]]] = {
    "aiohttp (plain)": run_aiohttp,
    "kafka-twilio (httpx+aiohttp)": lambda b, n, s: run_twilio_client(b, n, s, default_transport=False),
    "twilio-python async": run_twilio_python,
    "kafka-twilio on httpx default": lambda b, n, s: run_twilio_client(b, n, s, default_transport=True),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seconds", type=float, default=2.5, help="measured seconds per client, level, round"
    )
    parser.add_argument(
        "--rounds", type=int, default=2, help="interleaved rounds; the table shows their mean"
    )
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--levels", default="128,256")
    parser.add_argument("--port", type=int, default=18099)
    parser.add_argument("--uvloop", action="store_true", help="run the clients on uvloop too")
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]

    proc = start_simulator(args.port, args.latency_ms)
    base = f"http://127.0.0.1:{args.port}"
    results: list[dict[str, Any]] = []
    try:
        for round_ in range(args.rounds):
            for level in levels:
                for name, run in CLIENTS.items():
                    seconds = args.seconds if "default" not in name else min(args.seconds, 2.0)
                    runner = asyncio.run
                    if args.uvloop:
                        import uvloop

                        runner = uvloop.run
                    result = runner(run(base, level, seconds))
                    results.append({"client": name, "in_flight": level, "round": round_, **result})
                    print(
                        f"  {name:30} {level:4}: {result['rps']:7.0f} r/s errors={result['errors']} "
                        f"cpu/req={result['client_cpu_us_per_request']:.0f}us"
                    )
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()

    ceiling = {lvl: lvl / (args.latency_ms / 1000) for lvl in levels}
    print(f"\nlatency {args.latency_ms:g} ms; ceiling = in_flight / latency; ratio vs plain aiohttp")
    print(f"{'client':32} " + " ".join(f"{f'{lvl} in flight, CPU/request':>30}" for lvl in levels))

    def mean_rps(name: str, lvl: int, key: str = "rps") -> float:
        runs = [r[key] for r in results if r["client"] == name and r["in_flight"] == lvl]
        return sum(runs) / len(runs)

    summary = []
    for name in CLIENTS:
        cells = []
        for lvl in levels:
            rps, base_rps = mean_rps(name, lvl), mean_rps("aiohttp (plain)", lvl)
            ratio = rps / base_rps if base_rps else 0.0
            cpu = mean_rps(name, lvl, "client_cpu_us_per_request")
            summary.append(
                {"client": name, "in_flight": lvl, "rps": round(rps, 1), "ratio_vs_aiohttp": round(ratio, 3),
                 "client_cpu_us_per_request": round(cpu, 1)}
            )  # fmt: skip
            cells.append(f"{rps:>6.0f} r/s ({ratio:4.2f}x) {cpu:>5.0f}us")
        print(f"{name:32} " + " ".join(f"{c:>30}" for c in cells))
    out = ROOT / "bench" / "results" / "bench_http.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "latency_ms": args.latency_ms, "seconds": args.seconds, "levels": levels, "ceiling_rps": ceiling,
        "cpu_count": os.cpu_count(), "client_loop": "uvloop" if args.uvloop else "asyncio",
        "rounds": args.rounds, "summary": summary, "results": results,
    }, indent=2))  # fmt: skip
    print(f"\nwrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
