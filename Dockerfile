# Image for Herald's own processes (`herald worker`, `herald api`); Kafka runs from the
# official apache/kafka image (see docker-compose.yml).
# The wheel is built with the domain logic compiled by mypyc, which needs a C compiler;
# the image that runs it does not.
FROM python:3.11-slim AS wheel
RUN apt-get update \
    && apt-get install --yes --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN HERALD_COMPILE=1 pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY . .
COPY --from=wheel /wheels /wheels
# Docker copies the ownership of /data and the state folder into a new named volume
# mounted on them, so the non-root user can write to the volumes.
RUN pip install /wheels/*.whl \
    && useradd --system --create-home herald \
    && mkdir -p /data /var/lib/herald/state \
    && chown herald /data /var/lib/herald/state

USER herald
ENV HERALD_LANDING__DATA_DIR=/data \
    HERALD_CONTROL_DB_URL=sqlite:////data/control.db \
    HERALD_STATE_DIR=/var/lib/herald/state

CMD ["herald", "--help"]
