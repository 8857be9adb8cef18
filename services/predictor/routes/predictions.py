"""Predictions: the newest, a window from the ring buffer, and on-demand scoring."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from services.common.schemas import SCHEMA_VERSION, SYMBOL_PATTERN, FeatureVector, Prediction, now
from services.predictor.api import (
    MAX_TIME,
    ErrorBody,
    PredictionList,
    PredictRequest,
    predict_body_schema,
)
from services.predictor.routes.deps import ServiceDep

if TYPE_CHECKING:
    from services.predictor.app import Service

router = APIRouter(tags=["predictions"])

#: The symbol a request without ``symbol`` asks about (the routes and the fast path alike).
DEFAULT_SYMBOL = "BTC"
SymbolQuery = Annotated[str, Query(pattern=SYMBOL_PATTERN, examples=[DEFAULT_SYMBOL])]
JSON = "application/json"


_SYMBOL = re.compile(SYMBOL_PATTERN)
#: The hot path takes no injected dependencies (they cost as much as the rest of the request);
#: its one parameter is checked here and documented here.
_LATEST_PARAMS = {
    "parameters": [
        {
            "name": "symbol",
            "in": "query",
            "required": False,
            "schema": {"type": "string", "pattern": SYMBOL_PATTERN, "default": DEFAULT_SYMBOL},
        }
    ]
}


@router.get(
    "/predictions/latest",
    response_model=Prediction,
    responses={
        404: {"model": ErrorBody, "description": "no prediction for this symbol yet"},
        422: {"description": "invalid symbol"},
    },
    openapi_extra=_LATEST_PARAMS,
)
async def latest(request: Request) -> Response:
    """The newest champion prediction for ``symbol`` (served pre-encoded from memory)."""
    symbol = request.query_params.get("symbol", DEFAULT_SYMBOL)
    if not _SYMBOL.match(symbol):
        msg = f"String should match pattern '{SYMBOL_PATTERN}'"
        detail = [{"type": "string_pattern_mismatch", "loc": ["query", "symbol"], "msg": msg}]
        return JSONResponse({"detail": detail}, status_code=422)
    body = request.app.state.service.ring.latest_json(symbol)
    if body is None:
        raise HTTPException(404, f"no prediction for {symbol} yet")
    return Response(body, media_type=JSON)


@router.get("/predictions", response_model=PredictionList)
async def window(
    service: ServiceDep,
    symbol: SymbolQuery = DEFAULT_SYMBOL,
    since: Annotated[int | None, Query(ge=0, le=MAX_TIME, description="feature time >=")] = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 100,
) -> Response:
    """Recent champion predictions from the in-memory ring, oldest first: the first ``limit``
    at or after ``since``, or the newest ``limit`` without it."""
    preds = service.ring.query_json(symbol, since, limit)
    items = b",".join(preds)
    head = f'{{"symbol":"{symbol}","count":{len(preds)},"predictions":['.encode()
    return Response(head + items + b"]}", media_type=JSON)


_PREDICT_ERRORS = {
    400: {"model": ErrorBody, "description": "body is not decodable (e.g. not UTF-8)"},
    413: {"model": ErrorBody, "description": "request body too large"},
    409: {"model": ErrorBody, "description": "feature_version differs from the model's"},
    503: {"model": ErrorBody, "description": "no champion model loaded yet"},
}


#: ``/predict`` parses its body itself (pydantic's JSON parser in one step is several times
#: faster than FastAPI's decode-then-validate); the spec still documents the body.
_PREDICT_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": predict_body_schema()}},
    }
}


def body_errors(exc: ValidationError) -> list[dict[str, Any]]:
    """FastAPI-style 422 details (``loc`` starts with ``body``), JSON-safe for any input."""
    errors = exc.errors(include_url=False, include_context=False, include_input=False)
    return [{"type": e["type"], "loc": ["body", *e["loc"]], "msg": e["msg"]} for e in errors]


async def predict_answer(service: Service, raw: bytes) -> bytes | Response:
    """The answer to a ``/predict`` body: the prediction's JSON (200), or the error response.

    One definition for the route and for :class:`~services.predictor.middleware.PredictFastPath`
    (which serves the same answers before routing): the body is validated in one step from the
    raw bytes, checked against the champion, then scored with whatever else is waiting."""
    try:
        req = PredictRequest.model_validate_json(raw)
    except ValidationError as exc:
        return JSONResponse({"detail": body_errors(exc)}, status_code=422)
    model = service.holder.models.champion
    if model is None:
        msg = f"no champion model loaded ({service.holder.last_error})"
        return JSONResponse({"detail": msg}, status_code=503)
    b = model.bundle
    if req.feature_version != b.feature_version:
        msg = f"feature_version {req.feature_version!r} != model's {b.feature_version!r}"
        return JSONResponse({"detail": msg}, status_code=409)
    features = req.features
    if not features.keys() >= model.feature_set:
        detail = [
            {"type": "missing", "loc": ["body", "features", n], "msg": "Field required"}
            for n in b.feature_names
            if n not in features
        ]
        return JSONResponse({"detail": detail}, status_code=422)
    # every value was checked by PredictRequest, against FeatureVector's own constraints
    fv = FeatureVector.trusted(
        {
            "schema_version": SCHEMA_VERSION,
            "symbol": req.symbol,
            "time": req.time if req.time is not None else int(now()) // 60 * 60,
            "feature_version": req.feature_version,
            "warm": True,
            "features": features,
            "ingested_at": None,
            "emitted_at": now(),
        }
    )
    return await service.batcher.submit(model, fv)


@router.post(
    "/predict",
    response_model=Prediction,
    responses={422: {"description": "invalid body (field-level details)"}, **_PREDICT_ERRORS},  # type: ignore[dict-item]
    openapi_extra=_PREDICT_BODY,
)
async def predict(request: Request) -> Response:
    """Score one feature vector (a ``PredictRequest``) with the champion. Bad input and missing
    features give 422 (field-level), a different ``feature_version`` 409. Concurrent calls are
    scored in one XGBoost call. (Served before routing by ``PredictFastPath`` when the body's
    length is known; this route answers the rest, with the same function.)"""
    answer = await predict_answer(request.app.state.service, await request.body())
    return Response(answer, media_type=JSON) if isinstance(answer, bytes) else answer
