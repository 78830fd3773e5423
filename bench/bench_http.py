"""HTTP stack benchmark: Messages create throughput against the simulator at 50 ms latency.

Side by side in one run, at 128 and 256 requests in flight (closed loop: each worker sends its next
request when the previous answer arrives), all posting the same form with the same headers through
a pool sized to the level:
- kafka-twilio TwilioClient (httpx API on the httpx-aiohttp transport, the shipped default)
- plain aiohttp (one ClientSession, TCPConnector(limit=in_flight))
- the official twilio-python async client (AsyncTwilioHttpClient; its session, which aiohttp caps
  at 100 connections by default, is replaced by one sized to the level)
- with --httpcore, once after the last round: the same TwilioClient on httpx's default transport
  (httpcore), which reaches only a few per cent of the others (about 12 s more)

Fairness: the simulator runs as a separate `kafka-twilio simulator` process (uvloop, spec-schema
validation on); rounds are interleaved and the client order rotates each round; every run starts
from a fresh event loop after a warm-up and a GC. The machine is shared, so each client's ratio is
taken against the plain aiohttp run of the same round and level, and the table shows medians over
rounds, the ratios' spread, and CPU per request (client process time / requests: the steadiest
figure, it ignores time spent waiting). The simulator's CPU share shows when it, not the client, is
the bottleneck. Prints a table and writes bench/results/bench_http.json.

    .venv/bin/python bench/bench_http.py [--rounds 7] [--seconds 1.0] [--levels 128,256] [--httpcore]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import json
import os
import statistics
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

from harness import twilio_python_client  # noqa: E402

from consumer.settings import TwilioSettings  # noqa: E402
from consumer.simulator.config import (  # noqa: E402
    DEFAULT_ACCOUNT_SID,
    DEFAULT_API_KEY_SECRET,
    DEFAULT_API_KEY_SID,
)
from consumer.twilio.client import USER_AGENT, TwilioClient  # noqa: E402

# No StatusCallback in the measured form: the callbacks would load the simulator process.
PARAMS = [
    ("To", "+15551230001"),
    ("MessagingServiceSid", "MG" + "5" * 32),
    ("Body", "Your order 1234 has shipped. Track it at https://example.com/t/1234"),
]


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


WARM_UP_S = 0.3
BASELINE = "aiohttp (plain)"
OURS = "kafka-twilio (httpx+aiohttp)"
HTTPCORE = "kafka-twilio on httpx default"


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of another process (Linux /proc), or None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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
    return {
        "requests": done,
        "errors": errors,
        "seconds": round(elapsed, 2),
        "rps": round(done / elapsed, 1),
        "client_cpu_us_per_request": round(cpu / max(done, 1) * 1e6, 1),
    }


async def warm_then_measure(
    send: Callable[[], Awaitable[None]], in_flight: int, seconds: float
) -> dict[str, Any]:
    await closed_loop(send, in_flight, WARM_UP_S)  # opens the pool's connections
    return await closed_loop(send, in_flight, seconds)


def settings_for(base: str) -> TwilioSettings:
    return TwilioSettings(
        account_sid=DEFAULT_ACCOUNT_SID,
        api_key_sid=DEFAULT_API_KEY_SID,
        api_key_secret=DEFAULT_API_KEY_SECRET,  # type: ignore[arg-type]
        base_url=base,
    )


async def run_twilio_client(
    base: str, in_flight: int, seconds: float, default_transport: bool
) -> dict[str, Any]:
    transport = None
    if default_transport:
        limits = httpx.Limits(max_connections=in_flight, max_keepalive_connections=in_flight)
        transport = httpx.AsyncHTTPTransport(limits=limits)
    client = TwilioClient(settings_for(base), max_connections=in_flight, transport=transport)

    async def send() -> None:
        await client.send(PARAMS)

    try:
        return await warm_then_measure(send, in_flight, seconds)
    finally:
        await client.aclose()


async def run_aiohttp(base: str, in_flight: int, seconds: float) -> dict[str, Any]:
    url = f"{base}/2010-04-01/Accounts/{DEFAULT_ACCOUNT_SID}/Messages.json"
    token = base64.b64encode(f"{DEFAULT_API_KEY_SID}:{DEFAULT_API_KEY_SECRET}".encode()).decode()
    # The same headers TwilioClient sends, so both ask the simulator the same thing.
    headers = {
        "User-Agent": USER_AGENT,
        "Accept": "application/json",
        "Authorization": f"Basic {token}",
        "Content-Type": "application/x-www-form-urlencoded",
    }
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=in_flight))

    async def send() -> None:
        async with session.post(url, data=urlencode(PARAMS).encode(), headers=headers) as response:
            body = await response.json()
            if response.status != 201:
                raise RuntimeError(body)

    try:
        return await warm_then_measure(send, in_flight, seconds)
    finally:
        await session.close()


async def run_twilio_python(base: str, in_flight: int, seconds: float) -> dict[str, Any]:
    client, http = await twilio_python_client(base, in_flight)
    to, service, body = (v for _, v in PARAMS)

    async def send() -> None:
        await client.messages.create_async(to=to, messaging_service_sid=service, body=body)

    try:
        return await warm_then_measure(send, in_flight, seconds)
    finally:
        await http.close()


CLIENTS: dict[str, Callable[[str, int, float], Awaitable[dict[str, Any]]]] = {
    BASELINE: run_aiohttp,
    OURS: lambda b, n, s: run_twilio_client(b, n, s, default_transport=False),
    "twilio-python async": run_twilio_python,
}


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def summarize(results: list[dict[str, Any]], names: list[str], levels: list[int]) -> list[dict[str, Any]]:
    """Medians over rounds; each ratio is against the plain aiohttp run of the same round and level."""
    base = {(r["round"], r["in_flight"]): r["rps"] for r in results if r["client"] == BASELINE}
    summary = []
    for name in names:
        for lvl in levels:
            runs = [r for r in results if r["client"] == name and r["in_flight"] == lvl]
            ratios = [r["rps"] / base[r["round"], lvl] for r in runs if base.get((r["round"], lvl))]
            sim = [r["simulator_cpu_share"] for r in runs if r.get("simulator_cpu_share") is not None]
            summary.append({
                "client": name, "in_flight": lvl, "rounds": len(runs),
                "rps": round(median([r["rps"] for r in runs]), 1),
                "ratio_vs_aiohttp": round(median(ratios), 3),
                "ratio_min": round(min(ratios, default=0.0), 3),
                "ratio_max": round(max(ratios, default=0.0), 3),
                "client_cpu_us_per_request": round(median([r["client_cpu_us_per_request"] for r in runs]), 1),
                "simulator_cpu_share": round(median(sim), 2) if sim else None,
                "errors": sum(r["errors"] for r in runs),
            })  # fmt: skip
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seconds", type=float, default=1.0, help="measured seconds per client, level, round"
    )
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds; the table shows medians")
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--levels", default="128,256")
    parser.add_argument("--port", type=int, default=18099)
    parser.add_argument("--uvloop", action="store_true", help="run the clients on uvloop too")
    parser.add_argument(
        "--httpcore", action="store_true", help="add one round of httpx's default transport (httpcore)"
    )
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    runner: Callable[[Awaitable[dict[str, Any]]], dict[str, Any]] = asyncio.run  # type: ignore[assignment]
    if args.uvloop:
        import uvloop

        runner = uvloop.run

    load_before = os.getloadavg()
    proc = start_simulator(args.port, args.latency_ms)
    base = f"http://127.0.0.1:{args.port}"
    results: list[dict[str, Any]] = []
    names = list(CLIENTS)

    def measure(name: str, run: Callable[[str, int, float], Awaitable[dict[str, Any]]], level: int,
                round_: int, seconds: float) -> None:  # fmt: skip
        gc.collect()
        sim_started, wall_started = process_cpu_s(proc.pid), time.perf_counter()
        result = runner(run(base, level, seconds))
        sim_ended, wall = process_cpu_s(proc.pid), time.perf_counter() - wall_started
        # Share of one core the simulator used over the run (warm-up included): near 1.0 it is the bottleneck.
        share = (
            None if sim_started is None or sim_ended is None else round((sim_ended - sim_started) / wall, 2)
        )
        results.append(
            {
                "client": name,
                "in_flight": level,
                "round": round_,
                **result,
                "simulator_cpu_share": share,
                "wall_s": round(wall, 2),
            }
        )
        print(
            f"  r{round_} {name:30} {level:4}: {result['rps']:7.0f} r/s errors={result['errors']} "
            f"cpu/req={result['client_cpu_us_per_request']:.0f}us simulator={share} wall={wall:.1f}s"
        )

    try:
        for round_ in range(args.rounds):
            for level in levels:
                shift = round_ % len(names)  # rotate so no client always follows the same one
                for name in names[shift:] + names[:shift]:
                    measure(name, CLIENTS[name], level, round_, args.seconds)
        if args.httpcore:
            for level in levels:  # about 1/30 of the others' throughput: one short round says enough
                run = lambda b, n, s: run_twilio_client(b, n, s, default_transport=True)  # noqa: E731
                measure(HTTPCORE, run, level, args.rounds - 1, min(args.seconds, 1.0))
            names.append(HTTPCORE)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()

    summary = summarize(results, names, levels)
    ceiling = {lvl: lvl / (args.latency_ms / 1000) for lvl in levels}
    print(
        f"\nlatency {args.latency_ms:g} ms, ceiling = in_flight / latency = "
        + ", ".join(f"{c:.0f}" for c in ceiling.values())
        + f" r/s; medians over {args.rounds} interleaved rounds; ratio = vs plain aiohttp in the same round"
    )
    header = "{:>7} {:>17} {:>7} {:>5}"
    print(
        f"{'client':30} "
        + " | ".join(header.format("r/s", "ratio (min-max)", "cpu/req", "sim") for _ in levels)
    )
    print(f"{'':30} " + " | ".join(f"{f'{lvl} in flight':^39}" for lvl in levels))
    for name in names:
        cells = []
        for row in (r for r in summary if r["client"] == name):
            spread = f"{row['ratio_vs_aiohttp']:.2f} ({row['ratio_min']:.2f}-{row['ratio_max']:.2f})"
            sim = f"{row['simulator_cpu_share']:.2f}" if row["simulator_cpu_share"] is not None else "-"
            cells.append(
                header.format(f"{row['rps']:.0f}", spread, f"{row['client_cpu_us_per_request']:.0f}us", sim)
            )
        print(f"{name:30} " + " | ".join(cells))
    out = ROOT / "bench" / "results" / "bench_http.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "latency_ms": args.latency_ms, "seconds": args.seconds, "warm_up_s": WARM_UP_S, "levels": levels,
        "ceiling_rps": ceiling, "cpu_count": os.cpu_count(), "load_average_before": load_before,
        "client_loop": "uvloop" if args.uvloop else "asyncio", "rounds": args.rounds,
        "statistic": "median over rounds; ratio per round against plain aiohttp of that round and level",
        "summary": summary, "results": results,
    }, indent=2))  # fmt: skip
    print(f"\nwrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
