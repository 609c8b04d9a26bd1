"""The principals of one connection: app registrations BC counts separately (each has its own 5
concurrent / 6,000 per 5 minutes, bc-api.md §8, and its own shared budget), and how a BC client
spreads requests over them.

Each request goes to a live principal on which this instance holds a budget slot free right now
(no storage call, no waiting); while the instance holds every slot of the live principals, to the
first of them that comes free; else to the live principal with the most free capacity in this
process (the fewest requests of this client in flight or waiting on it; ties rotate), whose slot it
then waits for (the BC client's `_choose`). A principal whose token
cannot be had (Entra refuses its secret, or BC refuses the token after a refresh) drops out for a
back-off (1 minute, doubling to 8) while others carry the load, and is tried again after it; the
last live principal never drops out (its error goes to the caller as with one principal).
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

TokenProvider = Callable[[bool], str]
"""Returns a bearer token; `True` asks for a fresh one (the last was refused)."""

FIRST_DROP_SECONDS = 60.0
MAX_DROP_SECONDS = 480.0


@dataclass(eq=False)
class Principal:
    """One app registration of a connection, as a client uses it."""

    name: str  # `default`, `default.2`, … (its token state row has this name)
    token: TokenProvider
    in_flight: int = 0  # requests of this client on it now (waiting for a slot or at BC)
    down_until: float = 0.0
    drops: int = 0  # consecutive drop-outs (the back-off doubles)
    error: str = ""  # why it last dropped out


class Principals:
    """Picks the principal for each request; tracks in-flight requests and drop-outs."""

    def __init__(self, principals: Sequence[tuple[str, TokenProvider]], capacity: int = 5,
                 clock: Callable[[], float] = time.monotonic):
        if not principals:
            raise ValueError("a connection needs at least one principal")
        self.all = [Principal(name, token) for name, token in principals]
        self.capacity = capacity
        self._clock = clock
        self._lock = threading.Lock()
        self._turn = 0

    def __len__(self) -> int:
        return len(self.all)

    def live(self) -> list[Principal]:
        now = self._clock()
        with self._lock:
            return [p for p in self.all if p.down_until <= now]

    def candidates(self, avoid: Sequence[Principal] = ()) -> list[Principal]:
        """The principals a request may go to, the most free capacity first (fewest requests of this
        client in flight on it; ties rotate): the live ones not in `avoid` (all live ones if each is
        in it); if none is live, the one back soonest."""
        now = self._clock()
        with self._lock:
            live = [p for p in self.all if p.down_until <= now] or [min(self.all, key=lambda p: p.down_until)]
            preferred = [p for p in live if p not in avoid] or live
            self._turn = (self._turn + 1) % len(self.all)
            order = {id(p): (i - self._turn) % len(self.all) for i, p in enumerate(self.all)}
            return sorted(preferred, key=lambda p: (p.in_flight, order[id(p)]))

    def hold(self, principal: Principal) -> None:
        """Count a request on `principal` in flight (until `give_back`)."""
        with self._lock:
            principal.in_flight += 1

    def take(self, avoid: Sequence[Principal] = ()) -> Principal:
        """The first of `candidates`, counted in flight until `give_back`."""
        chosen = self.candidates(avoid)[0]
        self.hold(chosen)
        return chosen

    def give_back(self, principal: Principal) -> None:
        with self._lock:
            principal.in_flight -= 1

    def can_drop(self, principal: Principal) -> bool:
        """True when another principal is live to carry on without this one."""
        now = self._clock()
        with self._lock:
            return any(p is not principal and p.down_until <= now for p in self.all)

    def drop(self, principal: Principal, error: str) -> None:
        """Take a principal out for a while (its token failed)."""
        with self._lock:
            wait = min(FIRST_DROP_SECONDS * 2 ** principal.drops, MAX_DROP_SECONDS)
            principal.drops += 1
            principal.down_until = self._clock() + wait
            principal.error = error

    def recovered(self, principal: Principal) -> None:
        """Its token worked: no back-off remembered."""
        if principal.drops or principal.error:
            with self._lock:
                principal.drops, principal.error = 0, ""
