"""Fixtures for the `make run` tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.devrun.launcher import Launcher


@pytest.fixture
def launchers() -> Iterator[list[Launcher]]:
    """Every launcher a test starts (appended here) is stopped at its end."""
    started: list[Launcher] = []
    yield started
    for launcher in started:
        launcher.stop()
