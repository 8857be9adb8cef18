"""Shared route dependencies as ``Annotated`` aliases (async, so they never hit the threadpool)."""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader

if TYPE_CHECKING:
    from services.predictor.app import Service

#: The 403 body while no admin key is configured.
ADMIN_DISABLED = "admin API disabled: PREDICTOR_ADMIN_API_KEY is not set on the server"

_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="ADMIN_API_KEY")


async def get_service(request: Request) -> Service:
    """The process's Service (set on the app at creation)."""
    return request.app.state.service


ServiceDep = Annotated["Service", Depends(get_service)]


async def require_admin(
    service: ServiceDep, key: Annotated[str | None, Security(_api_key)]
) -> None:
    """Admin calls need ``X-API-Key`` equal to ``PREDICTOR_ADMIN_API_KEY``: missing 401, wrong 403.

    With no key configured the admin API is switched off: 403, whatever the request carries.
    Not 503: nothing is unavailable for a while (a client or a load balancer would retry, or mark
    the instance unhealthy); the server refuses by configuration, which is what 403 says.
    """
    configured = service.psettings.admin_api_key
    if configured is None or not configured.get_secret_value():
        raise HTTPException(403, ADMIN_DISABLED)
    if not key:
        raise HTTPException(401, "missing X-API-Key header", headers={"WWW-Authenticate": "APIKey"})
    if not hmac.compare_digest(key.encode(), configured.get_secret_value().encode()):
        raise HTTPException(403, "wrong API key")


AdminDep = Annotated[None, Depends(require_admin)]
