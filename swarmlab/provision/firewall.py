"""Swarm ports open to the lab subnet only (plus SSH): ufw or nftables.

Hand-written: pyinfra has no ufw or nftables operations (files and units are pyinfra's)."""

from __future__ import annotations

from dataclasses import dataclass

from pyinfra import host
from pyinfra.api import operation
from pyinfra.api.operation import OperationMeta
from pyinfra.operations import systemd

from swarmlab.model.distros import FIREWALL_PACKAGES, Distro
from swarmlab.model.spec import LabSpec, NodeSpec
from swarmlab.provision.context import lab_deploy, render
from swarmlab.provision.factcache import Request
from swarmlab.provision.facts import NftTable
from swarmlab.provision.ops import changed
from swarmlab.provision.packages import install_packages
from swarmlab.provision.prefetch import file_facts, register_facts, service_facts
from swarmlab.provision.shell import argv
from swarmlab.provision.ufw import UfwAddedRules, UfwStatus, ufw_enabled, ufw_rules

NFT_FILE = "/etc/swarmlab/firewall.nft"
FIREWALL_UNIT = "/etc/systemd/system/swarmlab-firewall.service"


@dataclass(frozen=True)
class Rule:
    """One allowed flow: proto (tcp/udp/esp) and port (None for esp), from `source`."""

    proto: str
    port: int | None
    source: str | None  # None: from anywhere
    why: str

    def ufw(self) -> str:
        """The rule as `ufw show added` prints it (without the leading `ufw`)."""
        if self.proto == "esp":
            return f"allow from {self.source} proto esp"
        if self.source is None:
            return f"allow {self.port}/{self.proto}"
        return f"allow from {self.source} to any port {self.port} proto {self.proto}"


def firewall_rules(spec: LabSpec) -> list[Rule]:
    """SSH from anywhere; swarm ports (and ESP when an overlay is encrypted) from the lab subnet."""
    subnet = spec.network.subnet
    rules = [Rule("tcp", spec.firewall.ssh_port, None, "SSH")]
    if spec.swarm.enabled:
        rules += [
            Rule("tcp", 2377, subnet, "swarm cluster management"),
            Rule("tcp", 7946, subnet, "swarm node gossip"),
            Rule("udp", 7946, subnet, "swarm node gossip"),
            Rule("udp", spec.swarm.data_path_port, subnet, "overlay VXLAN data path"),
        ]
        if any(o.encrypted for o in spec.swarm.overlays):
            rules.append(Rule("esp", None, subnet, "encrypted overlay (IPsec ESP)"))
    if spec.docker.tls:
        rules.append(Rule("tcp", 2376, subnet, "Docker API over TLS"))
    return rules


def owned_ports(spec: LabSpec) -> list[str]:
    """Ports whose firewall rules the deploy owns (others' rules for them are removed)."""
    ports = {2377, 7946, 4789, 2376, spec.swarm.data_path_port}
    return sorted(str(p) for p in ports) + ["esp"]


def backend_for(spec: LabSpec, distro: Distro) -> str:
    return distro.firewall_backend if spec.firewall.backend == "auto" else spec.firewall.backend


def nft_expected_lines(rules: list[Rule]) -> list[str]:
    """Lines `nft list table inet swarmlab` shows when the table is loaded as templated."""
    out = []
    for r in rules:
        if not r.source:
            continue
        if r.proto == "esp":
            out += [f"ip saddr {r.source} meta l4proto esp accept", "meta l4proto esp drop"]
        else:
            out += [f"ip saddr {r.source} {r.proto} dport {r.port} accept", f"{r.proto} dport {r.port} drop"]
    return out


@operation()
def nft_table_loaded(path: str, expected: list[str], file_op: OperationMeta):
    """`nft -f path` when the file changed in this run, or the live table lacks a rule
    (flushed, edited by hand, or an earlier load failed)."""
    table = host.get_fact(NftTable)
    missing = [line for line in expected if line not in table]
    if changed(file_op) or missing or not table:
        yield argv("nft", "-f", path)
    else:
        host.noop("the swarm table is loaded as templated")


def firewall_facts(spec: LabSpec, distro: Distro) -> list[Request]:
    """What this step reads on a node (declared for the lab's fact batch)."""
    backend = backend_for(spec, distro)
    if backend == "ufw":
        return [(UfwAddedRules, {}), (UfwStatus, {})]
    if backend == "nftables":
        return [*file_facts(NFT_FILE), *file_facts(FIREWALL_UNIT), (NftTable, {}),
                *service_facts("swarmlab-firewall.service")]
    return []


@lab_deploy("Swarm firewall")
def swarm_firewall(spec: LabSpec, _node: NodeSpec, distro: Distro) -> None:
    backend = backend_for(spec, distro)
    if backend == "none":
        return
    rules = firewall_rules(spec)
    packages = list(FIREWALL_PACKAGES[backend])
    install_packages(f"{backend} package", packages, distro)

    if backend == "ufw":
        # ufw leaves Docker's chains alone; note that it does not filter published
        # container ports (Docker's DNAT bypasses INPUT): filter those in DOCKER-USER.
        ufw_rules(name="ufw rules: SSH, and swarm ports from the lab subnet",
                  rules=[rule.ufw() for rule in rules], owned=owned_ports(spec))
        ufw_enabled(name="ufw enabled")
    else:
        conf = render("nftables swarm table", "firewall.nft.j2", NFT_FILE, mode="0600",
                      rules=rules, subnet=spec.network.subnet)
        unit = render("swarm table loaded at boot", "swarmlab-firewall.service.j2", FIREWALL_UNIT,
                      nft_file=NFT_FILE)
        nft_table_loaded(name="load the swarm table", path=NFT_FILE,
                         expected=nft_expected_lines(rules), file_op=conf)
        # not nftables.service: the distro's stock ruleset would drop swarm and forwarded traffic
        systemd.daemon_reload(name="systemd reload for the firewall unit", _if=unit.did_change)
        systemd.service(name="swarmlab-firewall at boot", service="swarmlab-firewall.service",
                        enabled=True)


register_facts(__name__, 70, lambda spec, node, distro: firewall_facts(spec, distro))
