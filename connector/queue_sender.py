"""Put Message (and Delete Message) over plain keep-alive HTTP, for the hot paths (events, webhook
acks; the local host's settling of messages).

The SDK's `QueueClient.send_message` spends ~3 ms of CPU per message in its pipeline (request
preparation, a dozen policies, XML through ElementTree); a `http.client` POST of the same body costs
~0.5 ms. The sender is built from the SDK's client, so it reaches the same queue with the same
credential: an account key signs a short-lived queue SAS (`generate_queue_sas`), a token credential
(managed identity) gives a bearer token, and anything else (a SAS connection string) rides in the URL.
"""
from __future__ import annotations

import http.client
import queue as idle_queue
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlsplit
from xml.sax.saxutils import escape

from azure.core.exceptions import HttpResponseError, ServiceRequestError
from azure.storage.queue import QueueClient, QueueSasPermissions, generate_queue_sas

from connector.retry import RetryPolicy, parse_retry_after

API_VERSION = "2021-02-12"  # Put Message's shape has not changed since; Azurite accepts it
STORAGE_SCOPE = "https://storage.azure.com/.default"
AUTH_LIFETIME = timedelta(hours=1)
AUTH_RENEW_BEFORE = timedelta(minutes=10)
RETRIES = 3  # like the SDK's default: 429/5xx and broken connections, with back-off
RETRY_PAUSE_SECONDS = 0.4  # the first back-off's ceiling (the connector's one policy: connector/retry.py)
TIMEOUT_SECONDS = 30.0
RETRYABLE = frozenset({408, 429, 500, 502, 503, 504})
STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)

Authorization = tuple[str, dict[str, str], datetime]  # query string, headers, valid until


def message_body(text: str) -> bytes:
    """The Put Message body for a plain-text message (`messageEncoding: none`)."""
    return (f"<?xml version='1.0' encoding='utf-8'?>\n<QueueMessage><MessageText>{escape(text)}"
            "</MessageText></QueueMessage>").encode()


def authorizer(client: QueueClient, *, delete: bool = False) -> Callable[[datetime], Authorization]:
    """How to authorize a Put Message (and, with `delete`, a Delete Message) on the client's queue,
    given `now`."""
    credential = client.credential
    if getattr(credential, "account_key", None):
        def sas(now: datetime) -> Authorization:
            until = now + AUTH_LIFETIME
            token = generate_queue_sas(str(client.account_name), client.queue_name, credential.account_key,
                                       permission=QueueSasPermissions(add=True, process=delete),
                                       expiry=until,
                                       start=now - timedelta(minutes=5))
            return token, {}, until
        return sas
    if hasattr(credential, "get_token"):
        def bearer(now: datetime) -> Authorization:
            token = credential.get_token(STORAGE_SCOPE)
            until = datetime.fromtimestamp(token.expires_on, UTC)
            return "", {"Authorization": f"Bearer {token.token}"}, until
        return bearer
    return lambda now: ("", {}, datetime.max.replace(tzinfo=UTC))  # a SAS already in the URL, or none


class QueueSender:
    """Sends plain-text messages to one queue on a small pool of keep-alive connections (thread-safe)."""

    def __init__(self, client: QueueClient, *, authorize: Callable[[datetime], Authorization] | None = None,
                 retries: int = RETRIES, sleep: Callable[[float], None] = time.sleep, deletes: bool = False):
        url = urlsplit(client.url)
        self._https = url.scheme == "https"
        self._netloc = url.netloc
        self._path = f"{url.path}/messages"
        self._query = url.query
        self._authorize = authorize or authorizer(client, delete=deletes)
        self._retries = retries
        self._policy = RetryPolicy(max_retries=retries, backoff_seconds=RETRY_PAUSE_SECONDS,
                                   backoff_max_seconds=30.0, total_sleep_max_seconds=TIMEOUT_SECONDS * 4)
        self._sleep = sleep
        self._idle: idle_queue.SimpleQueue[http.client.HTTPConnection] = idle_queue.SimpleQueue()
        self._lock = threading.Lock()
        self._auth: Authorization | None = None

    def _current_auth(self) -> Authorization:
        now = datetime.now(UTC)
        auth = self._auth
        if auth is None or auth[2] - now < AUTH_RENEW_BEFORE:
            with self._lock:
                if self._auth is None or self._auth[2] - now < AUTH_RENEW_BEFORE:
                    self._auth = self._authorize(now)
                auth = self._auth
        return auth

    def _target(self, path: str, extra: str = "") -> tuple[str, dict[str, str]]:
        query, headers, _ = self._current_auth()
        joined = "&".join(q for q in (extra, self._query, query) if q)
        return (f"{path}?{joined}" if joined else path), headers

    def _connection(self) -> tuple[http.client.HTTPConnection, bool]:
        """A connection, and whether it was used before (the server may have closed it since)."""
        try:
            return self._idle.get_nowait(), True
        except idle_queue.Empty:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            return cls(self._netloc, timeout=TIMEOUT_SECONDS), False

    def send(self, text: str, *, visibility_timeout: int | None = None, time_to_live: int | None = None,
             retries: int | None = None) -> str:
        """Put one message and return its id; `visibility_timeout` (seconds) keeps it invisible that
        long, `time_to_live` (seconds, -1: never expires) as Put Message's `messagettl`. Raises
        `HttpResponseError` (status) or `ServiceRequestError` (no answer) once `retries` (default: the
        sender's) are spent. A kept-alive connection the server closed while idle is replaced at once,
        not counted as an attempt (the request never reached it)."""
        extra = "&".join(f"{name}={value}" for name, value in (("visibilitytimeout", visibility_timeout),
                                                                ("messagettl", time_to_live))
                         if value is not None)
        answer = self._call("POST", self._path, extra, message_body(text), 201,
                            self._policy if retries is None else replace(self._policy, max_retries=retries))
        return message_id(answer)

    def delete(self, message_id: str, pop_receipt: str) -> None:
        """Delete one received message (a sender made with `deletes=True`); errors as `send`'s."""
        self._call("DELETE", f"{self._path}/{quote(message_id, safe='')}",
                   f"popreceipt={quote(pop_receipt, safe='')}", None, 204, self._policy)

    def _call(self, method: str, path: str, extra: str, body: bytes | None, ok: int,
              policy: RetryPolicy) -> bytes:
        retrying = policy.start()
        headers = {"x-ms-version": API_VERSION}
        if body is not None:
            headers["Content-Type"] = "application/xml; charset=utf-8"
        while True:
            target, auth_headers = self._target(path, extra)
            connection, reused = self._connection()
            try:
                connection.request(method, target, body=body, headers=headers | auth_headers)
                response = connection.getresponse()
                detail = response.read()
            except (OSError, http.client.HTTPException) as exc:
                connection.close()
                if reused and isinstance(exc, STALE):
                    continue
                pause = retrying.next_delay()
                if pause is None:
                    raise ServiceRequestError(f"queue {method} to {self._netloc}{path} failed: "
                                              f"{exc}") from exc
            else:
                if response.will_close:
                    connection.close()
                else:
                    self._idle.put(connection)
                if response.status == ok:
                    return detail
                pause = (retrying.next_delay(parse_retry_after(response.getheader("Retry-After")))
                         if response.status in RETRYABLE else None)
                if pause is None:
                    raise _status_error(method, response, detail)
            self._sleep(pause)

    def close(self) -> None:
        while True:
            try:
                self._idle.get_nowait().close()
            except idle_queue.Empty:
                return


def message_id(answer: bytes) -> str:
    """The `MessageId` of Put Message's answer (`<QueueMessagesList><QueueMessage><MessageId>`)."""
    start = answer.find(b"<MessageId>")
    end = answer.find(b"</MessageId>", start)
    return answer[start + 11:end].decode() if start >= 0 and end > start else ""


def _status_error(method: str, response: Any, detail: bytes) -> HttpResponseError:
    error = HttpResponseError(message=f"queue {method} answered {response.status} {response.reason}: "
                                      f"{detail[:500].decode(errors='replace')}")
    error.status_code = response.status
    return error
