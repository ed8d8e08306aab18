"""`swarmlab trace` and `swarmlab exercise` on a live Debian 13 lab (one lab for the module):
each packet kind traced (the rule hits match the recorded expectation, no tracing left behind,
also after an interrupt), and each exercise's cycle: start -> check fails -> the documented
fix -> check passes -> reset leaves a verified lab."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from swarmlab.learn.exercises import EXERCISES
from swarmlab.learn.scripts import DEAD_MAN_SECONDS
from swarmlab.learn.tracelog import TRACE_COMMENT
from swarmlab.model.state import lab_state_dir

from .conftest import Lab, _engine

pytestmark = pytest.mark.live

# per Docker layout and packet kind, on the node the packet arrives at / starts from: (table,
# chain, verdict, words in the sentence) the kernel must report, in this order
_UFW_IN = [("filter", "INPUT", "", ""), ("filter", "ufw-user-input", "ACCEPT", "")]
EXPECTED = {
    "docker26": {  # Debian 13: FORWARD -> DOCKER-USER, DOCKER-ISOLATION-STAGE-1, DOCKER
        "port": {
            "dst": [("nat", "PREROUTING", "JUMP:DOCKER", "go through DOCKER"),
                    ("nat", "DOCKER", "ACCEPT", "DNAT: tcp to port 18090"),
                    ("filter", "FORWARD", "JUMP:DOCKER-USER", "DOCKER-USER first"),
                    ("filter", "FORWARD", "JUMP:DOCKER", "leaving by docker0"),
                    ("filter", "DOCKER", "ACCEPT", "port 80 arriving on any interface but docker0")],
            "src": [("filter", "OUTPUT", "", "")],
        },
        "overlay": {"dst": [*_UFW_IN[:1], ("filter", "ufw-user-input", "ACCEPT", "to port 4789")],
                    "src": [("filter", "OUTPUT", "", "")]},
        "masquerade": {
            "src": [("filter", "FORWARD", "JUMP:DOCKER-USER", "DOCKER-USER first"),
                    ("filter", "FORWARD", "ACCEPT", "arriving on docker0"),
                    ("nat", "POSTROUTING", "ACCEPT", "MASQUERADE: packets from 172.17.0.0/16")],
            "dst": [*_UFW_IN[:1], ("filter", "ufw-user-input", "ACCEPT", "to port 22")],
        },
    },
    "docker28": {  # Debian 14: FORWARD -> DOCKER-USER, DOCKER-FORWARD -> DOCKER-CT, ..., DOCKER-BRIDGE
        "port": {
            "dst": [("nat", "PREROUTING", "JUMP:DOCKER", "go through DOCKER"),
                    ("nat", "DOCKER", "ACCEPT", "DNAT: tcp to port 18090"),
                    ("filter", "FORWARD", "JUMP:DOCKER-USER", "DOCKER-USER first"),
                    ("filter", "FORWARD", "JUMP:DOCKER-FORWARD", ""),
                    ("filter", "DOCKER-BRIDGE", "JUMP:DOCKER", "leaving by docker0"),
                    ("filter", "DOCKER", "ACCEPT", "port 80 arriving on any interface but docker0")],
            "src": [("filter", "OUTPUT", "", "")],
        },
        "overlay": {"dst": [*_UFW_IN[:1], ("filter", "ufw-user-input", "ACCEPT", "to port 4789")],
                    "src": [("filter", "OUTPUT", "", "")]},
        "masquerade": {
            "src": [("filter", "FORWARD", "JUMP:DOCKER-USER", "DOCKER-USER first"),
                    ("filter", "FORWARD", "JUMP:DOCKER-FORWARD", ""),
                    ("filter", "DOCKER-FORWARD", "ACCEPT", "arriving on docker0"),
                    ("nat", "POSTROUTING", "ACCEPT", "MASQUERADE: packets from 172.17.0.0/16")],
            "dst": [*_UFW_IN[:1], ("filter", "ufw-user-input", "ACCEPT", "to port 22")],
        },
    },
}
LAYOUT = {"debian-13": "docker26", "debian-14": "docker28"}


@pytest.fixture(scope="module", params=["learn", "learn-forky"], ids=["debian13", "debian14"])
def lab(request):
    """One lab per distro for the trace and exercise tests: brought up (or converged, when an
    interrupted run left it up) and removed at the end."""
    _engine()
    lab = Lab(request.param)
    run = lab.run("up")
    assert run.rc == 0, run.out + run.err
    yield lab
    down = lab.run("down")
    assert down.rc == 0, down.err


def _left(lab) -> dict[str, str]:
    """Per node: TRACE rules, monitors and captures still there ("" when clean)."""
    out = {}
    for node in lab.spec.nodes:
        rules = lab.exec(node.name, "sh", "-c", f"iptables-save | grep -e '{TRACE_COMMENT}' || true").strip()
        nft = lab.exec(node.name, "sh", "-c", "nft list ruleset | grep -e nftrace || true").strip()
        procs = lab.exec(node.name, "sh", "-c", "pgrep -a 'xtables-monit|tcpdump' || true; "
                         f"ps -eo args | grep -e '^sleep {DEAD_MAN_SECONDS}$' || true").strip()
        out[node.name] = "\n".join(x for x in (rules, nft, procs) if x)
    return out


def _match(events: list[dict], expected: list[tuple[str, str, str, str]]) -> None:
    """Each expected (table, chain, verdict, words) appears among the events, in this order."""
    at = 0
    for table, chain, verdict, text in expected:
        for i in range(at, len(events)):
            e = events[i]
            if (e["table"], e["chain"]) == (table, chain) and e["verdict"].startswith(verdict) \
                    and text in e["sentence"]:
                at = i + 1
                break
        else:
            pytest.fail(f"no {table} {chain} {verdict} '{text}' after event {at} in:\n"
                        + "\n".join(f"{e['table']} {e['chain']} {e['verdict']} {e['sentence']}" for e in events))


@pytest.mark.parametrize("kind", ["port", "overlay", "masquerade"])
def test_trace_each_packet_kind(lab, kind):
    run = lab.run("trace", kind, "--json")
    assert run.rc == 0, run.out + run.err
    result = json.loads(run.out)
    src, dst = (hop["node"] for hop in result["hops"])
    hops = {hop["node"]: hop for hop in result["hops"]}
    expected = EXPECTED[LAYOUT[lab.spec.nodes[0].distro]][kind]
    _match(hops[dst]["events"], expected["dst"])
    _match(hops[src]["events"], expected["src"])
    assert hops[dst]["verdict"] == "ACCEPT", result
    assert all(hop["left"] == "0" for hop in result["hops"]), result
    assert _left(lab) == {n.name: "" for n in lab.spec.nodes}
    wire = "\n".join(hops[dst]["wire"])
    if kind == "overlay":
        assert "VXLAN" in wire and "ICMP echo request" in wire, wire
        assert "bytes from" in result["sent"], result["sent"]
    elif kind == "masquerade":
        src_ip = lab.spec.node(src).ip
        assert f"{src_ip}." in wire, f"the container's packet did not arrive from {src_ip}:\n{wire}"
        assert "reached: SSH-" in result["sent"], result["sent"]
    else:
        assert result["sent"] == "connected" and "Flags [S]" in wire, result
        assert result["disagreements"] == [], result["disagreements"]
    saved = json.loads((lab_state_dir(lab.spec.name) / "trace.json").read_text())
    assert saved["kind"] == kind


def test_trace_interrupted_leaves_no_tracing(lab):
    """Ctrl-C while the tracing is in place: every node is clean afterwards."""
    proc = subprocess.Popen([sys.executable, "-m", "swarmlab.cli", "trace", "port", "--linger", "120",
                             "--spec", str(lab.path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(120):
            if any(_left(lab).values()):
                break
            time.sleep(1)
        else:
            pytest.fail("the tracing never started")
        time.sleep(3)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0, out
    assert _left(lab) == {n.name: "" for n in lab.spec.nodes}, err


def test_trace_failing_midway_leaves_no_tracing(lab):
    """The port is taken on the target node, so the trace's web container cannot start after the
    tracing is in place: the trace fails, naming the reason, and every node is clean."""
    target = lab.spec.first_manager.name
    pid = lab.exec(target, "sh", "-c",
                   "nohup python3 -m http.server 18090 >/dev/null 2>&1 </dev/null & echo $!").strip()
    try:
        time.sleep(1)
        run = lab.run("trace", "port")
    finally:
        lab.exec(target, "kill", pid, check=False)
    assert run.rc == 2 and "error: trace:" in run.err and "address already in use" in run.err, run.out + run.err
    assert _left(lab) == {n.name: "" for n in lab.spec.nodes}


def test_dead_mans_switch_removes_the_tracing_by_itself(lab, monkeypatch):
    """The control machine never comes back after starting the tracing: the node cleans up alone."""
    from swarmlab.learn import scripts

    monkeypatch.setattr(scripts, "DEAD_MAN_SECONDS", 6)
    node = lab.spec.nodes[0]
    lab.exec(node.name, "sh", "-c", scripts.start([["OUTPUT", "-p", "tcp", "-d", node.ip, "--dport", "9"]],
                                                  "tcp port 9", lab.spec.network.interface, "t0k"))
    assert TRACE_COMMENT in lab.exec(node.name, "iptables-save", "-t", "raw")
    for _ in range(30):
        time.sleep(1)
        if not _left(lab)[node.name]:
            break
    assert _left(lab)[node.name] == ""


@pytest.mark.parametrize("name", sorted(EXERCISES))
def test_exercise_cycle(lab, name):
    """start -> check fails -> the documented fix -> check passes -> reset: verified."""
    ex = EXERCISES[name]
    start = lab.run("exercise", "start", name)
    assert start.rc == 0, start.out + start.err
    assert ex.fill(lab.spec, ex.shell) not in start.out and ex.checks not in start.out, "start told what it broke"
    hints = [lab.run("exercise", "hint").out for _ in ex.hints]
    assert all(f"hint {i}/{len(ex.hints)}" in h for i, h in enumerate(hints, 1)), hints
    failing = lab.run("exercise", "check")
    assert failing.rc == 1 and "not solved" in failing.out, failing.out + failing.err
    lab.exec(ex.node_name(lab.spec), "sh", "-c", ex.fill(lab.spec, ex.fix))
    solved = lab.run("exercise", "check")
    assert solved.rc == 0 and "solved" in solved.out, solved.out + solved.err
    reset = lab.run("exercise", "reset")
    assert reset.rc == 0, reset.out + reset.err
    s = reset.summary
    assert s["failed"] == 0 and s["verified"] == s["total"] > 0, reset.out
