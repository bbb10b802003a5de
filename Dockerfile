# syntax=docker/dockerfile:1
# The market service: `docker build -t market .` then `docker run -p 8000:8000 market`
# (infra/compose.yaml runs it with PostgreSQL and the whole monitoring stack).
#
# python:3.11-slim on Debian bookworm, whose postgresql-client is 15: `market backup` needs pg_dump/pg_restore
# of the server's major version or newer, and a newer pg_dump writes settings an older server rejects on
# restore. Running another PostgreSQL major? Install its client from apt.postgresql.org instead.

FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Dependencies first, so a code change does not reinstall them; the pinned versions come from constraints.txt.
COPY pyproject.toml constraints.txt README.md ./
COPY src ./src
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --upgrade pip \
    && /opt/venv/bin/pip install -c constraints.txt . \
    && /opt/venv/bin/pip check

FROM python:3.11-slim-bookworm
# The commit built (`docker build --build-arg GIT_SHA=$(git rev-parse HEAD) .`): Sentry's release becomes
# market@<version>+<sha>, so "first seen in release" tells builds of one version apart.
ARG GIT_SHA=""
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends postgresql-client \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 market \
    && useradd --system --uid 10001 --gid market --home-dir /app --shell /usr/sbin/nologin market \
    && mkdir -p /app/var /app/backups \
    && chown -R market:market /app
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MARKET_VAR_DIR=/app/var \
    MARKET_BUILD_SHA=$GIT_SHA \
    MARKET_PORT=8000
WORKDIR /app
# Numeric, so Kubernetes can verify runAsNonRoot; the same uid as infra/k8s/backup-cronjob.yaml.
USER 10001:10001
EXPOSE 8000
# An exception (refused, timeout, non-2xx) exits 1: unhealthy.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health/live' % os.environ.get('MARKET_PORT', '8000'), timeout=3)"]
CMD ["market", "serve", "--host", "0.0.0.0"]
