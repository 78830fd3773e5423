"""The Messages routes: create (validated, throttled, queued per sender), fetch and list."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

from aiohttp import web

from consumer.simulator import behaviours, rules
from consumer.simulator.core import API, CHALLENGE, STATE, Simulator, error_response, page_of
from consumer.simulator.state import SimulatorState, StoredMessage


def message_resource(sim: Simulator, m: StoredMessage, now: float | None) -> dict[str, Any]:
    """The Message resource as Twilio renders it; `now=None` renders it as just created."""
    account = sim.config.account_sid
    initial = "accepted" if m.first("MessagingServiceSid") else "queued"
    if m.first("ScheduleType"):
        initial = "scheduled"
    uri = f"{API}/{account}/Messages/{m.sid}.json"
    status = initial if now is None else m.status_at(now, initial)
    # Twilio leaves date_sent empty while a message is queued, accepted or scheduled.
    sent = date_sent(m, now)
    return {
        "account_sid": account,
        "api_version": "2010-04-01",
        "body": m.first("Body") or "",
        "date_created": m.date_created,
        "date_sent": format_datetime(sent, usegmt=True) if sent is not None else None,
        "date_updated": m.date_created,
        "direction": "outbound-api",
        "error_code": m.error_code if status == m.final_status else None,
        "error_message": None,
        # A Messaging Service reports the pool number it picked, not the service SID.
        "from": m.first("From") or sim.config.service_number,
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
        return error_response(401, 20003, "Authenticate", headers=CHALLENGE)
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


def date_sent(m: StoredMessage, now: float | None) -> datetime | None:
    """When the message left its sender queue (wall clock), or None while it has not."""
    if now is None or now < m.sent_at:
        return None
    return m.wall_at(m.sent_at)


def _injected(sim: Simulator, failure: tuple[str, int], request: web.Request) -> web.Response | None:
    """The answer for an injected error or disconnect; None for the failures that accept first."""
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
    message = state.store(params, segments, sent_at, now)
    if "StatusCallback" in first:
        sim.callbacks.schedule(message, first["StatusCallback"], now)
    answer = web.json_response(message_resource(sim, message, None), status=201)
    if failure is None:
        return answer
    # Accepted, and then the client cannot know it: silence, a dropped connection, or half an answer.
    kind, _ = failure
    if kind == "timeout":
        await asyncio.sleep(sim.config.hang_s)
        return answer
    return await _break(request, answer, truncate=kind == "truncate")


async def _break(request: web.Request, answer: web.Response, *, truncate: bool) -> web.StreamResponse:
    """Drop the connection before the answer, or (truncate) after its headers and half its body."""
    request.app[STATE].state.answers["201/truncated" if truncate else "201/dropped"] += 1
    transport = request.transport
    if truncate and transport is not None:
        body = answer.body if isinstance(answer.body, bytes) else b"{}"
        head = (
            f"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        transport.write(head.encode() + body[: len(body) // 2])
    if transport is not None:
        transport.close()
    return web.Response(status=500)  # never written: the connection is gone


async def fetch_message(request: web.Request, sim: Simulator) -> web.Response:
    message = sim.state.by_sid.get(request.match_info["Sid"])
    if message is None:
        return error_response(404, 20404, f"The requested resource {request.path} was not found")
    return web.json_response(message_resource(sim, message, asyncio.get_running_loop().time()))


async def list_messages(request: web.Request, sim: Simulator) -> web.Response:
    """Messages with Twilio's filters (To, From, DateSent, DateSent<, DateSent>), newest first:
    not yet sent first (no date_sent), then by date_sent, then by creation, all descending."""
    now = asyncio.get_running_loop().time()
    q = request.query
    found = [m for m in sim.state.listable(q.get("To")) if _listed(sim, m, q, now)]
    found.sort(key=lambda m: (date_sent(m, now) is None, date_sent(m, now) or m.wall_created, m.wall_created),
               reverse=True)  # fmt: skip
    page, size, items, meta = page_of(request, found)
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
            "next_page_uri": meta["next_page_url"] and f"{uri}?{_query(q, size, page + 1)}",
            "previous_page_uri": meta["previous_page_url"] and f"{uri}?{_query(q, size, page - 1)}",
        }
    )


def _listed(sim: Simulator, m: StoredMessage, query: Any, now: float) -> bool:
    if "To" in query and m.first("To") != query["To"]:
        return False
    if "From" in query and (m.first("From") or sim.config.service_number) != query["From"]:
        return False
    sent = date_sent(m, now)
    for key, test in (("DateSent", "=="), ("DateSent<", "<="), ("DateSent>", ">=")):
        if key not in query:
            continue
        if sent is None:
            return False
        day, wanted = sent.date().isoformat(), query[key]
        if (
            (test == "==" and day != wanted)
            or (test == "<=" and day > wanted)
            or (test == ">=" and day < wanted)
        ):
            return False
    return True


def _query(query: Any, size: int, page: int) -> str:
    kept = [(k, v) for k, v in query.items() if k in ("To", "From", "DateSent", "DateSent<", "DateSent>")]
    return urlencode([*kept, ("PageSize", str(size)), ("Page", str(page))])
