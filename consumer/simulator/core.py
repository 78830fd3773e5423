"""The simulator's core: its state, request validators, credentials and Twilio-shaped error answers."""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from consumer.simulator import rules
from consumer.simulator.callbacks import Callbacks
from consumer.simulator.config import SimulatorConfig
from consumer.simulator.spec import (
    API_SPEC,
    MessageFormValidator,
    OpenAPIRequestValidator,
    find_spec_dir,
    load_spec,
)
from consumer.simulator.state import SimulatorState

log = logging.getLogger("consumer.simulator")
API = "/2010-04-01/Accounts"
_CREDENTIAL_USER = re.compile(r"^(SK|AC)[0-9a-fA-F]{32}$")
STATE: web.AppKey[Simulator] = web.AppKey("simulator")
CHALLENGE = {"WWW-Authenticate": 'Basic realm="Twilio API"'}


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
        self.callbacks = Callbacks(lambda: self.config, self.state.rng.random)
        #: Stops (False) or resumes (True) listening on the port; set by whoever started the server.
        self.listening: Callable[[bool], Awaitable[None]] | None = None
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

    async def outage(self, mode: str, seconds: float | None) -> None:
        """Begin an outage ("503", "refuse") or end it (""); with `seconds`, it ends by itself."""
        self.apply(self.config.replace(outage=mode))
        if mode == "refuse" and self.listening is not None:
            await self.listening(False)
        elif not mode and self.listening is not None:
            await self.listening(True)
        if mode and seconds:
            loop = asyncio.get_running_loop()
            loop.call_later(seconds, lambda: loop.create_task(self.outage("", None)))

    async def close(self) -> None:
        await self.callbacks.close()


def guard(handler: Callable[[web.Request, Simulator], Any]) -> Callable[[web.Request], Any]:
    async def guarded(request: web.Request) -> web.StreamResponse:
        sim = request.app[STATE]
        if not sim.authorized(request):
            return error_response(401, 20003, "Authenticate", headers=CHALLENGE)
        account_sid = request.match_info.get("AccountSid") or request.match_info.get(
            "Sid", sim.config.account_sid
        )
        if account_sid.startswith("AC") and account_sid != sim.config.account_sid:
            return error_response(404, 20404, f"The requested resource {request.path} was not found")
        response: web.StreamResponse = await handler(request, sim)
        return response

    return guarded


def page_of(request: web.Request, items: list[Any]) -> tuple[int, int, list[Any], dict[str, Any]]:
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
