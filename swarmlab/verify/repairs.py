"""Repairs `swarmlab verify` prints under a failed check whose state the deploy does not own.

Two kinds: fixed ones per check (Docker writes its own NAT/filter rules, bridges and their
addresses when dockerd starts, so a restart puts back what was deleted), and the ones a check
computes from what it found (the exact `iptables -D` of a conflicting rule, the `rm` of a drop-in)
and records as a JUnit property named `repair`. Nothing here runs a repair: the user (or the
drift suite) runs the printed command as root on the named node.
"""

from __future__ import annotations

import re
import shlex

PROPERTY = "repair"

# Docker re-creates its chains, jumps, MASQUERADE rules and bridge addresses at start; the
# restart stops the node's containers (swarm tasks are rescheduled). On an autolocked manager
# the restart locks it: `swarmlab deploy` unlocks it with the lab's key.
# reset-failed clears the start counter (3 starts in 60 s), so a restart soon after another is not refused
DOCKER_RESTART = "systemctl reset-failed docker.service && systemctl restart docker.service"
FIXED: dict[str, str] = {
    "test_nat_masquerade_for_docker0_subnet": DOCKER_RESTART,
    "test_docker0_bridge_with_address": DOCKER_RESTART,
    "test_nat_docker_chain_hooked": DOCKER_RESTART,
    "test_forward_passes_docker_user": DOCKER_RESTART,
    "test_docker_gwbridge_with_masquerade": DOCKER_RESTART,
}

_CASE = re.compile(r"(?P<check>[A-Za-z0-9_]+)(\[(?P<param>.*)\])?")


def delete_rule(raw: str, table: str = "filter") -> str:
    """The command that deletes one `iptables -S` rule line (`-A CHAIN ...`), quoted."""
    words = shlex.split(raw)
    return "iptables -w 90 -t " + shlex.quote(table) + " " + shlex.join(["-D", *words[1:]])


def repairs_for(case: str, recorded: list[str]) -> list[str]:
    """Lines to print under the failed check `case` ("check[node]"): `repair on NODE (as root):
    COMMAND`, from what the check recorded and from the fixed table."""
    m = _CASE.fullmatch(case)
    if not m:
        return []
    node = m.group("param") or ""  # the checks with repairs are parametrized by node only
    commands = list(recorded)
    fixed = FIXED.get(m.group("check"))
    if fixed and fixed not in commands:
        commands.append(fixed)
    where = f"on {node} " if node else ""
    return [f"repair {where}(as root): {c}" for c in commands]


REPAIR_LINE = re.compile(r"^ {4}repair on (?P<node>\S+) \(as root\): (?P<command>.+)$")


def printed_repairs(stderr: str, failure_id: str) -> list[tuple[str, str]]:
    """(node, command) pairs printed under `  failed: FAILURE_ID` in verify's stderr."""
    out: list[tuple[str, str]] = []
    lines = stderr.splitlines()
    for i, line in enumerate(lines):
        if not line.startswith(f"  failed: {failure_id}:") and line != f"  failed: {failure_id}":
            continue
        for follow in lines[i + 1:]:
            m = REPAIR_LINE.match(follow)
            if not m:
                break
            out.append((m.group("node"), m.group("command")))
    return out
