"""The webhook tests' scenario: the real app in the local host, subscribed to the emulator."""
from tests.webhooks.conftest import scenario  # noqa: F401  (a fixture, shared)
