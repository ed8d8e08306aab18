"""The one-transaction package list per distro and Docker source."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from swarmlab.model.distros import DISTROS
from swarmlab.model.spec import parse_spec
from swarmlab.provision.lab_packages import lab_package_list, lab_packages

ROOT = Path(__file__).resolve().parents[2]


def spec_for(distro: str, source: str):
    data = yaml.safe_load((ROOT / "labs/local.yaml").read_text())
    data["docker"]["source"] = source
    for node in data["nodes"]:
        node["distro"] = distro
    spec = parse_spec(yaml.safe_dump(data))
    return spec, spec.nodes[0], DISTROS[distro]


def test_debian13_distro_installs_everything_at_once():
    packages, with_docker = lab_package_list(*spec_for("debian-13", "distro"))
    assert with_docker
    assert packages == ["netplan.io", "ufw", "docker.io", "docker-cli", "docker-buildx", "docker-compose"]


@pytest.mark.parametrize("distro,source", [("ubuntu-24.04", "official"), ("debian-12", "distro")])
def test_docker_left_to_its_deploy(distro, source):
    """Official repo needs its repository first; Debian 12's gap fails in the Docker deploy."""
    packages, with_docker = lab_package_list(*spec_for(distro, source))
    assert not with_docker
    assert packages == ["netplan.io", "ufw"]


def test_manjaro_gets_networkmanager_and_nftables():
    packages, with_docker = lab_package_list(*spec_for("manjaro", "distro"))
    assert with_docker
    assert packages[:2] == ["networkmanager", "nftables"]
    assert "docker-buildx" in packages


def test_only_missing_packages_trigger_an_apt_list_refresh():
    """A re-run a day later (apt lists older than the cache window) changes nothing when every
    package is installed; the lists are refreshed only to install something."""
    from deployfakes import LOCAL, run_deploy
    from pyinfra.facts.deb import DebPackages

    from swarmlab.provision.packages import missing_debs

    every = ["netplan.io", "ufw", "docker.io", "docker-cli", "docker-buildx", "docker-compose"]
    installed = {name: ["1.0"] for name in every}
    run = run_deploy(lab_packages, LOCAL, "node1", {DebPackages: installed})
    assert run.op("all lab packages in one transaction").commands == []
    partial = run_deploy(lab_packages, LOCAL, "node1",
                         {DebPackages: {k: v for k, v in installed.items() if k != "ufw"}})
    cmds = partial.op("all lab packages in one transaction").commands
    assert any("apt-get update" in c for c in cmds) and any("install" in c and "ufw" in c for c in cmds)
    assert missing_debs(["docker-ce=5:27.3.1", "curl"], {"docker-ce": ["5:26.0"], "curl": ["8"]}) == [
        "docker-ce=5:27.3.1"]
