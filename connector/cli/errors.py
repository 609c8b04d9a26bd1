"""Expected failures of the CLI as one line naming what to start or check; anything else is a bug
and keeps its traceback."""
from __future__ import annotations

from connector.errors import ConnectorError


class CLIError(ConnectorError):
    """An expected failure: `str()` is the one line the user sees (exit 1)."""

    retryable = False


def explain(exc: BaseException, storage_where: str = "storage", host_where: str = "the app") -> str | None:
    """The one-line reason for an expected failure from the SDKs or HTTP, or None (unexpected)."""
    import requests
    from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ServiceRequestError

    if isinstance(exc, CLIError):
        return str(exc)
    if isinstance(exc, ClientAuthenticationError):
        return (f"{storage_where} refused the credentials ({_first_line(exc)}): sign in with `az login` "
                "and hold the Storage Queue Data Contributor role on the account, or check the settings")
    if isinstance(exc, ServiceRequestError):
        return (f"{storage_where} is not answering ({_first_line(exc)}): start it (`make run`) or check "
                "the settings")
    if isinstance(exc, HttpResponseError):
        if exc.status_code == 403:
            return (f"{storage_where} refused access (403): your identity needs the Storage Queue Data "
                    "Contributor role on the account (or the connection string's key is wrong)")
        return f"{storage_where} answered {exc.status_code}: {_first_line(exc)}"
    if isinstance(exc, requests.ConnectionError | requests.Timeout):
        return f"{host_where} is not answering: start it (`make run`) or check the URL"
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:160]
