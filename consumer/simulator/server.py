"""The simulator's HTTP server (aiohttp.web): Twilio's routes, Twilio-shaped answers.

Serves Messages (create, fetch, list), Account fetch, Content (list, fetch), Messaging Services
(list), and the test endpoints GET /_sim/messages, GET /_sim/stats, POST /_sim/config, POST /_sim/reset.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import logging
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode

from aiohttp import ClientError, ClientSession, ClientTimeout, web

from consumer.simulator import behaviours, rules
from consumer.simulator.config import SimulatorConfig
from consumer.simulator.spec import (
    API_SPEC,
    MessageFormValidator,
    OpenAPIRequestValidator,
    find_spec_dir,
    load_spec,
)
from consumer.simulator.state import SimulatorState, StoredMessage

log = logging.getLogger("consumer.simulator")
API = "/2010-04-01/Accounts"
_CREDENTIAL_USER = re.compile(r"^(SK|AC)[0-9a-fA-F]{32}$")
STATE: web.AppKey[Simulator] = web.AppKey("simulator")
_CHALLENGE = {"WWW-Authenticate": 'Basic realm="Twilio API"'}


def twilio_signature(auth_token: str, url: str, params: list[tuple[str, str]]) -> str:
    """X-Twilio-Signature: base64(HMAC-SHA1(auth token, URL + each name+value sorted by name))."""
    payload = url + "".join(k + v for k, v in sorted(params))
    return base64.b64encode(hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()).decode()


def error_response(
    status: int, code: int, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    body = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return web.json_response(body, status=status, headers=headers)


class Simulator:
    """Owns the state and the request validators; one per running server."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.state = SimulatorState(config)
        self.callbacks: set[asyncio.Task[None]] = set()
        self.session: ClientSession | None = None
        self.form_validator: MessageFormValidator | None = None
        self.openapi_validator: OpenAPIRequestValidator | None = None
        self.spec_dir = find_spec_dir(config.spec_path)
        if self.spec_dir is None:
            log.warning(
                "Twilio OpenAPI spec not found (spec_path=%s): checking Twilio's rules only", config.spec_path
            )
        self.apply(config)

    @property
    def config(self) -> SimulatorConfig:
        return self.state.config

    def apply(self, config: SimulatorConfig) -> None:
        self.state.config = config
        self.templates = {t["sid"]: t for t in config.templates}
        secret_pairs = [(config.api_key_sid, config.api_key_secret), (config.account_sid, config.auth_token)]
        self.accepted = {"Basic " + base64.b64encode(f"{u}:{p}".encode()).decode() for u, p in secret_pairs}
        if self.spec_dir is not None:
            spec = load_spec(self.spec_dir / API_SPEC)
            if self.form_validator is None:
                self.form_validator = MessageFormValidator(spec)
            if config.validation == "openapi" and self.openapi_validator is None:
                self.openapi_validator = OpenAPIRequestValidator(spec)

    def authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        if header in self.accepted:
            return True
        if not self.config.accept_any_credentials or not header.startswith("Basic "):
            return False
        try:
            user, _, secret = base64.b64decode(header[6:]).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return bool(_CREDENTIAL_USER.match(user) and secret)

    def problems(
        self, params: list[tuple[str, str]], account_sid: str, authorization: str
    ) -> list[rules.Problem]:
        """Spec and rule violations, Twilio's specific codes first."""
        found = rules.message_problems(params)
        spec_problems: list[str] = []
        if self.openapi_validator is not None and self.config.validation == "openapi":
            spec_problems = self.openapi_validator.problems(params, account_sid, authorization)
        elif self.form_validator is not None:
            spec_problems = self.form_validator.problems(params, account_sid)
        found += [rules.Problem(rules.INVALID_PARAMETER, "spec", p) for p in spec_problems]
        return sorted(found, key=lambda p: p.code == rules.INVALID_PARAMETER)

    def schedule_callbacks(self, message: StoredMessage, url: str, now: float) -> None:
        loop = asyncio.get_running_loop()
        statuses = [("sent", message.sent_at), (message.final_status, message.done_at)]
        for status, when in statuses:
            loop.call_at(max(when, now), self._post_callback, message, url, status)

    def _post_callback(self, message: StoredMessage, url: str, status: str) -> None:
        task = asyncio.get_running_loop().create_task(self._deliver_callback(message, url, status))
        self.callbacks.add(task)
        task.add_done_callback(self.callbacks.discard)

    async def _deliver_callback(self, message: StoredMessage, url: str, status: str) -> None:
        params = [
            ("AccountSid", self.config.account_sid),
            ("ApiVersion", "2010-04-01"),
            ("MessageSid", message.sid),
            ("SmsSid", message.sid),
            ("MessageStatus", status),
            ("SmsStatus", status),
            ("To", message.first("To") or ""),
            ("From", message.first("From") or message.first("MessagingServiceSid") or ""),
        ]
        if message.first("MessagingServiceSid"):
            params.append(("MessagingServiceSid", message.first("MessagingServiceSid") or ""))
        if status in ("undelivered", "failed") and message.error_code is not None:
            params.append(("ErrorCode", str(message.error_code)))
        headers = {
            "X-Twilio-Signature": twilio_signature(self.config.auth_token, url, params),
            "Content-Type": "application/x-www-form-urlencoded",
            "User-Agent": "TwilioProxy/1.1",
        }
        if self.session is None:
            self.session = ClientSession(timeout=ClientTimeout(total=10))
        try:
            async with self.session.post(url, data=urlencode(params), headers=headers) as response:
                await response.read()
        except (ClientError, TimeoutError) as exc:
            log.info("status callback to %s failed: %s", url, exc)

    async def close(self) -> None:
        for task in list(self.callbacks):
            task.cancel()
        await asyncio.gather(*self.callbacks, return_exceptions=True)
        if self.session is not None:
            await self.session.close()


def message_resource(sim: Simulator, m: StoredMessage, now: float | None) -> dict[str, Any]:
    """The Message resource as Twilio renders it; `now=None` renders it as just created."""
    account = sim.config.account_sid
    initial = "accepted" if m.first("MessagingServiceSid") else "queued"
    if m.first("ScheduleType"):
        initial = "scheduled"
    uri = f"{API}/{account}/Messages/{m.sid}.json"
    status = initial if now is None else m.status_at(now, initial)
    return {
        "account_sid": account,
        "api_version": "2010-04-01",
        "body": m.first("Body") or "",
        "date_created": m.date_created,
        "date_sent": m.date_created if status not in ("queued", "accepted", "scheduled") else None,
        "date_updated": m.date_created,
        "direction": "outbound-api",
        "error_code": m.error_code if status == m.final_status else None,
        "error_message": None,
        "from": m.first("From"),
        "messaging_service_sid": m.first("MessagingServiceSid"),
        "num_media": str(sum(1 for k, _ in m.params if k == "MediaUrl")),
        "num_segments": str(m.num_segments),
        "price": None,
        "price_unit": "USD",
        "sid": m.sid,
        "status": status,
        "subresource_uris": {"media": uri.replace(".json", "/Media.json")},
        "to": m.first("To"),
        "uri": uri,
    }


async def create_message(request: web.Request) -> web.StreamResponse:
    sim = request.app[STATE]
    state, config = sim.state, sim.config
    state.in_flight += 1
    state.peak_in_flight = max(state.peak_in_flight, state.in_flight)
    try:
        if config.max_concurrency and state.in_flight > config.max_concurrency:
            return _count(
                state,
                error_response(
                    429, 20429, "Too Many Requests", headers={"Retry-After": f"{config.retry_after_s:g}"}
                ),
            )
        delay = state.latency_s()
        if delay:
            await asyncio.sleep(delay)
        return _count(state, await _create(request, sim))
    finally:
        state.in_flight -= 1


def _count(state: SimulatorState, response: web.StreamResponse) -> web.StreamResponse:
    code = ""
    if isinstance(response, web.Response) and response.status >= 400 and response.body is not None:
        raw = response.body
        code = "/" + str(json.loads(raw if isinstance(raw, bytes) else b"{}").get("code", ""))
    state.answers[f"{response.status}{code}"] += 1
    return response


def _refusal(request: web.Request, sim: Simulator, params: list[tuple[str, str]]) -> web.Response | None:
    """The error answer this request earns before any random draw: auth, spec, rules, special numbers."""
    config = sim.config
    account_sid = request.match_info["AccountSid"]
    refusal: behaviours.Refusal | None = None
    if not sim.authorized(request):
        return error_response(401, 20003, "Authenticate", headers=_CHALLENGE)
    if account_sid != config.account_sid:
        refusal = behaviours.Refusal(404, 20404, f"The requested resource {request.path} was not found")
    elif config.account_status != "active":
        refusal = behaviours.Refusal(401, 20003, f"Authenticate: account is {config.account_status}")
    elif request.content_type != "application/x-www-form-urlencoded":
        refusal = behaviours.Refusal(400, rules.INVALID_PARAMETER, "Content-Type must be form-urlencoded")
    elif problems := sim.problems(params, account_sid, request.headers.get("Authorization", "")):
        refusal = behaviours.Refusal(400, problems[0].code, "; ".join(str(p) for p in problems))
    else:
        refusal = behaviours.refusal_for(dict(reversed(params)), config, sim.templates)
    return None if refusal is None else error_response(refusal.status, refusal.code, refusal.message)


def _injected(sim: Simulator, failure: tuple[str, int], request: web.Request) -> web.Response | None:
    """The answer for an injected error or disconnect; None for a timeout (handled after storing)."""
    kind, code = failure
    if kind == "disconnect":
        if request.transport is not None:
            request.transport.close()
        return web.Response(status=500)
    if kind != "error":
        return None
    status = code if code < 600 else 429 if code == 20429 else 401 if code == 20003 else 400
    code = 20000 + code if code < 600 else code  # a bare HTTP status gets Twilio's 20xxx code
    headers = {"Retry-After": f"{sim.config.retry_after_s:g}"} if status == 429 else None
    return error_response(status, code, f"Injected error {code}", headers=headers)


async def _create(request: web.Request, sim: Simulator) -> web.StreamResponse:
    state = sim.state
    params = parse_qsl((await request.read()).decode(), keep_blank_values=True)
    refused = _refusal(request, sim, params)
    if refused is not None:
        return refused
    failure = state.draw_failure()
    if failure is not None and (injected := _injected(sim, failure, request)) is not None:
        return injected
    first = dict(reversed(params))  # first value of each key wins, as Twilio reads them
    now = asyncio.get_running_loop().time()
    segments = behaviours.segments(first.get("Body", "")) if "ContentSid" not in first else 1
    sender = first.get("MessagingServiceSid") or first.get("From", "")
    sent_at = state.enqueue(sender, behaviours.sender_kind(first), segments, now)
    if sent_at is None:
        return error_response(400, 21611, "This sender has exceeded the maximum number of queued messages.")
    message = state.store(params, segments, sent_at)
    if "StatusCallback" in first:
        sim.schedule_callbacks(message, first["StatusCallback"], now)
    if failure is not None:  # a timeout: accepted, then silent, so the client cannot know it went out
        await asyncio.sleep(sim.config.hang_s)
    return web.json_response(message_resource(sim, message, None), status=201)


def _guard(handler: Callable[[web.Request, Simulator], Any]) -> Callable[[web.Request], Any]:
    async def guarded(request: web.Request) -> web.StreamResponse:
        sim = request.app[STATE]
        if not sim.authorized(request):
            return error_response(401, 20003, "Authenticate", headers=_CHALLENGE)
        account_sid = request.match_info.get("AccountSid") or request.match_info.get(
            "Sid", sim.config.account_sid
        )
        if account_sid.startswith("AC") and account_sid != sim.config.account_sid:
            return error_response(404, 20404, f"The requested resource {request.path} was not found")
        response: web.StreamResponse = await handler(request, sim)
        return response

    return guarded


async def fetch_account(request: web.Request, sim: Simulator) -> web.Response:
    c = sim.config
    return web.json_response(
        {
            "sid": c.account_sid,
            "owner_account_sid": c.account_sid,
            "friendly_name": "kafka-twilio simulator",
            "status": c.account_status,
            "type": "Full",
            "date_created": "Wed, 01 Jan 2025 00:00:00 +0000",
            "date_updated": "Wed, 01 Jan 2025 00:00:00 +0000",
            "uri": f"{API}/{c.account_sid}.json",
            "subresource_uris": {"messages": f"{API}/{c.account_sid}/Messages.json"},
        }
    )


async def fetch_message(request: web.Request, sim: Simulator) -> web.Response:
    message = sim.state.by_sid.get(request.match_info["Sid"])
    if message is None:
        return error_response(404, 20404, f"The requested resource {request.path} was not found")
    return web.json_response(message_resource(sim, message, asyncio.get_running_loop().time()))


async def list_messages(request: web.Request, sim: Simulator) -> web.Response:
    now = asyncio.get_running_loop().time()
    to, sender = request.query.get("To"), request.query.get("From")
    found = [
        m
        for m in reversed(sim.state.messages)  # Twilio lists newest first
        if (to is None or m.first("To") == to) and (sender is None or m.first("From") == sender)
    ]
    page, size, items, meta = _page(request, found)
    uri = f"{API}/{sim.config.account_sid}/Messages.json"
    return web.json_response(
        {
            "messages": [message_resource(sim, m, now) for m in items],
            "page": page,
            "page_size": size,
            "start": page * size,
            "end": page * size + max(len(items) - 1, 0),
            "uri": f"{uri}?PageSize={size}&Page={page}",
            "first_page_uri": f"{uri}?PageSize={size}&Page=0",
            "next_page_uri": meta["next_page_url"] and f"{uri}?PageSize={size}&Page={page + 1}",
            "previous_page_uri": meta["previous_page_url"] and f"{uri}?PageSize={size}&Page={page - 1}",
        }
    )


def _page(request: web.Request, items: list[Any]) -> tuple[int, int, list[Any], dict[str, Any]]:
    try:
        size = max(1, min(1000, int(request.query.get("PageSize", "50"))))
        page = max(0, int(request.query.get("Page", "0")))
    except ValueError:
        size, page = 50, 0
    chunk = items[page * size : (page + 1) * size]
    base = f"{request.url.scheme}://{request.url.host}:{request.url.port}{request.path}"

    def url(p: int) -> str:
        return f"{base}?PageSize={size}&Page={p}&PageToken=PT{p}"

    meta = {
        "page": page,
        "page_size": size,
        "first_page_url": url(0),
        "url": url(page),
        "next_page_url": url(page + 1) if (page + 1) * size < len(items) else None,
        "previous_page_url": url(page - 1) if page > 0 else None,
    }
    return page, size, chunk, meta


async def list_content(request: web.Request, sim: Simulator) -> web.Response:
    _, _, items, meta = _page(request, list(sim.templates.values()))
    return web.json_response({"contents": items, "meta": {**meta, "key": "contents"}})


async def fetch_content(request: web.Request, sim: Simulator) -> web.Response:
    template = sim.templates.get(request.match_info["Sid"])
    if template is None:
        return error_response(404, 20404, f"The requested resource {request.path} was not found")
    return web.json_response(template)


async def list_services(request: web.Request, sim: Simulator) -> web.Response:
    services = [{"account_sid": sim.config.account_sid, **s} for s in sim.config.services]
    _, _, items, meta = _page(request, services)
    return web.json_response({"services": items, "meta": {**meta, "key": "services"}})


async def sim_messages(request: web.Request) -> web.Response:
    sim = request.app[STATE]
    now = asyncio.get_running_loop().time()
    return web.json_response([m.summary(now) for m in sim.state.messages])


async def sim_stats(request: web.Request) -> web.Response:
    state = request.app[STATE].state
    return web.json_response(
        {
            "accepted": len(state.messages),
            "in_flight": state.in_flight,
            "peak_in_flight": state.peak_in_flight,
            "answers": dict(state.answers),
        }
    )


async def sim_config(request: web.Request) -> web.Response:
    sim = request.app[STATE]
    try:
        sim.apply(sim.config.replace(**await request.json()))
    except (TypeError, ValueError) as exc:
        return web.json_response({"error": str(exc)}, status=400)
    return web.json_response({"ok": True})


async def sim_reset(request: web.Request) -> web.Response:
    request.app[STATE].state.reset()
    return web.json_response({"ok": True})


def build_app(simulator: Simulator) -> web.Application:
    app = web.Application()
    app[STATE] = simulator

    async def close(_: web.Application) -> None:
        await simulator.close()

    app.on_cleanup.append(close)
    app.router.add_post(f"{API}/{{AccountSid}}/Messages.json", create_message)
    app.router.add_get(f"{API}/{{AccountSid}}/Messages.json", _guard(list_messages))
    app.router.add_get(f"{API}/{{AccountSid}}/Messages/{{Sid}}.json", _guard(fetch_message))
    app.router.add_get(f"{API}/{{Sid}}.json", _guard(fetch_account))
    app.router.add_get("/v1/Content", _guard(list_content))
    app.router.add_get("/v1/Content/{Sid}", _guard(fetch_content))
    app.router.add_get("/v1/Services", _guard(list_services))
    app.router.add_get("/_sim/messages", sim_messages)
    app.router.add_get("/_sim/stats", sim_stats)
    app.router.add_post("/_sim/config", sim_config)
    app.router.add_post("/_sim/reset", sim_reset)
    return app
