# The cxstream worker image: `docker build -t cxstream .`
#
# Runs `cxstream worker` as an unprivileged user. Configure it with the
# CXSTREAM_* environment variables (docs/configuration.md); its local state
# (checkpoints) lives in CXSTREAM_DATADIR, which wants a persistent volume per
# worker (docs/operations.md).

FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/cxstream
WORKDIR /src

# Dependencies first, from pyproject.toml alone, so that a change to the code
# does not invalidate this (slow) layer. Every dependency ships manylinux
# wheels for CPython 3.11: no compiler is needed.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && /opt/cxstream/bin/pip install -r /tmp/requirements.txt

COPY README.md ./
COPY cxstream ./cxstream
RUN /opt/cxstream/bin/pip install --no-deps . \
    && /opt/cxstream/bin/cxstream --help > /dev/null


FROM python:3.11-slim

ARG UID=10001
RUN groupadd --system --gid "${UID}" cxstream \
    && useradd --system --uid "${UID}" --gid cxstream --home-dir /var/lib/cxstream \
        --no-create-home --shell /usr/sbin/nologin cxstream \
    && mkdir -p /var/lib/cxstream/data \
    && chown -R cxstream:cxstream /var/lib/cxstream

COPY --from=build /opt/cxstream /opt/cxstream

# The data directory is created above, owned by the worker's user, so a fresh
# named volume mounted there inherits that ownership.
ENV PATH=/opt/cxstream/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    CXSTREAM_DATADIR=/var/lib/cxstream/data \
    CXSTREAM_METRICS_PORT=9108 \
    CXSTREAM_METRICS_BIND=0.0.0.0

USER cxstream
WORKDIR /var/lib/cxstream

# /metrics (Prometheus) and /healthz
EXPOSE 9108

# /healthz answers 200 once the worker has joined its consumer group and 503
# before; start-period covers the group join and a rebuild of local state.
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % (os.environ.get('CXSTREAM_METRICS_PORT') or '9108'), timeout=4)"]

CMD ["cxstream", "worker"]
