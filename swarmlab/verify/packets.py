"""What an incoming packet meets in the host firewall: walk ufw's or swarmlab's nftables rules
in order, as the kernel does, and return the verdict of the first rule that matches.

Only the host firewall swarmlab manages is modelled (ufw's user rules and default policy, or
the `inet swarmlab` table); the suite checks separately that nothing in INPUT bypasses it.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

OPEN = "allow"
CLOSED = "deny"


@dataclass(frozen=True)
class Packet:
    source: str
    proto: str  # tcp | udp | esp
    port: int | None = None


def _in(source: str, spec: str) -> bool:
    try:
        return ipaddress.ip_address(source) in ipaddress.ip_network(spec, strict=False)
    except ValueError:
        return False


def _port_matches(spec: str, packet: Packet) -> bool:
    """ufw's To column: `2377/tcp`, `7946` (tcp and udp), `6000:6007/tcp`, `80,443/tcp`,
    `Anywhere/esp`-like protocol-only entries."""
    ports, _, proto = spec.partition("/")
    if proto and proto != packet.proto:
        return False
    if ports in ("Anywhere", "any", ""):
        return True
    if packet.port is None:
        return False
    for part in ports.split(","):
        low, _, high = part.partition(":")
        try:
            if int(low) <= packet.port <= int(high or low):
                return True
        except ValueError:
            return False
    return False


UFW_LINE = re.compile(
    r"^(?P<to>.+?)\s{2,}(?P<action>ALLOW|DENY|REJECT|LIMIT)(?: (?P<dir>IN|OUT|FWD))?\s{2,}(?P<src>.+?)\s*$"
)


def ufw_verdict(status_verbose: str, packet: Packet) -> tuple[str, str]:
    """(verdict, why) for an incoming IPv4 packet, from `ufw status verbose`."""
    if "Status: active" not in status_verbose:
        return OPEN, "ufw is inactive: nothing filters incoming packets"
    default = re.search(r"Default: (\w+) \(incoming\)", status_verbose)
    in_table = False
    for line in status_verbose.splitlines():
        if line.startswith("--"):
            in_table = True
            continue
        m = UFW_LINE.match(line) if in_table else None
        if not m or "(v6)" in line or m["dir"] in ("OUT", "FWD"):
            continue
        to, src = m["to"].split(" on ")[0].split(), m["src"].split()
        source, _, src_proto = src[0].rpartition("/")
        if src_proto.isalpha() and source:  # `10.88.0.0/24/esp`: a protocol-only rule
            if src_proto != packet.proto:
                continue
            src[0] = source
        if src[0] != "Anywhere" and not _in(packet.source, src[0]):
            continue
        if len(src) > 1 and src[1] == "port":  # a source-port rule: not what we model
            continue
        port = to[-1] if to else "Anywhere"
        if not _port_matches(port, packet):
            continue
        verdict = OPEN if m["action"] in ("ALLOW", "LIMIT") else CLOSED
        return verdict, f"ufw rule `{line.strip()}`"
    policy = default[1] if default else "unknown"
    return (OPEN if policy == "allow" else CLOSED), f"ufw default incoming policy {policy}"


NFT_RULE = re.compile(
    r"^(?:ip saddr (?P<src>\S+) )?(?:(?P<proto>tcp|udp) dport (?P<port>\d+)|meta l4proto (?P<l4>\w+))"
    r" (?P<verdict>accept|drop|reject)\b"
)


def nft_verdict(table: str, packet: Packet) -> tuple[str, str]:
    """(verdict, why) for an incoming packet, from `nft list table inet swarmlab`'s input chain."""
    in_input = False
    policy = "accept"
    for raw in table.splitlines():
        line = raw.strip()
        if line.startswith("chain "):
            in_input = line.split()[1] == "input"
            continue
        if not in_input:
            continue
        m = re.search(r"policy (\w+);", line)
        if m:
            policy = m[1]
            continue
        m = NFT_RULE.match(line)
        if not m:
            continue
        if m["src"] and not _in(packet.source, m["src"]):
            continue
        proto = m["proto"] or m["l4"]
        if proto != packet.proto or (m["port"] and int(m["port"]) != packet.port):
            continue
        return (OPEN if m["verdict"] == "accept" else CLOSED), f"nft rule `{line}`"
    return (OPEN if policy == "accept" else CLOSED), f"swarmlab table policy {policy}"


def outside_address(subnet: str) -> str:
    """A documentation address (TEST-NET, never routed) outside the lab subnet."""
    for candidate in ("192.0.2.1", "198.51.100.1", "203.0.113.1"):
        if not _in(candidate, subnet):
            return candidate
    raise ValueError(f"no TEST-NET address outside {subnet}")
