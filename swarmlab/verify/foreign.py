"""Foreign iptables rules that conflict with the lab: in the built-in INPUT/OUTPUT chains (ufw
and Docker keep theirs in their own chains), a rule naming a swarm port that drops the lab
subnet's traffic, or accepts that port from outside the subnet.

A rule that names no swarm port, or that only narrows what the lab allows, is the user's own and
is never reported (so never printed for deletion).
"""

from __future__ import annotations

import ipaddress

from swarmlab.model.spec import LabSpec
from swarmlab.verify.rules import Rule

DROPS = ("DROP", "REJECT")


def swarm_ports(spec: LabSpec) -> dict[str, set[int]]:
    """Protocol -> the ports lab nodes reach each other on (from the spec, not the deploy)."""
    if not spec.swarm.enabled:
        return {"tcp": {2376} if spec.docker.tls else set(), "udp": set()}
    tcp = {2377, 7946} | ({2376} if spec.docker.tls else set())
    return {"tcp": tcp, "udp": {7946, spec.swarm.data_path_port}}


def _ports(value: str | None) -> set[int]:
    """"7946", "2377,7946", "7000:8000" -> the ports (ranges expanded), empty when unparsable."""
    out: set[int] = set()
    for part in (value or "").split(","):
        lo, _, hi = part.partition(":")
        try:
            first, last = int(lo), int(hi or lo)
        except ValueError:
            continue
        if 0 < first <= last <= 65535 and last - first < 65536:
            out.update(range(first, last + 1))
    return out


def _named_ports(rule: Rule) -> set[int]:
    ports: set[int] = set()
    for key in ("--dport", "--dports", "--destination-port", "--sport", "--sports",
                "--source-port", "--ports"):
        if not rule.negated(key):
            ports |= _ports(rule.get(key))
    return ports


def _address_net(address: str | None) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    """The rule's address match as a network; None when it matches any address (absent or
    unreadable: read as the widest match)."""
    if not address:
        return None
    try:
        return ipaddress.ip_network(address, strict=False)
    except ValueError:
        return None


def _covers_lab(address: str | None, negated: bool, subnet: ipaddress.IPv4Network) -> bool:
    """The rule's address match includes (part of) the lab subnet."""
    net = _address_net(address)
    if net is None:
        return True
    return not net.supernet_of(subnet) if negated else net.overlaps(subnet)


def _outside_lab(address: str | None, negated: bool, subnet: ipaddress.IPv4Network) -> bool:
    """The rule's source match includes addresses outside the lab subnet."""
    net = _address_net(address)
    if net is None:
        return True
    return True if negated else not net.subnet_of(subnet)


def conflicting_rules(rules: list[Rule], spec: LabSpec) -> list[tuple[Rule, str]]:
    """(rule, why) for each rule that breaks the lab's swarm traffic or opens it wider."""
    subnet = ipaddress.ip_network(spec.network.subnet)
    wanted = swarm_ports(spec)
    out = []
    for rule in rules:
        if rule.chain not in ("INPUT", "OUTPUT") or rule.get("proto") not in wanted:
            continue
        hit = _named_ports(rule) & wanted[rule.get("proto")]
        if not hit:
            continue
        ports = ",".join(str(p) for p in sorted(hit))
        peer = "source" if rule.chain == "INPUT" else "destination"
        if rule.target in DROPS and _covers_lab(rule.get(peer), rule.negated(peer), subnet):
            out.append((rule, f"{rule.target.lower()}s {rule.get('proto')} {ports} of the lab "
                              f"subnet {subnet}"))
        elif rule.target == "ACCEPT" and rule.chain == "INPUT" and \
                _outside_lab(rule.get("source"), rule.negated("source"), subnet):
            out.append((rule, f"accepts {rule.get('proto')} {ports} from outside the lab "
                              f"subnet {subnet}, before ufw"))
    return out
