"""The Schema Registry edge: writer schemas by id (or GUID), retried with backoff, cached.

Any Confluent-compatible registry works (Confluent, Karapace, Apicurio's ccompat API) through
confluent-kafka's client; `mock://name` gives confluent-kafka's in-process mock for tests. Third-party
errors are translated here, once, into DecodeError (`unknown_schema`, `schema_mismatch`) or
RegistryError (`registry_unavailable`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from consumer.errors import DecodeError, RegistryError

_NOT_FOUND = 404
_MOCKS: dict[str, SchemaRegistryClient] = {}
_AUTH = frozenset({401, 403})


def make_registry_client(url: str, user: str = "", password: str = "") -> SchemaRegistryClient:
    """Build a registry client for `url` (comma-separated for several; `mock://x` for tests).

    The client's own retries are turned off: `RegistrySchemas` retries, so that the number of
    attempts and the backoff are ours to state and test. `mock://` clients are shared per URL, so a
    producer and a decoder in one process see the same in-memory registry (as Java's mock scopes do).
    """
    if url.startswith("mock://"):
        if url not in _MOCKS:
            _MOCKS[url] = SchemaRegistryClient.new_client({"url": url})
        return _MOCKS[url]
    conf: dict[str, Any] = {"url": url, "max.retries": 0, "timeout": 10}
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


class RegistrySchemas:
    """Look writer schemas up by id or GUID; retry transient failures, cache answers."""

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
        self._by_id: dict[int, str] = {}
        self._by_guid: dict[str, str] = {}
        self.url = describe_client(client)

    def by_id(self, schema_id: int) -> str:
        """The schema text registered under `schema_id`."""
        if schema_id not in self._by_id:
            self._by_id[schema_id] = self._fetch(
                f"id {schema_id}", lambda: self._client.get_schema(schema_id)
            )
        return self._by_id[schema_id]

    def by_guid(self, guid: str) -> str:
        """The schema text registered under `guid` (Confluent's header-based schema ids)."""
        if guid not in self._by_guid:
            self._by_guid[guid] = self._fetch(f"GUID {guid}", lambda: self._client.get_schema_by_guid(guid))
        return self._by_guid[guid]

    def _fetch(self, what: str, call: Callable[[], Any]) -> str:
        last: BaseException | None = None
        for attempt in range(self._attempts):
            if attempt:
                self._sleep(min(self._max_delay_s, self._base_delay_s * 2 ** (attempt - 1)))
            try:
                schema = call()
            except SchemaRegistryError as exc:
                status = int(getattr(exc, "http_status_code", 0) or 0)
                if status == _NOT_FOUND:
                    raise DecodeError(
                        f"schema {what} is not in the Schema Registry at {self.url}: the producer used "
                        "another registry, or the schema was deleted; point the consumer at the producer's "
                        "registry",
                        reason="unknown_schema",
                    ) from exc
                if status in _AUTH:
                    raise RegistryError(
                        f"the Schema Registry at {self.url} refused the credentials (HTTP {status}) when "
                        f"fetching schema {what}; check the registry user and password settings",
                        reason="registry_unavailable",
                    ) from exc
                last = exc
            except Exception as exc:  # noqa: BLE001 - transport errors vary by client version
                last = exc
            else:
                return _avro_text(schema, what, self.url)
        raise RegistryError(
            f"the Schema Registry at {self.url} did not answer for schema {what} after {self._attempts} "
            f"attempts ({type(last).__name__}: {last}); check that it is running and reachable",
            reason="registry_unavailable",
        ) from last


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
