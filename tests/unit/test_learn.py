"""`swarmlab trace` and `swarmlab exercise` offline: the kernel's trace (recorded with
`xtables-monitor --trace` on Debian 13 / Docker 26 nodes) in plain words, the comparison with the
static walk, the path on the report picture, the tracing scripts' cleanup, the exercise table."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

import swarmlab.verify
from swarmlab.learn import scripts
from swarmlab.learn.exercises import EXERCISES
from swarmlab.learn.tracelog import Event, disagreements, first_packet, parse_monitor, verdict_of
from swarmlab.report import render
from swarmlab.report.explain import explain_rule
from swarmlab.verify.rules import parse_rule

DATA = Path(__file__).parent / "data"
SPEC = """
name: ci-report
network: {subnet: 10.96.0.0/24, gateway: 10.96.0.1, dns: [127.0.0.11], interface: eth0}
docker: {source: distro, users: [lab]}
swarm:
  default_addr_pool: [10.128.128.0/17]
  overlays:
    - {name: labnet, subnet: 10.128.1.0/24, attachable: true}
    - {name: secure, subnet: 10.128.2.0/24, encrypted: true, attachable: true}
nodes:
  - {name: r1, distro: debian-13, ip: 10.96.0.11, role: manager}
  - {name: r2, distro: debian-13, ip: 10.96.0.12, role: worker}
  - {name: r3, distro: debian-13, ip: 10.96.0.13, role: worker}
"""  # the lab of report-3nodes.json
VERIFY = Path(swarmlab.verify.__file__).parent  # the suite under test (the checkout's or the installed wheel's)


def _trace(name: str):
    return parse_monitor((DATA / f"trace-docker26-{name}.txt").read_text())


def _steps(events: list[Event]) -> list[tuple[str, str, str]]:
    return [(e.table, e.chain, e.verdict) for e in events if e.kind != "return"]


def test_published_port_on_the_receiving_node_in_order():
    events = first_packet(_trace("port-dst"))
    assert _steps(events) == [
        ("nat", "PREROUTING", "JUMP:DOCKER"), ("nat", "DOCKER", "ACCEPT"),
        ("filter", "FORWARD", "JUMP:DOCKER-USER"), ("filter", "DOCKER-USER", "RETURN"),
        ("filter", "FORWARD", "JUMP:DOCKER-ISOLATION-STAGE-1"), ("filter", "DOCKER-ISOLATION-STAGE-1", "RETURN"),
        ("filter", "FORWARD", "JUMP:DOCKER"), ("filter", "DOCKER", "ACCEPT"), ("nat", "POSTROUTING", "ACCEPT"),
    ]
    dnat = events[1]
    assert dnat.sentence.startswith("DNAT: tcp to port 18090 on any local address goes to 172.17.0.2:80")
    # the same words as `swarmlab explain` gives the rule
    assert dnat.sentence == explain_rule(parse_rule(dnat.raw), "nat").sentence
    assert verdict_of(events) == "ACCEPT"


def test_our_own_trace_rules_are_not_hops():
    for name in ("port-src", "port-dst", "overlay-dst", "masquerade-src"):
        events = _trace(name).events
        assert events and not any("swarmlab-trace" in e.raw or e.table == "raw" for e in events)


def test_one_packet_is_followed_by_its_ip_id_through_masquerade():
    trace = _trace("masquerade-src")
    events = first_packet(trace)
    assert {e.packet for e in events} == {events[0].packet}
    masq = [e for e in events if e.table == "nat" and e.chain == "POSTROUTING"]
    assert masq and masq[0].sentence.startswith("MASQUERADE: packets from 172.17.0.0/16")
    assert trace.packets[events[0].packet]["IN"] == "docker0"


def test_overlay_vxlan_is_accepted_by_the_firewall_of_the_receiving_node():
    events = first_packet(_trace("overlay-dst"))
    last = [e for e in events if e.kind == "rule"][-1]
    assert (last.chain, last.verdict) == ("ufw-user-input", "ACCEPT") and "to port 4789" in last.sentence


def test_a_drop_by_policy_is_the_verdict():
    text = (" PACKET: 2 aa IN=eth0 SRC=10.0.0.1 DST=10.0.0.2 ID=7 SYN\n"
            " TRACE: 2 aa filter:INPUT:rule:0x1:JUMP:ufw-before-input  "
            "iptables -t filter -A INPUT -j ufw-before-input\n"
            " TRACE: 2 aa filter:ufw-before-input:return:\n"
            " TRACE: 2 aa filter:INPUT:policy:DROP \n")
    events = first_packet(parse_monitor(text))
    assert verdict_of(events) == "DROP"
    assert events[-1].sentence == "INPUT policy (filter): no rule decided, the packet is dropped"


def test_disagreements_name_rules_only_one_side_has():
    events = first_packet(_trace("port-dst"))
    static = [explain_rule(parse_rule(e.raw), e.table) for e in events if e.kind == "rule"]
    scope = {(e.table, e.chain) for e in events}
    assert disagreements(static, events, scope) == []
    missing = disagreements(static[:-1], events, scope)
    assert len(missing) == 1 and "did not expect" in missing[0] and "to 172.17.0.2 port 80" in missing[0]
    extra = disagreements(static, events[:-3], scope)
    assert any("never hit" in d for d in extra)


def test_cleanup_removes_every_tagged_rule_and_the_monitors():
    for script in (scripts.cleanup(), scripts.finish()):
        assert "--comment swarmlab-trace" in script and "sed 's/^-A /-D /'" in script
        assert "kill -- -" in script  # whole process groups (timeout and its child)
    start = scripts.start([["OUTPUT", "-p", "tcp", "-d", "10.0.0.1"]], "tcp port 80", "eth0", "tok")
    assert start.index("xtables-monitor --trace") < start.index("-j TRACE")  # listening before the rules
    assert start.index("sleep 300") < start.index("-j TRACE")  # the dead man's switch armed first
    assert "iptables -w -t raw -I OUTPUT -p tcp -d 10.0.0.1 -m comment --comment swarmlab-trace -j TRACE" in start


def test_rule_words_are_quoted_into_the_shell():
    start = scripts.start([["OUTPUT", "-d", "10.0.0.1; reboot"]], "tcp", "eth0", "tok")
    assert "'10.0.0.1; reboot'" in start


def test_the_last_trace_is_a_path_on_the_picture(tmp_path):
    from swarmlab.model.spec import load_spec

    (tmp_path / "lab.yaml").write_text(SPEC)
    spec = load_spec(tmp_path / "lab.yaml")
    data = json.loads((DATA / "report-3nodes.json").read_text())
    data["trace"] = json.loads((DATA / "trace-docker26-masquerade.json").read_text())
    dot = render.dot_source(spec, data).source
    edges = re.findall(r"(\S+) -- (\S+) \[.*id=\"?(trace-\d)", dot)
    assert [(a.strip('"'), b.strip('"'), i) for a, b, i in edges] == [
        ("r2-br-docker0", "r2-eth", "trace-1"), ("r2-eth", "r1-eth", "trace-2")]
    page = render.html(spec, data)
    assert 'id="trace"' in page and "MASQUERADE: packets from 172.17.0.0/16" in page
    other = dict(data, trace=dict(data["trace"], lab="another-lab"))
    assert "trace-1" not in render.dot_source(spec, other).source


def _verify_checks() -> set[str]:
    return {node.name for path in VERIFY.glob("test_*.py") for node in ast.parse(path.read_text()).body
            if isinstance(node, ast.FunctionDef)}


@pytest.mark.parametrize("name", sorted(EXERCISES))
def test_exercise_is_complete(name):
    ex = EXERCISES[name]
    assert set(re.findall(r"test_\w+", ex.checks)) <= _verify_checks()
    assert len(ex.hints) == 3 and ex.fix and ex.shell != ex.fix
    assert ex.shell not in ex.symptom


def test_docker28_layout_goes_through_docker_forward_and_bridge():
    events = first_packet(parse_monitor((DATA / "trace-docker28-port-dst.txt").read_text()))
    chains = [e.chain for e in events if e.kind == "rule" and e.table == "filter"]
    assert chains == ["FORWARD", "FORWARD", "DOCKER-FORWARD", "DOCKER-FORWARD", "DOCKER-FORWARD",
                      "DOCKER-BRIDGE", "DOCKER"]
    assert events[-2].sentence.startswith("DOCKER: tcp packets to 172.17.0.2 port 80")
    assert verdict_of(events) == "ACCEPT"
    masq = first_packet(parse_monitor((DATA / "trace-docker28-masquerade-src.txt").read_text()))
    assert ("DOCKER-FORWARD", "ACCEPT") in [(e.chain, e.verdict) for e in masq]


def test_exercise_commands_without_a_running_exercise(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from swarmlab.cli.app import main

    monkeypatch.setenv("SWARMLAB_STATE", str(tmp_path))
    spec = tmp_path / "lab.yaml"
    spec.write_text(SPEC)
    listed = CliRunner().invoke(main, ["exercise", "list"])
    assert listed.exit_code == 0 and all(name in listed.output for name in EXERCISES)
    assert not any(e.shell in listed.output for e in EXERCISES.values())  # symptoms only
    for cmd in ("hint", "check"):
        run = CliRunner().invoke(main, ["exercise", cmd, "--spec", str(spec)])
        assert run.exit_code == 2 and "no exercise is running" in run.output, run.output
    bad = CliRunner().invoke(main, ["trace", "port", "--from", "nope", "--spec", str(spec)])
    assert bad.exit_code == 2 and "no node 'nope'" in bad.output


def test_graded_hints_in_order_then_the_last_again(tmp_path, monkeypatch):
    from swarmlab.learn import exercises
    from swarmlab.model.spec import load_spec

    monkeypatch.setenv("SWARMLAB_STATE", str(tmp_path))
    (tmp_path / "lab.yaml").write_text(SPEC)
    spec = load_spec(tmp_path / "lab.yaml")
    exercises.started(spec, "masquerade")
    got = [exercises.next_hint(spec) for _ in range(4)]
    hints = EXERCISES["masquerade"].hints
    assert got == [(1, hints[0]), (2, hints[1]), (3, hints[2]), (3, hints[2])]
    exercises.finished(spec)
    assert exercises.next_hint(spec) is None


def test_overall_verdict_names_the_node_and_rule_that_dropped():
    from swarmlab.learn.live_trace import overall

    ok = {"node": "a", "verdict": "ACCEPT", "events": []}
    drop = {"node": "b", "verdict": "DROP", "events": [
        {"kind": "policy", "sentence": "INPUT policy (filter): no rule decided, the packet is dropped"}]}
    assert overall([ok, dict(ok, node="b")]) == "ACCEPTED on every node it crossed"
    assert overall([ok, drop]) == "DROPPED on b: INPUT policy (filter): no rule decided, the packet is dropped"
    assert overall([ok, dict(ok, node="b", verdict="not seen")]).startswith("never seen on b")
