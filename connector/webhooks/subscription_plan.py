"""The pure decisions of a subscription run: what to do per trigger, which BC subscriptions are
strays, BC's clock, and the URLs and resource paths a subscription names."""
from __future__ import annotations

import email.utils
import re
from collections.abc import Iterable
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from urllib.parse import unquote, urlencode, urlsplit

from connector.bc.timestamps import parse_iso, utc_now
from connector.declarations import STANDARD_API
from connector.settings import Settings

_RESOURCE_RE = re.compile(
    r"(?:api/([^()]+?)/)?companies\(\s*'?([0-9a-fA-F-]{36})'?\s*\)/([A-Za-z][A-Za-z0-9_]*)\s*$")


def notification_url(settings: Settings, connection: str) -> str:
    """The notificationUrl of a connection's subscriptions: the receiver, naming the connection."""
    return f"{settings.notification_url}?{urlencode({'connection': connection})}"


class Action(StrEnum):
    KEEP = "unchanged"
    CREATE = "created"
    RENEW = "renewed"
    RECREATE = "recreated"
    UNSUPPORTED = "unsupported"


def plan_subscription(row: dict[str, Any] | None, remote: dict[str, Any] | None, supported: bool | None,
                      now: datetime, renew_before: timedelta, url: str, signing_key_id: str) -> Action:
    """What to do for one trigger, given our row, BC's subscription with that id (None = BC has
    none), whether BC supports the resource (None = could not tell), BC's current time, our
    notificationUrl and the id of the key clientStates are derived from now."""
    if supported is False:
        return Action.UNSUPPORTED
    if row is None or not row.get("subscription_id"):
        return Action.CREATE
    if remote is None:
        return Action.RECREATE
    expires = parse_iso(remote["expirationDateTime"])
    if expires <= now or remote.get("notificationUrl") != url:
        # Another URL (a new PORT, a moved app): a new subscription, the old one deleted. BC's docs
        # let a renewal repeat notificationUrl, not move it; a new one also runs the handshake there.
        return Action.RECREATE
    if expires - now < renew_before or row.get("client_state_key") != signing_key_id:
        return Action.RENEW
    return Action.KEEP


def watched_resource(resource: str) -> tuple[str, str] | None:
    """(company id, trigger key) of a subscription resource, absolute or relative; None if it is not
    a company-scoped collection. The key is the entity set of the standard API, else
    `publisher/group/version/entitySet`."""
    path = unquote(urlsplit(resource).path if "://" in resource else resource.split("?", 1)[0])
    match = _RESOURCE_RE.search(path.rstrip("/"))
    if not match:
        return None
    api, company, entity_set = match.groups()
    return company.lower(), entity_set if api in (None, STANDARD_API) else f"{api}/{entity_set}"


def stray_subscriptions(remote: Iterable[dict[str, Any]], owned: set[str], company_id: str,
                        url: str, keys: Iterable[str]) -> list[dict[str, Any]]:
    """BC subscriptions that notify this connection (`url` names it) about a watched resource of
    this company but that no row owns (a create whose answer was lost, a row deleted by hand): their
    clientState is unknown, so every notification they send would be refused; they are deleted.
    Another connection's subscriptions carry another URL and are left alone. `keys`: the triggers'."""
    sets = set(keys)
    strays = []
    for sub in remote:
        where = watched_resource(str(sub.get("resource", "")))
        if (sub.get("notificationUrl") == url and sub.get("subscriptionId") not in owned
                and where is not None and where[0] == company_id.lower() and where[1] in sets):
            strays.append(sub)
    return strays


def server_now(date_header: str | None) -> datetime:
    """BC's current time from its `Date` header, never earlier than ours (renew early, not late)."""
    local = utc_now()
    if not date_header:
        return local
    try:
        remote = email.utils.parsedate_to_datetime(date_header)
    except (TypeError, ValueError):
        return local
    return max(local, remote) if remote.tzinfo else local

