"""Microsoft Entra ID (identity platform v2.0) emulator for msal (dev tooling, never deployed).

Serves OIDC discovery, JWKS, the authorize endpoint (auto sign-in and consent as `signin_user`, or
as the `login_hint`; `deny_consent` makes it answer access_denied) and the token endpoint
(authorization_code with PKCE, refresh_token with rotation, client_credentials). Access tokens are
RS256 JWTs for Business Central; `validate_token` is what the BC API emulator uses to check bearer
tokens against the emulator clock.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import re
import secrets
import threading
import uuid
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from werkzeug.exceptions import HTTPException, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from .clock import Clock
from .config import (
    BC_RESOURCE,
    IDENTITY_HEADER,
    MANAGED_IDENTITY_CLIENT_ID,
    MANAGED_IDENTITY_PRINCIPAL_ID,
    ClientApp,
    EmulatorConfig,
)

DELEGATED_SCOPE = "Financials.ReadWrite.All"
APP_ROLE = "API.ReadWrite.All"
OIDC_SCOPES = frozenset({"openid", "profile", "offline_access", "email"})
_DELEGATED_RESOURCE_SCOPES = frozenset(
    f"{BC_RESOURCE}/{s}" for s in (".default", DELEGATED_SCOPE, "user_impersonation")
)
VERIFIED_TOKENS_KEPT = 10_000  # tokens whose signature was checked, kept (cleared when full)
_NS = uuid.UUID("6f1d8e0a-3c2b-4a5d-9e8f-7a6b5c4d3e2f")  # namespace for stable emulator object ids


JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
TOKEN_EXCHANGE_AUDIENCE = "api://AzureADTokenExchange"


class InvalidToken(Exception):
    """A bearer token the BC API must reject (bad signature, audience, tenant or lifetime)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class EntraError(Exception):
    """An OAuth error answered the way Entra does (`error`, `AADSTSnnnn: ...`)."""

    def __init__(self, error: str, code: int, description: str, status: int = 400) -> None:
        super().__init__(f"{error}: AADSTS{code}: {description}")
        self.error, self.code, self.description, self.status = error, code, description, status


def user_oid(username: str, tenant_id: str) -> str:
    """The stable object id the emulator gives a user of a tenant."""
    return str(uuid.uuid5(_NS, f"user:{tenant_id}:{username.lower()}"))


def app_oid(client_id: str, tenant_id: str) -> str:
    """The stable object id of an app's service principal in a tenant."""
    return str(uuid.uuid5(_NS, f"sp:{tenant_id}:{client_id.lower()}"))


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _pairwise_sub(oid: str, client_id: str) -> str:
    return _b64url(hashlib.sha256(f"{oid}:{client_id}".encode()).digest())


def _is_loopback(host: str | None) -> bool:
    return host in ("localhost", "127.0.0.1", "::1")


@dataclass
class _AuthCode:
    client_id: str
    tenant_id: str
    username: str
    redirect_uri: str
    scopes: frozenset[str]
    code_challenge: str | None
    challenge_method: str
    nonce: str | None
    expires: float
    redeemed: bool = False


@dataclass
class _RefreshToken:
    client_id: str
    tenant_id: str
    username: str
    scopes: frozenset[str]
    expires: float  # inactivity expiry
    revoked: bool = False


class Entra:
    """The Entra ID emulator: a WSGI app plus token issuing, validation and revocation."""

    def __init__(self, config: EmulatorConfig, clock: Clock) -> None:
        self.config = config
        self.clock = clock
        self.signin_user: str = config.signin_user
        # When set, the authorize endpoint answers error=access_denied with this description.
        self.deny_consent: str | None = None
        self.use_signing_key(rsa.generate_private_key(public_exponent=65537, key_size=2048))
        self._lock = threading.Lock()
        self._codes: dict[str, _AuthCode] = {}
        self._refresh_tokens: dict[str, _RefreshToken] = {}
        self.calls: Counter[str] = Counter()  # requests per endpoint (token, discovery...), for benches
        self._url_map = Map([
            Rule("/<tenant>/v2.0/.well-known/openid-configuration", endpoint="discovery"),
            Rule("/<tenant>/.well-known/openid-configuration", endpoint="discovery"),
            Rule("/<tenant>/discovery/v2.0/keys", endpoint="keys"),
            Rule("/<tenant>/discovery/keys", endpoint="keys"),
            Rule("/<tenant>/oauth2/v2.0/authorize", endpoint="authorize"),
            Rule("/<tenant>/oauth2/v2.0/token", endpoint="token"),
        ], strict_slashes=False)

    def use_signing_key(self, key: rsa.RSAPrivateKey) -> None:
        """Sign with `key` from now on (a restored emulator keeps its key, so issued tokens stay valid)."""
        self.signing_key = key
        self._public_key = key.public_key()
        self._verified: dict[str, dict[str, Any]] = {}  # token -> claims whose signature checked out
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self._public_key))
        self.kid = _b64url(hashlib.sha256(jwk["n"].encode()).digest()[:20])
        self._jwk = {"kty": "RSA", "use": "sig", "kid": self.kid, "x5t": self.kid,
                     "n": jwk["n"], "e": jwk["e"], "alg": "RS256"}

    @property
    def public_key(self) -> rsa.RSAPublicKey:
        """What verifies the tokens this emulator signs (Key Vault checks its callers' with it)."""
        return self._public_key

    # ---- lookups -------------------------------------------------------------------------
    def tenant_id(self, tenant: str) -> str | None:
        """The tenant GUID for a domain or GUID, or None if the tenant is unknown."""
        tenant = tenant.lower()
        if tenant in self.config.tenants:
            return self.config.tenants[tenant]
        return tenant if tenant in {t.lower() for t in self.config.tenants.values()} else None

    def _client(self, client_id: str | None, tenant_id: str) -> ClientApp:
        for app in self.config.clients:
            if app.client_id == client_id and self.tenant_id(app.tenant) == tenant_id:
                return app
        raise EntraError(
            "unauthorized_client", 700016,
            f"Application with identifier '{client_id}' was not found in the directory "
            f"'{tenant_id}'. This can happen if the application has not been installed by the "
            "administrator of the tenant or consented to by any user in the tenant.",
        )

    # ---- tokens --------------------------------------------------------------------------
    def _sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self.signing_key, algorithm="RS256", headers={"kid": self.kid})

    def issue_access_token(self, client_id: str, tenant: str, username: str | None = None) -> str:
        """A BC access token: delegated for `username`, app-only (client credentials) without."""
        tid = self.tenant_id(tenant)
        if tid is None:
            raise ValueError(f"unknown tenant {tenant!r}")
        now = int(self.clock.timestamp())
        claims: dict[str, Any] = {
            "aud": BC_RESOURCE, "iss": f"https://sts.windows.net/{tid}/",
            "iat": now, "nbf": now, "exp": now + self.config.access_token_lifetime,
            "appid": client_id, "appidacr": "1", "tid": tid, "ver": "1.0",
            "uti": _b64url(secrets.token_bytes(16)),
        }
        if username:
            oid = user_oid(username, tid)
            claims.update(oid=oid, sub=_pairwise_sub(oid, client_id), scp=DELEGATED_SCOPE,
                          upn=username, unique_name=username, name=username.split("@")[0],
                          idtyp="user")
        else:
            oid = app_oid(client_id, tid)
            claims.update(oid=oid, sub=oid, roles=[APP_ROLE], idtyp="app")
        return self._sign(claims)

    def _id_token(self, base: str, client_id: str, tid: str, username: str,
                  nonce: str | None) -> str:
        now = int(self.clock.timestamp())
        oid = user_oid(username, tid)
        claims: dict[str, Any] = {
            "aud": client_id, "iss": f"{base}/{tid}/v2.0", "iat": now, "nbf": now,
            "exp": now + 3600, "sub": _pairwise_sub(oid, client_id), "oid": oid, "tid": tid,
            "name": username.split("@")[0], "preferred_username": username, "ver": "2.0",
        }
        if nonce is not None:
            claims["nonce"] = nonce
        return self._sign(claims)

    def validate_token(self, token: str) -> dict[str, Any]:
        """Claims of a valid BC access token; raises `InvalidToken` otherwise (emulator clock). A
        token's signature and audience are checked once (as BC caches them); its times and tenant
        on every call."""
        claims = self._verified.get(token)
        if claims is None:
            claims = self._verify(token)
            if len(self._verified) >= VERIFIED_TOKENS_KEPT:
                self._verified.clear()
            self._verified[token] = claims
        now = self.clock.timestamp()
        if claims["exp"] <= now:
            raise InvalidToken("The token has expired.")
        if claims["nbf"] > now:
            raise InvalidToken("The token is not yet valid.")
        tid = claims["tid"]
        if self.tenant_id(tid) != tid or claims["iss"] != f"https://sts.windows.net/{tid}/":
            raise InvalidToken(f"The token's tenant '{tid}' is not known.")
        return dict(claims)

    def _verify(self, token: str) -> dict[str, Any]:
        """The claims of a token signed by this provider's key for BC; raises `InvalidToken`."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"The token is malformed: {exc}.") from exc
        if header.get("kid") != self.kid:
            raise InvalidToken("The token is not signed by a key of this identity provider.")
        try:
            claims = jwt.decode(
                token, self._public_key, algorithms=["RS256"], audience=BC_RESOURCE,
                options={"verify_exp": False, "verify_nbf": False, "verify_iat": False,
                         "require": ["exp", "nbf", "iss", "tid", "aud", "oid"]},
            )
        except jwt.InvalidAudienceError as exc:
            raise InvalidToken(f"The token audience is not valid; expected '{BC_RESOURCE}'.") from exc
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"The token is invalid: {exc}.") from exc
        return claims

    # ---- saved state (devtools/emulator/state.py keeps it on disk) -----------------------------
    def snapshot(self) -> dict[str, Any]:
        """The signing key (PEM) and the refresh tokens issued, as plain JSON data."""
        pem = self.signing_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption())
        with self._lock:
            tokens = {token: asdict(rt) | {"scopes": sorted(rt.scopes)}
                      for token, rt in self._refresh_tokens.items()}
        return {"signing_key": pem.decode(), "refresh_tokens": tokens}

    def restore(self, state: dict[str, Any]) -> None:
        """Take the signing key and refresh tokens of `state` (from `snapshot`)."""
        key = serialization.load_pem_private_key(state["signing_key"].encode(), password=None)
        assert isinstance(key, rsa.RSAPrivateKey)
        self.use_signing_key(key)
        with self._lock:
            self._refresh_tokens = {
                token: _RefreshToken(**saved | {"scopes": frozenset(saved["scopes"])})
                for token, saved in state["refresh_tokens"].items()
            }

    def revoke_refresh_tokens(self, client_id: str | None = None, user: str | None = None) -> int:
        """Revoke the refresh tokens of a client and/or user (all when both are None)."""
        count = 0
        with self._lock:
            for rt in self._refresh_tokens.values():
                if rt.revoked:
                    continue
                if client_id is not None and rt.client_id != client_id:
                    continue
                if user is not None and rt.username.lower() != user.lower():
                    continue
                rt.revoked = True
                count += 1
        return count

    @property
    def jwks(self) -> dict[str, Any]:
        """The JSON Web Key Set with the signing key."""
        return {"keys": [dict(self._jwk)]}

    # ---- WSGI ----------------------------------------------------------------------------
    def __call__(self, environ: dict, start_response: Any) -> Any:
        request = Request(environ)
        adapter = self._url_map.bind_to_environ(environ)
        try:
            endpoint, args = adapter.match()
            self.calls[endpoint] += 1
        except NotFound:
            return _json({"error": "not_found", "error_description": "No such endpoint."},
                         404)(environ, start_response)
        except HTTPException as exc:
            return exc(environ, start_response)
        tid = self.tenant_id(args["tenant"])
        try:
            if tid is None:
                raise EntraError(
                    "invalid_tenant", 90002,
                    f"Tenant '{args['tenant']}' not found. Check to make sure you have the correct "
                    "tenant ID and are signing into the correct cloud.",
                )
            response = getattr(self, f"_{endpoint}")(request, tid)
        except EntraError as exc:
            response = self._error(request, exc)
        return response(environ, start_response)

    @staticmethod
    def _base(request: Request) -> str:
        return request.host_url.rstrip("/")

    def _discovery(self, request: Request, tid: str) -> Response:
        base = self._base(request)
        return _json({
            "issuer": f"{base}/{tid}/v2.0",
            "authorization_endpoint": f"{base}/{tid}/oauth2/v2.0/authorize",
            "token_endpoint": f"{base}/{tid}/oauth2/v2.0/token",
            "jwks_uri": f"{base}/{tid}/discovery/v2.0/keys",
            "end_session_endpoint": f"{base}/{tid}/oauth2/v2.0/logout",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt",
                                                      "client_secret_basic"],
            "response_types_supported": ["code"],
            "response_modes_supported": ["query", "form_post"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "code_challenge_methods_supported": ["S256", "plain"],
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nbf", "nonce", "oid", "tid",
                                 "name", "preferred_username", "ver"],
            "tenant_region_scope": "EU",
            "cloud_instance_name": "microsoftonline.com",
        })

    def _keys(self, request: Request, tid: str) -> Response:
        return _json(self.jwks)

    def _error(self, request: Request, exc: EntraError) -> Response:
        trace_id = str(uuid.uuid4())
        correlation_id = request.headers.get("client-request-id") or str(uuid.uuid4())
        ts = self.clock.now().strftime("%Y-%m-%d %H:%M:%SZ")
        return _json({
            "error": exc.error,
            "error_description": f"AADSTS{exc.code}: {exc.description} Trace ID: {trace_id} "
                                 f"Correlation ID: {correlation_id} Timestamp: {ts}",
            "error_codes": [exc.code],
            "timestamp": ts,
            "trace_id": trace_id,
            "correlation_id": correlation_id,
            "error_uri": f"{self._base(request)}/error?code={exc.code}",
        }, exc.status)

    # ---- authorize -----------------------------------------------------------------------
    def _check_redirect_uri(self, app: ClientApp, redirect_uri: str | None) -> str:
        parts = urlsplit(redirect_uri or "")
        if app.redirect_uris:
            ok = any(_same_redirect(redirect_uri or "", r) for r in app.redirect_uris)
        else:
            ok = parts.scheme == "https" or (parts.scheme == "http" and _is_loopback(parts.hostname))
        if not ok or not parts.netloc or parts.fragment:
            raise EntraError(
                "invalid_request", 50011,
                f"The redirect URI '{redirect_uri}' specified in the request does not match the "
                f"redirect URIs configured for the application '{app.client_id}'.",
            )
        return redirect_uri or ""

    def _authorize(self, request: Request, tid: str) -> Response:
        q = request.args
        try:
            app = self._client(q.get("client_id"), tid)
            redirect_uri = self._check_redirect_uri(app, q.get("redirect_uri"))
        except EntraError as exc:  # like Entra: an error page, no redirect
            return _error_page(exc)
        state = q.get("state")
        response_mode = q.get("response_mode", "query")
        try:
            if q.get("response_type") != "code":
                raise EntraError("unsupported_response_type", 700054,
                                 "response_type must be 'code' for this emulator.")
            if response_mode not in ("query", "form_post"):
                raise EntraError("invalid_request", 900144, "response_mode is not supported.")
            scopes = self._check_scopes(q.get("scope", ""), delegated=True)
            method = q.get("code_challenge_method", "plain")
            if q.get("code_challenge") and method not in ("S256", "plain"):
                raise EntraError("invalid_request", 5000541,
                                 f"The code_challenge_method '{method}' is not supported.")
            if self.deny_consent is not None:
                raise EntraError("access_denied", 65004, self.deny_consent)
        except EntraError as exc:
            params = {"error": exc.error, "error_description": f"AADSTS{exc.code}: {exc.description}"}
            return _redirect(redirect_uri, params, state, response_mode)
        code = _b64url(secrets.token_bytes(48))
        with self._lock:
            self._codes[code] = _AuthCode(
                client_id=app.client_id, tenant_id=tid,
                username=q.get("login_hint") or self.signin_user, redirect_uri=redirect_uri,
                scopes=scopes, code_challenge=q.get("code_challenge"), challenge_method=method,
                nonce=q.get("nonce"), expires=self.clock.timestamp() + self.config.auth_code_lifetime,
            )
        params = {"code": code, "session_state": str(uuid.uuid4())}
        return _redirect(redirect_uri, params, state, response_mode)

    @staticmethod
    def _check_scopes(scope: str, delegated: bool) -> frozenset[str]:
        scopes = frozenset(scope.split())
        if not delegated:
            if scopes != {f"{BC_RESOURCE}/.default"}:
                raise EntraError(
                    "invalid_scope", 1002012,
                    f"The provided value for scope {scope} is not valid. Client credential flows "
                    "must have a scope value with /.default suffixed to the resource identifier.",
                )
            return scopes
        resource = scopes - OIDC_SCOPES
        if not resource or not resource <= _DELEGATED_RESOURCE_SCOPES:
            raise EntraError(
                "invalid_scope", 70011,
                f"The provided value for the input parameter 'scope' is not valid. The scope "
                f"'{scope}' is not valid (the emulator only issues tokens for {BC_RESOURCE}).",
            )
        return scopes

    # ---- token ---------------------------------------------------------------------------
    def _token(self, request: Request, tid: str) -> Response:
        if request.method != "POST":
            raise EntraError("invalid_request", 900561, "The endpoint only accepts POST requests.")
        form = request.form
        client_id, secret = form.get("client_id"), form.get("client_secret")
        if request.authorization and request.authorization.type == "basic":
            client_id = client_id or request.authorization.username
            secret = secret or request.authorization.password
        app = self._client(client_id, tid)
        if form.get("client_assertion") or form.get("client_assertion_type"):
            self._check_assertion(form, app, tid, self._base(request))
        elif not secret:
            raise EntraError(
                "invalid_client", 7000218,
                "The request body must contain the following parameter: 'client_assertion' or "
                "'client_secret'.", 401,
            )
        elif not hmac.compare_digest(secret, app.client_secret):
            raise EntraError(
                "invalid_client", 7000215,
                f"Invalid client secret provided. Ensure the secret being sent in the request is "
                f"the client secret value, not the client secret ID, for a secret added to app "
                f"'{app.client_id}'.", 401,
            )
        grant = form.get("grant_type")
        base = self._base(request)
        want_client_info = form.get("client_info") == "1"
        if grant == "client_credentials":
            self._check_scopes(form.get("scope", ""), delegated=False)
            return self._token_response({
                "access_token": self.issue_access_token(app.client_id, tid),
            })
        if grant == "authorization_code":
            username, scopes, nonce = self._redeem_code(form, app, tid)
        elif grant == "refresh_token":
            username, scopes = self._redeem_refresh_token(form, app, tid)
            nonce = None
        else:
            raise EntraError("unsupported_grant_type", 70003,
                             f"The app requested an unsupported grant type '{grant}'.")
        body: dict[str, Any] = {
            "scope": f"{BC_RESOURCE}/{DELEGATED_SCOPE}",
            "access_token": self.issue_access_token(app.client_id, tid, username),
        }
        if "offline_access" in scopes:
            body["refresh_token"] = self._new_refresh_token(app.client_id, tid, username, scopes)
        if "openid" in scopes:
            body["id_token"] = self._id_token(base, app.client_id, tid, username, nonce)
        if want_client_info:
            info = {"uid": user_oid(username, tid), "utid": tid}
            body["client_info"] = _b64url(json.dumps(info).encode())
        return self._token_response(body)

    def _check_assertion(self, form: Any, app: ClientApp, tid: str, base: str) -> None:
        """A federated client assertion (workload identity federation): a JWT of an issuer, subject
        and audience one of the app's federated identity credentials names, signed by the issuer,
        within its lifetime. The emulator trusts only its own issuer (its managed identities)."""
        if form.get("client_assertion_type") != JWT_BEARER:
            raise EntraError("invalid_client", 700027, "Client assertion type is not supported; "
                             f"expected '{JWT_BEARER}'.", 401)
        assertion = form.get("client_assertion") or ""
        try:
            claims = jwt.decode(assertion, self._public_key, algorithms=["RS256"],
                                options={"verify_aud": False, "verify_exp": False, "verify_nbf": False,
                                         "verify_iat": False, "require": ["iss", "sub", "aud", "exp"]})
        except jwt.PyJWTError as exc:
            raise EntraError("invalid_client", 700027,
                             f"Client assertion failed signature validation: {exc}.", 401) from None
        issuer = f"{base}/{tid}/v2.0"
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        if claims["iss"] != issuer:
            raise EntraError("invalid_client", 700211, "No matching federated identity record found "
                             f"for presented assertion issuer '{claims['iss']}'.", 401)
        if TOKEN_EXCHANGE_AUDIENCE not in audiences:
            raise EntraError("invalid_client", 700212, "No matching federated identity record found "
                             f"for presented assertion audience '{claims['aud']}'.", 401)
        if claims["sub"] not in app.federated_subjects:
            raise EntraError("invalid_client", 70021, "No matching federated identity record found for "
                             f"presented assertion. Assertion Issuer: '{claims['iss']}'. Assertion "
                             f"Subject: '{claims['sub']}'. Assertion Audience: '{TOKEN_EXCHANGE_AUDIENCE}'.",
                             401)
        if claims["exp"] <= self.clock.timestamp():
            raise EntraError("invalid_client", 700024, "Client assertion is not within its valid time "
                             "range.", 401)

    def managed_identity(self, environ: dict, start_response: Any) -> Any:
        """`GET /msi/token?api-version=2019-08-01&resource=...` with `X-IDENTITY-HEADER`: the local
        Function App's managed identity token, as App Service's identity endpoint answers it."""
        request = Request(environ)
        if request.headers.get("X-IDENTITY-HEADER") != IDENTITY_HEADER:
            return _json({"statusCode": 401, "message": "Unauthorized: the identity header is "
                          "missing or wrong."}, 401)(environ, start_response)
        resource = request.args.get("resource", "")
        wanted = request.args.get("client_id") or request.args.get("mi_res_id")
        if wanted and wanted != MANAGED_IDENTITY_CLIENT_ID:
            return _json({"statusCode": 400, "message": f"No managed identity with client id {wanted} "
                          "is assigned to this app."}, 400)(environ, start_response)
        tid = next(iter(self.config.tenants.values()))
        now = int(self.clock.timestamp())
        lifetime = 24 * 3600
        token = self._sign({
            "aud": resource, "iss": f"{self._base(request)}/{tid}/v2.0", "sub": MANAGED_IDENTITY_PRINCIPAL_ID,
            "oid": MANAGED_IDENTITY_PRINCIPAL_ID, "tid": tid, "azp": MANAGED_IDENTITY_CLIENT_ID,
            "iat": now, "nbf": now, "exp": now + lifetime, "ver": "2.0",
        })
        body = {"access_token": token, "expires_on": str(now + lifetime), "resource": resource,
                "token_type": "Bearer", "client_id": MANAGED_IDENTITY_CLIENT_ID}
        return _json(body)(environ, start_response)

    def _token_response(self, body: dict[str, Any]) -> Response:
        lifetime = self.config.access_token_lifetime
        resp = _json({"token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime,
                      **body})
        resp.headers["Cache-Control"] = "no-store, no-cache"
        resp.headers["Pragma"] = "no-cache"
        return resp

    def _redeem_code(self, form: Any, app: ClientApp,
                     tid: str) -> tuple[str, frozenset[str], str | None]:
        raw = form.get("code")
        if not raw:
            raise EntraError("invalid_request", 900144,
                             "The request body must contain the following parameter: 'code'.")
        now = self.clock.timestamp()
        with self._lock:
            code = self._codes.get(raw)
            if code is None or code.client_id != app.client_id or code.tenant_id != tid:
                raise EntraError("invalid_grant", 70000,
                                 "The provided value for the 'code' parameter is not valid.")
            if code.redeemed:
                raise EntraError(
                    "invalid_grant", 54005,
                    "OAuth2 Authorization code was already redeemed, please retry with a new "
                    "valid code or use an existing refresh token.",
                )
            if code.expires <= now:
                raise EntraError(
                    "invalid_grant", 70008,
                    "The provided authorization code or refresh token has expired due to "
                    "inactivity. Send a new interactive authorization request for this user "
                    "and resource.",
                )
            code.redeemed = True
        if form.get("redirect_uri") != code.redirect_uri:
            raise EntraError(
                "invalid_grant", 500112,
                f"The reply address '{form.get('redirect_uri')}' does not match the reply address "
                f"'{code.redirect_uri}' provided when requesting Authorization code.",
            )
        if code.code_challenge is not None:
            verifier = form.get("code_verifier") or ""
            if code.challenge_method == "S256":
                expected = _b64url(hashlib.sha256(verifier.encode("ascii", "replace")).digest())
            else:
                expected = verifier
            if not verifier or not hmac.compare_digest(expected, code.code_challenge):
                raise EntraError(
                    "invalid_grant", 501481,
                    "The Code_Verifier does not match the code_challenge supplied in the "
                    "authorization request.",
                )
        return code.username, code.scopes, code.nonce

    def _redeem_refresh_token(self, form: Any, app: ClientApp,
                              tid: str) -> tuple[str, frozenset[str]]:
        raw = form.get("refresh_token")
        if not raw:
            raise EntraError("invalid_request", 900144, "The request body must contain the "
                             "following parameter: 'refresh_token'.")
        requested = self._check_scopes(form.get("scope", f"{BC_RESOURCE}/.default"),
                                       delegated=True)
        with self._lock:
            rt = self._refresh_tokens.get(raw)
            if rt is None or rt.tenant_id != tid:
                raise EntraError("invalid_grant", 9002313,
                                 "Invalid request. Request is malformed or invalid.")
            if rt.client_id != app.client_id:
                raise EntraError("invalid_grant", 70000, "Provided grant is invalid or malformed.")
            if rt.revoked:
                raise EntraError(
                    "invalid_grant", 50173,
                    "The provided grant has expired due to it being revoked, a fresh auth token "
                    "is needed. The user might have changed or reset their password.",
                )
            if rt.expires <= self.clock.timestamp():
                raise EntraError(
                    "invalid_grant", 700082,
                    "The refresh token has expired due to inactivity. The token was issued on "
                    "a date and was inactive for the maximum allowed lifetime.",
                )
        return rt.username, requested | {"offline_access"}

    def _new_refresh_token(self, client_id: str, tid: str, username: str,
                           scopes: frozenset[str]) -> str:
        token = "1.EMU." + _b64url(secrets.token_bytes(64))
        expires = self.clock.timestamp() + self.config.refresh_token_lifetime
        with self._lock:
            self._refresh_tokens[token] = _RefreshToken(client_id, tid, username, scopes, expires)
        return token


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, content_type="application/json; charset=utf-8")


def _error_page(exc: EntraError) -> Response:
    text = html.escape(f"AADSTS{exc.code}: {exc.description}")
    page = (f"<!DOCTYPE html><html><head><title>Sign in to your account</title></head><body>"
            f"<h1>Sorry, but we're having trouble signing you in.</h1><p>{text}</p></body></html>")
    return Response(page, status=400, content_type="text/html; charset=utf-8")


def _redirect(redirect_uri: str, params: dict[str, str], state: str | None,
              response_mode: str) -> Response:
    if state is not None:
        params = {**params, "state": state}
    if response_mode == "form_post":
        fields = "".join(
            f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}"/>'
            for k, v in params.items()
        )
        page = (f'<html><body onload="document.forms[0].submit()"><form method="POST" '
                f'action="{html.escape(redirect_uri)}">{fields}</form></body></html>')
        return Response(page, content_type="text/html; charset=utf-8")
    parts = urlsplit(redirect_uri)
    query = f"{parts.query}&{urlencode(params)}" if parts.query else urlencode(params)
    location = urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))
    return Response("", status=302, headers={"Location": location})


_FORM_ACTION = re.compile(r'<form method="POST" action="([^"]*)"')
_HIDDEN_FIELD = re.compile(r'<input type="hidden" name="([^"]*)" value="([^"]*)"/>')


def read_form_post(page: str) -> tuple[str, dict[str, str]] | None:
    """The target and fields of a `form_post` answer page (what a browser would POST), or None."""
    action = _FORM_ACTION.search(page)
    if action is None:
        return None
    fields = {html.unescape(k): html.unescape(v) for k, v in _HIDDEN_FIELD.findall(page)}
    return html.unescape(action.group(1)), fields


def _same_redirect(given: str, registered: str) -> bool:
    """Exact match, except that the port of a loopback redirect URI is ignored (like Entra)."""
    if given == registered:
        return True
    a, b = urlsplit(given), urlsplit(registered)
    return (_is_loopback(a.hostname) and a.scheme == b.scheme and a.hostname == b.hostname
            and a.path == b.path and a.query == b.query)
