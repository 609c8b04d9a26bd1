"""Key Vault references in connection rows, in App Service's own syntax, read with the app's identity.

A secret of a connection row (`bcconnectiondefs`) is never stored there in plaintext: it holds a
reference as App Service writes one in an app setting (learn.microsoft.com/azure/app-service/
app-service-key-vault-references), `@Microsoft.KeyVault(SecretUri=https://<vault>.vault.azure.net/
secrets/<name>[/<version>])` or `@Microsoft.KeyVault(VaultName=<vault>;SecretName=<name>
[;SecretVersion=<version>])`. `parse_reference` reads one (pure); `SecretResolver` fetches the value
with azure-keyvault-secrets and the app's managed identity, keeps it KEY_VAULT_CACHE_SECONDS, and
`forget` drops it (a rotated secret: Entra refused the old one). KEY_VAULT_HOST points every vault at
the emulator locally (`<host>/keyvault/<vault>`).
"""
from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from connector.errors import ConnectorError

PREFIX = "@Microsoft.KeyVault("
_VAULT_RE = re.compile(r"^[A-Za-z][A-Za-z0-9-]{1,22}[A-Za-z0-9]$")  # 3-24 characters (Azure's rule)
_SECRET_RE = re.compile(r"^[A-Za-z0-9-]{1,127}$")
_VERSION_RE = re.compile(r"^[0-9a-fA-F]{32}$")
KEY_VAULT_SUFFIX = ".vault.azure.net"


class BadReference(ConnectorError, ValueError):
    """A value that should be a Key Vault reference is not one (or a malformed one)."""

    retryable = False


class SecretUnavailable(ConnectorError):
    """Key Vault did not give the secret (denied, missing, unreachable); the message says which."""

    retryable = True


@dataclass(frozen=True)
class Reference:
    """One secret in one vault (`version` empty = the current version: rotation is picked up)."""

    vault: str
    name: str
    version: str = ""

    @property
    def vault_url(self) -> str:
        return f"https://{self.vault}{KEY_VAULT_SUFFIX}"

    def __str__(self) -> str:
        return f"{self.vault}/{self.name}" + (f"/{self.version}" if self.version else "")


def is_reference(text: str) -> bool:
    return text.strip().startswith(PREFIX)


def parse_reference(text: str) -> Reference:
    """The reference `text` holds; BadReference naming what is wrong (never echoing a value that may
    be a plaintext secret)."""
    value = text.strip()
    if not (value.startswith(PREFIX) and value.endswith(")")):
        raise BadReference("is not a Key Vault reference (@Microsoft.KeyVault(SecretUri=...) or "
                           "@Microsoft.KeyVault(VaultName=...;SecretName=...))")
    body = value[len(PREFIX):-1]
    parts: dict[str, str] = {}
    for item in body.split(";"):
        key, sep, val = item.partition("=")
        if not sep or not key.strip():
            raise BadReference(f"Key Vault reference: {item.strip()!r} is not Name=value")
        parts[key.strip().lower()] = val.strip()
    if set(parts) == {"secreturi"}:
        ref = _from_uri(parts["secreturi"])
    elif {"vaultname", "secretname"} <= set(parts) <= {"vaultname", "secretname", "secretversion"}:
        ref = Reference(parts["vaultname"], parts["secretname"], parts.get("secretversion", ""))
    else:
        raise BadReference("Key Vault reference: give SecretUri, or VaultName and SecretName "
                           "(SecretVersion optional)")
    if not _VAULT_RE.match(ref.vault):
        raise BadReference(f"Key Vault reference: {ref.vault!r} is not a vault name")
    if not _SECRET_RE.match(ref.name):
        raise BadReference(f"Key Vault reference: {ref.name!r} is not a secret name")
    if ref.version and not _VERSION_RE.match(ref.version):
        raise BadReference(f"Key Vault reference: {ref.version!r} is not a secret version")
    return ref


def _from_uri(uri: str) -> Reference:
    parts = urlsplit(uri)
    host = (parts.hostname or "").lower()
    if parts.scheme != "https" or not host.endswith(KEY_VAULT_SUFFIX) or parts.query or parts.port:
        raise BadReference(f"Key Vault reference: SecretUri {uri!r} is not "
                           f"https://<vault>{KEY_VAULT_SUFFIX}/secrets/<name>[/<version>]")
    segments = [s for s in parts.path.split("/") if s]
    if len(segments) not in (2, 3) or segments[0] != "secrets":
        raise BadReference(f"Key Vault reference: SecretUri {uri!r} is not "
                           f"https://<vault>{KEY_VAULT_SUFFIX}/secrets/<name>[/<version>]")
    return Reference(host[: -len(KEY_VAULT_SUFFIX)], segments[1], segments[2] if len(segments) == 3 else "")


def reference_text(vault: str, name: str, version: str = "") -> str:
    """The App Service reference of a secret (what `connections add --secret-ref` writes)."""
    ref = Reference(vault, name, version)
    text = f"{PREFIX}SecretUri={ref.vault_url}/secrets/{name}" + (f"/{version}" if version else "/") + ")"
    parse_reference(text)  # the names checked
    return text


class SecretResolver:
    """Reads referenced secrets with the app's identity; each kept `ttl` seconds (thread-safe).

    `host`: KEY_VAULT_HOST (empty = the reference's own vault); `verify`: a CA bundle (the
    emulator's); `credential`: an azure-identity credential (built on first use: the managed identity,
    `client_id` a user-assigned one); `clock` for tests."""

    def __init__(self, *, ttl: float, host: str = "", verify: bool | str = True, client_id: str = "",
                 credential: Any = None, clock: Callable[[], float] = time.monotonic):
        self._ttl = ttl
        self._host = host.rstrip("/")
        self._verify = verify
        self._client_id = client_id
        self._credential = credential
        self._clock = clock
        self._lock = threading.Lock()
        self._clients: dict[str, Any] = {}
        self._values: dict[Reference, tuple[str, float]] = {}
        self.reads = 0  # secrets read from Key Vault (not the cache)

    def vault_url(self, ref: Reference) -> str:
        return f"{self._host}/keyvault/{ref.vault}" if self._host else ref.vault_url

    def _get_credential(self) -> Any:
        if self._credential is None:
            from azure.identity import DefaultAzureCredential

            kwargs: dict[str, Any] = {}
            if self._client_id:
                kwargs["managed_identity_client_id"] = self._client_id
            if self._verify is not True:
                kwargs["connection_verify"] = self._verify
            self._credential = DefaultAzureCredential(**kwargs)
        return self._credential

    def _client(self, ref: Reference) -> Any:
        from azure.keyvault.secrets import SecretClient

        url = self.vault_url(ref)
        with self._lock:
            client = self._clients.get(url)
            if client is None:
                kwargs: dict[str, Any] = {"retry_total": 2}
                if self._host:  # the emulator is not *.vault.azure.net: its challenge names vault.azure.net
                    kwargs["verify_challenge_resource"] = False
                if self._verify is not True:
                    kwargs["connection_verify"] = self._verify
                client = self._clients[url] = SecretClient(url, self._get_credential(), **kwargs)
            return client

    def resolve(self, text: str) -> str:
        """The secret a reference names (cached for the TTL); BadReference or SecretUnavailable."""
        ref = parse_reference(text)
        now = self._clock()
        with self._lock:
            cached = self._values.get(ref)
        if cached is not None and now < cached[1]:
            return cached[0]
        value = self._read(ref)
        with self._lock:
            self._values[ref] = (value, now + self._ttl)
        return value

    def _read(self, ref: Reference) -> str:
        from azure.core.exceptions import AzureError, ClientAuthenticationError, HttpResponseError

        try:
            secret = self._client(ref).get_secret(ref.name, ref.version or None)
        except ClientAuthenticationError as exc:
            raise SecretUnavailable(f"Key Vault secret {ref}: the app's identity got no token "
                                    f"({_first_line(exc)})") from None
        except HttpResponseError as exc:
            why = {403: "access denied (give the app's identity Key Vault Secrets User on the vault)",
                   404: "no such secret (or version)"}.get(exc.status_code or 0, _first_line(exc))
            raise SecretUnavailable(f"Key Vault secret {ref}: {why}") from None
        except AzureError as exc:
            raise SecretUnavailable(f"Key Vault secret {ref}: {_first_line(exc)}") from None
        self.reads += 1
        if secret.value is None:
            raise SecretUnavailable(f"Key Vault secret {ref} has no value")
        return str(secret.value)

    def forget(self, texts: list[str]) -> None:
        """Drop the cached values of these references (read again on next use)."""
        refs = set()
        for text in texts:
            try:
                refs.add(parse_reference(text))
            except BadReference:
                continue
        with self._lock:
            for ref in refs:
                self._values.pop(ref, None)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
