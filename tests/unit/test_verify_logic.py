"""The verification suite's logic on recorded outputs: rule parsing (Docker 26 and 28
layouts), the firewall packet walk, nslookup answers, dockerd's TCP API flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from swarmlab.verify.packets import CLOSED, OPEN, Packet, nft_verdict, outside_address, ufw_verdict
from swarmlab.verify.rules import (
    dnat_to,
    forward_consults_docker_user,
    jumps,
    masquerades,
    parse_rule,
    parse_rules,
    policy,
)
from swarmlab.verify.test_docker import _tcp_api_hosts
from swarmlab.verify.test_swarm import nslookup_answers

DATA = Path(__file__).parent / "data"
LAB = "10.88.0.0/24"


def recorded_rules(name: str) -> list[str]:
    """`iptables-save` output (nat and filter) as `iptables -S` lines."""
    out = []
    for line in (DATA / name).read_text().splitlines():
        if line.startswith(":"):
            chain, chain_policy = line[1:].split()[:2]
            out.append(f"-P {chain} {chain_policy}" if chain_policy != "-" else f"-N {chain}")
        elif line.startswith("-"):
            out.append(line)
    return out


RULE_SETS = sorted(p.name for p in DATA.glob("iptables-docker*.txt"))


def test_parse_rule_fields_and_negation():
    r = parse_rule("-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE")
    assert r.chain == "POSTROUTING" and r.target == "MASQUERADE"
    assert r.get("source") == "172.17.0.0/16"
    assert r.get("out") == "docker0" and r.negated("out") and not r.negated("source")
    d = parse_rule("-A DOCKER ! -i docker0 -p tcp -m tcp --dport 18080 -j DNAT --to-destination 172.17.0.2:80")
    assert d.dport == "18080" and d.get("--to-destination") == "172.17.0.2:80" and d.matches == ("tcp",)
    assert parse_rule("-P FORWARD DROP") is None and parse_rule("-N DOCKER") is None


@pytest.mark.parametrize("name", RULE_SETS)
def test_recorded_docker_layouts_pass_the_checks(name):
    lines = recorded_rules(name)
    rules = parse_rules(lines)
    assert masquerades(rules, "172.17.0.0/16", "docker0")
    assert [r for r in jumps(rules, "PREROUTING", "DOCKER") if r.get("--dst-type") == "LOCAL"]
    assert [r for r in jumps(rules, "OUTPUT", "DOCKER") if r.get("--dst-type") == "LOCAL"]
    assert forward_consults_docker_user(rules)
    assert policy(lines, "FORWARD") == "DROP"


@pytest.mark.parametrize("name", RULE_SETS)
def test_recorded_layouts_broken_fail_the_checks(name):
    lines = recorded_rules(name)
    no_masq = [line for line in lines if not (line.startswith("-A POSTROUTING -s 172.17.") and "MASQUERADE" in line)]
    assert not masquerades(parse_rules(no_masq), "172.17.0.0/16", "docker0")
    # the masquerade for another bridge is not this one's
    assert not masquerades(parse_rules(lines), "172.17.0.0/16", "docker_gwbridge")
    no_user = [line for line in lines if line != "-A FORWARD -j DOCKER-USER"]
    assert not forward_consults_docker_user(parse_rules(no_user))
    # DOCKER-USER consulted only after Docker's own chains: the user's rules come too late
    moved = [line for line in lines if line != "-A FORWARD -j DOCKER-USER"] + ["-A FORWARD -j DOCKER-USER"]
    assert not forward_consults_docker_user(parse_rules(moved))


def test_dnat_to_needs_port_protocol_and_destination():
    rules = parse_rules(["-A DOCKER ! -i docker0 -p tcp -m tcp --dport 18080 -j DNAT --to-destination 172.17.0.2:80"])
    assert dnat_to(rules, 18080, "tcp", "172.17.0.2:80")
    assert not dnat_to(rules, 18080, "udp", "172.17.0.2:80")
    assert not dnat_to(rules, 18081, "tcp", "172.17.0.2:80")
    assert not dnat_to(rules, 18080, "tcp", "172.17.0.3:80")


UFW = (DATA / "ufw-status-verbose.txt").read_text()
SWARM = [("tcp", 2377), ("tcp", 7946), ("udp", 7946), ("udp", 4789), ("esp", None)]


@pytest.mark.parametrize(("proto", "port"), SWARM)
def test_ufw_walk_lab_rules(proto, port):
    assert ufw_verdict(UFW, Packet("192.0.2.1", proto, port))[0] == CLOSED
    assert ufw_verdict(UFW, Packet("10.88.0.12", proto, port))[0] == OPEN


def test_ufw_walk_ssh_open_and_default_policy_named():
    assert ufw_verdict(UFW, Packet("192.0.2.1", "tcp", 22))[0] == OPEN
    verdict, why = ufw_verdict(UFW, Packet("192.0.2.1", "tcp", 2377))
    assert why == "ufw default incoming policy deny"


def test_ufw_walk_catches_wider_rules_and_an_open_default():
    wider = UFW.replace("22/tcp                     ALLOW IN    Anywhere",
                        "22/tcp                     ALLOW IN    Anywhere\n"
                        "2377/tcp                   ALLOW IN    Anywhere")
    verdict, why = ufw_verdict(wider, Packet("192.0.2.1", "tcp", 2377))
    assert verdict == OPEN and "2377/tcp" in why
    everything = UFW.replace("Default: deny (incoming)", "Default: allow (incoming)")
    assert ufw_verdict(everything, Packet("192.0.2.1", "udp", 4789)) == (OPEN, "ufw default incoming policy allow")
    port_range = UFW.replace("22/tcp                     ALLOW IN    Anywhere",
                             "7000:8000/udp              ALLOW IN    Anywhere")
    assert ufw_verdict(port_range, Packet("192.0.2.1", "udp", 7946))[0] == OPEN
    assert ufw_verdict("Status: inactive\n", Packet("192.0.2.1", "tcp", 2377))[0] == OPEN


NFT = """table inet swarmlab {
	chain input {
		type filter hook input priority filter - 1; policy accept;
		ip saddr 10.88.0.0/24 tcp dport 2377 accept comment "swarm cluster management"
		tcp dport 2377 drop
		ip saddr 10.88.0.0/24 udp dport 4789 accept comment "overlay VXLAN data path"
		udp dport 4789 drop
		ip saddr 10.88.0.0/24 meta l4proto esp accept comment "encrypted overlay (IPsec ESP)"
		meta l4proto esp drop
	}
}
"""


def test_nft_walk():
    assert nft_verdict(NFT, Packet("192.0.2.1", "tcp", 2377))[0] == CLOSED
    assert nft_verdict(NFT, Packet("10.88.0.5", "tcp", 2377))[0] == OPEN
    assert nft_verdict(NFT, Packet("192.0.2.1", "esp"))[0] == CLOSED
    assert nft_verdict(NFT, Packet("10.88.0.5", "esp"))[0] == OPEN
    # the drop removed (edited by hand): the policy decides, and it accepts
    no_drop = NFT.replace("\t\ttcp dport 2377 drop\n", "")
    assert nft_verdict(no_drop, Packet("192.0.2.1", "tcp", 2377)) == (OPEN, "swarmlab table policy accept")
    assert nft_verdict("", Packet("192.0.2.1", "udp", 4789))[0] == OPEN


def test_outside_address_is_outside():
    assert outside_address("10.88.0.0/24") == "192.0.2.1"
    assert outside_address("192.0.2.0/24") == "198.51.100.1"


BUSYBOX_NSLOOKUP = """Server:\t\t127.0.0.11
Address:\t127.0.0.11:53

Non-authoritative answer:
Name:\tswarmlab-probe-dnsrr
Address: 10.121.0.5
Name:\tswarmlab-probe-dnsrr
Address: 10.121.0.6

"""


def test_nslookup_answers_skip_the_server_line():
    assert nslookup_answers(BUSYBOX_NSLOOKUP) == ["10.121.0.5", "10.121.0.6"]
    one = BUSYBOX_NSLOOKUP.split("Name:\tswarmlab-probe-dnsrr\nAddress: 10.121.0.6")[0]
    assert nslookup_answers(one) == ["10.121.0.5"]
    nxdomain = "Server:\t\t127.0.0.11\nAddress:\t127.0.0.11:53\n\n** server can't find x: NXDOMAIN\n"
    assert nslookup_answers(nxdomain) == []


def test_tcp_api_hosts_in_every_spelling():
    args = ["/usr/sbin/dockerd", "-H", "fd://", "-H", "tcp://127.0.0.1:2375", "--host=tcp://[::]:2375",
            "-Htcp://10.0.0.1:2375", "--containerd=/run/containerd/containerd.sock"]
    assert _tcp_api_hosts(args) == ["tcp://127.0.0.1:2375", "tcp://[::]:2375", "tcp://10.0.0.1:2375"]
    assert _tcp_api_hosts(["/usr/sbin/dockerd", "-H", "fd://"]) == []


def test_checks_page_points_at_the_generated_drift_table():
    """The drift table lives in docs/verify-coverage.md, made from the recorded runs
    (tests/unit/test_checks_coverage.py checks it); neither README nor docs/checks.md holds a
    typed copy."""
    root = Path(__file__).resolve().parents[2]
    page = (root / "docs" / "checks.md").read_text()
    assert "[docs/verify-coverage.md](verify-coverage.md)" in page
    for text in (page, (root / "README.md").read_text()):
        assert "| check | how it was broken |" not in text
