"""HTTP authentication: who may call what."""

from __future__ import annotations

import time
from typing import Annotated

import jwt
import pytest
from fastapi import Depends, FastAPI, HTTPException
from fastapi.testclient import TestClient
from pydantic import BaseModel

from runtime.auth import ApiRole, AuthenticateFirst, JwtConfig, Principal, decode_token, issue_token, main, require

CONFIG = JwtConfig(secret="test-secret-with-enough-length-for-hs256", issuer="test-issuer", audience="test-aud")


@pytest.fixture
def client() -> TestClient:
    app = FastAPI()
    app.state.jwt = CONFIG

    @app.get("/admin-only")
    async def admin_only(who: Annotated[Principal, Depends(require(ApiRole.ADMIN))]) -> dict[str, str]:
        return {"sub": who.subject}

    @app.get("/readers")
    async def readers(
        who: Annotated[Principal, Depends(require(ApiRole.ADMIN, ApiRole.INTEGRATION))],
    ) -> dict[str, str]:
        return {"sub": who.subject}

    return TestClient(app)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_no_token_is_401(client: TestClient) -> None:
    response = client.get("/admin-only")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


def test_wrong_role_is_403(client: TestClient) -> None:
    token = issue_token(CONFIG, "E1", ["participant"])
    response = client.get("/admin-only", headers=_bearer(token))
    assert response.status_code == 403
    assert "admin" in response.json()["detail"]


def test_expired_token_is_401(client: TestClient) -> None:
    token = issue_token(CONFIG, "alice", ["admin"], ttl_seconds=-10)
    response = client.get("/admin-only", headers=_bearer(token))
    assert response.status_code == 401
    assert response.json()["detail"] == "token expired"  # a bare FastAPI app; services add the one shape


def test_token_from_another_issuer_or_key_is_401(client: TestClient) -> None:
    other_issuer = JwtConfig(secret=CONFIG.secret, issuer="evil", audience=CONFIG.audience)
    other_key = JwtConfig(
        secret="another-secret-of-enough-length-xxxxxx", issuer=CONFIG.issuer, audience=CONFIG.audience
    )
    for cfg in (other_issuer, other_key):
        assert client.get("/admin-only", headers=_bearer(issue_token(cfg, "alice", ["admin"]))).status_code == 401
    assert client.get("/admin-only", headers=_bearer("not-a-jwt")).status_code == 401


def test_valid_token_with_an_allowed_role_passes(client: TestClient) -> None:
    assert client.get("/admin-only", headers=_bearer(issue_token(CONFIG, "alice", ["admin"]))).json() == {
        "sub": "alice"
    }
    token = issue_token(CONFIG, "hris-sync", ["integration"])
    assert client.get("/readers", headers=_bearer(token)).status_code == 200


def test_dev_token_command_prints_a_token(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--role", "admin", "--sub", "alice"]) == 0
    assert capsys.readouterr().out.count(".") == 2


def test_dev_token_is_accepted_by_a_service_configured_from_the_same_environment(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from runtime.service import create_app
    from services.enrollment.app import build, settings_class

    monkeypatch.setenv("ENROLLMENT_DATABASE_URL", "postgresql://enrollment@127.0.0.1:1/unused")
    monkeypatch.setenv("ENROLLMENT_JWT_SECRET", "a-deployment-secret-that-is-not-the-default-one")
    monkeypatch.setenv("ENROLLMENT_JWT_ISSUER", "acme-idp")
    monkeypatch.setenv("ENROLLMENT_JWT_AUDIENCE", "acme-mentoring")
    assert main(["--role", "admin", "--sub", "alice", "--service", "enrollment"]) == 0
    token = capsys.readouterr().out.strip()
    service_config: JwtConfig = create_app(build(settings_class()())).state.jwt  # what the service checks with
    assert service_config.issuer == "acme-idp"
    principal = decode_token(service_config, token)
    assert principal.subject == "alice" and principal.has(ApiRole.ADMIN)
    # and a token from the defaults is refused by that service
    monkeypatch.delenv("ENROLLMENT_JWT_SECRET")
    assert main(["--role", "admin", "--service", "enrollment"]) == 0
    with pytest.raises(HTTPException):
        decode_token(service_config, capsys.readouterr().out.strip())


def test_permissions_travel_in_the_token_and_default_to_none() -> None:
    granted = decode_token(CONFIG, issue_token(CONFIG, "alice", ["admin"], permissions=["feedback:read-text"]))
    assert granted.permissions == frozenset({"feedback:read-text"})
    assert granted.can("feedback:read-text") and not granted.can("sessions:read-notes")
    plain = decode_token(CONFIG, issue_token(CONFIG, "bob", ["admin"]))
    assert plain.permissions == frozenset() and not plain.can("feedback:read-text")


def test_a_malformed_permissions_claim_grants_nothing() -> None:
    import time

    import jwt

    now = int(time.time())
    claims = {"sub": "eve", "roles": ["admin"], "iss": CONFIG.issuer, "aud": CONFIG.audience, "exp": now + 60}
    for bad in ("feedback:read-text", {"feedback:read-text": True}, [1, None]):
        token = jwt.encode({**claims, "permissions": bad}, CONFIG.secret, algorithm="HS256")
        assert decode_token(CONFIG, token).permissions == frozenset()


def test_dev_token_command_grants_permissions(capsys: pytest.CaptureFixture[str]) -> None:
    from runtime.auth import jwt_config_from_env

    assert main(["--role", "admin", "--sub", "carol", "--permission", "feedback:read-text"]) == 0
    principal = decode_token(jwt_config_from_env(), capsys.readouterr().out.strip())
    assert principal.subject == "carol" and principal.can("feedback:read-text")


@pytest.mark.parametrize("roles", ["admin", {"admin": True}, [1, 2], None])
def test_a_roles_claim_that_is_not_a_list_of_strings_is_401(client: TestClient, roles: object) -> None:
    now = int(time.time())
    claims = {"sub": "x", "roles": roles, "iss": CONFIG.issuer, "aud": CONFIG.audience, "iat": now, "exp": now + 60}
    token = jwt.encode(claims, CONFIG.secret, algorithm="HS256")
    response = client.get("/admin-only", headers=_bearer(token))
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


class Body(BaseModel):
    n: int


def test_authentication_comes_before_the_body_is_read() -> None:
    app = FastAPI()
    app.state.jwt = CONFIG
    app.add_middleware(AuthenticateFirst, config=lambda: app.state.jwt)

    @app.post("/things")
    async def things(body: Body, who: Annotated[Principal, Depends(require(ApiRole.ADMIN))]) -> dict[str, int]:
        return {"n": body.n}

    @app.get("/health/live")
    async def live() -> dict[str, str]:
        return {"status": "ok"}

    client = TestClient(app)
    broken = {"content": b"{not json", "headers": {"content-type": "application/json"}}
    r = client.post("/things", **broken)
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert r.json() == {
        "detail": [{"loc": ["header", "authorization"], "msg": "missing bearer token", "type": "unauthorized"}]
    }
    r = client.post("/things", content=b"{not json", headers={"content-type": "application/json", **_bearer("junk")})
    assert r.status_code == 401
    admin = _bearer(issue_token(CONFIG, "a", ["admin"]))
    r = client.post("/things", content=b"{not json", headers={"content-type": "application/json", **admin})
    assert r.status_code == 422, "an authenticated caller learns what is wrong with the body"
    assert client.post("/things", json={"n": 3}, headers=admin).json() == {"n": 3}
    assert client.get("/health/live").status_code == 200, "probes need no token"
