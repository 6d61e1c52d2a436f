# syntax=docker/dockerfile:1.7
# One image for every Civique process; its command picks the service:
#   python -m services.<name>      one service (gateway, missions, moderation, volunteers, matching, notifications, web)
#   python -m services             the whole platform in one process
#   python -m shared.runtime.topics create    the topics, from their declaration (a one-shot)
# No build tool in the final stage, a non-root user, nothing written outside /tmp (CIVIQUE_DATA_DIR): the root
# filesystem can be read-only. Settings come from CIVIQUE_* variables (README, "Settings").

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG NODE_IMAGE=node:20-bookworm-slim

# The website's front-end packages (DSFR, htmx, Leaflet) as web/package-lock.json locks them; the DSFR's install
# script reads the licence acceptance in web/.dsfr.yml (ADR 0012). Nothing is built: the site serves dist/ as is.
FROM ${NODE_IMAGE} AS web-assets
WORKDIR /build/web
COPY web/package.json web/package-lock.json web/.dsfr.yml ./
RUN npm ci --omit=dev --no-audit --no-fund --loglevel=error

# The locked Python environment, without the dev group; uv from PyPI, as scripts/bootstrap installs it.
FROM ${PYTHON_IMAGE} AS python-env
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never UV_PROJECT_ENVIRONMENT=/app/.venv \
    UV_CACHE_DIR=/uv-cache
RUN pip install --no-cache-dir --disable-pip-version-check "uv>=0.5,<1"
WORKDIR /app
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/uv-cache uv sync --frozen --no-dev --no-install-project
COPY shared ./shared
COPY services ./services
# bytecode now: a read-only filesystem at run time cannot take it
RUN /app/.venv/bin/python -m compileall -q shared services

FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 civique \
    && useradd --system --uid 10001 --gid civique --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin civique
WORKDIR /app
COPY --from=python-env /app/.venv ./.venv
COPY --from=python-env /app/shared ./shared
COPY --from=python-env /app/services ./services
COPY --from=web-assets /build/web/node_modules ./web/node_modules
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    CIVIQUE_BACKEND=kafka+mongo \
    CIVIQUE_HOST=0.0.0.0 \
    CIVIQUE_PORT=8000 \
    CIVIQUE_DATA_DIR=/tmp/civique
USER 10001:10001
EXPOSE 8000
# the process's own readiness: stores, bus, consumer groups, relay and jobs (Kubernetes uses its own probes)
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 CMD ["python", "-m", "shared.runtime.probe", "/readyz"]
# SIGTERM: uvicorn stops taking requests, the consumers finish their batch and commit, the relay drains, then exit
STOPSIGNAL SIGTERM
CMD ["python", "-m", "services"]
