"""The loaded models, and the admin reload."""

from __future__ import annotations

from fastapi import APIRouter

from services.predictor.api import DriftFill, ErrorBody, ModelCard, ModelsInfo, ReloadResult
from services.predictor.models import LoadedModel, ModelHolder
from services.predictor.routes.deps import AdminDep, ServiceDep

router = APIRouter(tags=["model"])


def card(role: str, lm: LoadedModel | None) -> ModelCard | None:
    """What ``/model`` says about one loaded model."""
    if lm is None:
        return None
    b = lm.bundle
    return ModelCard(
        role=role,
        name=b.name,
        version=b.version,
        run_id=getattr(b, "run_id", None),
        trained_at=getattr(b, "trained_at", None),
        loaded_at=lm.loaded_at,
        feature_version=b.feature_version,
        feature_count=len(b.feature_names),
        bias_factor=b.bias_factor,
        metrics=dict(getattr(b, "metrics", {}) or {}),
        drift=DriftFill(
            method=lm.drift.limits.method,
            rows=lm.drift.filled(),
            window=lm.drift.window,
            fill=lm.drift.fill(),
            warm=lm.drift.warm(),
        ),
    )


def info(holder: ModelHolder) -> dict[str, object]:
    models = holder.models
    return {
        "champion": card("champion", models.champion),
        "challenger": card("challenger", models.challenger),
        "last_error": holder.last_error,
        "last_reload_at": holder.last_reload_at,
    }


@router.get("/model", response_model=ModelsInfo)
async def get_model(service: ServiceDep) -> ModelsInfo:
    """Champion and challenger (version, training time, test metrics, feature version) and
    the last reload error."""
    acc = service.accuracy
    fill = {role: min(1.0, len(r) / acc.min_fill) for role, r in acc.roles.items()}
    return ModelsInfo(**info(service.holder), accuracy_fill=fill)  # type: ignore[arg-type]


_ADMIN_ERRORS = {
    401: {"model": ErrorBody, "description": "missing X-API-Key"},
    403: {
        "model": ErrorBody,
        "description": "wrong X-API-Key, or the admin API is disabled: no"
        " PREDICTOR_ADMIN_API_KEY on the server (the detail says which)",
    },
    413: {"model": ErrorBody, "description": "request body too large"},
}


@router.post("/model/reload", response_model=ReloadResult, responses=_ADMIN_ERRORS)  # type: ignore[arg-type]
async def reload_model(service: ServiceDep, _: AdminDep) -> ReloadResult:
    """Reload champion and challenger from the registry now (admin). The new models load in the
    background and swap atomically; on failure the old ones keep serving and ``ok`` is false."""
    ok = await service.holder.reload(force=True)
    return ReloadResult(ok=ok, **info(service.holder))  # type: ignore[arg-type]
