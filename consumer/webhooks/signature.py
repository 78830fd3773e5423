"""X-Twilio-Signature, checked with the official `twilio` package's RequestValidator.

Twilio signs every webhook with the account's Auth Token: HMAC-SHA1 over the URL it requested (query
included) followed by each POST parameter's name and value, sorted by name. The validator also tries
the URL with and without its default port (Twilio's own signing is inconsistent there) and compares
in constant time. During a rotation Twilio may sign with either token, so each is tried.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from twilio.request_validator import RequestValidator


class Signatures:
    """Checks webhook signatures against the primary and (during a rotation) the secondary token."""

    def __init__(self, tokens: Iterable[str]) -> None:
        self._validators = [RequestValidator(t) for t in tokens if t]
        if not self._validators:
            raise ValueError("no Auth Token to check webhook signatures with")

    def valid(self, url: str, params: Any, signature: str) -> bool:
        """True when `signature` is Twilio's for `url` and the form `params` (a MultiDict or dict)."""
        if not signature:
            return False
        return any(v.validate(url, params, signature) for v in self._validators)


def public_url(base: str, scheme: str, host: str, path_qs: str) -> str:
    """The URL Twilio requested: the configured public base (behind an Ingress), else the request's."""
    return (base.rstrip("/") if base else f"{scheme}://{host}") + path_qs
