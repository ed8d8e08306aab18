"""Checks `swarmlab up` makes before it touches anything, each failure naming its fix.

Engine, root, debootstrap and subnet problems are found where they arise (docker_cli,
image, provider); this module adds the one no other place sees: a lab of the same name
already up from another spec.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from swarmlab.containerlab import docker_cli
from swarmlab.containerlab.provider import LAB_LABEL, NODE_LABEL, LabNames, ProviderError
from swarmlab.model.spec import LabSpec
from swarmlab.model.state import lab_state_dir, state_root

SPEC_RECORD = "spec-path"  # .state/<lab>/spec-path: the spec file the lab was brought up from


def recorded_spec(lab: str) -> Path | None:
    """The spec file `swarmlab up` last brought this lab up from (in this checkout's state)."""
    record = state_root() / lab / SPEC_RECORD
    return Path(record.read_text().strip()) if record.is_file() else None


def record_spec(spec: LabSpec, spec_path: Path) -> None:
    (lab_state_dir(spec.name) / SPEC_RECORD).write_text(f"{spec_path.resolve()}\n")


def check_same_name(spec: LabSpec, spec_path: Path) -> None:
    """ProviderError when node containers of a lab named like this spec's run from another spec.

    Another spec: the lab was brought up here from another file, or (brought up elsewhere)
    it has nodes this spec does not name or a node at another address. Editing the spec a
    lab was brought up from and running up again is not refused.
    """
    containers = docker_cli.inspect(*docker_cli.ids("container", f"{LAB_LABEL}={spec.name}"))
    if not containers:
        return
    here = spec_path.resolve()
    fix = (f"Fix: `swarmlab down --spec {shlex.quote(str(spec_path))}` removes lab {spec.name} "
           f"(down goes by the lab's name), or give this spec another `name:`")
    before = recorded_spec(spec.name)
    if before is not None and before != here:
        raise ProviderError(
            f"lab {spec.name} is already up from another spec ({before}); {spec_path} has the "
            f"same name: `swarmlab up` would take over its nodes. {fix}"
        )
    if before is not None:
        return
    network = LabNames(spec.name).network
    wanted = {n.name: n.ip for n in spec.nodes}
    running = {}
    for info in containers:
        node = ((info.get("Config") or {}).get("Labels") or {}).get(NODE_LABEL, "?")
        nets = (info.get("NetworkSettings") or {}).get("Networks") or {}
        running[node] = (nets.get(network) or {}).get("IPAddress", "")
    odd = sorted(n for n, ip in running.items() if wanted.get(n) != ip)
    if odd:
        shown = ", ".join(f"{n} {running[n] or '(no address)'}" for n in odd)
        raise ProviderError(
            f"lab {spec.name} is already up with node(s) this spec ({spec_path}) does not have "
            f"at those addresses: {shown}: another spec of the same name. {fix}"
        )
