"""Send: one Twilio Messages API call, with httpx's API on the aiohttp transport.

Why this transport: with hundreds of requests in flight, httpx's default (httpcore) pool spends its
time in its own bookkeeping; the same httpx client on `httpx_aiohttp.AiohttpTransport` keeps up with
plain aiohttp (DESIGN.md and bench/bench_http.py measure both). On the default transport
(`FormTransport`) a send goes straight to aiohttp with prebuilt URL, headers and timeouts, which
puts its CPU per request level with plain aiohttp; any other httpx transport (httpx.MockTransport
in tests, a proxy-aware one) gets the same request as an httpx.Request.

Failures become `consumer.errors.TwilioError`, translated once, here:
- Twilio error bodies are classified by `consumer.twilio.classify` (code first, then HTTP status);
  Retry-After is carried on the error.
- No connection could be made (refused, DNS, connect timeout, waiting for a pooled connection):
  the request was never written, so it is RETRYABLE.
- Anything after the request may have been written (read timeout, reset, server disconnect,
  truncated body) is MAY_HAVE_SENT: Twilio may have accepted the message and the API has no
  idempotency key, so repeating it could text someone twice. The service does not retry these
  automatically; it dead-letters them with that class so an operator can check the Twilio logs.
  This deliberately trades a possible missed message for never sending a duplicate.

httpx-aiohttp maps every aiohttp connection error to `httpx.ConnectTimeout`, including a server
disconnect after the request was written, so the original aiohttp exception (the `__cause__`) is
classified first.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport
from httpx_aiohttp.transport import map_aiohttp_exceptions
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from consumer import __version__
from consumer.errors import ErrorClass, TwilioError
from consumer.settings import TwilioSettings
from consumer.twilio.classify import classify

USER_AGENT = f"kafka-twilio/{__version__}"
FORM = "application/x-www-form-urlencoded"
CONTENT_API = "https://content.twilio.com"
MESSAGING_API = "https://messaging.twilio.com"

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


_HINTS = {
    ErrorClass.RETRYABLE: "retry later with backoff",
    ErrorClass.MAY_HAVE_SENT: "the message may have been sent: check the Twilio logs before resending",
    ErrorClass.PERMANENT: "this message will not succeed as sent: fix the mapping or the event",
    ErrorClass.RECIPIENT: "do not message this recipient again",
    ErrorClass.CONFIGURATION: "fix the Twilio settings (credentials, region, sender) before sending more",
}


@dataclass(frozen=True)
class SendResult:
    """Twilio accepted the message (201)."""

    sid: str
    status: str
    num_segments: int
    error_code: int | None
    latency_s: float


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


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def error_from_response(response: httpx.Response, *, what: str) -> TwilioError:
    """Build the TwilioError for a non-2xx answer, parsing Twilio's JSON error body when present."""
    code: int | None = None
    message, more_info = "", ""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        raw_code = body.get("code")
        code = raw_code if isinstance(raw_code, int) else None
        message = str(body.get("message") or "")
        more_info = str(body.get("more_info") or "")
    if not message:
        message = response.text[:200].strip() or response.reason_phrase
    error_class = classify(response.status_code, code)
    label = f"code {code}" if code is not None else "no Twilio code"
    return TwilioError(
        f"{what}: Twilio answered HTTP {response.status_code} ({label}): {message}; {_HINTS[error_class]}",
        error_class=error_class,
        code=code,
        status=response.status_code,
        more_info=more_info,
        retry_after_s=parse_retry_after(response.headers.get("retry-after"), datetime.now(UTC)),
    )


class TwilioClient:
    """Async Twilio REST client for what the consumer needs: send, credential check, Content API."""

    def __init__(
        self,
        settings: TwilioSettings,
        *,
        max_connections: int | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._settings = settings
        user, password = settings.basic_auth()
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        self.api_base_url = settings.api_base_url
        # One Twilio host serves everything only when the base URL is overridden (the simulator, a proxy).
        override = settings.base_url.rstrip("/")
        self.content_base_url = (settings.content_base_url or override or CONTENT_API).rstrip("/")
        self.messaging_base_url = (settings.messaging_base_url or override or MESSAGING_API).rstrip("/")
        account = f"{self.api_base_url}/2010-04-01/Accounts/{settings.account_sid}"
        self._account_url = f"{account}.json"
        self._messages_url = httpx.URL(f"{account}/Messages.json")
        pool = max_connections or settings.max_connections
        timeout = httpx.Timeout(
            settings.timeout_s, connect=settings.connect_timeout_s, pool=settings.timeout_s
        )
        self._extensions = {"timeout": timeout.as_dict()}
        # A precomputed header skips httpx's per-request auth flow on the hot path.
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json", "Authorization": f"Basic {token}"}
        self._transport = transport or default_transport(pool)
        self._http = httpx.AsyncClient(transport=self._transport, timeout=timeout, headers=headers)
        host = self._messages_url.netloc.decode("ascii")
        self._send_headers = httpx.Headers({"Host": host, **headers, "Content-Type": FORM})
        # The direct path's prebuilt pieces: the same URL, headers and timeouts as the httpx path.
        self._form = self._transport if isinstance(self._transport, FormTransport) else None
        self._form_url = URL(str(self._messages_url), encoded=True)
        self._form_headers = CIMultiDict({**headers, "Content-Type": FORM})
        self._form_timeout = aiohttp.ClientTimeout(
            sock_connect=settings.connect_timeout_s, sock_read=settings.timeout_s, connect=settings.timeout_s
        )

    async def send(self, params: Sequence[tuple[str, str]]) -> SendResult:
        """Create one message (one attempt). `params` are sent in order, repeated keys kept."""
        started = time.perf_counter()
        content = form_encode(params)
        if self._form is not None:
            answer = await self._post_form(self._form, content)
            latency = time.perf_counter() - started
            if answer.status != 201:
                raise error_from_response(_as_response(answer), what="send message")
            body = _loads(answer.body)
        else:
            # A prebuilt httpx.Request skips build_request's per-call URL parsing and header merging.
            request = httpx.Request(
                "POST", self._messages_url, headers=self._send_headers, content=content,
                extensions=self._extensions,
            )  # fmt: skip
            response = await self._request(request, "send message", direct=True)
            latency = time.perf_counter() - started
            if response.status_code != 201:
                raise error_from_response(response, what="send message")
            body = _loads(response.content)
        error_code = body.get("error_code")
        return SendResult(
            sid=str(body["sid"]),
            status=str(body.get("status") or ""),
            num_segments=int(body.get("num_segments") or 1),
            error_code=int(error_code) if error_code not in (None, "") else None,
            latency_s=latency,
        )

    async def check_credentials(self) -> dict[str, Any]:
        """Fetch the Account resource; raise a CONFIGURATION TwilioError saying what to fix."""
        where = f"{self.api_base_url} (TWILIO_REGION={self._settings.region or 'us1'})"
        try:
            response = await self._request(
                self._http.build_request("GET", self._account_url), "credential check"
            )
        except TwilioError as exc:
            raise TwilioError(
                f"cannot reach Twilio at {where}: {exc.message}; check TWILIO_REGION, TWILIO_EDGE "
                "and TWILIO_BASE_URL, and the network",
                error_class=ErrorClass.CONFIGURATION,
            ) from exc
        if response.status_code == 200:
            account: dict[str, Any] = response.json()
            status = account.get("status")
            if status != "active":
                raise TwilioError(
                    f"Twilio account {self._settings.account_sid} is {status}: reactivate it in the Twilio "
                    "Console (billing) or use an active account's credentials",
                    error_class=ErrorClass.CONFIGURATION,
                    status=200,
                )
            return account
        error = error_from_response(response, what="credential check")
        if error.error_class is ErrorClass.RETRYABLE or error.error_class is ErrorClass.MAY_HAVE_SENT:
            raise error
        if response.status_code == 404 or error.code == 20404:
            fix = "check TWILIO_ACCOUNT_SID: these credentials do not see that account"
        else:
            fix = (
                "check TWILIO_API_KEY_SID and TWILIO_API_KEY_SECRET (or TWILIO_AUTH_TOKEN); API keys work "
                "only in the region that issued them, so check TWILIO_REGION and TWILIO_EDGE too; a "
                "suspended or closed account is refused the same way"
            )
        raise TwilioError(
            f"Twilio refused the credential check at {where}: HTTP {response.status_code}, "
            f"code {error.code}: {fix}",
            error_class=ErrorClass.CONFIGURATION,
            code=error.code,
            status=error.status,
            more_info=error.more_info,
        )

    async def list_content(self) -> list[dict[str, Any]]:
        """Every Content Template of the account, following `meta.next_page_url` to the last page."""
        contents: list[dict[str, Any]] = []
        url: str | None = f"{self.content_base_url}/v1/Content?PageSize=500"
        while url:
            page = await self._get_json(url, "list Content Templates")
            contents.extend(page.get("contents") or [])
            url = (page.get("meta") or {}).get("next_page_url")
        return contents

    async def fetch_content(self, sid: str) -> dict[str, Any]:
        """One Content Template (its `types` and `variables`)."""
        return await self._get_json(f"{self.content_base_url}/v1/Content/{sid}", f"fetch Content {sid}")

    async def list_services(self) -> list[dict[str, Any]]:
        """Every Messaging Service of the account (all pages)."""
        services: list[dict[str, Any]] = []
        url: str | None = f"{self.messaging_base_url}/v1/Services?PageSize=500"
        while url:
            page = await self._get_json(url, "list Messaging Services")
            services.extend(page.get("services") or [])
            url = (page.get("meta") or {}).get("next_page_url")
        return services

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> TwilioClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def _get_json(self, url: str, what: str) -> dict[str, Any]:
        response = await self._request(self._http.build_request("GET", url), what)
        if response.status_code != 200:
            raise error_from_response(response, what=what)
        try:
            body: dict[str, Any] = response.json()
        except json.JSONDecodeError as exc:
            raise TwilioError(
                f"{what}: Twilio answered 200 with a body that is not JSON", error_class=ErrorClass.RETRYABLE
            ) from exc
        return body

    async def _post_form(self, transport: FormTransport, content: bytes) -> RawAnswer:
        try:
            return await transport.post(self._form_url, self._form_headers, content, self._form_timeout)
        except (TimeoutError, httpx.HTTPError, aiohttp.ClientError, OSError) as exc:
            raise _transport_error(exc, "send message", self._form_url.host) from exc

    async def _request(self, request: httpx.Request, what: str, *, direct: bool = False) -> httpx.Response:
        try:
            if not direct:
                return await self._http.send(request)
            # Straight to the transport: no cookies, redirects or auth flow to run for a form POST
            # whose headers are already complete; about a third of the client's CPU per send.
            response = await self._transport.handle_async_request(request)
            try:
                await response.aread()
            finally:
                await response.aclose()
            return response
        except (TimeoutError, httpx.HTTPError, aiohttp.ClientError, OSError) as exc:
            raise _transport_error(exc, what, request.url.host) from exc


def _transport_error(exc: BaseException, what: str, host: str | None) -> TwilioError:
    error_class = transport_error_class(exc)
    return TwilioError(
        f"{what}: {type(exc).__name__} talking to {host}: {exc or 'no detail'}; {_HINTS[error_class]}",
        error_class=error_class,
    )


def _as_response(answer: RawAnswer) -> httpx.Response:
    """An httpx.Response for the (rare) error path, so errors are read one way whatever the transport."""
    return httpx.Response(
        answer.status,
        headers=list(answer.headers.items()),
        content=answer.body,
        extensions={"reason_phrase": answer.reason.encode()},
    )


def _loads(body: bytes) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(body)
    return parsed
