"""The facts a lab deploy asks on a node, declared up front: read as one batch (factcache).

Each concern lists what its operations read on a run that finds the node as the spec says
(the no-change run): pyinfra's own operations' facts (`files.template` -> the parent
`Directory`, `File`, `Sha1File`; `systemd.service` -> `SystemdStatus`, `SystemdEnabled`; ...)
and swarmlab's. Every sub-deploy calls `declare_lab_facts()` first; the first call on a host
declares the whole lab's list, so a full `deploys/swarm.py` run reads it in one command and a
single sub-deploy run in one command too. A fact missing here is only read alone (slower);
one listed but not asked costs a few lines of the batch.
"""

from __future__ import annotations

import posixpath

from pyinfra.facts.files import Directory, File, FindInFile, Sha1File
from pyinfra.facts.hardware import NetworkDevices
from pyinfra.facts.server import Groups, LinuxDistribution, Os, Users
from pyinfra.facts.systemd import SystemdEnabled, SystemdStatus

from swarmlab.distros import DISTROS, PACKAGE_FAMILIES, Distro
from swarmlab.provision import factcache
from swarmlab.provision.factcache import Request
from swarmlab.spec import LabSpec, NodeSpec


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


def package_facts(distro: Distro) -> list[Request]:
    """The family's installed-packages fact and its lock-wait file (PACKAGE_FAMILIES)."""
    from swarmlab.provision.packages import INSTALLERS

    lock_wait = PACKAGE_FAMILIES[distro.family].lock_wait
    return [(INSTALLERS[distro.family].installed, {}), *(file_facts(lock_wait[1]) if lock_wait else [])]


def lab_facts(spec: LabSpec, node: NodeSpec, distro: Distro) -> list[Request]:
    """Every fact the sub-deploys of `deploys/swarm.py` read on `node` in a no-change run."""
    from swarmlab.provision import docker, firewall, kernel, network, rootless, swarm, tls

    return [
        (LinuxDistribution, {}),
        *package_facts(distro),
        *kernel.kernel_facts(),
        *network.network_facts(spec, node, distro),
        *docker.docker_facts(spec, node),
        *tls.tls_facts(spec),
        *rootless.rootless_facts(spec, node, distro),
        *firewall.firewall_facts(spec, distro),
        *swarm.swarm_facts(spec, node),
        (NetworkDevices, {}),
    ]


def declare_lab_facts() -> None:
    """Declare the lab's facts on this host once per run (every sub-deploy calls this first)."""
    from swarmlab.provision.context import lab_node, lab_spec

    if factcache.declared():
        return
    node = lab_node()
    distro = DISTROS.get(node.distro)
    if distro is None:
        return
    factcache.declare(lab_facts(lab_spec(), node, distro))

