"""Thin wrappers around the local `docker` CLI."""

from __future__ import annotations

import getpass
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
    return engine_problem() is None


def engine_problem() -> str | None:
    """None when `docker info` answers; else what is wrong and its fix."""
    try:
        proc = subprocess.run(["docker", "info"], capture_output=True, text=True)
    except FileNotFoundError:
        return ("no Docker engine: the docker CLI is not installed. Fix: run `make lab` as root "
                "(scripts/host-setup.sh installs docker.io and starts dockerd), or: "
                "sudo apt-get install -y docker.io")
    if proc.returncode == 0:
        return None
    if "permission denied" in proc.stderr.lower():
        user = getpass.getuser()
        return (f"the Docker engine runs but user {user} may not use it (permission denied on "
                f"its socket). Fix: sudo usermod -aG docker {user}, then log in again; or run as "
                "root")
    return ("no Docker engine answers on this machine (docker info: "
            f"{proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else 'failed'}). "
            "Fix: sudo systemctl start docker, or run `make lab` as root (it installs docker.io "
            "and starts dockerd)")


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
