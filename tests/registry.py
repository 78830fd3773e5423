"""A real Schema Registry for tests, and a proxy in front of it that can go down, hang, and count.

Order: `KAFKA_SCHEMA_REGISTRY_URL` when set (any Confluent-compatible registry); the project's local
Apicurio Registry when it answers; otherwise it is started here (`deploy/registry/local-registry.sh
up`) and stopped afterwards. Under `CI` a missing registry is an error, never a skip (tests/conftest.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import threading
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
LOCAL_REGISTRY = ROOT / "deploy" / "registry" / "local-registry.sh"
CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


class RegistryUnavailable(RuntimeError):
    """No Schema Registry could be found or started."""


def registry_reachable(url: str, timeout_s: float = 3.0) -> bool:
    """True when `url` answers the Confluent API's `GET /subjects`."""
    try:
        with urllib.request.urlopen(f"{url}/subjects", timeout=timeout_s) as answer:
            return bool(answer.status == 200)
    except (OSError, ValueError):
        return False


def local_url() -> str:
    return f"http://127.0.0.1:{os.environ.get('REGISTRY_PORT', '18081')}/apis/ccompat/v7"


@contextmanager
def schema_registry() -> Iterator[str]:
    """Yield the URL of a real Confluent-compatible registry, starting the local one when needed."""
    env = os.environ.get("KAFKA_SCHEMA_REGISTRY_URL")
    if env:
        if not registry_reachable(env, 15):
            raise RegistryUnavailable(f"KAFKA_SCHEMA_REGISTRY_URL={env} is set but no registry answers there")
        yield env
        return
    url = local_url()
    if registry_reachable(url):
        yield url
        return
    result = subprocess.run(["bash", str(LOCAL_REGISTRY), "up"], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RegistryUnavailable(f"could not start the local Schema Registry:\n{result.stderr[-3000:]}")
    try:
        yield url
    finally:
        subprocess.run(["bash", str(LOCAL_REGISTRY), "down"], capture_output=True, check=False)


def set_compatibility(url: str, subject: str, level: str) -> None:
    """`PUT /config/{subject}`: the compatibility the registry enforces for new versions of `subject`."""
    body = json.dumps({"compatibility": level}).encode()
    request = urllib.request.Request(
        f"{url}/config/{subject}", data=body, method="PUT", headers={"Content-Type": CONTENT_TYPE}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200


class RegistryProxy:
    """An HTTP proxy on loopback in front of a registry, for outages the registry cannot stage itself.

    `down()` stops listening (clients get "connection refused"), `up()` listens again on the same port;
    while `hold` is clear every request waits (a slow registry) until it is set. `answered` counts the
    requests the registry answered, by method, path and status.
    """

    def __init__(self, upstream: str) -> None:
        split = urlsplit(upstream)
        self._origin = f"{split.scheme}://{split.netloc}"
        self._path = split.path.rstrip("/")
        self.hold = threading.Event()
        self.hold.set()
        self.answered: Counter[tuple[str, str, int]] = Counter()
        self.arrived: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self.port = 0
        self.up()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self._path}"

    def schema_fetches(self) -> Counter[str]:
        """`GET /schemas/ids/N` requests answered 200, by path: how often each id was asked for."""
        return Counter({p: n for (m, p, s), n in self.answered.items() if m == "GET" and s == 200
                        and "/schemas/ids/" in p})  # fmt: skip

    def up(self) -> None:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                proxy._forward(self, "GET")

            def do_POST(self) -> None:
                proxy._forward(self, "POST")

            def do_PUT(self) -> None:
                proxy._forward(self, "PUT")

            def log_message(self, *_args: Any) -> None:
                return None

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        threading.Thread(target=server.serve_forever, name="registry-proxy", daemon=True).start()

    def down(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _forward(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        with self._lock:
            self.arrived[handler.path] += 1
        self.hold.wait(120)
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else None
        request = urllib.request.Request(
            self._origin + handler.path, data=body, method=method,
            headers={"Content-Type": handler.headers.get("Content-Type") or CONTENT_TYPE},
        )  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                status, payload, kind = answer.status, answer.read(), answer.headers.get("Content-Type")
        except urllib.error.HTTPError as error:
            status, payload, kind = error.code, error.read(), error.headers.get("Content-Type")
        with self._lock:
            self.answered[(method, handler.path, status)] += 1
        with contextlib.suppress(OSError):  # the client may have given up (its timeout) meanwhile
            handler.send_response(status)
            handler.send_header("Content-Type", kind or CONTENT_TYPE)
            handler.send_header("Content-Length", str(len(payload)))
            handler.end_headers()
            handler.wfile.write(payload)

    def close(self) -> None:
        self.hold.set()
        self.down()
