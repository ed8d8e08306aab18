"""Host network: lab address, default route, sysctls, kernel features, firewall."""

from __future__ import annotations

import json

import pytest

from swarmlab.deploy.facts import KERNEL_MARKERS
from swarmlab.deploy.firewall import backend_for, firewall_rules
from swarmlab.deploy.kernel import MODULE_FEATURES
from swarmlab.deploy.network import NETPLAN_FILE
from swarmlab.distros import DISTROS
from swarmlab.verify.conftest import require_kernel


def _iface(host, ip: str) -> str:
    for entry in json.loads(host.check_output("ip -j -4 addr show")):
        if any(a["local"] == ip for a in entry.get("addr_info", [])):
            return entry["ifname"]
    pytest.fail(f"no interface carries the lab address {ip}")


def test_lab_address_on_interface(host, node, spec):
    iface = _iface(host, node.ip)
    assert node.ip in host.interface(iface).addresses


def test_netplan_file(host, node, spec):
    if DISTROS[node.distro].network_backend != "netplan":
        pytest.skip(f"{node.distro} uses NetworkManager, not netplan")
    f = host.file(NETPLAN_FILE)
    assert f.exists, f"{NETPLAN_FILE} missing"
    assert f.mode == 0o600, f"{NETPLAN_FILE} mode is {oct(f.mode)}, want 0600"
    content = f.content_string
    assert f"{node.ip}/{spec.prefixlen}" in content
    assert "to: default" in content and f"via: {spec.network.gateway}" in content
    assert "gateway4" not in content, "deprecated gateway4 in netplan file"


def test_default_route_via_lab_gateway(host, spec):
    routes = json.loads(host.check_output("ip -j route show default"))
    assert any(r.get("gateway") == spec.network.gateway for r in routes), routes


@pytest.mark.parametrize("key", ["net.ipv4.ip_forward"])
def test_sysctl(host, key):
    assert host.sysctl(key) == 1


def test_bridge_nf_call_iptables(host):
    require_kernel(host, "br_netfilter", KERNEL_MARKERS["br_netfilter"], MODULE_FEATURES["br_netfilter"])
    assert host.sysctl("net.bridge.bridge-nf-call-iptables") == 1


@pytest.mark.parametrize("module", ["overlay", "vxlan"])
def test_required_kernel_feature(host, module):
    """Docker's storage and the overlay data path need these: a hard failure when absent."""
    assert host.run(KERNEL_MARKERS[module]).succeeded, (
        f"kernel lacks {module}: {MODULE_FEATURES[module]} will not work"
    )


@pytest.mark.parametrize("module", ["ip_vs", "xt_ipvs", "esp4"])
def test_optional_kernel_feature(host, module):
    require_kernel(host, module, KERNEL_MARKERS[module], MODULE_FEATURES[module])


def test_firewall_active_with_subnet_rules(host, node, spec):
    backend = backend_for(spec, DISTROS[node.distro])
    if backend == "none":
        pytest.skip("firewall.backend is none in the spec")
    rules = firewall_rules(spec)
    if backend == "ufw":
        status = host.check_output("ufw status")
        assert "Status: active" in status
        added = host.check_output("ufw show added")
        for rule in rules:
            assert f"ufw {rule.ufw()}" in added, f"missing ufw rule: {rule.ufw()}"
    else:
        table = host.check_output("nft list table inet swarmlab")
        for rule in rules:
            if rule.source and rule.port:
                assert f"ip saddr {rule.source} {rule.proto} dport {rule.port} accept" in table


def test_swarm_ports_reachable_from_another_lab_node(spec, hosts, manager):
    others = [n for n in spec.nodes if n.name != manager.name]
    if not others:
        pytest.skip("single-node lab: no other lab node to connect from")
    peer = hosts[others[0].name]
    for port in (2377, 7946):
        peer.check_output(
            "python3 -c \"import socket;"
            f"socket.create_connection(('{manager.ip}', {port}), timeout=5).close()\""
        )
