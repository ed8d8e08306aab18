"""Host network: lab address, default route, sysctls, kernel features, firewall.

Each check reads what the deploy owns (its files, its manager's state), not only what a node
happens to have: Docker sets ip_forward and, in a container lab, the node's address itself.
"""

from __future__ import annotations

import ipaddress
import json

import pytest
import yaml

from swarmlab.model.distros import DISTROS, distro_from_os_release
from swarmlab.provision.facts import KERNEL_MARKERS
from swarmlab.provision.firewall import backend_for, firewall_rules, owned_ports
from swarmlab.provision.kernel import MODULE_FEATURES, MODULES_FILE, REQUIRED_MODULES, SYSCTL_FILE, SYSCTLS
from swarmlab.provision.network import NETPLAN_FILE, NETPLAN_ROUTE_METRIC, LabLink, link_problems
from swarmlab.provision.ufw import ufw_rule_ports
from swarmlab.verify import expected, repairs
from swarmlab.verify import snapshot as shared
from swarmlab.verify.conftest import kernel_state, other_node, require_kernel
from swarmlab.verify.foreign import conflicting_rules
from swarmlab.verify.packets import CLOSED, OPEN, Packet, nft_verdict, outside_address, ufw_verdict
from swarmlab.verify.rules import parse_rules, policy
from swarmlab.verify.workloads import NO_SWARM


def _iface(snap, node) -> str:
    for entry in json.loads(snap.check_output(shared.ADDRESSES)):
        if any(a["local"] == node.ip for a in entry.get("addr_info", [])):
            return entry["ifname"]
    pytest.fail(f"no interface carries the lab address {node.ip}")


def test_lab_address_configured_by_the_deploy(host, snap, node, spec):
    """The address is on a NIC because its network manager was told so from the spec (in a
    container lab Docker puts the same address there by itself: presence proves nothing)."""
    iface = _iface(snap, node)
    backend = DISTROS[node.distro].network_backend
    fact = LabLink()
    link = fact.process(host.check_output(fact.command(iface=iface, backend=backend)).splitlines())
    problems = link_problems(link, iface, backend, f"{node.ip}/{spec.prefixlen}", spec.network.gateway)
    assert not problems, "; ".join(problems)


def test_netplan_file(host, snap, node, spec):
    if DISTROS[node.distro].network_backend != "netplan":
        pytest.skip(f"{node.distro} uses NetworkManager, not netplan")
    f = host.file(NETPLAN_FILE)
    assert f.exists, f"{NETPLAN_FILE} missing"
    assert f.mode == 0o600, f"{NETPLAN_FILE} mode is {oct(f.mode)}, want 0600"
    iface = _iface(snap, node)
    eth = (yaml.safe_load(f.content_string) or {}).get("network", {}).get("ethernets", {}).get(iface, {})
    assert eth.get("addresses") == [f"{node.ip}/{spec.prefixlen}"], f"{NETPLAN_FILE}: {eth}"
    assert {"to": "default", "via": spec.network.gateway, "metric": NETPLAN_ROUTE_METRIC} in (
        eth.get("routes") or []
    ), f"{NETPLAN_FILE} lacks the default route via {spec.network.gateway}: {eth.get('routes')}"
    assert "gateway4" not in eth, "deprecated gateway4 in netplan file"


def test_default_route_via_lab_gateway(snap, node, spec):
    """The kernel holds the default route the deploy configured (proto static, its metric)."""
    iface = _iface(snap, node)
    routes = json.loads(snap.check_output(shared.DEFAULT_ROUTES))
    netplan = DISTROS[node.distro].network_backend == "netplan"
    ours = [r for r in routes if r.get("gateway") == spec.network.gateway and r.get("dev") == iface
            and r.get("protocol") == "static"
            and (not netplan or r.get("metric") == NETPLAN_ROUTE_METRIC)]
    assert ours, f"no static default route via {spec.network.gateway} on {iface}: {routes}"


@pytest.mark.parametrize("key", sorted(SYSCTLS))
def test_sysctls_set_and_persisted(host, snap, key):
    """Docker sets ip_forward itself when it starts: what the deploy owns is the boot-time file.
    The net.bridge keys exist only with br_netfilter: a kernel without it skips them (so said)."""
    if key.startswith("net.bridge.") and kernel_state(snap, "br_netfilter") == "missing":
        pytest.skip(f"kernel has no br_netfilter: {key} does not exist here")
    persisted = snap.run(shared.SYSCTL_CONF)
    assert persisted.succeeded, f"{SYSCTL_FILE} missing: {key} is not set at boot"
    lines = {line.replace(" ", "") for line in persisted.stdout.splitlines()}
    value = SYSCTLS[key]
    assert f"{key}={value}" in lines, f"{SYSCTL_FILE} does not set {key} = {value}"
    assert host.sysctl(key) == value, f"{key} is {host.sysctl(key)}, want {value}"


@pytest.mark.parametrize("module", REQUIRED_MODULES)
def test_kernel_modules_loaded_at_boot(snap, module):
    """A module the kernel has is loaded now and listed for boot; one it could load but that is
    not loaded fails; one the kernel lacks skips with the reason."""
    require_kernel(snap, module)
    f = snap.run(shared.MODULES_CONF)
    assert f.succeeded, f"{MODULES_FILE} missing: {module} is not loaded at boot"
    assert module in f.stdout.split(), f"{MODULES_FILE} does not load {module} ({MODULE_FEATURES[module]})"


def test_bridge_nf_call_iptables(host, snap):
    require_kernel(snap, "br_netfilter")
    assert host.sysctl("net.bridge.bridge-nf-call-iptables") == 1


@pytest.mark.parametrize("module", ["overlay", "vxlan"])
def test_required_kernel_feature(snap, module):
    """Docker's storage and the overlay data path need these: a hard failure when absent."""
    assert snap.run(KERNEL_MARKERS[module]).succeeded, (
        f"kernel lacks {module}: {MODULE_FEATURES[module]} will not work"
    )


def _backend(spec, node) -> str:
    backend = backend_for(spec, DISTROS[node.distro])
    if backend == "none":
        pytest.skip("firewall.backend is none in the spec")
    return backend


def test_firewall_active_at_boot(host, snap, node, spec):
    if _backend(spec, node) == "ufw":
        assert "Status: active" in snap.check_output(shared.UFW_STATUS), "ufw is not active"
        conf = snap.check_output(shared.UFW_CONF)
        assert "ENABLED=yes" in conf, "ufw is not enabled at boot (/etc/ufw/ufw.conf)"
    else:
        assert snap.check_output(shared.NFT_TABLE), "the swarmlab nft table is not loaded"
        assert host.service("swarmlab-firewall").is_enabled, "swarmlab-firewall.service is not enabled"


def test_firewall_rules_are_exactly_the_labs(snap, node, spec):
    """The deploy's rules for the swarm ports, and no other rule for those ports."""
    if _backend(spec, node) != "ufw":
        table = snap.check_output(shared.NFT_TABLE)
        missing = [line for line in expected.nft_lines(spec) if line not in table]
        assert not missing, f"swarmlab nft table lacks: {missing}"
        return
    added = [line[4:].strip() for line in snap.lines(shared.UFW_ADDED)
             if line.startswith("ufw ")]
    wanted = expected.ufw_rules(spec)
    missing = [r for r in wanted if r not in added]
    extra = [r for r in added if r not in wanted and ufw_rule_ports(r) & set(owned_ports(spec))]
    assert not missing, f"missing ufw rules: {missing}"
    assert not extra, f"ufw rules for the swarm ports that the lab did not ask for: {extra}"


def _swarm_packets(spec, source: str) -> list[Packet]:
    return [Packet(source, r.proto, r.port) for r in firewall_rules(spec) if r.source]


def test_swarm_ports_closed_to_outside_the_lab_subnet(snap, node, spec):
    """Walk the host firewall for a packet from outside the subnet to each swarm port:
    it must be dropped; one from inside must pass. Nothing in INPUT may accept it first."""
    backend = _backend(spec, node)
    outside = outside_address(spec.network.subnet)
    if backend == "ufw":
        status = snap.check_output(shared.UFW_STATUS)
        verdict = lambda p: ufw_verdict(status, p)  # noqa: E731
    else:
        table = snap.check_output(shared.NFT_TABLE)
        verdict = lambda p: nft_verdict(table, p)  # noqa: E731
    for packet in _swarm_packets(spec, outside):
        result, why = verdict(packet)
        assert result == CLOSED, f"{packet.proto}/{packet.port} from {outside} is let in by {why}"
    for packet in _swarm_packets(spec, node.ip):
        result, why = verdict(packet)
        assert result == OPEN, f"{packet.proto}/{packet.port} from the lab subnet is dropped by {why}"
    if backend == "ufw":
        lines = snap.lines(shared.INPUT_RULES)
        assert policy(lines, "INPUT") in ("DROP", "REJECT") or any(
            r.target == "ufw-reject-input" for r in parse_rules(lines)
        ), f"INPUT's policy lets packets in that no ufw rule allows: {lines[:1]}"
        bypass = [r.raw for r in parse_rules(lines)
                  if r.target == "ACCEPT" and not _from_lab(r, spec)
                  and r.get("in") != "lo" and "ESTABLISHED" not in r.raw]
        assert not bypass, f"INPUT accepts packets before ufw sees them: {bypass}"


def _from_lab(rule, spec) -> bool:
    source = rule.get("source")
    if not source:
        return False
    try:
        return ipaddress.ip_network(source, strict=False).subnet_of(ipaddress.ip_network(spec.network.subnet))
    except ValueError:
        return False


def test_swarm_ports_reachable_from_another_lab_node(spec, hosts, manager):
    if not spec.swarm.enabled:
        pytest.skip(NO_SWARM)
    peer_node = other_node(spec, manager, "connect to the swarm ports from")
    peer = hosts[peer_node.name]
    for port in (2377, 7946):
        assert peer.addr(manager.ip).port(port).is_reachable, (
            f"{manager.name}:{port}/tcp is not reachable from {peer_node.name}"
        )


# --- spec fields without a check before (issue: every spec field checked on the live host) ---

def test_lab_dns_servers_configured_by_the_deploy(host, snap, node, spec):
    """network.dns: the NIC's network manager was told the spec's DNS servers."""
    if not spec.network.dns:
        pytest.skip("network.dns is empty: the deploy sets no DNS servers")
    iface = _iface(snap, node)
    backend = DISTROS[node.distro].network_backend
    fact = LabLink()
    link = fact.process(host.check_output(fact.command(iface=iface, backend=backend)).splitlines())
    have = link.get("dns") or []
    assert have == list(spec.network.dns), (
        f"{iface}'s configured DNS servers are {have}, the spec's network.dns is {spec.network.dns}"
    )


def test_lab_address_on_the_specs_interface(snap, node, spec):
    """nodes[].interface / network.interface: the lab address is on the NIC the spec names."""
    want = node.interface or spec.network.interface
    if want is None:
        pytest.skip("the spec names no interface: the deploy picks the NIC for the address")
    assert _iface(snap, node) == want, f"the lab address {node.ip} is not on {want}"


def test_node_runs_the_specs_distro(host, node):
    """nodes[].distro: /etc/os-release is the distro the spec names (its packages, its rules)."""
    meta = {}
    for line in host.file("/etc/os-release").content_string.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            meta[key.strip()] = value.strip().strip('"')
    distro = distro_from_os_release(meta.get("ID", ""), meta.get("VERSION_ID", ""),
                                    meta.get("VERSION_CODENAME", ""))
    assert distro is not None and distro.key == node.distro, (
        f"{node.name} runs {meta.get('PRETTY_NAME', 'an unknown OS')!r}, the spec says {node.distro}"
    )


def test_no_foreign_rule_for_the_swarm_ports(snap, node, spec, record_property):
    """No rule in INPUT/OUTPUT drops the swarm ports for the lab subnet or accepts them from
    outside it; each one found is printed with the `iptables -D` that removes it."""
    found = conflicting_rules(parse_rules(snap.lines(shared.FILTER_RULES)), spec)
    for rule, _ in found:
        record_property(repairs.PROPERTY, repairs.delete_rule(rule.raw))
    assert not found, "; ".join(f"`{rule.raw}` {why}" for rule, why in found)
