"""The Messages routes: create (validated, throttled, queued per sender), fetch and list."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import parse_qsl

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
        sim.callbacks.schedule(message, first["StatusCallback"], now)
    if failure is not None:  # a timeout: accepted, then silent, so the client cannot know it went out
        await asyncio.sleep(sim.config.hang_s)
    return web.json_response(message_resource(sim, message, None), status=201)


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
            "next_page_uri": meta["next_page_url"] and f"{uri}?PageSize={size}&Page={page + 1}",
            "previous_page_uri": meta["previous_page_url"] and f"{uri}?PageSize={size}&Page={page - 1}",
        }
    )
