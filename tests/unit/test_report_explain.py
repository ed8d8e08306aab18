"""Plain-language rule explanations on recorded Docker 26 and Docker 28 rule sets (tests/unit/data)."""

from __future__ import annotations

from pathlib import Path

import pytest

from swarmlab.report.explain import (
    Packet,
    explain_lines,
    explain_rule,
    explain_save,
    grouped,
    split_tables,
    walk,
)
from swarmlab.verify.rules import parse_rule

DATA = Path(__file__).parent / "data"
ENGINES = ("docker26", "docker28")
ROLES = ("manager", "worker")

# what Docker writes when a container publishes 18080 -> 80 on docker0 (same on 26 and 28)
PUBLISHED = {
    "nat": ["-A DOCKER ! -i docker0 -p tcp -m tcp --dport 18080 -j DNAT --to-destination 172.17.0.2:80"],
    "filter": ["-A DOCKER -d 172.17.0.2/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT"],
}


def _load(engine: str, role: str = "manager") -> str:
    return (DATA / f"iptables-{engine}-{role}.txt").read_text()


def _with_published(engine: str) -> dict[str, list[str]]:
    """The recorded tables plus a published port, inserted where Docker puts it."""
    tables = split_tables(_load(engine))
    for table, lines in PUBLISHED.items():
        rules = tables[table]
        first = next(i for i, line in enumerate(rules) if line.startswith("-A DOCKER"))
        tables[table] = rules[:first] + lines + rules[first:]
    return tables


def _sentences(items) -> list[str]:
    return [i.sentence for i in items if i.sentence]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("role", ROLES)
def test_every_recorded_rule_is_explained(engine, role):
    items = explain_save(_load(engine, role))
    raw_rules = [line for line in _load(engine, role).splitlines() if line.startswith("-A ")]
    explained_rules = [i for i in items if i.raw.startswith("-A ")]
    assert len(explained_rules) == len(raw_rules)
    assert [i.raw for i in items if i.sentence is None] == []


@pytest.mark.parametrize("engine", ENGINES)
def test_masquerade_of_both_bridges(engine):
    sentences = _sentences(explain_save(_load(engine)))
    assert ("MASQUERADE: packets from 172.17.0.0/16 leaving by any interface but docker0 "
            "take the node's address") in sentences
    assert ("MASQUERADE: packets from 172.18.0.0/16 leaving by any interface but docker_gwbridge "
            "take the node's address") in sentences


@pytest.mark.parametrize("engine", ENGINES)
def test_docker_user_comes_first_and_is_yours(engine):
    items = explain_save(_load(engine))
    sentences = _sentences(items)
    assert ("FORWARD: every forwarded packet goes through DOCKER-USER first: your own rules go here; "
            "Docker never touches them") in sentences
    mine = grouped(items)["Your rules (DOCKER-USER)"]
    assert any("DOCKER-USER" in i.sentence for i in mine)


def test_docker26_and_28_layouts_read_differently():
    s26 = " ".join(_sentences(explain_save(_load("docker26"))))
    s28 = " ".join(_sentences(explain_save(_load("docker28"))))
    # 28: FORWARD hands everything to DOCKER-FORWARD, which has the per-bridge rules
    assert "FORWARD: all packets go through DOCKER-FORWARD" in s28
    assert "DOCKER-FORWARD" not in s26
    assert ("DOCKER-CT: packets leaving by docker0 that belong to a connection already set up "
            "(replies) are accepted") in s28
    assert ("FORWARD: packets leaving by docker0 that belong to a connection already set up "
            "(replies) are accepted") in s26
    # 28 closes each bridge in the filter DOCKER chain; 26 ends DOCKER-USER with RETURN
    assert ("DOCKER: packets arriving on any interface but docker0 and leaving by docker0 are dropped "
            "(only published ports, accepted before this, get in)") in s28
    assert "DOCKER-USER: empty apart from this RETURN" in s26
    assert "DOCKER-USER: your own rules go here; Docker never touches them (empty now)" in s28


@pytest.mark.parametrize("engine", ENGINES)
def test_isolation_and_embedded_dns(engine):
    items = explain_save(_load(engine))
    groups = grouped(items)
    isolation = _sentences(groups["Isolation between networks"])
    assert ("DOCKER-ISOLATION-STAGE-2: packets leaving by docker0 are dropped: containers on different "
            "bridges cannot talk to each other") in isolation
    dns = _sentences(groups["Embedded DNS"])
    assert any(s.startswith("DNAT: udp to port 53 on 127.0.0.11 goes to 127.0.0.11:") for s in dns)
    assert any("leave with source port 53" in s for s in dns)


@pytest.mark.parametrize("engine", ENGINES)
def test_published_port_dnat_sentence(engine):
    items = explain_lines(_with_published(engine)["nat"], "nat")
    dnat = [i for i in items if "18080" in i.raw]
    assert dnat[0].sentence.startswith("DNAT: tcp to port 18080 on any local address goes to 172.17.0.2:80")
    assert dnat[0].group == "Published ports (DNAT and their filter rules)"


def test_ufw_rules_of_the_lab_subnet():
    sentences = _sentences(explain_save(_load("docker28")))
    assert "ufw-user-input: tcp packets from 10.93.0.0/24 to port 2377 are accepted" in sentences
    assert "ufw-user-input: udp packets from 10.93.0.0/24 to port 4789 are accepted" in sentences


def test_unknown_options_are_shown_raw_not_guessed():
    line = "-A DOCKER-USER -m set --match-set blocklist src -j DROP"
    item = explain_rule(parse_rule(line), "filter")
    assert item.sentence is None and item.raw == line
    assert item.group == "Your rules (DOCKER-USER)"


def test_encrypted_overlay_guard():
    line = ('-A INPUT -p udp -m udp --dport 4789 -m u32 --u32 "0x0>>0x16&0x3c@0xc&0xffffff00=0x100100" '
            '-m policy --dir in --pol none -j DROP')
    item = explain_rule(parse_rule(line), "filter")
    assert item.group == "Encrypted overlays"
    assert "did not come through IPsec are dropped" in item.sentence


@pytest.mark.parametrize("engine", ENGINES)
def test_trace_of_a_published_port_from_another_node(engine):
    tables = _with_published(engine)
    nat_seen, nat_verdict = walk(tables["nat"], "nat", "PREROUTING",
                                 Packet("tcp", "10.93.0.11", 18080, src="10.93.0.12", in_iface="eth0",
                                        local_dst=True))
    assert nat_verdict == "DNAT 172.17.0.2:80"
    assert nat_seen[-1].sentence.startswith("DNAT: tcp to port 18080")
    seen, verdict = walk(tables["filter"], "filter", "FORWARD",
                         Packet("tcp", "172.17.0.2", 80, src="10.93.0.12", in_iface="eth0", out_iface="docker0"))
    assert verdict == "ACCEPT"
    chains = [i.chain for i in seen]
    assert chains[0] == "FORWARD" and "DOCKER-USER" in seen[0].sentence
    assert seen[-1].raw == PUBLISHED["filter"][0]
    if engine == "docker28":
        assert "DOCKER-FORWARD" in chains and "DOCKER-BRIDGE" in chains
    # an unpublished port of the same container ends in the bridge's DROP (28) or the policy (26)
    _, closed = walk(tables["filter"], "filter", "FORWARD",
                     Packet("tcp", "172.17.0.2", 81, src="10.93.0.12", in_iface="eth0", out_iface="docker0"))
    assert closed != "ACCEPT"


# what a swarm node writes for a service publishing 8080 through the routing mesh (ingress)
INGRESS = {
    "nat": ["-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER-INGRESS",
            "-A DOCKER-INGRESS -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.18.0.2:8080",
            "-A DOCKER-INGRESS -j RETURN"],
    "filter": ["-A FORWARD -j DOCKER-INGRESS",
               "-A DOCKER-INGRESS -p tcp -m tcp --dport 8080 -j ACCEPT",
               "-A DOCKER-INGRESS -p tcp -m state --state RELATED,ESTABLISHED -m tcp --sport 8080 -j ACCEPT",
               "-A DOCKER-INGRESS -j RETURN"],
}


def test_routing_mesh_rules():
    items = [e for t, lines in INGRESS.items() for e in explain_lines(lines, t)]
    assert {i.group for i in items} == {"Swarm routing mesh (ingress)"}
    sentences = _sentences(items)
    assert ("DNAT: tcp to port 8080 on any local address goes to 172.18.0.2:8080: the swarm routing mesh "
            "(ingress) takes it to a task of the service") in sentences
    assert ("DOCKER-INGRESS: tcp packets from port 8080 that belong to a connection already set up (replies) "
            "are accepted") in sentences


@pytest.mark.parametrize("engine", ENGINES)
def test_output_to_local_addresses_outside_loopback(engine):
    sentences = _sentences(explain_save(_load(engine)))
    assert ("OUTPUT: packets to a local address outside 127.0.0.0/8 go through DOCKER (port publishing: DNAT "
            "of the ports containers publish)") in sentences
    dnat = explain_lines(_with_published(engine)["nat"], "nat")
    assert ("DNAT: tcp to port 18080 on any local address goes to 172.17.0.2:80 (not for packets arriving on "
            "docker0)") in _sentences(dnat)
