"""Bearer-JWT authentication for the HTTP APIs.

Roles: ``admin`` (runs programs), ``participant`` (the token's subject is their participant id, so
they reach only their own records) and ``integration`` (read-only systems). 401 when the token is
missing, malformed, expired or not ours; 403 when it is valid but the role is not allowed.

Permissions (the optional ``permissions`` claim, a list of strings such as ``feedback:read-text``) grant
what no role carries by itself: a right that even a plain admin lacks unless the identity provider
gave it explicitly. A token without the claim has none; a service checks them with
:meth:`Principal.can`.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated

import jwt
from fastapi import Depends, HTTPException, Request, status
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import ASGIApp, Receive, Scope, Send

ALGORITHM = "HS256"


class ApiRole(StrEnum):
    ADMIN = "admin"
    PARTICIPANT = "participant"
    INTEGRATION = "integration"


@dataclass(frozen=True)
class Principal:
    subject: str
    roles: frozenset[ApiRole]
    permissions: frozenset[str] = frozenset()

    def has(self, role: ApiRole) -> bool:
        return role in self.roles

    def can(self, permission: str) -> bool:
        return permission in self.permissions


@dataclass(frozen=True)
class JwtConfig:
    secret: str
    issuer: str
    audience: str


def issue_token(
    config: JwtConfig,
    subject: str,
    roles: list[str],
    ttl_seconds: int = 8 * 3600,
    *,
    permissions: list[str] | None = None,
) -> str:
    now = int(time.time())
    claims: dict[str, object] = {"sub": subject, "roles": roles, "iss": config.issuer, "aud": config.audience}
    claims["iat"] = now
    claims["exp"] = now + ttl_seconds
    if permissions:
        claims["permissions"] = list(permissions)
    return jwt.encode(claims, config.secret, algorithm=ALGORITHM)


def decode_token(config: JwtConfig, token: str) -> Principal:
    """Raise 401 for anything but a valid, unexpired token from our issuer for our audience."""
    try:
        claims = jwt.decode(
            token,
            config.secret,
            algorithms=[ALGORITHM],
            audience=config.audience,
            issuer=config.issuer,
            options={"require": ["exp", "sub", "iss", "aud"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise _unauthorized("token expired") from exc
    except jwt.InvalidTokenError as exc:
        raise _unauthorized("invalid token") from exc
    claimed = claims.get("roles", [])
    if not isinstance(claimed, list) or not all(isinstance(r, str) for r in claimed):
        raise _unauthorized("invalid token: roles must be a list of strings")
    roles = set()
    for r in claimed:
        try:
            roles.add(ApiRole(r))
        except ValueError:
            continue
    granted = claims.get("permissions", [])
    permissions = frozenset(p for p in granted if isinstance(p, str)) if isinstance(granted, list) else frozenset()
    return Principal(subject=str(claims["sub"]), roles=frozenset(roles), permissions=permissions)


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": "Bearer"})


_bearer = HTTPBearer(auto_error=False)
_PRINCIPAL = "authenticated_principal"


def require(*allowed: ApiRole) -> Callable[..., Awaitable[Principal]]:
    """A FastAPI dependency: the caller's principal, if it holds one of ``allowed``."""

    async def dependency(
        request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
    ) -> Principal:
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise _unauthorized("missing bearer token")
        # the token AuthenticateFirst decoded for this request, if it ran: a JWT check is not free
        principal = request.scope.get("state", {}).get(_PRINCIPAL)
        if not isinstance(principal, Principal):
            principal = decode_token(request.app.state.jwt, credentials.credentials)
        if not any(principal.has(role) for role in allowed):
            raise HTTPException(status.HTTP_403_FORBIDDEN, detail=f"needs role: {' or '.join(allowed)}")
        return principal

    return dependency


def jwt_config_from_env(service: str | None = None) -> JwtConfig:
    """The JWT settings a service reads from its environment: ``ENROLLMENT_JWT_SECRET`` etc. for
    ``service="enrollment"``, the unprefixed ``JWT_SECRET`` etc. without a service; defaults otherwise."""
    from runtime.settings import JwtSettings

    prefix = f"{service.upper()}_" if service else ""
    settings = JwtSettings(_env_prefix=prefix)
    return JwtConfig(
        secret=settings.jwt_secret.get_secret_value(), issuer=settings.jwt_issuer, audience=settings.jwt_audience
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m runtime.auth --role admin --sub alice [--permission feedback:read-text] [--service feedback]``:
    a token for the local stack, signed with the settings the service reads from the same environment."""
    parser = argparse.ArgumentParser(description="Issue a development JWT for the local stack.")
    parser.add_argument("--role", action="append", choices=[r.value for r in ApiRole], required=True)
    parser.add_argument("--sub", default="dev-admin", help="subject: the participant id for participant tokens")
    parser.add_argument("--ttl", type=int, default=8 * 3600, help="seconds until it expires")
    parser.add_argument(
        "--service", default=None, help="read <SERVICE>_JWT_SECRET/_ISSUER/_AUDIENCE as that service does"
    )
    parser.add_argument(
        "--permission", action="append", default=[], help="a permission claim, e.g. feedback:read-text (repeatable)"
    )
    args = parser.parse_args(argv)
    print(issue_token(jwt_config_from_env(args.service), args.sub, args.role, args.ttl, permissions=args.permission))
    return 0


if __name__ == "__main__":
    sys.exit(main())


PUBLIC_PATHS = ("/health/", "/metrics", "/docs", "/redoc", "/openapi.json", "/dashboard", "/favicon.ico")
"""Paths that answer without a bearer token: probes, Prometheus, the API documents, a browser's favicon and
the dashboard's pages (a browser signs in with a cookie there, see services/metrics/dashboard.py)."""


class AuthenticateFirst:
    """ASGI middleware: every other request needs a valid bearer token *before* anything reads its body,
    so an unauthenticated request with a broken body is a 401, never a 400 or 422 that reveals what the
    route expects. Roles are still checked per route by :func:`require` (403)."""

    def __init__(self, app: ASGIApp, config: Callable[[], JwtConfig], public: tuple[str, ...] = PUBLIC_PATHS):
        self.app, self.config, self.public = app, config, public

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(self.public):
            await self.app(scope, receive, send)
            return
        header = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
        scheme, _, token = header.partition(" ")
        try:
            if scheme.lower() != "bearer" or not token.strip():
                raise _unauthorized("missing bearer token")
            principal = decode_token(self.config(), token.strip())
        except HTTPException as exc:
            item = {"loc": ["header", "authorization"], "msg": str(exc.detail), "type": "unauthorized"}
            response = JSONResponse({"detail": [item]}, status_code=401, headers=exc.headers)
            await response(scope, receive, send)
            return
        scope.setdefault("state", {})[_PRINCIPAL] = principal  # for require(), from the same header
        await self.app(scope, receive, send)
