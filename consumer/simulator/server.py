"""The simulator's HTTP server (aiohttp.web): Twilio's routes, Twilio-shaped answers.

Serves Messages (create, fetch, list), Account fetch, Content (list, fetch), Messaging Services
(list), and the test endpoints GET /_sim/messages, GET /_sim/stats, POST /_sim/config, POST /_sim/reset,
POST /_sim/outage and POST /_sim/inbound (a recipient's reply, signed, to the inbound webhook).
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from consumer.simulator.callbacks import twilio_signature
from consumer.simulator.core import API, STATE, Simulator, error_response, guard, page_of
from consumer.simulator.messages import create_message, fetch_message, list_messages

__all__ = ["Simulator", "build_app", "twilio_signature"]


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


async def list_content(request: web.Request, sim: Simulator) -> web.Response:
    _, _, items, meta = page_of(request, list(sim.templates.values()))
    return web.json_response({"contents": items, "meta": {**meta, "key": "contents"}})


async def fetch_content(request: web.Request, sim: Simulator) -> web.Response:
    template = sim.templates.get(request.match_info["Sid"])
    if template is None:
        return error_response(404, 20404, f"The requested resource {request.path} was not found")
    return web.json_response(template)


async def list_services(request: web.Request, sim: Simulator) -> web.Response:
    services = [{"account_sid": sim.config.account_sid, **s} for s in sim.config.services]
    _, _, items, meta = page_of(request, services)
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
            "webhooks": dict(request.app[STATE].callbacks.posted),
        }
    )


async def sim_config(request: web.Request) -> web.Response:
    sim = request.app[STATE]
    try:
        sim.apply(sim.config.replace(**await request.json()))
    except (TypeError, ValueError) as exc:
        return web.json_response({"error": str(exc)}, status=400)
    return web.json_response({"ok": True})


async def sim_outage(request: web.Request) -> web.Response:
    """Start or end an outage: {"mode": "503" | "refuse" | "", "seconds": N}. A refusing port cannot
    be told to stop, so "refuse" needs `seconds`; "503" without them lasts until the next call."""
    sim = request.app[STATE]
    try:
        data = await request.json()
        mode, seconds = str(data.get("mode", "")), data.get("seconds")
        if mode not in ("", "503", "refuse") or (mode == "refuse" and not seconds):
            raise ValueError("mode must be '', '503' or 'refuse' (with seconds)")
    except (ValueError, TypeError) as exc:
        return web.json_response({"error": str(exc)}, status=400)
    await sim.outage(mode, float(seconds) if seconds else None)
    return web.json_response({"ok": True, "mode": mode})


@web.middleware
async def outages(request: web.Request, handler: Any) -> web.StreamResponse:
    """During an outage every Twilio route fails; /_sim/* stays up for the tests."""
    mode = request.app[STATE].config.outage
    if mode and not request.path.startswith("/_sim/"):
        if mode == "503":
            return error_response(503, 20503, "Service Unavailable")
        if request.transport is not None:  # refusing: connections opened before are reset
            request.transport.abort()
        return web.Response(status=503)  # never written: the connection is gone
    response: web.StreamResponse = await handler(request)
    return response


async def sim_inbound(request: web.Request) -> web.Response:
    """Inject a reply, as a recipient would send it: {"from", "to", "body", "url"?, "messaging_service_sid"?}.

    Posted signed to `url` (or the configured inbound_url); STOP puts the sender on the STOP list
    (21610 from then on), START takes them off. Answers with the webhook's own status code."""
    sim = request.app[STATE]
    try:
        data = await request.json()
        url = str(data.get("url") or sim.config.inbound_url)
        sender, to, body = str(data["from"]), str(data["to"]), str(data["body"])
        if not url:
            raise ValueError("no url given and no inbound_url configured")
    except (ValueError, KeyError, TypeError) as exc:
        return web.json_response({"error": f"{exc}: expected from, to, body (and url)"}, status=400)
    status = await sim.callbacks.inbound(url, sender, to, body, str(data.get("messaging_service_sid") or ""))
    return web.json_response({"ok": 200 <= status < 300, "webhook_status": status})


async def sim_reset(request: web.Request) -> web.Response:
    request.app[STATE].state.reset()
    return web.json_response({"ok": True})


def build_app(simulator: Simulator) -> web.Application:
    app = web.Application(middlewares=[outages])
    app[STATE] = simulator

    async def close(_: web.Application) -> None:
        await simulator.close()

    app.on_cleanup.append(close)
    app.router.add_post(f"{API}/{{AccountSid}}/Messages.json", create_message)
    app.router.add_get(f"{API}/{{AccountSid}}/Messages.json", guard(list_messages))
    app.router.add_get(f"{API}/{{AccountSid}}/Messages/{{Sid}}.json", guard(fetch_message))
    app.router.add_get(f"{API}/{{Sid}}.json", guard(fetch_account))
    app.router.add_get("/v1/Content", guard(list_content))
    app.router.add_get("/v1/Content/{Sid}", guard(fetch_content))
    app.router.add_get("/v1/Services", guard(list_services))
    app.router.add_get("/_sim/messages", sim_messages)
    app.router.add_get("/_sim/stats", sim_stats)
    app.router.add_post("/_sim/config", sim_config)
    app.router.add_post("/_sim/reset", sim_reset)
    app.router.add_post("/_sim/outage", sim_outage)
    app.router.add_post("/_sim/inbound", sim_inbound)
    return app
