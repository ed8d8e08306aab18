"""The whole lab's packages in one transaction, before the sub-deploys run.

Each sub-deploy still declares (and checks) its own packages, so it works alone; run first,
this step makes those checks no-ops and saves an apt/dpkg run per sub-deploy on a cold host.
"""

from __future__ import annotations

from pyinfra.operations import files

from swarmlab.model.distros import DOCKER_PACKAGES, FIREWALL_PACKAGES, NETWORK_PACKAGES, Distro
from swarmlab.model.spec import LabSpec, NodeSpec
from swarmlab.provision.context import lab_deploy
from swarmlab.provision.docker import daemon_json
from swarmlab.provision.firewall import backend_for
from swarmlab.provision.packages import install_packages


def lab_package_list(spec: LabSpec, node: NodeSpec, distro: Distro) -> tuple[list[str], bool]:
    """(packages, includes_docker): network, firewall and, from distro sources, Docker.

    Docker from Docker's repository needs the repository first, and a release that lacks a
    plugin fails in the Docker deploy with its message: neither is part of this step.
    """
    packages = [*NETWORK_PACKAGES[distro.network_backend],
                *FIREWALL_PACKAGES[backend_for(spec, distro)]]
    source = spec.docker_source(node)
    docker = DOCKER_PACKAGES.get((distro.key, source))
    with_docker = source == "distro" and docker is not None and not docker.missing
    if with_docker:
        packages += docker.install
    return list(dict.fromkeys(packages)), with_docker


@lab_deploy("Lab packages")
def lab_packages(spec: LabSpec, node: NodeSpec, distro: Distro) -> None:
    packages, with_docker = lab_package_list(spec, node, distro)
    if with_docker:
        # Docker's first start already uses the lab's daemon.json (no restart later)
        files.directory(name="/etc/docker", path="/etc/docker", mode="0755")
        daemon_json(spec)
    install_packages("all lab packages in one transaction", packages, distro)
