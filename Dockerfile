# syntax=docker/dockerfile:1.7
# One image for every volstream service; the command picks the service:
#   python -m services.ingestor | services.validator | services.featurizer | services.predictor
# Build: docker build -t volstream:dev .   (CI: .github/workflows/release.yml)
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

# --- build: resolve the locked dependencies into /app/.venv with uv (no compiler needed: wheels) ---
FROM ${PYTHON_IMAGE} AS build
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN pip install --no-cache-dir uv==0.13.9
WORKDIR /app
# Dependencies first (a cached layer while only the source changes).
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY services ./services
COPY trainer ./trainer
COPY monitoring ./monitoring
COPY bench ./bench
RUN uv sync --frozen --no-dev --no-editable

# --- runtime: the venv and nothing else; non-root ---
FROM ${PYTHON_IMAGE} AS runtime
# libgomp1: XGBoost's OpenMP runtime (the only native library the wheels do not bundle).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 volstream \
    && useradd --system --uid 10001 --gid volstream --home-dir /app --shell /usr/sbin/nologin volstream \
    && mkdir -p /data \
    && chown volstream:volstream /data
WORKDIR /app
COPY --from=build --chown=volstream:volstream /app/.venv /app/.venv
COPY --chown=volstream:volstream infra/docker/healthcheck.py /app/healthcheck.py
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DATA_DIR=/data \
    VAR_DIR=/data/var \
    METRICS_HOST=0.0.0.0 \
    PREDICTOR_HOST=0.0.0.0 \
    HEALTHCHECK_URL="" \
    HOME=/data
USER 10001:10001
# The working directory must be writable: Faust keeps its table state under ./<app id>-data.
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8000 9101 9102 9103
# Probes HEALTHCHECK_URL, else the service's /metrics on <COMPONENT>_METRICS_PORT (the predictor sets /health).
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "/app/healthcheck.py"]
CMD ["python", "-m", "services.predictor"]
