# Image for Herald's own processes (`herald worker`, `herald api`); Kafka runs from the
# official apache/kafka image (see docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY . .
# Docker copies the ownership of /data and the state folder into a new named volume
# mounted on them, so the non-root user can write to the volumes.
RUN pip install . \
    && useradd --system --create-home herald \
    && mkdir -p /data /var/lib/herald/state \
    && chown herald /data /var/lib/herald/state

USER herald
ENV HERALD_LANDING__DATA_DIR=/data \
    HERALD_CONTROL_DB_URL=sqlite:////data/control.db \
    HERALD_STATE_DIR=/var/lib/herald/state

CMD ["herald", "--help"]
