"""Queue triggers polled from Azure Storage / Azurite with host.json semantics (dev tooling, not deployed).

Like the host's queue listener: fetch `batchSize` messages whenever at most `newBatchThreshold` are
running, back off from 100 ms to `maxPollingInterval` while the queue is empty, keep running messages
invisible (renewing the lease), delete on success, on failure make the message visible again after
`visibilityTimeout` or, once `dequeue_count >= maxDequeueCount`, copy its original text to
`<queue>-poison` and delete it.
"""

from __future__ import annotations

import base64
import binascii
import logging
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.functions.queue import QueueMessage
from azure.storage.queue import QueueClient
from azure.storage.queue import QueueMessage as StorageMessage

from connector.queue_sender import QueueSender

from .config import ConfigError, QueueOptions, resolve_settings
from .functions import FunctionSpec, Invoker
from .stopping import STOP_SECONDS, Deadline, join_within, not_stopped

log = logging.getLogger("devtools.localhost")

MIN_POLLING_INTERVAL = 0.1
DEFAULT_LEASE = 60
RENEWERS = 8  # leases renewed at once


def queue_client(spec: FunctionSpec, queue_name: str, env: Mapping[str, str]) -> QueueClient:
    """A client for `queue_name` on the storage account named by the binding's `connection` setting."""
    setting = spec.trigger.get("connection") or "AzureWebJobsStorage"
    connection_string = env.get(setting)
    if not connection_string:
        raise ConfigError(f"function {spec.name!r}: connection setting {setting!r} is not set")
    try:
        return QueueClient.from_connection_string(connection_string, queue_name)
    except ValueError as exc:
        raise ConfigError(
            f"function {spec.name!r}: connection setting {setting!r} is unusable: {exc}"
        ) from exc


@dataclass
class _Lease:
    """A message being processed, with its current pop receipt (renewals change it)."""

    message: StorageMessage
    pop_receipt: str
    renew_at: float
    lock: threading.Lock = field(default_factory=threading.Lock)
    done: bool = False


def _receipt(message: StorageMessage) -> str:
    """The pop receipt of a received or updated message (typed optional by the SDK; Storage sends one)."""
    if message.pop_receipt is None:
        raise AzureError(f"message {message.id} came back without a pop receipt")
    return message.pop_receipt


class QueueListener:
    """Polls one queue for one queue-triggered function and runs it in a bounded thread pool."""

    def __init__(
        self,
        spec: FunctionSpec,
        invoker: Invoker,
        options: QueueOptions,
        env: Mapping[str, str],
        lease: int = DEFAULT_LEASE,
    ) -> None:
        self.spec = spec
        self.queue_name = resolve_settings(
            spec.trigger["queueName"], env, f"function {spec.name!r} queueName"
        )
        self._client = queue_client(spec, self.queue_name, env)
        # deletes over lean HTTP: Azure's host settles messages outside the Python worker, so the
        # SDK's pipeline here would take the worker's CPU (and GIL) that Azure leaves to the app
        self._settler = QueueSender(self._client, deletes=True)
        self._poison = queue_client(spec, f"{self.queue_name}-poison", env)
        self._poison_ready = False
        self._invoker = invoker
        self._options = options
        self._lease = max(1, int(lease))
        self._pool = ThreadPoolExecutor(
            options.batch_size + options.new_batch_threshold, f"queue-{self.queue_name}"
        )
        self._cond = threading.Condition()
        self._leases: dict[str, _Lease] = {}
        self._stopping = threading.Event()
        self._draining = threading.Event()
        self._poller = threading.Thread(target=self._poll, name=f"poll-{self.queue_name}", daemon=True)
        self._renewer = threading.Thread(target=self._renew, name=f"renew-{self.queue_name}", daemon=True)

    def start(self) -> None:
        self._poller.start()
        self._renewer.start()

    def stop(self, timeout: float = STOP_SECONDS) -> list[str]:
        """Stop polling and wait up to `timeout` s for running invocations; what did not stop."""
        self.halt()
        return self.wait_stopped(Deadline(timeout))

    def halt(self) -> None:
        """Stop polling; running invocations go on."""
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()

    def wait_stopped(self, deadline: Deadline) -> list[str]:
        """After `halt`: wait until `deadline` for the poller and the running invocations, then stop
        renewing leases (a message still running reappears when its lease ends, as when a host dies)."""
        stuck = join_within(self._poller, deadline, f"queue {self.queue_name}: the poller")
        with self._cond:
            self._cond.wait_for(lambda: not self._leases, deadline.left())
            running = len(self._leases)
        if running:
            stuck += not_stopped(f"queue {self.queue_name}: {running} running invocation(s) of "
                                 f"{self.spec.name}", deadline)
        self._pool.shutdown(wait=False)  # idle workers end now, a stuck one when its function returns
        self._draining.set()
        stuck += join_within(self._renewer, deadline, f"queue {self.queue_name}: the lease renewer")
        self._settler.close()
        return stuck

    @property
    def running(self) -> int:
        with self._cond:
            return len(self._leases)

    def approximate_message_count(self) -> int:
        """Messages in the queue, invisible ones included (0 if the queue does not exist)."""
        try:
            return int(self._client.get_queue_properties().approximate_message_count or 0)
        except ResourceNotFoundError:
            return 0

    def _poll(self) -> None:
        delay = MIN_POLLING_INTERVAL
        threshold = self._options.new_batch_threshold
        while not self._stopping.is_set():
            with self._cond:
                self._cond.wait_for(lambda: self._stopping.is_set() or len(self._leases) <= threshold)
            if self._stopping.is_set():
                return
            messages = self._receive()
            if not messages:
                self._stopping.wait(delay)
                delay = min(delay * 2, self._options.max_polling_interval)
                continue
            delay = MIN_POLLING_INTERVAL
            for message in messages:
                lease = _Lease(message, _receipt(message), time.monotonic() + self._lease / 2)
                with self._cond:
                    self._leases[message.id] = lease
                try:
                    self._pool.submit(self._process, lease)
                except RuntimeError:  # the stop gave up on this poller and shut the pool
                    with self._cond:
                        self._leases.pop(message.id, None)
                    log.warning("queue %s: stopped; message %s left to reappear", self.queue_name, message.id)

    def _receive(self) -> list[StorageMessage]:
        size = self._options.batch_size
        try:
            return list(
                self._client.receive_messages(
                    messages_per_page=size, max_messages=size, visibility_timeout=self._lease
                )
            )
        except ResourceNotFoundError:
            return []
        except AzureError as exc:
            log.warning("queue %s: receive failed: %s", self.queue_name, exc)
            return []

    def _process(self, lease: _Lease) -> None:
        message = lease.message
        dequeue_count = message.dequeue_count or 1
        try:
            if dequeue_count > self._options.max_dequeue_count:
                self._finish(lease, poison=True)
                return
            try:
                self._invoker.invoke(self.spec, lambda: self._bind(lease))
            except Exception:  # the invoker logged it; the host's retry/poison policy applies
                self._finish(lease, poison=dequeue_count >= self._options.max_dequeue_count, failed=True)
            else:
                self._finish(lease)
        except AzureError as exc:
            log.error("queue %s: message %s could not be settled: %s", self.queue_name, message.id, exc)
        finally:
            with self._cond:
                self._leases.pop(message.id, None)
                self._cond.notify_all()

    def _bind(self, lease: _Lease) -> QueueMessage:
        message = lease.message
        text = message.content or ""
        if self._options.message_encoding == "base64":
            try:
                body = base64.b64decode(text, validate=True)
            except binascii.Error as exc:
                raise ValueError(f"message {message.id} is not base64 (host.json messageEncoding)") from exc
        else:
            body = text.encode("utf-8")
        return QueueMessage(
            id=message.id,
            body=body,
            dequeue_count=message.dequeue_count,
            expiration_time=message.expires_on,
            insertion_time=message.inserted_on,
            time_next_visible=message.next_visible_on,
            pop_receipt=lease.pop_receipt,
        )

    def _finish(self, lease: _Lease, *, poison: bool = False, failed: bool = False) -> None:
        message = lease.message
        with lease.lock:
            lease.done = True
            if poison:
                self._ensure_poison_queue()
                self._poison.send_message(message.content)
                log.warning(
                    "queue %s: message %s moved to %s-poison after %s dequeues",
                    self.queue_name,
                    message.id,
                    self.queue_name,
                    message.dequeue_count,
                )
            if poison or not failed:
                self._settler.delete(message.id, lease.pop_receipt)
            else:
                self._client.update_message(
                    message.id, lease.pop_receipt, visibility_timeout=int(self._options.visibility_timeout)
                )

    def _ensure_poison_queue(self) -> None:
        if not self._poison_ready:
            try:
                self._poison.create_queue()
            except ResourceExistsError:
                pass
            self._poison_ready = True

    def _renew(self) -> None:
        # Renewals of one round go out together (as the host renews each message on its own): one
        # after another, 128 leases at a few ms each on a loaded machine outlived a short lease.
        with ThreadPoolExecutor(RENEWERS, f"renew-{self.queue_name}") as renewers:
            while not self._draining.wait(min(1.0, self._lease / 4)):
                with self._cond:
                    leases = list(self._leases.values())
                now = time.monotonic()
                list(renewers.map(self._extend, [lease for lease in leases if now >= lease.renew_at]))

    def _extend(self, lease: _Lease) -> None:
        with lease.lock:
            if lease.done:
                return
            try:
                receipt = _receipt(self._client.update_message(
                    lease.message.id, lease.pop_receipt, visibility_timeout=self._lease
                ))
            except AzureError as exc:
                log.warning("queue %s: lease of %s not renewed: %s", self.queue_name, lease.message.id, exc)
                return
            lease.pop_receipt = receipt
            lease.renew_at = time.monotonic() + self._lease / 2
