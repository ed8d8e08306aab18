"""Small pyinfra operations swarmlab needs and pyinfra lacks."""

from __future__ import annotations

from pyinfra import host, logger
from pyinfra.api import FunctionCommand, operation

from swarmlab.deploy.facts import UfwAddedRules, UfwStatus
from swarmlab.deploy.shell import argv


@operation(is_idempotent=False)
def fail(message: str):
    """Fail this host with a clear message (nothing else runs on it afterwards)."""

    def _fail(state, host) -> bool:
        host.log_styled(message, fg="red", log_func=logger.error)
        return False

    yield FunctionCommand(_fail, (), {})


@operation()
def ufw_rules(rules: list[str]):
    """Add the ufw rules (as `ufw show added` prints them, without `ufw`) that are missing.

    One operation, one read of ufw's rules: ufw is a Python program and slow to start.
    """
    added = host.get_fact(UfwAddedRules)
    for rule in rules:
        if rule not in added:
            yield argv("ufw", *rule.split())


@operation()
def ufw_enabled():
    """Enable ufw (and at boot) unless it is active."""
    if not host.get_fact(UfwStatus):
        yield "ufw --force enable"


@operation()
def pacman_sync_install(packages: list[str]):
    """Install missing packages with a full sync (`-Syu`): Arch/Manjaro forbid partial upgrades."""
    from pyinfra.facts.pacman import PacmanPackages

    installed = host.get_fact(PacmanPackages)
    missing = [p for p in packages if p not in installed]
    if missing:
        yield argv("pacman", "-Syu", "--noconfirm", "--needed", *missing)
