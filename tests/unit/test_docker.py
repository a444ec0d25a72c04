"""docker/: what can be checked without a Docker engine (none runs here). The images are not
built by the suite; the Dockerfiles are linted, and the compose file is checked against the
registry and the Dockerfiles it builds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from config.registry import DEFAULT_MODELS

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
DOCKERFILES = sorted(DOCKER.glob("**/*.Dockerfile"))


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfiles_pass_hadolint(dockerfile):
    hadolint = Path(sys.executable).parent / "hadolint"
    result = subprocess.run(
        [str(hadolint), "--no-color", "--failure-threshold", "info", str(dockerfile)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfiles_copy_files_that_exist(dockerfile):
    for line in dockerfile.read_text().splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), f"{dockerfile.name}: {source} is missing"


def test_compose_runs_redis_the_front_and_a_worker_per_default_model(compose):
    services = compose["services"]
    assert {"redis", "front", "nginx"} <= set(services)
    cpu_workers = {
        s["environment"]["MODELS"]
        for name, s in services.items()
        if name.startswith("worker-") and "profiles" not in s
    }
    assert cpu_workers == {spec.name for spec in DEFAULT_MODELS}
    for name, service in services.items():
        if name not in ("redis", "nginx"):  # every part of ours talks to the same Redis
            assert service["environment"]["REDIS_URL"] == "redis://redis:6379/0", name
        build = service.get("build")
        if build:
            assert (DOCKER / build["context"] / build["dockerfile"]).is_file()


def test_compose_reserves_a_gpu_for_the_cuda_worker(compose):
    cuda = compose["services"]["worker-cuda-smollm2-135m-instruct"]
    assert cuda["build"]["args"]["DEVICE"] == "cuda"
    (device,) = cuda["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert "ARG DEVICE=cpu" in (DOCKER / "worker.Dockerfile").read_text()


def test_nginx_passes_server_sent_events_through_unbuffered():
    conf = (DOCKER / "nginx.conf").read_text()
    directives = {line.split("#")[0].strip() for line in conf.splitlines()}
    assert "proxy_buffering off;" in directives
    assert "proxy_http_version 1.1;" in directives
