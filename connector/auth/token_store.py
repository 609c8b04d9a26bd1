"""Encrypted rows for what sign-in must remember across instances: msal token caches and pending sign-ins.

* `bctokens`: one row per connection (PK = connection, RK = `cache`) holding the msal
  `SerializableTokenCache`, sealed with `TokenCipher`. Writers pass the ETag they loaded, so an
  instance that refreshed from stale state cannot overwrite a newer cache (a new sign-in, a rotated
  refresh token); the loser reloads.
  A cache sealed with an old key is re-sealed with the first key as it is loaded.
  The seal is bound to the deployment (its storage account) and carries a version, also kept plain in
  the row: a row copied from another deployment does not open, a sealed value put back under another
  version is refused, and an older version than this instance has seen is refused (no rollback to a
  revoked or replaced refresh token). Rows from before versions are re-sealed as they are loaded.
* `bcauthflows`: one row per started sign-in (PK = OAuth `state`) holding the connection, msal's
  auth-code flow (PKCE verifier, nonce) and the expiry, all sealed together (only the table's own
  Timestamp is plain, for purging). `take` deletes the row with its ETag, so a state can be redeemed
  once even when two callbacks race.
"""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from connector.auth.crypto import SealedDataError, TokenCipher
from connector.settings import TABLE_AUTH_FLOWS, TABLE_TOKENS
from connector.storage import (
    Storage,
    delete_if_match,
    insert_entity,
    read_entity,
    replace_if_match,
    table_key,
)

log = logging.getLogger(__name__)

CACHE_ROW = "cache"
FLOW_ROW = "flow"
MAX_STATE_LENGTH = 256
PURGE_BATCH = 50
PURGE_AFTER = timedelta(days=1)  # far beyond any AUTH_FLOW_TTL_SECONDS a sign-in would be given


@dataclass(frozen=True)
class StoredCache:
    """A connection's serialized msal cache and the ETag of the row it came from."""

    state: str
    etag: str


class TokenStore:
    """msal token caches in `bctokens`, encrypted, versioned and bound to the deployment, with
    optimistic concurrency. `seen` (the highest version per connection) outlives one store: the
    token service keeps it for the process."""

    def __init__(self, storage: Storage, cipher: TokenCipher, deployment: str | None = None,
                 seen: dict[str, int] | None = None):
        """`deployment`: what the seal is bound to (default: the storage account's name)."""
        self._storage = storage
        self._cipher = cipher
        self._deployment = storage.account_name if deployment is None else deployment
        self._seen = {} if seen is None else seen

    @property
    def _table(self) -> TableClient:
        return self._storage.table(TABLE_TOKENS)

    def _purpose(self, connection: str) -> str:
        return f"tokens:{connection}@{self._deployment}"

    def load(self, connection: str) -> StoredCache | None:
        """The stored cache, or None; raises SealedDataError when it cannot be decrypted, belongs to
        another deployment, or was rolled back."""
        row = read_entity(self._table, table_key(connection), CACHE_ROW)
        if row is None:
            return None
        entity, etag = row
        sealed = str(entity.get("cache", ""))
        try:
            opened: str | None = self._cipher.open(sealed, self._purpose(connection))
        except SealedDataError:
            if connection in self._seen:  # versions seen here: a row from before them is a rollback
                raise
            opened = None
        if opened is None:  # sealed before versions (else another deployment's: SealedDataError)
            state, version, stale = self._cipher.open(sealed, f"tokens:{connection}"), None, True
        else:
            state, version = self._opened(connection, opened, entity.get("version"))
            stale = self._cipher.sealed_with_old_key(sealed)
        if stale:
            entity = self._entity(connection, state)
            resealed = replace_if_match(self._table, entity, etag)
            if resealed is not None:  # else another instance rewrote it meanwhile (with the first key)
                self._wrote(connection, entity)
                log.info("tokens %s: re-sealed (first TOKEN_ENCRYPTION_KEY, versioned)", connection)
                etag = resealed
        elif version is not None:
            self._seen[connection] = version
        return StoredCache(state, etag)

    def _opened(self, connection: str, opened: str, row_version: Any) -> tuple[str, int]:
        """The cache and version of an opened seal; SealedDataError when the version is not the row's
        or is older than one this instance has seen."""
        try:
            payload = json.loads(opened)
            version, state = int(payload["v"]), str(payload["cache"])
        except (ValueError, KeyError, TypeError):
            raise SealedDataError(f"tokens:{connection}: not a versioned token cache") from None
        if str(row_version) != str(version):
            raise SealedDataError(f"tokens:{connection}: sealed as version {version} in a row of version "
                                  f"{row_version!r}: copied or rolled back; sign in again")
        if version < self._seen.get(connection, 0):
            raise SealedDataError(f"tokens:{connection}: version {version} is older than version "
                                  f"{self._seen[connection]} this instance has seen: rolled back; sign in "
                                  "again")
        return state, version

    def _entity(self, connection: str, state: str) -> dict[str, Any]:
        """The row of a new version: one above any seen here, and at least the time in milliseconds
        (so an instance that never saw the last write still goes above it)."""
        version = max(self._seen.get(connection, 0) + 1, int(time.time() * 1000))
        return {
            "PartitionKey": table_key(connection),
            "RowKey": CACHE_ROW,
            "cache": self._cipher.seal(json.dumps({"v": version, "cache": state}), self._purpose(connection)),
            "version": str(version),  # text: beyond what a 32-bit table property holds
            "updated_at": datetime.now(UTC),
        }

    def save(self, connection: str, state: str, etag: str | None) -> str | None:
        """Write the cache if the row is still as loaded (`etag`; None = it did not exist).
        The new ETag, or None when another instance changed the row first."""
        entity = self._entity(connection, state)
        written = (insert_entity(self._table, entity) if etag is None
                   else replace_if_match(self._table, entity, etag))
        if written is not None:
            self._wrote(connection, entity)
        return written

    def overwrite(self, connection: str, state: str) -> str:
        """Replace whatever is stored (a completed sign-in wins over older tokens); the new ETag."""
        entity = self._entity(connection, state)
        meta = self._table.upsert_entity(entity, mode=UpdateMode.REPLACE)
        self._wrote(connection, entity)
        return str(meta.get("etag"))

    def _wrote(self, connection: str, entity: dict[str, Any]) -> None:
        self._seen[connection] = max(self._seen.get(connection, 0), int(entity["version"]))

    def discard(self, connection: str, etag: str) -> bool:
        """Delete the cache if unchanged since `etag`; False when another instance changed it."""
        key = table_key(connection)
        return (delete_if_match(self._table, key, CACHE_ROW, etag)
                or read_entity(self._table, key, CACHE_ROW) is None)


def is_token_row(row: Mapping[str, Any]) -> bool:
    """Whether a `bctokens` row is a connection's token cache (`tokens_stored`)."""
    return row.get("RowKey") == CACHE_ROW


def tokens_stored(storage: Storage, connection: str) -> bool:
    """Whether a connection has a stored token cache (checked without reading or decrypting it)."""
    try:
        storage.table(TABLE_TOKENS).get_entity(table_key(connection), CACHE_ROW, select=["PartitionKey"])
    except ResourceNotFoundError:
        return False
    return True


def forget_tokens(storage: Storage, connections: list[str]) -> None:
    """Delete the stored token caches of these connections (a connection removed for good)."""
    table = storage.table(TABLE_TOKENS)
    for connection in connections:
        try:
            table.delete_entity(table_key(connection), CACHE_ROW)
        except ResourceNotFoundError:
            continue


@dataclass(frozen=True)
class PendingSignIn:
    """A started sign-in: which connection, msal's flow dict, and until when it may be completed."""

    connection: str
    flow: dict[str, Any]
    expires_at: datetime


class AuthFlowStore:
    """Pending sign-ins in `bcauthflows`, keyed by OAuth state, encrypted, redeemable once."""

    def __init__(self, storage: Storage, cipher: TokenCipher, purge_after: timedelta = PURGE_AFTER):
        self._storage = storage
        self._cipher = cipher
        self._purge_after = purge_after

    @property
    def _table(self) -> TableClient:
        return self._storage.table(TABLE_AUTH_FLOWS)

    @staticmethod
    def _purpose(state: str) -> str:
        return f"flow:{state}"

    def put(self, state: str, pending: PendingSignIn) -> None:
        """Remember a started sign-in (and drop a few long-abandoned ones)."""
        self._purge_expired()
        sealed = {"connection": pending.connection, "flow": pending.flow,
                  "expires_at": pending.expires_at.isoformat()}
        self._table.create_entity({
            "PartitionKey": table_key(state),
            "RowKey": FLOW_ROW,
            "sealed": self._cipher.seal(json.dumps(sealed), self._purpose(state)),
        })

    def take(self, state: str) -> PendingSignIn | None:
        """Claim the sign-in started with `state` and delete it; None if unknown, already taken, or
        unreadable. Only one of several concurrent callers gets it."""
        if not state or len(state) > MAX_STATE_LENGTH:
            return None
        row = read_entity(self._table, table_key(state), FLOW_ROW)
        if row is None:
            return None
        entity, etag = row
        if not delete_if_match(self._table, table_key(state), FLOW_ROW, etag):
            return None
        try:
            opened = json.loads(self._cipher.open(str(entity.get("sealed", "")), self._purpose(state)))
            return PendingSignIn(str(opened["connection"]), dict(opened["flow"]),
                                 datetime.fromisoformat(opened["expires_at"]))
        except SealedDataError:
            log.warning("a pending sign-in could not be decrypted (TOKEN_ENCRYPTION_KEY changed?)")
        except (ValueError, KeyError, TypeError):
            log.warning("a pending sign-in is not in the current format (started before an upgrade?)")
        return None

    def _purge_expired(self) -> None:
        """Delete a batch of rows untouched for `purge_after` (their expiry is sealed, Timestamp is not)."""
        cutoff = datetime.now(UTC) - self._purge_after
        expired = self._table.query_entities(
            "Timestamp lt @cutoff", parameters={"cutoff": cutoff}, select=["PartitionKey", "RowKey"],
            results_per_page=PURGE_BATCH,
        )
        for entity in next(expired.by_page(), []):
            try:
                self._table.delete_entity(entity["PartitionKey"], entity["RowKey"])
            except ResourceNotFoundError:
                pass
