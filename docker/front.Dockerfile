# The front: Flask under gunicorn's gevent workers. No torch, no models: a small image.
#   docker build -f docker/front.Dockerfile -t llm-queue-front .
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY requirements-front.txt ./
RUN pip install -r requirements-front.txt \
    && useradd --create-home --uid 1000 app

COPY app/ app/
COPY config/ config/
COPY wsgi.py gunicorn.conf.py ./

USER 1000
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2)"]
# REDIS_URL and the other settings of the README come from the environment.
CMD ["gunicorn", "-c", "gunicorn.conf.py"]
