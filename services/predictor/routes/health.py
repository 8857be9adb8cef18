"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from services.predictor.api import Health, Readiness
from services.predictor.routes.deps import ServiceDep

router = APIRouter(tags=["health"])


@router.get("/health", response_model=Health)
async def health() -> Health:
    """The process is up (it may not be ready)."""
    return Health()


@router.get("/ready", response_model=Readiness, responses={503: {"model": Readiness}})
async def ready(service: ServiceDep) -> JSONResponse:
    """200 once a champion is loaded and the ``features`` partitions are assigned, else 503
    with the reasons."""
    reasons = []
    champion = service.holder.models.champion
    if champion is None:
        reasons.append(f"no champion model loaded ({service.holder.last_error or 'loading'})")
    assignment = service.worker.assignment
    if not assignment.joined:
        reasons.append(
            "waiting for a champion before joining the consumer group"
            if champion is None
            else "waiting for partition assignment"
        )
    if service.failure:
        reasons.append(service.failure)
    body = Readiness(
        ready=not reasons,
        reasons=reasons,
        champion_version=champion.bundle.version if champion else None,
        partitions=len(assignment.partitions),
    )
    return JSONResponse(body.model_dump(), status_code=200 if body.ready else 503)
