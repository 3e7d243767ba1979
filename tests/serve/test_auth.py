"""API keys: Bearer auth on everything but the probes, constant-time, never echoed."""

from __future__ import annotations

import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from onnxforge.serve.auth import (API_KEY_ENV, ApiKeyMiddleware, exposure_warning, is_loopback, key_matches,
                                  resolve_api_key)

KEY = "s3cret-token-0123"


def _app():
    async def ok(request):
        return JSONResponse({"ok": True})

    routes = [Route(p, ok, methods=["GET", "POST"]) for p in ("/health", "/ready", "/embed", "/v1/embeddings", "/metrics")]
    seen = []

    def error_body(path, status, kind, message):
        seen.append((path, status, kind))
        return f'{{"error": {{"status": {status}, "type": "{kind}", "message": "{message}"}}}}'.encode()

    return ApiKeyMiddleware(Starlette(routes=routes), KEY, error_body), seen


@pytest.mark.parametrize("path", ["/embed", "/v1/embeddings", "/metrics", "/nowhere"])
def test_401_without_the_key_200_with_it(path):
    app, seen = _app()
    with TestClient(app) as client:
        r = client.post(path, json={})
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
        assert r.json()["error"]["type"] == "missing_api_key" and KEY not in r.text
        r = client.post(path, json={}, headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401 and r.json()["error"]["type"] == "invalid_api_key" and KEY not in r.text
        r = client.post(path, json={}, headers={"Authorization": f"Basic {KEY}"})
        assert r.status_code == 401
        r = client.post(path, json={}, headers={"Authorization": f"Bearer {KEY}"})
        assert r.status_code == (404 if path == "/nowhere" else 200)
    assert all(s[1] == 401 for s in seen)


def test_probes_need_no_key():
    app, _ = _app()
    with TestClient(app) as client:
        assert client.get("/health").status_code == 200 and client.get("/ready").status_code == 200


def test_key_matching():
    assert key_matches(f"Bearer {KEY}", KEY) and key_matches(f"bearer {KEY}", KEY)
    assert not key_matches(None, KEY) and not key_matches("", KEY) and not key_matches(KEY, KEY)
    assert not key_matches(f"Bearer {KEY}x", KEY) and not key_matches("Bearer Grüße", KEY)
    assert "***" in repr(ApiKeyMiddleware(None, KEY, None)) and KEY not in repr(ApiKeyMiddleware(None, KEY, None))


def test_key_from_flag_or_environment():
    from onnxforge.errors import UserInputError

    assert resolve_api_key(None, {}) is None and resolve_api_key("", {API_KEY_ENV: KEY}) is None
    assert resolve_api_key(None, {API_KEY_ENV: KEY}) == KEY and resolve_api_key("flag", {API_KEY_ENV: KEY}) == "flag"
    with pytest.raises(UserInputError) as info:
        resolve_api_key("has space", {})
    assert "has space" not in str(info.value.message)


def test_warning_when_exposed_without_a_key():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and is_loopback("127.3.2.1")
    assert not is_loopback("0.0.0.0") and not is_loopback("::") and not is_loopback("example.org")
    assert exposure_warning("127.0.0.1", None) is None and exposure_warning("0.0.0.0", KEY) is None
    assert "without an API key" in exposure_warning("0.0.0.0", None)
