"""Package installs for both package families (apt with a bounded lock wait, pacman full sync).

apt: pyinfra's `apt.packages`, called only when a package is missing (with `update=True` alone
it refreshes stale lists and reports a change on a no-change run). pacman: hand-written, as
`pacman.packages(update=True)` is a partial upgrade (`-Sy` then `-S`) Arch forbids.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from weakref import WeakKeyDictionary

from pyinfra import host
from pyinfra.api import FactBase, deploy, operation
from pyinfra.api.operation import OperationMeta
from pyinfra.context import ctx_state
from pyinfra.facts.deb import DebPackages
from pyinfra.facts.pacman import PacmanPackages
from pyinfra.operations import apt, files

from swarmlab.model.distros import PACKAGE_FAMILIES, Distro
from swarmlab.provision.context import template
from swarmlab.provision.factcache import Request
from swarmlab.provision.prefetch import file_facts, register_facts
from swarmlab.provision.shell import argv

APT_CACHE_TIME = 3600  # apt lists younger than this are not updated again (idempotent re-runs)


@deploy("Package lock wait")
def package_lock_wait(src: str, dest: str) -> None:
    """Make every package call wait (bounded) for a lock held by another process."""
    files.put(
        name="package calls wait for the package lock (unattended-upgrades, cloud-init)",
        src=template(src),
        dest=dest,
        mode="0644",
    )


# per pyinfra State (weak), the hosts that already got the lock-wait setting in this run
_LOCK_WAIT_DECLARED: WeakKeyDictionary = WeakKeyDictionary()


def install_packages(name: str, packages: Iterable[str], distro: Distro) -> OperationMeta:
    """Install what is missing with the family's installer (INSTALLERS), after its lock-wait
    setting (PACKAGE_FAMILIES) once per host and run."""
    lock_wait = PACKAGE_FAMILIES[distro.family].lock_wait
    if lock_wait:
        declared = _LOCK_WAIT_DECLARED.setdefault(ctx_state.get(), set())
        if host.name not in declared:  # once per host and run, before its first install
            declared.add(host.name)
            package_lock_wait(*lock_wait)
    return INSTALLERS[distro.family].install(name=name, packages=list(packages))


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


@operation()
def pacman_sync_install(packages: list[str]):
    """Install missing packages with a full sync (`-Syu`): Arch/Manjaro forbid partial upgrades."""
    installed = host.get_fact(PacmanPackages)
    missing = [p for p in packages if p not in installed]
    if not missing:
        host.noop(f"installed: {', '.join(packages)}")
        return
    yield argv("pacman", "-Syu", "--noconfirm", "--needed", *missing)


@dataclass(frozen=True)
class Installer:
    """pyinfra's fact of installed packages and swarmlab's install operation for a family."""

    installed: type[FactBase]
    install: Callable[..., OperationMeta]


INSTALLERS: dict[str, Installer] = {
    "apt": Installer(DebPackages, apt_install),
    "pacman": Installer(PacmanPackages, pacman_sync_install),
}


def package_facts(distro: Distro) -> list[Request]:
    """The family's installed-packages fact and its lock-wait file (PACKAGE_FAMILIES)."""
    lock_wait = PACKAGE_FAMILIES[distro.family].lock_wait
    return [(INSTALLERS[distro.family].installed, {}), *(file_facts(lock_wait[1]) if lock_wait else [])]


register_facts(__name__, 10, lambda spec, node, distro: package_facts(distro))
