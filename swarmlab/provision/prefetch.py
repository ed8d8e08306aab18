"""The facts a lab deploy asks on a node, declared up front: read as one batch (factcache).

Each concern module registers, when it is imported, what its operations read on a run that
finds the node as the spec says (the no-change run): pyinfra's own operations' facts
(`files.template` -> the parent `Directory`, `File`, `Sha1File`; `systemd.service` ->
`SystemdStatus`, `SystemdEnabled`; ...) and swarmlab's (`register_facts`). Every sub-deploy
calls `context.declare_lab_facts()` first; the first call on a host declares the facts of every
concern the run imported, so a full `deploys/swarm.py` run reads them in one command and a
single sub-deploy run its own in one command too. A fact missing here is only read alone
(slower); one listed but not asked costs a few lines of the batch. This module imports no
concern: the concerns import it (one direction).
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable

from pyinfra.facts.files import Directory, File, FindInFile, Sha1File
from pyinfra.facts.hardware import NetworkDevices
from pyinfra.facts.server import Groups, LinuxDistribution, Os, Users
from pyinfra.facts.systemd import SystemdEnabled, SystemdStatus

from swarmlab.model.distros import Distro
from swarmlab.model.spec import LabSpec, NodeSpec
from swarmlab.provision.factcache import Request

FactSet = Callable[[LabSpec, NodeSpec, Distro], list[Request]]
# concern module -> (its place in the batch, its fact set); filled by each concern at import
FACT_SETS: dict[str, tuple[int, FactSet]] = {}


def register_facts(module: str, order: int, facts: FactSet) -> None:
    """A concern's fact set (`spec, node, distro -> requests`), at `order` in the batch."""
    FACT_SETS[module] = (order, facts)


def file_facts(dest: str) -> list[Request]:
    """What `files.template` / `files.put` read for `dest`."""
    return [(Directory, {"path": posixpath.dirname(dest)}), (File, {"path": dest}),
            (Sha1File, {"path": dest})]


def service_facts(unit: str, user_name: str | None = None) -> list[Request]:
    """What `systemd.service` reads for `unit` (a user's unit when `user_name` is given)."""
    kwargs = {"user_mode": user_name is not None, "machine": None, "user_name": user_name,
              "services": [unit]}
    return [(SystemdStatus, kwargs), (SystemdEnabled, kwargs)]


def sysctl_facts(key: str, value: int, persist_file: str) -> list[Request]:
    """What `server.sysctl(..., persist=True)` reads."""
    from pyinfra.facts.server import Sysctl

    return [(Sysctl, {"keys": [key]}),
            (FindInFile, {"path": persist_file,
                          "pattern": f"^.*{key}[[:space:]]*=[[:space:]]*{value}.*$",
                          "interpolate_variables": False, "extended_regex": False})]


def user_facts(home: str) -> list[Request]:
    """What `server.user` reads (its home directory guessed as /home/NAME)."""
    return [(Users, {}), (Groups, {}), (Os, {}), (Directory, {"path": home})]


def lab_facts(spec: LabSpec, node: NodeSpec, distro: Distro) -> list[Request]:
    """Every fact the registered concerns' operations read on `node` in a no-change run."""
    sets = sorted(FACT_SETS.values(), key=lambda entry: entry[0])
    return [(LinuxDistribution, {}), *(r for _, fn in sets for r in fn(spec, node, distro)),
            (NetworkDevices, {})]
