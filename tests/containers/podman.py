"""Building and running the project's images with podman, on machines without a Docker engine.

The flags follow what works on a sandboxed Linux host (see the README's container section):
``runc`` as the runtime, explicit ulimits, host networking. Where no image registry can be reached,
the base images are stand-ins built from Debian's packages (``docker/standins/``) on a Debian
image made with debootstrap, tagged with the names the Dockerfiles expect.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PODMAN = ["podman", "--runtime", "runc"]
LIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1000:1000"]
DEBIAN = "localhost/debian:bookworm"
MIRROR = os.environ.get("DEBIAN_MIRROR", "http://deb.debian.org/debian")
# Host files a build needs to reach the package registries as the host does (those that exist).
HOST_FILES = ["/etc/ssl/certs", "/etc/pip.conf", "/etc/xdg/pip", "/opt/wheels"]
STANDINS = {
    "docker.io/library/python:3.11-slim-bookworm": "docker/standins/python.Dockerfile",
    "docker.io/library/redis:7.4-alpine": "docker/standins/redis.Dockerfile",
}


def podman(*args: str, timeout: float = 1800, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*PODMAN, *args], capture_output=True, text=True, timeout=timeout, check=check
    )


def ensure_podman() -> None:
    """Install podman, runc and debootstrap from Debian's packages when they are missing."""
    if all(shutil.which(tool) for tool in ("podman", "runc", "debootstrap")):
        return
    subprocess.run(["apt-get", "update"], check=True, capture_output=True)
    subprocess.run(
        ["apt-get", "install", "-y", "podman", "runc", "debootstrap"],
        check=True,
        capture_output=True,
    )


def exists(image: str) -> bool:
    return podman("image", "exists", image, check=False).returncode == 0


def mounts() -> list[str]:
    args = []
    for path in HOST_FILES:
        if Path(path).exists():
            args += ["-v", f"{path}:{path}:ro"]
    return args


def ensure_base_images() -> list[str]:
    """Make sure the images the Dockerfiles start from are here: pulled, or else stand-ins.
    Returns what was done, one line each."""
    done = []
    for image, dockerfile in STANDINS.items():
        if exists(image):
            continue
        if podman("pull", image, timeout=60, check=False).returncode == 0:
            done.append(f"pulled {image}")
            continue
        if not exists(DEBIAN):
            started = time.monotonic()
            with tempfile.TemporaryDirectory() as rootfs:
                subprocess.run(
                    ["debootstrap", "--variant=minbase", "bookworm", rootfs, MIRROR],
                    check=True,
                    capture_output=True,
                )
                tar = subprocess.Popen(["tar", "-C", rootfs, "-c", "."], stdout=subprocess.PIPE)
                subprocess.run([*PODMAN, "import", "-", DEBIAN], stdin=tar.stdout, check=True)
                tar.wait()
            done.append(f"made {DEBIAN} with debootstrap in {time.monotonic() - started:.0f} s")
        build(dockerfile, image, host_files=False)  # apt over plain HTTP; its own certificates
        done.append(f"built the stand-in {image}")
    return done


def build(dockerfile: str, tag: str, *build_args: str, host_files: bool = True) -> float:
    """Build ``dockerfile`` from the repository root as ``tag``, with the host's certificates
    and pip configuration mounted (``host_files``); returns the seconds it took."""
    started = time.monotonic()
    args = [f"--build-arg={arg}" for arg in build_args] + (mounts() if host_files else [])
    result = podman(
        "build",
        "--network",
        "host",
        *LIMITS,
        *args,
        "-f",
        dockerfile,
        "-t",
        tag,
        str(ROOT),
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"building {dockerfile} failed:\n{result.stdout[-4000:]}{result.stderr[-4000:]}"
        )
    return time.monotonic() - started


def size_mb(image: str) -> float:
    out = podman("image", "inspect", image, "--format", "{{.Size}}").stdout.strip()
    return int(out) / 1e6


def run(
    name: str,
    image: str,
    env: dict[str, str],
    command: list[str] | None = None,
    volumes: list[str] = (),
) -> None:
    podman("rm", "-f", name, check=False)
    args = ["run", "-d", "--name", name, "--network", "host", *LIMITS]
    for key, value in env.items():
        args += ["-e", f"{key}={value}"]
    for volume in volumes:
        args += ["-v", volume]
    podman(*args, image, *(command or []))


def logs(name: str) -> str:
    result = podman("logs", name, check=False)
    return result.stdout + result.stderr


def stop(name: str, timeout: int = 70) -> int:
    """Stop ``name`` (SIGTERM, then SIGKILL after ``timeout`` s); returns its exit code."""
    podman("stop", "-t", str(timeout), name, timeout=timeout + 60, check=False)
    code = podman("inspect", name, "--format", "{{.State.ExitCode}}", check=False).stdout
    return int(code.strip() or -1)


def remove(*names: str) -> None:
    for name in names:
        podman("rm", "-f", name, check=False)
