"""`swarmlab explain NODE --port P`: a published port's path through one node's rules."""

from __future__ import annotations

import ipaddress
from typing import Any

from swarmlab.report.explain import Explained, Packet, split_tables, walk
from swarmlab.verify.rules import parse_rule


def _bridge_of(facts: dict[str, Any], addr: str) -> str | None:
    """The bridge whose network holds `addr` (docker0, docker_gwbridge, br-<id>)."""
    for net in facts.get("networks") or []:
        for subnet in net.get("subnets") or []:
            try:
                if net.get("bridge") and ipaddress.ip_address(addr) in ipaddress.ip_network(subnet):
                    return net["bridge"]
            except ValueError:
                continue
    return None


def _owner(facts: dict[str, Any], addr: str) -> str | None:
    for c in facts.get("containers") or []:
        if addr in c["networks"].values():
            return f"container {c['name']}" + (f" (task {c['task']})" if c.get("task") else "")
    for ns in facts.get("namespaces") or []:
        for link in ns["links"]:
            if any(a.split("/")[0] == addr for a in link["addresses"]):
                return f"{ns['kind']} {ns['name']}"
    return None


def trace_port(facts: dict[str, Any], node_ip: str, other_ip: str, port: int, iface: str = "eth0",
               proto: str = "tcp") -> list[str]:
    """Lines: the DNAT rule, the container behind it, the filter rules a packet from another lab
    node passes, the verdict. Says so plainly when nothing publishes the port."""
    tables = split_tables(facts["iptables"]["nat"] + "\n" + facts["iptables"]["filter"])
    pkt = Packet(proto, node_ip, port, src=other_ip, in_iface=iface, local_dst=True)
    nat_seen, verdict = walk(tables.get("nat", []), "nat", "PREROUTING", pkt)
    lines = [f"A {proto} packet from {other_ip} (another lab node) to {node_ip}:{port}, arriving on {iface}:",
             "", "nat PREROUTING:"]
    lines += [f"  {_line(e)}" for e in nat_seen]
    if not verdict.startswith("DNAT "):
        published = sorted({r.dport for r in (parse_rule(x) for x in tables.get("nat", [])) if r and r.target == "DNAT"
                            and r.dport and r.chain != "DOCKER_OUTPUT"})
        lines += [f"  no DNAT rule for {proto} port {port}: the packet stays addressed to the node itself "
                  "(INPUT, the host firewall, decides)",
                  f"  ports published on this node: {', '.join(published) or 'none'}"]
        return lines
    to = verdict.split(" ", 1)[1]
    addr, bridge, (seen, fverdict) = _forward(facts, tables, to, proto, other_ip, iface, port)
    owner = _owner(facts, addr)
    lines += ["", f"-> {to}: {owner or 'no running container has this address'}"
              + (f", behind bridge {bridge}" if bridge else "")]
    lines += ["", f"filter FORWARD ({iface} -> {bridge or '?'}):"]
    lines += [f"  {_line(e)}" for e in seen]
    lines += ["", f"verdict: {fverdict}"]
    return lines


def _forward(facts: dict[str, Any], tables: dict[str, list[str]], to: str, proto: str, other_ip: str,
             iface: str, port: int) -> tuple[str, str | None, tuple[list[Explained], str]]:
    """The DNATed packet's walk through filter FORWARD: (address, bridge, (rules, verdict))."""
    addr, _, to_port = to.rpartition(":")
    bridge = _bridge_of(facts, addr)
    pkt = Packet(proto, addr, int(to_port or port), src=other_ip, in_iface=iface, out_iface=bridge)
    return addr, bridge, walk(tables.get("filter", []), "filter", "FORWARD", pkt)


def static_walk(facts: dict[str, Any], node_ip: str, other_ip: str, port: int, iface: str = "eth0",
                proto: str = "tcp") -> tuple[list[Explained], str]:
    """The rules `explain --port` says a packet from another node meets (nat PREROUTING, then
    filter FORWARD when a DNAT rule matched) and its verdict."""
    tables = split_tables(facts["iptables"]["nat"] + "\n" + facts["iptables"]["filter"])
    pkt = Packet(proto, node_ip, port, src=other_ip, in_iface=iface, local_dst=True)
    nat_seen, verdict = walk(tables.get("nat", []), "nat", "PREROUTING", pkt)
    if not verdict.startswith("DNAT "):
        return nat_seen, "no DNAT: INPUT decides"
    _, _, (seen, fverdict) = _forward(facts, tables, verdict.split(" ", 1)[1], proto, other_ip, iface, port)
    return nat_seen + seen, fverdict


def _line(e: Explained) -> str:
    return (e.sentence or f"(not explained) {e.raw}") + f"\n      {e.raw}"
