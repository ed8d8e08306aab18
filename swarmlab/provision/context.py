"""The spec and node a deploy runs for (from the inventory's host data), the host's distro and
the distro check every deploy starts with."""

from __future__ import annotations

import functools
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from weakref import WeakKeyDictionary

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.api.operation import OperationMeta
from pyinfra.context import ctx_state
from pyinfra.facts.server import LinuxDistribution
from pyinfra.operations import files

from swarmlab.model.distros import DISTROS, Distro, distro_from_os_release
from swarmlab.model.shipped import shipped
from swarmlab.model.spec import LabSpec, NodeSpec, load_spec
from swarmlab.provision import factcache
from swarmlab.provision.ops import fail
from swarmlab.provision.prefetch import lab_facts

TEMPLATES = shipped("templates")  # the repo's templates/, shipped in the wheel as swarmlab/templates/


@lru_cache(maxsize=8)
def _spec(path: str) -> LabSpec:
    return load_spec(path)


def lab_spec() -> LabSpec:
    """The spec named by the host's `lab_spec_path` data (set by inventories/lab.py)."""
    path = host.data.get("lab_spec_path")
    if not path:
        raise RuntimeError(
            f"{host.name}: no lab_spec_path in host data; use inventories/lab.py as inventory"
        )
    return _spec(str(Path(path)))


def lab_node() -> NodeSpec:
    return lab_spec().node(host.data.lab_node)


def template(name: str) -> str:
    return str(TEMPLATES / name)


# per pyinfra State (weak), then host name: the OS does not change during a run, and every
# sub-deploy asks for it
_DISTROS: WeakKeyDictionary = WeakKeyDictionary()


def host_distro() -> Distro | None:
    """The supported distro the host really runs (from /etc/os-release), or None."""
    known = _DISTROS.setdefault(ctx_state.get(), {})
    if host.name not in known:
        meta = host.get_fact(LinuxDistribution).get("release_meta") or {}
        known[host.name] = distro_from_os_release(
            meta.get("ID", ""), meta.get("VERSION_ID", ""), meta.get("VERSION_CODENAME", "")
        )
    return known[host.name]


def checked_distro() -> Distro | None:
    """The host's distro if supported and as the spec says; else fail the host and None."""
    node = lab_node()
    distro = host_distro()
    if distro is None:
        fail(
            name="Check the distro",
            message=f"{host.name}: unsupported OS (not one of {', '.join(DISTROS)}); "
            "swarmlab cannot provision it",
        )
        return None
    if distro.key != node.distro:
        fail(
            name="Check the distro",
            message=f"{host.name}: the spec says distro {node.distro} but the host runs "
            f"{distro.key}; fix nodes[].distro in the spec",
        )
        return None
    return distro


def declare_lab_facts() -> None:
    """Declare the lab's facts on this host once per run (every sub-deploy calls this first):
    those of every concern this run imported (prefetch's registry)."""
    if factcache.declared():
        return
    node = lab_node()
    distro = DISTROS.get(node.distro)
    if distro is None:
        return
    factcache.declare(lab_facts(lab_spec(), node, distro))


def lab_deploy(title: str) -> Callable[[Callable[[LabSpec, NodeSpec, Distro], None]], Callable]:
    """`@deploy(title)` for a sub-deploy: it declares the lab's facts (one batch per node),
    checks the distro (the host fails when it is wrong) and calls the function with the spec,
    this node and its distro."""

    def wrap(fn: Callable[[LabSpec, NodeSpec, Distro], None]) -> Callable:
        @deploy(title)
        @functools.wraps(fn)
        def run() -> None:
            declare_lab_facts()
            distro = checked_distro()
            if distro is not None:
                fn(lab_spec(), lab_node(), distro)

        return run

    return wrap


def render(name: str, src: str, dest: str, mode: str = "0644", **options) -> OperationMeta:
    """`files.template` of one of swarmlab's templates (`options`: owner and template data)."""
    return files.template(name=name, src=template(src), dest=dest, mode=mode, **options)
