"""API keys: ``--api-key`` (or ``ONNXFORGE_API_KEY``) makes every endpoint but the probes ask for it.

Clients send ``Authorization: Bearer KEY`` (the official OpenAI client does so with its
``api_key``). A missing or wrong key is answered 401 with ``WWW-Authenticate: Bearer``
before the body is read. The comparison is ``hmac.compare_digest`` on bytes (constant
time for equal lengths), and the key never appears in a log line, a repr or a response.
/health and /ready stay open so orchestrator probes need no secret.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from typing import Callable

API_KEY_ENV = "ONNXFORGE_API_KEY"
OPEN_PATHS = frozenset({"/health", "/ready"})


def resolve_api_key(flag: str | None, environ: dict[str, str] | None = None) -> str | None:
    """The key from ``--api-key``, else the environment; empty means none."""
    from ..errors import UserInputError

    environ = os.environ if environ is None else environ
    key = flag if flag is not None else environ.get(API_KEY_ENV)
    if key is None or key == "":
        return None
    if key != key.strip() or any(ord(c) < 33 or ord(c) > 126 for c in key):
        raise UserInputError("the API key must be printable ASCII without spaces (it travels in an HTTP header)",
                             hint=f"set --api-key or {API_KEY_ENV} to a token such as the output of `openssl rand -hex 32`")
    return key


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: assume it may be reachable from elsewhere


def exposure_warning(host: str, api_key: str | None) -> str | None:
    """A warning to print when the server listens beyond loopback with no key."""
    if api_key or is_loopback(host):
        return None
    return (f"warning: listening on {host} without an API key: anyone who can reach this address can use the model "
            f"(set --api-key or {API_KEY_ENV}, or listen on 127.0.0.1 behind a proxy)")


class HiddenKey:
    """The key, wrapped so that a repr (Starlette's ``Middleware`` repr, a debugger, a log of
    the app's settings) shows ``***`` instead of it."""

    __slots__ = ("value",)

    def __init__(self, value: str):
        self.value = value

    def __repr__(self) -> str:
        return "HiddenKey('***')"

    __str__ = __repr__


def key_matches(header: str | None, api_key: str) -> bool:
    """``Authorization: Bearer KEY`` with the right key, compared in constant time."""
    if not header:
        return False
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(token.strip().encode("utf-8", "surrogateescape"), api_key.encode("utf-8"))


class ApiKeyMiddleware:
    """Pure ASGI: 401 before the route (and before the body is read) when the key is wrong.

    ``error_body(path, status, kind, message)`` returns the JSON error in the shape of
    the route asked for (OpenAI's for /v1/..., the server's own elsewhere).
    """

    def __init__(self, app, api_key: str | HiddenKey, error_body: Callable[[str, int, str, str], bytes]):
        self.app = app
        self._key = api_key.value if isinstance(api_key, HiddenKey) else api_key
        self._error_body = error_body

    def __repr__(self) -> str:
        return "ApiKeyMiddleware(api_key=***)"

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("path") in OPEN_PATHS:
            return await self.app(scope, receive, send)
        header = None
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                header = value.decode("latin-1")
                break
        if key_matches(header, self._key):
            return await self.app(scope, receive, send)
        kind = "missing_api_key" if header is None else "invalid_api_key"
        message = ("this server needs an API key: send 'Authorization: Bearer KEY'" if header is None
                   else "the API key is wrong (expected 'Authorization: Bearer KEY')")
        body = self._error_body(scope.get("path", ""), 401, kind, message)
        await send({"type": "http.response.start", "status": 401, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"www-authenticate", b'Bearer realm="onnxforge"')]})
        await send({"type": "http.response.body", "body": body})
