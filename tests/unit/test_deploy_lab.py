"""The whole provisioning order of deploys/swarm.py on a fresh host, per distro, offline."""

from __future__ import annotations

import pytest
from deployfakes import LOCAL, VMLAB, recorded, run_deploy, spec_file
from pyinfra.api import deploy
from pyinfra.facts.deb import DebArch
from pyinfra.facts.hardware import Ipv4Addrs
from pyinfra.facts.server import Command

from swarmlab.provision.docker import install_docker
from swarmlab.provision.facts import KernelModules, SwarmInfo
from swarmlab.provision.firewall import swarm_firewall
from swarmlab.provision.kernel import kernel_prerequisites
from swarmlab.provision.network import static_address
from swarmlab.provision.swarm import form_swarm


@deploy("Whole lab")
def whole_lab() -> None:
    """The same calls, in the same order, as deploys/swarm.py."""
    kernel_prerequisites()
    static_address()
    install_docker()
    swarm_firewall()
    form_swarm()


NETPLAN = "/etc/netplan/60-swarmlab.yaml"
NM = "/etc/NetworkManager/system-connections/swarmlab-eth1.nmconnection"
SOURCES = "/etc/apt/sources.list.d/docker.sources"
NFT = "/etc/swarmlab/firewall.nft"
MODULES = "overlay loaded\nbr_netfilter loaded\nvxlan loaded\nip_vs loadable\nxt_ipvs loadable\n"

# distro, docker.source -> (network file, firewall marker, install command tail)
CASES = {
    ("ubuntu-22.04", "auto"): (NETPLAN, "ufw --force enable", "docker-compose-plugin"),
    ("ubuntu-24.04", "auto"): (NETPLAN, "ufw --force enable", "docker-compose-plugin"),
    ("debian-12", "official"): (NETPLAN, "ufw --force enable", "docker-compose-plugin"),
    ("debian-13", "auto"): (NETPLAN, "ufw --force enable", "docker-buildx docker-compose"),
    ("debian-14", "auto"): (NETPLAN, "ufw --force enable", "docker-buildx docker-compose"),
    ("debian-14", "official"): (NETPLAN, "ufw --force enable", "docker-compose-plugin"),
    ("manjaro", "auto"): (NM, f"nft -f {NFT}", "docker docker-buildx docker-compose"),
}


@pytest.mark.parametrize(("distro", "source"), list(CASES))
def test_fresh_worker_per_distro(tmp_path, distro, source):
    spec = spec_file(tmp_path, [distro] * 3, base=VMLAB, docker={"source": source})
    run = run_deploy(whole_lab, spec, "node2", {
        DebArch: "amd64",
        KernelModules: recorded(KernelModules, MODULES),
        Ipv4Addrs: {"lo": ["127.0.0.1"], "eth0": ["10.0.2.15"], "eth1": ["192.168.56.12"]},
        SwarmInfo: {},  # docker not running yet when facts are read
    }, host_data_overrides={"ssh_hostname": "127.0.0.1"},
        peers={"node1": {(Command, "docker swarm join-token -q worker"): "SWMTKN-1-x-y\n"}})
    network_file, firewall_marker, install_tail = CASES[(distro, source)]
    assert not run.failed, run.errors
    assert network_file in run.files
    assert firewall_marker in run.commands
    assert any(c.endswith(install_tail) and ("apt-get" in c or c.startswith("pacman -Syu"))
               for c in run.commands)

    apt = [c for c in run.commands if "apt-get" in c]
    pacman = [c for c in run.commands if c.startswith("pacman")]
    if distro == "manjaro":
        assert apt == [] and NETPLAN not in run.files and SOURCES not in run.files
        assert not any(c.startswith("ufw ") for c in run.commands)
    else:
        assert pacman == [] and NM not in run.files and NFT not in run.files
        assert (SOURCES in run.files) == (source != "auto" or distro.startswith("ubuntu"))
    # the worker joins with the token read from node1 at run time
    assert run.op("swarm join").raw_commands == [
        "docker swarm join --token SWMTKN-1-x-y --advertise-addr 192.168.56.12 "
        "--listen-addr 192.168.56.12:2377 192.168.56.11:2377"]


def test_debian12_distro_source_stops_the_host_at_the_docker_deploy(tmp_path):
    spec = spec_file(tmp_path, ["debian-12"] * 3)
    run = run_deploy(whole_lab, spec, "node1", {
        KernelModules: recorded(KernelModules, MODULES),
        Ipv4Addrs: {"eth0": ["10.77.0.11"]},
    })
    assert run.failed
    names = [o.short_name for o in run.ops]
    assert names[-1] == "Docker packages available"
    # kernel and network ran before; nothing of the firewall or swarm afterwards
    assert "netplan file for the lab address" in names
    assert not any(n.startswith("ufw") or n.startswith("swarm") for n in names)
    assert "docker.source: official" in run.errors[0]


def test_container_lab_first_manager_inits_the_swarm():
    run = run_deploy(whole_lab, LOCAL, "node1", {
        DebArch: "amd64",
        KernelModules: recorded(KernelModules, MODULES.replace("ip_vs loadable", "ip_vs missing")),
        Ipv4Addrs: {"lo": ["127.0.0.1"], "eth0": ["10.77.0.11"]},
    })
    assert not run.failed
    assert run.op("swarm init (first manager)").commands[0].startswith(
        "docker swarm init --advertise-addr 10.77.0.11 ")
    assert any("kernel has no ip_vs" in w for w in run.warnings)
