# A stand-in for python:3.11-slim-bookworm, for machines that reach no image registry: the same
# Debian release, its own Python 3.11 as `python`, and `pip`, on the PATH as the official image
# has them. Built on a local Debian image (debootstrap + podman import; see tests/containers/).
#   podman build -f docker/standins/python.Dockerfile -t docker.io/library/python:3.11-slim-bookworm .
FROM localhost/debian:bookworm

# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /usr/local/python
ENV PATH=/usr/local/python/bin:$PATH
CMD ["python"]
