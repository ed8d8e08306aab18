"""A node's swarm state from `docker info --format '{{json .}}'` (or its `.Swarm` part): one
parser for the verify suite and the deploy's facts.

Pure: no host, no command; give it the text (or the decoded JSON) a node printed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

# the command whose output `parse_info` reads (the whole `docker info`, swarm part included)
INFO_COMMAND = "docker info --format '{{json .}}'"
SWARM_PORT = 2377


@dataclass(frozen=True)
class SwarmState:
    """The swarm part of one node's `docker info`."""

    local_node_state: str = ""  # inactive | pending | active | error | locked ("" unknown)
    node_id: str = ""
    node_addr: str = ""
    control_available: bool = False  # a manager
    cluster_id: str = ""
    managers: int = 0  # managers in the cluster (as this node's manager sees it; 0 on workers)
    nodes: int = 0
    remote_managers: tuple[str, ...] = ()  # "ip:port" of the managers this node knows
    error: str = ""
    raw: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def active(self) -> bool:
        return self.local_node_state == "active"

    def in_swarm_of(self, manager_ip: str, port: int = SWARM_PORT) -> bool:
        """Active in the swarm that the manager at `manager_ip` belongs to."""
        return self.active and f"{manager_ip}:{port}" in self.remote_managers


def from_swarm(swarm: dict | None) -> SwarmState:
    """A SwarmState from the decoded `.Swarm` object ({} or None: an unknown state)."""
    swarm = swarm or {}
    cluster = swarm.get("Cluster") or {}
    return SwarmState(
        local_node_state=swarm.get("LocalNodeState") or "",
        node_id=swarm.get("NodeID") or "",
        node_addr=swarm.get("NodeAddr") or "",
        control_available=bool(swarm.get("ControlAvailable")),
        cluster_id=cluster.get("ID") or "",
        managers=int(swarm.get("Managers") or 0),
        nodes=int(swarm.get("Nodes") or 0),
        remote_managers=tuple(m.get("Addr", "") for m in swarm.get("RemoteManagers") or []),
        error=swarm.get("Error") or "",
        raw=swarm,
    )


def parse_info(text: str) -> SwarmState:
    """The swarm state in `docker info` JSON output: the whole info (`{{json .}}`) or only its
    `.Swarm` part (`{{json .Swarm}}`). Empty or non-JSON text (docker down): an unknown state."""
    text = text.strip()
    if not text.startswith("{"):
        return SwarmState()
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return SwarmState()
    if not isinstance(data, dict):
        return SwarmState()
    return from_swarm(data["Swarm"] if "Swarm" in data else data)
