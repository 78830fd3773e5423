"""The HTTP edge toward Twilio: httpx's API on the aiohttp transport, and its failures mapped once.

Why this transport: with hundreds of requests in flight, httpx's default (httpcore) pool spends its
time in its own bookkeeping; the same httpx client on `httpx_aiohttp.AiohttpTransport` keeps up with
plain aiohttp (DESIGN.md and bench/bench_http.py measure both). On the default transport
(`FormTransport`) a send goes straight to aiohttp with prebuilt URL, headers and timeouts, which
puts its CPU per request level with plain aiohttp; any other httpx transport (httpx.MockTransport
in tests, a proxy-aware one) gets the same request as an httpx.Request.

Transport failures become `consumer.errors.TwilioError` here, in `transport_error`, and nowhere else:
- No connection could be made (refused, DNS, connect timeout, waiting for a pooled connection):
  the request was never written, so it is RETRYABLE.
- Anything after the request may have been written (read timeout, reset, server disconnect,
  truncated body) is MAY_HAVE_SENT: Twilio may have accepted the message and the API has no
  idempotency key, so repeating it could text someone twice (`consumer.pipeline.retry` decides).

httpx-aiohttp maps every aiohttp connection error to `httpx.ConnectTimeout`, including a server
disconnect after the request was written, so the original aiohttp exception (the `__cause__`) is
classified first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport
from httpx_aiohttp.transport import map_aiohttp_exceptions
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from consumer.errors import ErrorClass, TwilioError
from consumer.twilio.answers import HINTS

FORM = "application/x-www-form-urlencoded"

#: Every exception an HTTP exchange with Twilio can raise; `transport_error` translates them.
TRANSPORT_ERRORS = (TimeoutError, httpx.HTTPError, aiohttp.ClientError, OSError)

# urlencode's bytes (quote_plus over UTF-8) from one C-level str.translate per value: about a third of
# its cost, which matters at thousands of sends per second. Bytes are mapped as latin-1 characters.
_UNRESERVED = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~"
_FORM_QUOTE = {b: chr(b) if b in _UNRESERVED else f"%{b:02X}" for b in range(256)} | {ord(" "): "+"}


def form_encode(params: Sequence[tuple[str, str]]) -> bytes:
    """`urllib.parse.urlencode(params).encode()`, byte for byte, for string pairs."""
    return "&".join(
        [
            k.encode().decode("latin-1").translate(_FORM_QUOTE)
            + "="
            + v.encode().decode("latin-1").translate(_FORM_QUOTE)
            for k, v in params
        ]
    ).encode("ascii")


@dataclass(frozen=True)
class RawAnswer:
    """An HTTP answer read in one go: what `TwilioClient.send` needs, nothing parsed yet."""

    status: int
    reason: str
    headers: CIMultiDictProxy[str]
    body: bytes


class FormTransport(AiohttpTransport):
    """The httpx-aiohttp transport plus a direct path for complete, prebuilt form POSTs.

    `post` skips what the httpx layer costs per request on the hot path (an httpx.Request and
    Response, httpx.Headers converted to aiohttp's, the URL parsed again, a streamed body read
    through an async generator): about a third of the client's CPU per send. Everything else goes
    through httpx as usual, and aiohttp failures are mapped exactly as the parent class maps them.
    """

    async def post(
        self, url: URL, headers: CIMultiDict[str], body: bytes, timeouts: aiohttp.ClientTimeout
    ) -> RawAnswer:
        if not isinstance(self.client, aiohttp.ClientSession):
            self.client = self.get_client()
        with map_aiohttp_exceptions():
            async with self.client.request(
                "POST",
                url,
                headers=headers,
                data=body,
                allow_redirects=False,
                auto_decompress=False,
                compress=False,
                timeout=timeouts,
            ) as response:
                content = await response.read()
                return RawAnswer(response.status, response.reason or "", response.headers, content)


def default_transport(max_connections: int) -> httpx.AsyncBaseTransport:
    """The aiohttp-backed transport with a pool of `max_connections`, all kept alive.

    aiohttp's `limit` is the whole pool; `limit_per_host` stays unlimited (one Twilio host), and
    idle connections live `keepalive_expiry` (5 s), far longer than the gap between sends under load.
    """
    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
    return FormTransport(limits=limits)


def transport_error_class(exc: BaseException) -> ErrorClass:
    """RETRYABLE when the request surely was not written (no connection), else MAY_HAVE_SENT."""
    for e in _causes(exc):
        if isinstance(e, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError):
            return ErrorClass.RETRYABLE
        if isinstance(e, aiohttp.ClientError):
            return ErrorClass.MAY_HAVE_SENT
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        return ErrorClass.RETRYABLE
    return ErrorClass.MAY_HAVE_SENT


def _causes(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return list(reversed(chain))  # the innermost (original) error first


def transport_error(exc: BaseException, what: str, host: str | None) -> TwilioError:
    error_class = transport_error_class(exc)
    return TwilioError(
        f"{what}: {type(exc).__name__} talking to {host}: {exc or 'no detail'}; {HINTS[error_class]}",
        error_class=error_class,
    )


def as_response(answer: RawAnswer) -> httpx.Response:
    """An httpx.Response for the (rare) error path, so errors are read one way whatever the transport."""
    return httpx.Response(
        answer.status,
        headers=list(answer.headers.items()),
        content=answer.body,
        extensions={"reason_phrase": answer.reason.encode()},
    )
