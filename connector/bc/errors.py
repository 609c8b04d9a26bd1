"""Typed Business Central errors: what a caller needs to decide (retry, give up, look again)."""
from __future__ import annotations

from typing import Any

from connector.errors import ConnectorError

# BC answers these when the request may succeed later (bc-api.md §6.3, §8).
RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
# A non-idempotent request that got one of these may have been carried out before the failure.
AMBIGUOUS_STATUSES = frozenset({408, 500, 502, 504})


class BCError(ConnectorError):
    """A failed BC call (a route answers 502: the gateway BC failed).

    `status` is the HTTP status (None when no response came), `code` BC's error code
    (`Internal_RecordNotFound`, ...), `retryable` whether trying again can help, `ambiguous` whether
    a write may have been carried out although it failed, `retry_after` BC's hint in seconds.
    """

    http_status = 502

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str = "",
        retryable: bool = False,
        ambiguous: bool = False,
        retry_after: float | None = None,
        method: str = "",
        path: str = "",
    ):
        super().__init__(message, code=code, retryable=retryable)
        self.status = status
        self.ambiguous = ambiguous
        self.retry_after = retry_after
        self.method = method
        self.path = path

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code or (f"HTTP_{self.status}" if self.status else "Transport"),
                "message": self.message}

    def __str__(self) -> str:
        where = f"{self.method} {self.path}: " if self.method else ""
        status = f"{self.status} " if self.status else ""
        code = f"{self.code}: " if self.code else ""
        return f"{where}{status}{code}{self.message}"


class BCNotFound(BCError):
    """404: the entity (or route) does not exist."""


class BCAuthError(BCError):
    """401/403: the token was refused or lacks permission."""


class BCConflict(BCError):
    """409/412: the record changed since it was read (stale ETag)."""


class TokenUnavailable(ConnectorError):
    """No usable token for a connection: not signed in, or the refresh token was refused.

    `state` is `not-signed-in`, `refresh-failed` (a signed-in user's refresh token was refused) or
    `credentials-refused` (Entra refused the app's secret or client assertion); `fix` says what an
    operator does about it. The message never contains a token. Retryable: a sign-in or a fixed
    registration cures it while the work waits; a route answers 409.
    """

    http_status = 409
    token_failure = True

    def __init__(self, connection: str, state: str, detail: str = "", fix: str = ""):
        text = f"connection {connection!r}: {state}" + (f" ({detail})" if detail else "")
        if fix and fix not in detail:
            text += f"; fix: {fix}"
        super().__init__(text)
        self.connection = connection
        self.state = state
        self.fix = fix

    def as_dict(self) -> dict[str, Any]:
        """The refusal as a route's error body: code, message, the token state and the fix."""
        return {**super().as_dict(), "state": self.state, "fix": self.fix}


def error_from_response(status: int, body: Any, *, method: str = "", path: str = "",
                        retry_after: float | None = None, idempotent: bool = True) -> BCError:
    """Turn BC's error JSON (`{"error": {"code", "message"}}`) and status into a typed error."""
    code, message = "", ""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        code = str(body["error"].get("code") or "")
        message = str(body["error"].get("message") or "")
    if not message:
        message = f"HTTP {status}"
    cls = BCError
    if status == 404:
        cls = BCNotFound
    elif status in (401, 403):
        cls = BCAuthError
    elif status in (409, 412):
        cls = BCConflict
    retryable = status in RETRYABLE_STATUSES
    return cls(
        message, status=status, code=code, retryable=retryable,
        ambiguous=retryable and not idempotent and status in AMBIGUOUS_STATUSES,
        retry_after=retry_after, method=method, path=path,
    )
