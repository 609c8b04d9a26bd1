"""Test support: take every message off a Storage queue."""
from __future__ import annotations

from azure.core.exceptions import ResourceNotFoundError
from azure.storage.queue import QueueClient


def drain_texts(queue: QueueClient) -> list[str]:
    """Receive and delete every visible message; their texts, oldest batch first ([] when the queue
    does not exist yet)."""
    texts: list[str] = []
    while True:
        try:
            batch = list(queue.receive_messages(messages_per_page=32, max_messages=32, visibility_timeout=60))
        except ResourceNotFoundError:
            return texts
        if not batch:
            return texts
        for message in batch:
            texts.append(message.content)
            queue.delete_message(message)
