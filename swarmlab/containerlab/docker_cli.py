"""Thin wrappers around the local `docker` CLI."""

from __future__ import annotations

import json
import subprocess


class DockerError(RuntimeError):
    """A docker CLI call failed."""


def docker(*args: str, check: bool = True, input: str | None = None) -> str:
    """Run `docker ARGS` and return stdout; raise DockerError with stderr on failure."""
    try:
        proc = subprocess.run(
            ["docker", *args], capture_output=True, text=True, input=input
        )
    except FileNotFoundError:
        raise DockerError("the docker CLI is not installed (apt-get install -y docker.io)") from None
    if check and proc.returncode != 0:
        raise DockerError(f"docker {' '.join(args[:3])}: {proc.stderr.strip()}")
    return proc.stdout


def engine_available() -> bool:
    return subprocess.run(["docker", "info"], capture_output=True).returncode == 0


def image_exists(tag: str) -> bool:
    return bool(docker("images", "-q", tag).strip())


def ids(kind: str, label: str) -> list[str]:
    """IDs/names of containers, networks or volumes carrying a label filter."""
    if kind == "container":
        out = docker("ps", "-aq", "--filter", f"label={label}")
    elif kind == "network":
        out = docker("network", "ls", "-q", "--filter", f"label={label}")
    else:
        out = docker("volume", "ls", "-q", "--filter", f"label={label}")
    return out.split()


def inspect(*names: str) -> list[dict]:
    if not names:
        return []
    return json.loads(docker("inspect", *names))
