"""The Schema Registry edge: writer schemas by id (or GUID), one request at a time or retried.

Any Confluent-compatible registry works (Confluent, Karapace, Apicurio's ccompat API at
`/apis/ccompat/v7`) through confluent-kafka's client; `mock://name` gives confluent-kafka's
in-process mock for tests. Only two calls of the Confluent API are relied on: `GET /schemas/ids/{id}`
(and `GET /schemas/guids/{guid}` for header-borne GUIDs) to read, and `POST /subjects/{subject}/versions`
to register (the `produce` command). Third-party errors are translated here, once:

- 404 with a Schema Registry "not found" code (404xx): DecodeError `unknown_schema`; the record
  names a schema this registry does not have, and waiting will not change that.
- the schema is not Avro: DecodeError `schema_mismatch`.
- anything else (refused connection, timeout, 5xx, 401/403, a 404 without that code, which is a wrong
  URL or a registry without the route): RegistryError. Nothing is wrong with the record: it waits.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from consumer.errors import DecodeError, RegistryError
from consumer.pipeline.retry import compute_backoff

#: A writer schema's name in the registry: its id (wire format), or its GUID (header form).
RegistryKey = int | str

_NOT_FOUND = 404
#: Confluent's "not found" error codes (40403 schema, 40401 subject; confluent-kafka's mock: 40400).
#: A 404 with one of them comes from a registry; a 404 without one, from something else at that URL.
_NOT_FOUND_CODES = range(40400, 40500)
_AUTH = frozenset({401, 403})
_MOCKS: dict[str, SchemaRegistryClient] = {}
#: Seconds a registry request may take: a registry that never answers (seen with Apicurio 3.3 on
#: routes it does not implement) must become a retry, not a look-up that hangs for ever.
REQUEST_TIMEOUT_S = 10


def make_registry_client(url: str, user: str = "", password: str = "") -> SchemaRegistryClient:
    """Build a registry client for `url` (comma-separated for several; `mock://x` for tests).

    The client's own retries are turned off: our callers retry, so that the attempts and the backoff
    are ours to state and test. `mock://` clients are shared per URL, so a producer and a decoder in
    one process see the same in-memory registry (as Java's mock scopes do).
    """
    if url.startswith("mock://"):
        if url not in _MOCKS:
            _MOCKS[url] = SchemaRegistryClient.new_client({"url": url})
        return _MOCKS[url]
    conf: dict[str, Any] = {"url": url, "max.retries": 0, "timeout": REQUEST_TIMEOUT_S}
    if user or password:
        conf["basic.auth.user.info"] = f"{user}:{password}"
    client: SchemaRegistryClient = SchemaRegistryClient.new_client(conf)
    return client


def redact_url(url: str) -> str:
    """`url` without user info, so it can go into messages and logs."""
    parts = []
    for one in url.split(","):
        split = urlsplit(one.strip())
        host = split.hostname or ""
        netloc = f"{host}:{split.port}" if split.port else host
        parts.append(urlunsplit((split.scheme, netloc, split.path, "", "")))
    return ",".join(parts)


def describe_client(client: Any) -> str:
    """The registry URL(s) a confluent-kafka client talks to, without credentials."""
    rest = getattr(client, "_rest_client", None)
    urls = getattr(rest, "base_urls", None)
    if isinstance(urls, list) and urls:
        return redact_url(",".join(str(u) for u in urls))
    return "the configured Schema Registry"


def describe_key(key: RegistryKey) -> str:
    if isinstance(key, str) and key.startswith("subject "):
        return key
    return f"id {key}" if isinstance(key, int) else f"GUID {key}"


class RegistrySchemas:
    """Ask a registry for writer schemas: `fetch` is one request, `lookup` retries it with backoff."""

    def __init__(
        self,
        client: Any,
        *,
        attempts: int = 4,
        base_delay_s: float = 0.2,
        max_delay_s: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._client = client
        self._attempts = max(1, attempts)
        self._base_delay_s = base_delay_s
        self._max_delay_s = max_delay_s
        self._sleep = sleep
        self.url = describe_client(client)

    def fetch(self, key: RegistryKey) -> str:
        """The Avro schema text registered under `key`: one request, blocking (run it off the loop).

        Raises DecodeError when the registry does not have it or it is not Avro, RegistryError when
        the registry could not be asked."""
        what = describe_key(key)
        try:
            schema = (
                self._client.get_schema(key) if isinstance(key, int) else self._client.get_schema_by_guid(key)
            )
        except SchemaRegistryError as exc:
            raise self._translate(exc, key) from exc
        # Transport errors vary by client version (requests, httpx): every one means "not asked".
        except Exception as exc:
            raise RegistryError(
                f"the Schema Registry at {self.url} did not answer for schema {what} ({type(exc).__name__}: "
                f"{exc}); check that it is running and reachable",
                reason="registry_unavailable",
                key=key,
            ) from exc
        return _avro_text(schema, what, self.url)

    def versions(self, subject: str) -> list[tuple[int, str]]:
        """Every (version, Avro schema text) registered under `subject`, oldest first: one request per
        version, blocking (start-up). DecodeError when the subject is unknown, RegistryError when the
        registry could not be asked."""
        try:
            numbers = sorted(int(v) for v in self._client.get_versions(subject))
            found = [(n, self._client.get_version(subject, n).schema) for n in numbers]
        except SchemaRegistryError as exc:
            raise self._translate(exc, f"subject {subject}") from exc
        except Exception as exc:
            raise RegistryError(
                f"the Schema Registry at {self.url} did not answer for subject {subject} "
                f"({type(exc).__name__}: {exc}); check that it is running and reachable",
                reason="registry_unavailable",
                key=subject,
            ) from exc
        return [(n, _avro_text(schema, f"subject {subject} version {n}", self.url)) for n, schema in found]

    def lookup(self, key: RegistryKey) -> str:
        """`fetch`, retried with backoff while the registry cannot be asked (refused credentials are not
        retried). For one-shot callers; the service never blocks its event loop on this."""
        last: RegistryError | None = None
        for attempt in range(self._attempts):
            if attempt:
                self._sleep(
                    compute_backoff(attempt - 1, base_s=self._base_delay_s, cap_s=self._max_delay_s, rand=1.0)
                )
            try:
                return self.fetch(key)
            except RegistryError as error:
                if error.reason == "registry_refused":
                    raise
                last = error
        assert last is not None
        last.message = f"{last.message} (after {self._attempts} attempts)"
        raise last

    def close(self) -> None:
        """Close the client's connections (mock:// clients are shared and have none)."""
        close = getattr(self._client, "close", None)
        if callable(close) and not self.url.startswith("mock://"):
            close()

    def _translate(self, exc: SchemaRegistryError, key: RegistryKey) -> DecodeError | RegistryError:
        what = describe_key(key)
        status = int(getattr(exc, "http_status_code", 0) or 0)
        code = getattr(exc, "error_code", None)
        if status == _NOT_FOUND and code in _NOT_FOUND_CODES:
            return DecodeError(
                f"schema {what} is not in the Schema Registry at {self.url}: the producer used another "
                "registry, or the schema was deleted; point the consumer at the producer's registry",
                reason="unknown_schema",
            )
        if status in _AUTH:
            return RegistryError(
                f"the Schema Registry at {self.url} refused the credentials (HTTP {status}) when fetching "
                f"schema {what}; check the registry user and password settings",
                reason="registry_refused",
                key=key,
            )
        if status == _NOT_FOUND:
            return RegistryError(
                f"{self.url} answered 404 without a Schema Registry error for schema {what}: the URL is "
                "not a Confluent-compatible API (Apicurio's is at /apis/ccompat/v7), or this registry "
                "does not serve that look-up; fix the registry URL setting",
                reason="registry_unavailable",
                key=key,
            )
        return RegistryError(
            f"the Schema Registry at {self.url} answered HTTP {status} for schema {what} "
            f"({exc.error_message}); check its health",
            reason="registry_unavailable",
            key=key,
        )


def _avro_text(schema: Any, what: str, url: str) -> str:
    kind = getattr(schema, "schema_type", None) or "AVRO"
    text = getattr(schema, "schema_str", None)
    if kind != "AVRO" or not isinstance(text, str):
        raise DecodeError(
            f"schema {what} in the Schema Registry at {url} is a {kind} schema, not Avro; produce these "
            "records with an Avro serializer",
            reason="schema_mismatch",
        )
    return text
