"""What a lab's nodes run on, and how to ask each kind for its machines' state.

One row per kind, tried in order, the first whose `detect` is true wins: node containers
(`swarmlab up`), Vagrant VMs, else the spec's addresses are plain SSH hosts. A kind answers
the state of each node's machine (`machines`: node -> word, e.g. running, exited, absent) and
the command that brings the lab up (`fix`). Reachability over SSH is the same for every kind
(swarmlab.control.reach). A new provider is one more row.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from swarmlab.model.spec import LabSpec
from swarmlab.model.state import state_root

NOT_RUNNING = ("absent", "exited", "created", "paused", "dead", "not created", "poweroff",
               "shutoff", "stopped", "aborted", "saved")


@dataclass(frozen=True)
class Kind:
    name: str  # shown in `status`'s header
    detect: Callable[[LabSpec], bool]
    machines: Callable[[LabSpec], dict[str, str]]  # node -> state; {} when the kind cannot tell
    fix: Callable[[LabSpec, str], str]  # (spec, " --spec PATH" or "") -> the command to run


# ------------------------------------------------------------------ node containers


def _container_detect(spec: LabSpec) -> bool:
    from swarmlab.containerlab import docker_cli, provider
    from swarmlab.control.inventory import CONNECTION_FILE

    if (state_root() / spec.name / CONNECTION_FILE).is_file():
        return True
    return docker_cli.engine_available() and bool(
        docker_cli.ids("container", f"{provider.LAB_LABEL}={spec.name}"))


def _container_machines(spec: LabSpec) -> dict[str, str]:
    from swarmlab.containerlab import docker_cli, provider

    if not docker_cli.engine_available():
        return {n.name: "unknown (no Docker engine answers)" for n in spec.nodes}
    found = {((c.get("Config") or {}).get("Labels") or {}).get(provider.NODE_LABEL): c
             for c in provider.lab_containers(spec.name)}
    return {n.name: found[n.name]["State"]["Status"] if n.name in found else "absent"
            for n in spec.nodes}


# ------------------------------------------------------------------ Vagrant


def vagrant_dotfiles(spec: LabSpec) -> list[Path]:
    """Where Vagrant may keep this lab's machines: VAGRANT_DOTFILE_PATH, the lab's state
    (`vagrant-prep`'s docker provider), the Vagrantfile's `.vagrant`."""
    from swarmlab.control.inventory import vagrant_dotfile

    paths = [state_root() / spec.name / "vagrant", vagrant_dotfile()]
    if os.environ.get("VAGRANT_DOTFILE_PATH"):
        paths.insert(0, Path(os.environ["VAGRANT_DOTFILE_PATH"]))
    return paths


def _vagrant_ids(spec: LabSpec) -> dict[str, str]:
    """node -> Vagrant provider of each machine Vagrant has created for a spec node."""
    out: dict[str, str] = {}
    for dotfile in vagrant_dotfiles(spec):
        for node in spec.nodes:
            for ident in (dotfile / "machines" / node.name).glob("*/id"):
                out.setdefault(node.name, ident.parent.name)
    return out


def _vagrant_machines(spec: LabSpec) -> dict[str, str]:
    from swarmlab.control.inventory import spec_path, vagrant_root

    created = _vagrant_ids(spec)
    dotfile = next((d for d in vagrant_dotfiles(spec) if d.is_dir()), None)
    if dotfile is None:  # Vagrant made no machine: asking it would create its state dir
        return {n.name: "not created" for n in spec.nodes}
    env = dict(os.environ, SWARMLAB_SPEC=str(spec_path()), VAGRANT_DOTFILE_PATH=str(dotfile))
    try:
        import vagrant  # python-vagrant

        v = vagrant.Vagrant(str(vagrant_root()), env=env, quiet_stderr=True, quiet_stdout=True)
        states = {s.name: s.state for s in v.status()}
    except Exception:  # noqa: BLE001 - vagrant missing or refusing: say what the files say
        states = {}
    return {n.name: states.get(n.name) or ("created" if n.name in created else "not created")
            for n in spec.nodes}


# ------------------------------------------------------------------ table

KINDS: tuple[Kind, ...] = (
    Kind("container lab", _container_detect, _container_machines,
         lambda spec, args: f"swarmlab up{args}"),
    Kind("libvirt VMs (swarmlab vm)", lambda spec: "libvirt" in _vagrant_ids(spec).values(), _vagrant_machines,
         lambda spec, args: f"swarmlab vm up{args}"),
    Kind("Vagrant VMs", lambda spec: bool(_vagrant_ids(spec)), _vagrant_machines,
         lambda spec, args: f"vagrant up (SWARMLAB_SPEC names the spec), then swarmlab deploy{args}"),
    Kind("SSH hosts", lambda spec: True, lambda spec: {}, lambda spec, args: _hosts_fix(spec, args)),
)


def _hosts_fix(spec: LabSpec, args: str) -> str:
    """Nothing says what the nodes run on (no containers, no Vagrant machines, no state): a lab
    never brought up here, or hosts of one's own."""
    return (f"swarmlab up{args} (a container lab); your own hosts or VMs: start them, check that "
            f"`ssh {spec.nodes[0].ip}` works, then swarmlab deploy{args}")


def kind_of(spec: LabSpec) -> Kind:
    return next(kind for kind in KINDS if kind.detect(spec))
