"""Break-and-fix exercises, built from the drift suite's breaks: `start` breaks the live lab and
tells only the symptom, `hint` gives graded hints (the layer, a command to look with, the
exact place), `check` runs the verification checks that catch the break, `reset` repairs the
lab with the deploy (after putting back what Docker, not the deploy, owns).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from swarmlab.model.spec import LabSpec
from swarmlab.model.state import lab_state_dir
from swarmlab.verify.repairs import DOCKER_RESTART


@dataclass(frozen=True)
class Exercise:
    """One break the learner has to find and fix."""

    name: str
    symptom: str  # all `start` says
    node: str  # where it breaks: "m" (first manager), "w1", "w2"
    shell: str  # root shell that breaks it ({subnet}, {gateway} filled in)
    checks: str  # `swarmlab verify --check` expression that must fail, then pass
    hints: tuple[str, ...]  # graded: the layer, a command to look with, the exact place
    fix: str  # a root shell on the node that fixes it (the documented solution)
    restore: str = ""  # reset: what the deploy does not own, put back before it runs

    def node_name(self, spec: LabSpec) -> str:
        if self.node == "m":
            return spec.first_manager.name
        return spec.workers[int(self.node[1]) - 1].name

    def fill(self, spec: LabSpec, shell: str) -> str:
        return shell.format(subnet=spec.network.subnet, gateway=spec.network.gateway)


EXERCISES: dict[str, Exercise] = {e.name: e for e in (
    Exercise(
        "published-port", "a port published by a container on the first worker cannot be reached from "
        "the other nodes (the container itself runs fine)", "w1",
        "iptables -t nat -D PREROUTING -m addrtype --dst-type LOCAL -j DOCKER",
        "test_nat_docker_chain_hooked",
        ("Layer: NAT. Publishing a port is a DNAT rule; something keeps packets from reaching it.",
         "Look with: swarmlab explain NODE --port PORT (the static walk) and swarmlab trace port --to NODE "
         "(what the kernel did); on the node: iptables -t nat -S PREROUTING",
         "Place: nat PREROUTING must send packets for the node's own addresses to the DOCKER chain "
         "(-m addrtype --dst-type LOCAL -j DOCKER). That jump is missing."),
        "iptables -t nat -A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER",
        restore=DOCKER_RESTART),
    Exercise(
        "overlay-worker", "containers on the first worker cannot reach containers of the other nodes "
        "over the overlay network (ping between tasks fails)", "w1",
        "ufw delete allow from {subnet} to any port 4789 proto udp >/dev/null",
        "test_overlay_traffic_across_nodes_by_ip_and_name",
        ("Layer: the host firewall of a node. Overlay traffic travels between nodes as VXLAN (udp 4789).",
         "Look with: swarmlab trace overlay --to NODE (where does the VXLAN packet stop?); "
         "on the node: ufw status numbered",
         "Place: ufw's INPUT rules on the first worker: the rule allowing 4789/udp from the lab subnet is gone."),
        "ufw allow from {subnet} to any port 4789 proto udp >/dev/null"),
    Exercise(
        "masquerade", "containers on the manager's default bridge cannot open connections to the other "
        "nodes (their packets arrive, no answer comes back)", "m",
        "iptables -t nat -D POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE",
        "test_nat_masquerade_for_docker0_subnet",
        ("Layer: NAT. A container's private address (172.17.x.x) is unknown to the other nodes.",
         "Look with: swarmlab trace masquerade --from NODE and look at the source address on the wire; "
         "on the node: iptables -t nat -S POSTROUTING",
         "Place: nat POSTROUTING of the manager: the MASQUERADE rule for 172.17.0.0/16 leaving by any "
         "interface but docker0 is missing."),
        "iptables -t nat -A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE",
        restore=DOCKER_RESTART),
    Exercise(
        "bridge-netfilter", "on the first worker, traffic between containers on one bridge skips the "
        "firewall rules written for it", "w1",
        "sysctl -qw net.bridge.bridge-nf-call-iptables=0",
        "test_bridge_nf_call_iptables",
        ("Layer: the kernel's settings. Bridged frames reach iptables only when the kernel is told to.",
         "Look with: sysctl -a 2>/dev/null | grep bridge-nf",
         "Place: net.bridge.bridge-nf-call-iptables must be 1 (the deploy writes it to /etc/sysctl.d)."),
        "sysctl -qw net.bridge.bridge-nf-call-iptables=1"),
)}


def _state(spec: LabSpec):
    return lab_state_dir(spec.name) / "exercise.json"


def current(spec: LabSpec) -> dict[str, Any] | None:
    try:
        return json.loads(_state(spec).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def started(spec: LabSpec, name: str) -> None:
    _state(spec).write_text(json.dumps({"name": name, "started": time.time(), "hints": 0}))


def next_hint(spec: LabSpec) -> tuple[int, str] | None:
    """The next hint of the running exercise (the last one again when all are given)."""
    state = current(spec)
    if state is None:
        return None
    ex = EXERCISES[state["name"]]
    level = min(state["hints"], len(ex.hints) - 1)
    state["hints"] = level + 1
    _state(spec).write_text(json.dumps(state))
    return level + 1, ex.hints[level]


def finished(spec: LabSpec) -> None:
    _state(spec).unlink(missing_ok=True)
