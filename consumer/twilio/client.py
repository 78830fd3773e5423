"""The Twilio REST client: send a message, check the credentials, list Content Templates and
Messaging Services.

Errors reach callers only as `consumer.errors.TwilioError`: Twilio's answers are read by
`consumer.twilio.answers`, transport failures are mapped by `consumer.twilio.transport`.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import aiohttp
import httpx
from multidict import CIMultiDict
from yarl import URL

from consumer import __version__
from consumer.errors import ErrorClass, TwilioError
from consumer.settings import TwilioSettings
from consumer.twilio.answers import error_from_response
from consumer.twilio.transport import (
    FORM,
    TRANSPORT_ERRORS,
    FormTransport,
    RawAnswer,
    as_response,
    default_transport,
    form_encode,
    transport_error,
)

USER_AGENT = f"kafka-twilio/{__version__}"
CONTENT_API = "https://content.twilio.com"
MESSAGING_API = "https://messaging.twilio.com"


@dataclass(frozen=True)
class SendResult:
    """Twilio accepted the message (201)."""

    sid: str
    status: str
    num_segments: int
    error_code: int | None
    latency_s: float


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
                raise error_from_response(as_response(answer), what="send message")
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
        """Fetch the Account resource; raise a TwilioError saying what to fix: CONFIGURATION when Twilio
        refused, the transport's own class (it may be an outage, or a wrong region) when it did not answer."""
        where = f"{self.api_base_url} (TWILIO_REGION={self._settings.region or 'us1'})"
        try:
            response = await self._request(
                self._http.build_request("GET", self._account_url), "credential check"
            )
        except TwilioError as exc:
            raise TwilioError(
                f"cannot reach Twilio at {where}: {exc.message}; check TWILIO_REGION, TWILIO_EDGE "
                "and TWILIO_BASE_URL, and the network",
                error_class=exc.error_class,
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

    async def probe(self) -> bool:
        """True when Twilio answers (anything but a 5xx): the outage probe of the send path."""
        try:
            response = await self._request(self._http.build_request("GET", self._account_url), "probe")
        except TwilioError:
            return False
        return response.status_code < 500

    async def list_content(self) -> list[dict[str, Any]]:
        """Every Content Template of the account (all pages)."""
        return await self._all_pages(f"{self.content_base_url}/v1/Content?PageSize=500", "contents",
                                     "list Content Templates")  # fmt: skip

    async def fetch_content(self, sid: str) -> dict[str, Any]:
        """One Content Template (its `types` and `variables`)."""
        return await self._get_json(f"{self.content_base_url}/v1/Content/{sid}", f"fetch Content {sid}")

    async def list_services(self) -> list[dict[str, Any]]:
        """Every Messaging Service of the account (all pages)."""
        return await self._all_pages(f"{self.messaging_base_url}/v1/Services?PageSize=500", "services",
                                     "list Messaging Services")  # fmt: skip

    async def list_messages(
        self, to: str, sender: str | None = None, *, page_size: int = 200, max_pages: int = 5
    ) -> list[dict[str, Any]]:
        """Messages sent to `to` (and from `sender`, a phone number: a Messaging Service's messages
        carry the pool number it picked), newest first, up to `max_pages` pages."""
        query = urlencode([("To", to), *([("From", sender)] if sender else []), ("PageSize", str(page_size))])
        url = f"{self.api_base_url}/2010-04-01/Accounts/{self._settings.account_sid}/Messages.json?{query}"
        return await self._all_pages(url, "messages", "list messages", max_pages=max_pages)

    async def _all_pages(
        self, url: str | None, key: str, what: str, *, max_pages: int | None = None
    ) -> list[dict[str, Any]]:
        """The `key` items of every page: v1 APIs link the next in `meta.next_page_url`, the 2010
        API in `next_page_uri` (a path on the same host)."""
        items: list[dict[str, Any]] = []
        pages = 0
        while url and (max_pages is None or pages < max_pages):
            page = await self._get_json(url, what)
            pages += 1
            items.extend(page.get(key) or [])
            url = (page.get("meta") or {}).get("next_page_url")
            if not url and page.get("next_page_uri"):
                url = self.api_base_url + str(page["next_page_uri"])
        return items

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
        except TRANSPORT_ERRORS as exc:
            raise transport_error(exc, "send message", self._form_url.host) from exc

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
        except TRANSPORT_ERRORS as exc:
            raise transport_error(exc, what, request.url.host) from exc


def _loads(body: bytes) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(body)
    return parsed
