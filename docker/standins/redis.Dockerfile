# A stand-in for redis:7.4-alpine, for machines that reach no image registry: Debian bookworm's
# Redis server (7.0), `redis-server` and `redis-cli` on the PATH as the official image has them.
#   podman build -f docker/standins/redis.Dockerfile -t docker.io/library/redis:7.4-alpine .
FROM localhost/debian:bookworm

# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends redis-server \
    && rm -rf /var/lib/apt/lists/*
# hadolint ignore=DL3066
USER redis
CMD ["redis-server", "--protected-mode", "no"]
