"""The connector's one error root, and the one way an error becomes a route's answer.

Every error the connector raises on purpose is a `ConnectorError` (often also a `ValueError`,
`KeyError`... where callers catch those). Its attributes say what a caller needs, so nothing decides
by class or class name:

- `code`: stable and short (`UnknownConnection`, BC's `Internal_RecordNotFound`, ...), for results,
  route answers, logs and the `error.type` of a span;
- `retryable` (and `permanent`, its opposite): whether the same work can succeed later, so a queue
  message is failed at once or left to the host's retries;
- `http_status`: what a route answers when the error reaches it;
- `internal`: the text is for the log only (a setting, a key): results say `InternalError`;
- `token_failure`: no usable token (counted by telemetry).

Anything else (a bug, a library's error) is internal and retryable: the host's retries and the
poison queue decide (`describe`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar


class ConnectorError(Exception):
    """Root of the connector's errors; class attributes give the defaults, an instance may differ."""

    code: str = ""  # empty: the class name
    retryable: bool = True
    http_status: int = 500
    internal: ClassVar[bool] = False
    token_failure: ClassVar[bool] = False

    def __init__(self, message: str = "", *, code: str | None = None, retryable: bool | None = None,
                 http_status: int | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if retryable is not None:
            self.retryable = retryable
        if http_status is not None:
            self.http_status = http_status

    @property
    def permanent(self) -> bool:
        """Retrying cannot help: fail now (dead-letter with the reason) instead of trying again."""
        return not self.retryable

    @property
    def error_code(self) -> str:
        return self.code or type(self).__name__

    def as_dict(self) -> dict[str, Any]:
        """`{"code", "message"}`: the `error` of a route's answer or of a result."""
        return {"code": self.error_code, "message": str(self)}


@dataclass(frozen=True)
class Described:
    """What any exception means to a caller (see the module docstring)."""

    code: str
    message: str
    retryable: bool
    http_status: int

    @property
    def permanent(self) -> bool:
        return not self.retryable

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


INTERNAL_MESSAGE = "the connector failed unexpectedly; its log has the details"


def describe(exc: BaseException) -> Described:
    """The code, shown message, retryability and HTTP status of any exception."""
    if isinstance(exc, ConnectorError):
        if exc.internal:
            return Described("InternalError", INTERNAL_MESSAGE, exc.retryable, exc.http_status)
        shown = exc.as_dict()
        return Described(shown["code"], shown["message"], exc.retryable, exc.http_status)
    return Described("InternalError", INTERNAL_MESSAGE, True, 500)


def is_permanent(exc: BaseException) -> bool:
    """True when retrying cannot help (only a ConnectorError can say so)."""
    return isinstance(exc, ConnectorError) and exc.permanent


def error_code(exc: BaseException) -> str:
    """The code telemetry records as `error.type` (a foreign exception: its type's name)."""
    return exc.error_code if isinstance(exc, ConnectorError) else type(exc).__name__


def route_answer(exc: ConnectorError) -> tuple[dict[str, Any], int]:
    """The JSON body `{"error": {"code", "message"}}` and HTTP status a route answers for `exc` (our
    admin routes: even an internal error's message is shown, to the operator who called)."""
    return {"error": exc.as_dict()}, exc.http_status
