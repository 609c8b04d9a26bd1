"""Azure Storage access: tables, queues and blobs on Azurite or Azure, created on first use.

A connection string (Azurite, `UseDevelopmentStorage=true`) or an identity-based connection
(`AzureWebJobsStorage__accountName` / `__*ServiceUri`, managed identity) — the same shapes the
Functions host accepts. Queue clients send plain text: host.json sets `messageEncoding: none`.
ETag helpers give optimistic concurrency where two instances could race.
"""
from __future__ import annotations

import threading
from typing import Any
from urllib.parse import quote

from azure.core import MatchConditions
from azure.core.exceptions import (
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.pipeline.transport import RequestsTransport
from azure.data.tables import TableClient, TableServiceClient, UpdateMode
from azure.storage.blob import BlobServiceClient, ContainerClient
from azure.storage.queue import QueueClient, QueueServiceClient
from requests import Session
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from connector.queue_sender import QueueSender
from connector.settings import StorageSettings

Entity = dict[str, Any]
_TRANSPORT_OPTIONS = ("connection_timeout", "read_timeout")
# Keep-alive connections kept per service (table, queue, blob) and process. The SDK's default (10) is
# below what one instance runs at once (48 queue messages per function, the event and dedupe pools):
# past it every request opened and dropped its own connection (a TLS handshake each on Azure).
STORAGE_POOL_SIZE = 64


def _pooled_session(size: int = STORAGE_POOL_SIZE) -> Session:
    """A session like the SDK's own (no proxy or CA settings from the environment, no urllib3
    retries: the SDK's policy retries) with `size` connections kept."""
    session = Session()
    session.trust_env = False
    adapter = HTTPAdapter(pool_connections=size, pool_maxsize=size,
                          max_retries=Retry(total=False, redirect=False, raise_on_status=False))
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


class Storage:
    """Cached, lazily created storage clients for one account."""

    def __init__(self, settings: StorageSettings, client_options: dict[str, Any] | None = None, *,
                 pool_size: int = STORAGE_POOL_SIZE):
        """`client_options`: Azure SDK client options (e.g. `retry_total`, `connection_timeout` for a
        command that must fail fast); `pool_size`: connections kept per service (as many as calls run
        at once: one more is opened and thrown away after its call)."""
        self._settings = settings
        self._pool_size = pool_size
        self._options = dict(client_options or {})
        self._lock = threading.Lock()
        self._tables: dict[str, TableClient] = {}
        self._queues: dict[str, QueueClient] = {}
        self._containers: dict[str, ContainerClient] = {}  # created (or found) on first use
        self._readers: dict[str, ContainerClient] = {}  # not created: read-only use
        self._senders: dict[str, QueueSender] = {}
        self._services: dict[str, Any] = {}

    @property
    def account_name(self) -> str:
        """The account's name: identity-based `__accountName`, else the connection string's
        AccountName (Azurite's devstoreaccount1 for UseDevelopmentStorage), else ""."""
        if self._settings.account:
            return self._settings.account
        conn = self._settings.connection_string
        parts = dict(p.split("=", 1) for p in conn.split(";") if "=" in p)
        if "AccountName" in parts:
            return parts["AccountName"]
        return "devstoreaccount1" if "UseDevelopmentStorage=true" in conn else ""

    def _credential(self) -> Any:
        from azure.identity import DefaultAzureCredential

        client_id = self._settings.client_id or None
        return DefaultAzureCredential(managed_identity_client_id=client_id)

    def _endpoint(self, kind: str) -> str:
        uri = self._settings.service_uris.get(kind)
        if uri:
            return uri
        if not self._settings.account:
            raise RuntimeError("no storage configured: set AzureWebJobsStorage or __accountName")
        return f"https://{self._settings.account}.{kind}.core.windows.net"

    def _service(self, kind: str) -> Any:
        with self._lock:
            if kind not in self._services:
                cls: Any = {"table": TableServiceClient, "queue": QueueServiceClient,
                       "blob": BlobServiceClient}[kind]
                conn = self._settings.connection_string
                # Reading proxy/CA settings from the environment on every request costs ~15 % of an
                # event send's CPU; storage endpoints need neither.
                transport = RequestsTransport(session=_pooled_session(self._pool_size),
                                              use_env_settings=False,
                                              **self._transport_options())
                options = {k: v for k, v in self._options.items() if k not in _TRANSPORT_OPTIONS}
                if conn:
                    self._services[kind] = cls.from_connection_string(conn, transport=transport, **options)
                else:
                    self._services[kind] = cls(self._endpoint(kind), credential=self._credential(),
                                               transport=transport, **options)
            return self._services[kind]

    def _transport_options(self) -> dict[str, Any]:
        return {k: v for k, v in self._options.items() if k in _TRANSPORT_OPTIONS}

    def table(self, name: str, *, retry_total: int | None = None) -> TableClient:
        """The table client, creating the table the first time this process asks for it
        (`retry_total`: the creation's retries; 0 to fail fast, None for the SDK's default)."""
        client = self._tables.get(name)
        if client is None:
            service = self._service("table")
            service.create_table_if_not_exists(name, **_retries(retry_total))
            client = self._tables.setdefault(name, service.get_table_client(name))
        return client

    def queue(self, name: str, *, retry_total: int | None = None) -> QueueClient:
        """The queue client (plain-text messages), creating the queue on first use (`retry_total`
        as for `table`)."""
        client = self._queues.get(name)
        if client is None:
            client = self._service("queue").get_queue_client(name)
            try:
                client.create_queue(**_retries(retry_total))
            except ResourceExistsError:
                pass
            client = self._queues.setdefault(name, client)
        return client

    def sender(self, name: str, *, retry_total: int | None = None) -> QueueSender:
        """A lean sender of plain-text messages to the queue, for hot paths (the queue created on
        first use, `retry_total` as for `table`)."""
        sender = self._senders.get(name)
        if sender is None:
            sender = self._senders.setdefault(name, QueueSender(self.queue(name, retry_total=retry_total)))
        return sender

    def container(self, name: str, *, create: bool = True) -> ContainerClient:
        """The container client, creating the container on first use unless `create` is off (a
        container the identity may only read: creating needs more than Storage Blob Data Reader)."""
        if not create:
            client = self._containers.get(name) or self._readers.get(name)
            return client or self._readers.setdefault(name, self._service("blob").get_container_client(name))
        client = self._containers.get(name)
        if client is None:
            client = self._service("blob").get_container_client(name)
            try:
                client.create_container()
            except ResourceExistsError:
                pass
            client = self._containers.setdefault(name, client)
        return client


def _retries(retry_total: int | None) -> dict[str, int]:
    return {} if retry_total is None else {"retry_total": retry_total}


def table_key(value: str) -> str:
    """A PartitionKey/RowKey-safe form of any string (`/ \\ # ?` and control characters escaped)."""
    return quote(value, safe=" !$&'()*+,;=:@-._~")


def read_entity(table: TableClient, pk: str, rk: str) -> tuple[Entity, str] | None:
    """The entity and its ETag, or None."""
    try:
        e = table.get_entity(pk, rk)
    except ResourceNotFoundError:
        return None
    return dict(e), str(e.metadata["etag"])


def insert_entity(table: TableClient, entity: Entity, **kw: Any) -> str | None:
    """Create; the new ETag, or None if a row with that key already exists (`kw`: per-call
    options such as `retry_total`)."""
    try:
        meta = table.create_entity(entity, **kw)
    except ResourceExistsError:
        return None
    return meta.get("etag")


def replace_if_match(table: TableClient, entity: Entity, etag: str, **kw: Any) -> str | None:
    """Replace only if unchanged since `etag` was read; the new ETag, or None if someone else won."""
    try:
        meta = table.update_entity(
            entity, mode=UpdateMode.REPLACE, etag=etag, match_condition=MatchConditions.IfNotModified,
            **kw)
    except (ResourceModifiedError, ResourceNotFoundError):
        return None
    return meta.get("etag")


def delete_if_match(table: TableClient, pk: str, rk: str, etag: str, **kw: Any) -> bool:
    """Delete only if unchanged since `etag` was read; False if it changed or is already gone (`kw`:
    per-call options such as `retry_total`)."""
    try:
        table.delete_entity(pk, rk, etag=etag, match_condition=MatchConditions.IfNotModified, **kw)
    except (ResourceModifiedError, ResourceNotFoundError):
        return False
    return True


def submit_upserts(table: TableClient, entities: list[Entity], attempts: int = 3) -> None:
    """Upsert entities in one transaction, repeated when the connection drops mid-request: the SDK
    never retries a POST whose answer was lost, and a repeated upsert changes nothing."""
    operations = [("upsert", e, {"mode": UpdateMode.REPLACE}) for e in entities]
    for attempt in range(attempts):
        try:
            table.submit_transaction(operations)
            return
        except (ServiceRequestError, ServiceResponseError):
            if attempt == attempts - 1:
                raise


def submit_deletes(table: TableClient, partition: str, row_keys: list[str]) -> None:
    """Delete rows of one partition in one transaction. When its answer is lost the transaction may
    have happened, and repeating it would fail on the first row already gone, so the rows are then
    deleted one by one (a row already gone is no error, and each delete is retried as usual)."""
    try:
        table.submit_transaction([("delete", {"PartitionKey": partition, "RowKey": k}) for k in row_keys])
    except (ServiceRequestError, ServiceResponseError):
        for key in row_keys:
            table.delete_entity(partition, key)


def message_text(body: bytes) -> str:
    """A queue message's text; bytes that are not UTF-8 become lone surrogates (`surrogateescape`), so
    the message fails with a clear reason instead of the trigger failing before it is read."""
    return body.decode("utf-8", "surrogateescape")


def kept_text(text: str) -> str:
    """The text kept on the poison queue: the message as it came, undecodable bytes as `\\xNN`."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
