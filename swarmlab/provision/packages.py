"""Package installs for both package families (apt with a bounded lock wait, pacman full sync)."""

from __future__ import annotations

from collections.abc import Iterable
from weakref import WeakKeyDictionary

from pyinfra import host
from pyinfra.api import deploy, operation
from pyinfra.api.operation import OperationMeta
from pyinfra.context import ctx_state
from pyinfra.facts.deb import DebPackages
from pyinfra.operations import apt, files

from swarmlab.distros import Distro
from swarmlab.provision.context import template
from swarmlab.provision.ops import pacman_sync_install

APT_CACHE_TIME = 3600  # apt lists younger than this are not updated again (idempotent re-runs)
APT_LOCK_FILE = "/etc/apt/apt.conf.d/90swarmlab-lock-timeout"


@deploy("Apt lock wait")
def apt_lock_wait() -> None:
    """Make every apt/dpkg call wait (bounded) for a lock held by another process."""
    files.put(
        name="apt waits for the dpkg lock (unattended-upgrades, cloud-init)",
        src=template("apt-lock-timeout.conf"),
        dest=APT_LOCK_FILE,
        mode="0644",
    )


# per pyinfra State (weak), the hosts that already got the apt lock setting in this run
_LOCK_WAIT_DECLARED: WeakKeyDictionary = WeakKeyDictionary()


def install_packages(name: str, packages: Iterable[str], distro: Distro) -> OperationMeta:
    """Install what is missing: apt (lists at most APT_CACHE_TIME old) or a pacman full sync."""
    if distro.family == "apt":
        declared = _LOCK_WAIT_DECLARED.setdefault(ctx_state.get(), set())
        if host.name not in declared:  # once per host and run, before its first apt call
            declared.add(host.name)
            apt_lock_wait()
        return apt_install(name=name, packages=list(packages))
    return pacman_sync_install(name=name, packages=list(packages))


def missing_debs(packages: list[str], installed: dict[str, list[str]]) -> list[str]:
    """The packages (`name` or `name=version`) that are not installed as asked."""
    out = []
    for package in packages:
        name, _, version = package.partition("=")
        have = installed.get(name) or []
        if not have or (version and version not in have):
            out.append(package)
    return out


@operation()
def apt_install(packages: list[str]):
    """Install what is missing; refresh the apt lists (at most APT_CACHE_TIME old) only then.

    `apt.packages(update=True, cache_time=...)` alone refreshes stale lists on every run,
    which reports a change a day later although nothing needed installing.
    """
    missing = missing_debs(packages, host.get_fact(DebPackages))
    if not missing:
        host.noop(f"installed: {', '.join(packages)}")
        return
    yield from apt.packages._inner(packages=packages, update=True, cache_time=APT_CACHE_TIME,
                                   no_recommends=True)
