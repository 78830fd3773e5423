"""A minimal Twilio-shaped HTTP server for benchmarks: as little CPU per request as a server can spend.

The simulator validates every request against Twilio's OpenAPI spec, and on a 2-core machine that work
competes with the client being measured, which compresses every ratio. This server does only what a
client needs: it answers Messages create with a 201 and a Twilio-shaped JSON body (a unique SID), the
Account fetch with an active account (the service's credential check at start-up), and nothing else.
HTTP/1.1 keep-alive, Content-Length bodies; no chunked requests, no validation.

With `--record`, it reads the `ref` the benchmark put in each message body (the event's produce time,
microseconds since the epoch) and keeps `arrival - ref` per request, so `GET /_stats` returns the
event → request latencies. It also keeps each request's arrival time, for the throughput benchmarks.

    python bench/minimal_server.py --port 0 [--latency-ms 50] [--record]

prints one JSON line {"url": ...} once it listens. `GET /_stats`, `POST /_reset`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from typing import Any

ACCOUNT = re.compile(rb"^/2010-04-01/Accounts/(AC[0-9a-f]{32})\.json")
LENGTH = b"content-length:"
REF = re.compile(rb"ref(?:\+|%20)(\d{16})")  # "(ref 1733100000123456)" in the form-encoded Body


class Stats:
    def __init__(self) -> None:
        self.arrivals: list[float] = []
        self.latencies_us: list[int] = []
        self.sids = 0

    def reset(self) -> None:
        self.__init__()  # type: ignore[misc]


def _response(status: str, body: bytes) -> bytes:
    head = f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


class Protocol(asyncio.Protocol):
    def __init__(self, stats: Stats, latency_s: float, record: bool) -> None:
        self.stats, self.latency_s, self.record = stats, latency_s, record
        self.buffer = b""
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end]
            lines = head.split(b"\r\n")[1:]
            length = next(
                (int(line[len(LENGTH) :]) for line in lines if line[: len(LENGTH)].lower() == LENGTH), 0
            )
            total = end + 4 + length
            if len(self.buffer) < total:
                return
            body, self.buffer = self.buffer[end + 4 : total], self.buffer[total:]
            self.handle(head, body)

    def handle(self, head: bytes, body: bytes) -> None:
        now = time.time()
        method, path = head.split(b" ", 2)[:2]
        if method == b"POST" and path.endswith(b"/Messages.json"):
            self.stats.arrivals.append(now)
            if self.record and (found := REF.search(body)):
                self.stats.latencies_us.append(int(now * 1e6) - int(found.group(1)))
            self.stats.sids += 1
            sid = f"SM{self.stats.sids:032x}"
            answer = _response(
                "201 Created",
                b'{"sid":"%s","status":"queued","num_segments":"1","error_code":null,"error_message":null}'
                % sid.encode(),
            )
        elif method == b"GET" and (match := ACCOUNT.match(path)):
            answer = _response("200 OK", b'{"sid":"%s","status":"active"}' % match.group(1))
        elif path == b"/_stats":
            s = self.stats
            answer = _response("200 OK", json.dumps({"count": len(s.arrivals), "arrivals": s.arrivals,
                                                     "latencies_us": s.latencies_us}).encode())  # fmt: skip
        elif path == b"/_reset":
            self.stats.reset()
            answer = _response("200 OK", b"{}")
        else:
            answer = _response("404 Not Found", b'{"code":20404,"message":"not found","status":404}')
        if self.latency_s:
            asyncio.get_running_loop().call_later(self.latency_s, self._write, answer)
        else:
            self._write(answer)

    def _write(self, answer: bytes) -> None:
        if not self.transport.is_closing():
            self.transport.write(answer)


async def serve(port: int, latency_ms: float, record: bool) -> None:
    loop = asyncio.get_running_loop()
    stats = Stats()
    server = await loop.create_server(
        lambda: Protocol(stats, latency_ms / 1000, record), "127.0.0.1", port, backlog=2048
    )
    bound = server.sockets[0].getsockname()[1]
    print(json.dumps({"url": f"http://127.0.0.1:{bound}"}), flush=True)
    async with server:
        await server.serve_forever()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay before each answer")
    parser.add_argument("--record", action="store_true", help="keep each request's event -> request latency")
    args = parser.parse_args()
    import uvloop

    uvloop.run(serve(args.port, args.latency_ms, args.record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
