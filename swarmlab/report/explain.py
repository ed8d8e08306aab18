"""iptables rules in plain language: one sentence per rule, built from the rule's own fields.

Pure functions over `iptables-save`/`iptables -S` text (parsed by `swarmlab.verify.rules`), so
they are unit-tested on recorded Docker 26 and Docker 28 rule sets. A rule with an option this
module does not know is never guessed at: it comes back with `sentence=None` (shown raw).
"""

from __future__ import annotations

import ipaddress
from dataclasses import asdict, dataclass

from swarmlab.verify.rules import Rule, parse_rule

# what each well-known chain is for (the sentence of a jump to it ends with this)
CHAIN_PURPOSE = {
    "DOCKER-USER": "your own rules go here; Docker never touches them",
    "DOCKER-FORWARD": "Docker's own forwarding rules (Docker 28 and later)",
    "DOCKER-CT": "replies to connections already set up, one rule per bridge",
    "DOCKER-BRIDGE": "hands packets going into each Docker bridge to the DOCKER chain",
    "DOCKER-ISOLATION-STAGE-1": "isolation: stops traffic between different Docker bridges",
    "DOCKER-ISOLATION-STAGE-2": "isolation, second stage: drops what stage 1 picked if it goes into another bridge",
    "DOCKER-INGRESS": "the swarm routing mesh: ports published by services",
    "DOCKER_OUTPUT": "the embedded DNS server (127.0.0.11) of containers on user networks",
    "DOCKER_POSTROUTING": "the embedded DNS server's replies",
}
NAT_CHAIN_PURPOSE = {"DOCKER": "port publishing: DNAT of the ports containers publish"}
FILTER_CHAIN_PURPOSE = {"DOCKER": "which published container ports may be reached from outside their bridge"}

# purpose groups, in the order a reader meets them
GROUPS = (
    "Built-in chain policies",
    "Your rules (DOCKER-USER)",
    "Outbound NAT (MASQUERADE)",
    "Published ports (DNAT and their filter rules)",
    "Swarm routing mesh (ingress)",
    "Embedded DNS",
    "Forwarding to and from containers",
    "Isolation between networks",
    "Encrypted overlays",
    "Host firewall (ufw)",
    "Other rules",
)

CTSTATE = {
    "RELATED,ESTABLISHED": "that belong to a connection already set up (replies)",
    "ESTABLISHED,RELATED": "that belong to a connection already set up (replies)",
    "ESTABLISHED": "of an established connection",
    "NEW": "that start a new connection",
    "INVALID": "that conntrack finds invalid",
}
ICMP = {"0": "echo reply", "3": "destination unreachable", "8": "echo request (ping)",
        "11": "time exceeded", "12": "parameter problem"}

# options this module can put into words; anything else leaves the rule raw
KNOWN = {"source", "destination", "in", "out", "proto", "target", "goto", "--dport", "--sport",
         "--dports", "--sports", "--dst-type", "--src-type", "--ctstate", "--state",
         "--to-destination", "--to-source", "--icmp-type", "--limit", "--limit-burst",
         "--log-prefix", "--reject-with", "--comment", "--to-ports"}
KNOWN_MATCHES = {"tcp", "udp", "icmp", "addrtype", "conntrack", "state", "limit", "comment", "multiport"}


@dataclass
class Explained:
    """A rule (or policy) with its table, purpose group and sentence (None: not explained)."""

    table: str
    chain: str
    raw: str
    group: str
    sentence: str | None

    def to_dict(self) -> dict:
        return asdict(self)


def split_tables(text: str) -> dict[str, list[str]]:
    """`iptables-save` output -> {table: rule and policy lines in `-S` form}."""
    tables: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("*"):
            current = line[1:]
            tables[current] = []
        elif current is None or not line or line.startswith("#") or line == "COMMIT":
            continue
        elif line.startswith(":"):
            chain, policy = line[1:].split()[:2]
            if policy != "-":
                tables[current].append(f"-P {chain} {policy}")
            else:
                tables[current].append(f"-N {chain}")
        else:
            tables[current].append(line)
    return tables


def _addr(value: str) -> str:
    return value[:-3] if value.endswith("/32") else value


def _local_dst(rule: Rule) -> bool:
    return rule.get("--dst-type") == "LOCAL" and not rule.negated("--dst-type")


def _conditions(rule: Rule, table: str, *, skip: set[str] = frozenset()) -> list[str]:
    """The rule's matches as phrases ("from 172.17.0.0/16", "leaving by any interface but docker0")."""
    parts: list[str] = []
    if (src := rule.get("source")) and "source" not in skip:
        parts.append(f"from anywhere but {_addr(src)}" if rule.negated("source") else f"from {_addr(src)}")
    if (sport := rule.get("--sport")) and "--sport" not in skip:
        parts.append(f"port {sport}" if src and "source" not in skip else f"from port {sport}")
    if (dst := rule.get("destination")) and "destination" not in skip:
        parts.append(f"to anywhere but {_addr(dst)}" if rule.negated("destination") else f"to {_addr(dst)}")
    if (dport := rule.dport) and "--dport" not in skip:
        word = "ports" if "," in dport or ":" in dport else "port"
        parts.append(f"{word} {dport}" if dst and "destination" not in skip else f"to {word} {dport}")
    if rule.get("--dst-type") is not None and "--dst-type" not in skip:
        kind = rule.get("--dst-type").lower()
        if dst and rule.negated("destination") and kind == "local" and not rule.negated("--dst-type") \
                and "destination" not in skip:
            parts[-1] = f"to a local address outside {_addr(dst)}"  # `! -d 127.0.0.0/8 --dst-type LOCAL`
        else:
            parts.append(f"to an address that is not {kind}" if rule.negated("--dst-type")
                         else "to any local address" if kind == "local" else f"to a {kind} address")
    if (icmp := rule.get("--icmp-type")) is not None:
        parts.append(f"of icmp type {icmp} ({ICMP.get(icmp, 'see RFC 792')})")
    if (iface := rule.get("in")) and "in" not in skip:
        parts.append(f"arriving on any interface but {iface}" if rule.negated("in") else f"arriving on {iface}")
    if (iface := rule.get("out")) and "out" not in skip:
        joint = "and " if rule.get("in") and "in" not in skip else ""
        way = f"leaving by any interface but {iface}" if rule.negated("out") else f"leaving by {iface}"
        parts.append(joint + way)
    state = rule.get("--ctstate") or rule.get("--state")
    if state:
        parts.append(CTSTATE.get(state, f"in conntrack state {state}"))
    if (limit := rule.get("--limit")) is not None:
        parts.append(f"at most {limit} (burst {rule.get('--limit-burst') or 5})")
    return parts


def _subject(rule: Rule) -> str:
    proto = rule.get("proto")
    if proto and not rule.negated("proto"):
        return f"{proto} packets"
    return "packets"


def _phrase(rule: Rule, table: str, skip: set[str] = frozenset()) -> str:
    conds = _conditions(rule, table, skip=skip)
    return " ".join([_subject(rule), *conds]) if conds else f"all {_subject(rule)}"


def _chain_purpose(chain: str, table: str) -> str | None:
    own = (NAT_CHAIN_PURPOSE if table == "nat" else FILTER_CHAIN_PURPOSE).get(chain)
    if own:
        return own
    if chain in CHAIN_PURPOSE:
        return CHAIN_PURPOSE[chain]
    if chain.startswith("ufw-"):
        return "ufw, the node's firewall"
    return None


def group_of(rule: Rule, table: str) -> str:
    """The purpose group a rule belongs to (see GROUPS)."""
    chain, target = rule.chain, rule.target or ""
    if chain == "DOCKER-USER" or target == "DOCKER-USER":
        return "Your rules (DOCKER-USER)"
    if target == "MASQUERADE":
        return "Outbound NAT (MASQUERADE)"
    if "DOCKER-INGRESS" in (chain, target):
        return "Swarm routing mesh (ingress)"
    if chain in ("DOCKER_OUTPUT", "DOCKER_POSTROUTING") or target in ("DOCKER_OUTPUT", "DOCKER_POSTROUTING"):
        return "Embedded DNS"
    if target == "DNAT" or (chain == "DOCKER" and table == "nat") or (chain == "DOCKER" and target == "ACCEPT"):
        return "Published ports (DNAT and their filter rules)"
    if (table == "nat" and target == "DOCKER"):
        return "Published ports (DNAT and their filter rules)"
    if "ISOLATION" in chain or "ISOLATION" in target:
        return "Isolation between networks"
    if "policy" in rule.matches or "u32" in rule.matches:
        return "Encrypted overlays"
    if chain.startswith("ufw-") or target.startswith("ufw-"):
        return "Host firewall (ufw)"
    if chain.startswith("DOCKER") or target.startswith("DOCKER") or chain in ("FORWARD",):
        return "Forwarding to and from containers"
    return "Other rules"


def _encrypted_overlay(rule: Rule) -> str | None:
    """Docker's guard for encrypted overlays: VXLAN that did not come through IPsec is dropped."""
    if "policy" in rule.matches and rule.dport == "4789" and rule.target == "DROP":
        return (f"{rule.chain}: VXLAN packets (udp 4789) of an encrypted overlay that did not come "
                "through IPsec are dropped: an encrypted overlay never accepts plain VXLAN")
    return None


def explain_rule(rule: Rule, table: str) -> Explained:
    """One rule -> its sentence (None when the rule uses something this module cannot word)."""
    group = group_of(rule, table)
    special = _encrypted_overlay(rule)
    if special:
        return Explained(table, rule.chain, rule.raw, group, special)
    unknown = (set(rule.options) - KNOWN) | (set(rule.matches) - KNOWN_MATCHES)
    if unknown:
        return Explained(table, rule.chain, rule.raw, group, None)
    target = rule.target
    chain = rule.chain
    sentence: str | None
    if target == "MASQUERADE":
        sentence = f"MASQUERADE: {_phrase(rule, table)} take the node's address"
    elif target == "DNAT":
        sentence = _dnat(rule, table)
    elif target == "SNAT":
        to = rule.get("--to-source") or "?"
        source = f"source port {to[1:]}" if to.startswith(":") else f"source {to}"
        sentence = f"SNAT: {_phrase(rule, table)} leave with {source}"
        if chain == "DOCKER_POSTROUTING":
            sentence += " (the embedded DNS server answers from port 53 as containers expect)"
    elif target == "ACCEPT":
        sentence = f"{chain}: {_phrase(rule, table)} are accepted"
    elif target == "DROP":
        sentence = f"{chain}: {_phrase(rule, table)} are dropped"
        if chain == "DOCKER-ISOLATION-STAGE-2":
            sentence += ": containers on different bridges cannot talk to each other"
        elif chain == "DOCKER" and table == "filter" and rule.negated("in"):
            sentence += " (only published ports, accepted before this, get in)"
    elif target == "REJECT":
        how = rule.get("--reject-with")
        sentence = f"{chain}: {_phrase(rule, table)} are refused{f' with {how}' if how else ''}"
    elif target == "RETURN":
        if chain == "DOCKER" and table == "nat" and rule.get("in") and not rule.negated("in"):
            sentence = (f"DOCKER (nat): packets arriving on {rule.get('in')} are not port-forwarded "
                        f"(containers on {rule.get('in')} reach published ports through the bridge itself)")
        elif chain == "DOCKER-USER" and not rule.options.keys() - {"target"}:
            sentence = "DOCKER-USER: empty apart from this RETURN: packets go on to Docker's own rules"
        else:
            sentence = f"{chain}: {_phrase(rule, table)} go back to the chain that sent them here"
    elif target == "LOG":
        prefix = (rule.get("--log-prefix") or "").strip()
        sentence = f"{chain}: {_phrase(rule, table)} are logged to the kernel log" + (
            f" with prefix {prefix!r}" if prefix else "")
    elif target and not (set(rule.options) - {"target", "goto"}) and _chain_purpose(target, table) is None \
            and not target.isupper():
        sentence = f"{chain}: all packets go through {target}"
    elif target:
        purpose = _chain_purpose(target, table)
        verb = "continue in" if rule.get("goto") else "go through"
        if chain == "FORWARD" and target == "DOCKER-USER" and not set(rule.options) - {"target"}:
            sentence = f"FORWARD: every forwarded packet goes through DOCKER-USER first: {purpose}"
        else:
            sentence = f"{chain}: {_phrase(rule, table)} {verb} {target}" + (f" ({purpose})" if purpose else "")
    else:
        sentence = None
    return Explained(table, chain, rule.raw, group, sentence)


def _dnat(rule: Rule, table: str) -> str:
    to = rule.get("--to-destination") or "?"
    proto = rule.get("proto") or "any protocol"
    where = "on any local address" if rule.chain in ("DOCKER", "DOCKER-INGRESS") or _local_dst(rule) else None
    dst = rule.get("destination")
    if dst:
        where = f"on {_addr(dst)}"
    port = f" to port {rule.dport}" if rule.dport else ""
    sentence = f"DNAT: {proto}{port} {where or 'on any address'} goes to {to}"
    rest = _conditions(rule, table, skip={"destination", "--dport", "--dst-type"})
    if rest == [f"arriving on any interface but {rule.get('in')}"]:
        sentence += f" (not for packets arriving on {rule.get('in')})"
    elif rest:
        sentence += f" (only packets {' and '.join(rest)})"
    if rule.chain == "DOCKER_OUTPUT":
        sentence += ": the embedded DNS server of the container's network"
    elif rule.chain == "DOCKER-INGRESS":
        sentence += ": the swarm routing mesh (ingress) takes it to a task of the service"
    return sentence


def explain_policy(line: str, table: str) -> Explained | None:
    words = line.split()
    if len(words) != 3 or words[0] != "-P":
        return None
    chain, policy = words[1], words[2]
    what = {"DROP": "are dropped", "ACCEPT": "are accepted"}.get(policy, f"get {policy}")
    return Explained(table, chain, line, "Built-in chain policies",
                     f"{chain} policy: {chain.lower()} packets that no rule decides on {what}")


def explain_lines(lines: list[str], table: str) -> list[Explained]:
    """Every policy and rule of one table, explained (or marked unexplained), in order."""
    out: list[Explained] = []
    chains = {line.split()[1] for line in lines if line.startswith(("-N ", "-P "))}
    for line in lines:
        if line.startswith("-P "):
            item = explain_policy(line, table)
            if item:
                out.append(item)
        elif line.startswith("-A "):
            rule = parse_rule(line)
            if rule is None:
                out.append(Explained(table, line.split()[1], line, "Other rules", None))
            else:
                out.append(explain_rule(rule, table))
    if "DOCKER-USER" in chains and not any(e.chain == "DOCKER-USER" and e.raw.startswith("-A") for e in out):
        out.append(Explained(table, "DOCKER-USER", "-N DOCKER-USER", "Your rules (DOCKER-USER)",
                             "DOCKER-USER: your own rules go here; Docker never touches them (empty now)"))
    return out


def explain_save(text: str, tables: tuple[str, ...] = ("nat", "filter")) -> list[Explained]:
    """All rules of the given tables in an `iptables-save` dump."""
    split = split_tables(text)
    return [e for t in tables for e in explain_lines(split.get(t, []), t)]


def grouped(items: list[Explained]) -> dict[str, list[Explained]]:
    """Explanations by purpose group, in GROUPS order (empty groups left out)."""
    out: dict[str, list[Explained]] = {g: [] for g in GROUPS}
    for item in items:
        out.setdefault(item.group, []).append(item)
    return {g: v for g, v in out.items() if v}


# ---- tracing a published port --------------------------------------------------------------

@dataclass
class Packet:
    """What a rule walk knows about a packet."""

    proto: str
    dst: str
    dport: int
    src: str | None = None
    in_iface: str | None = None
    out_iface: str | None = None
    local_dst: bool = False
    state: str = "NEW"


def _in_net(addr: str | None, net: str) -> bool | None:
    if addr is None:
        return None
    try:
        return ipaddress.ip_address(addr) in ipaddress.ip_network(net, strict=False)
    except ValueError:
        return None


def matches(rule: Rule, pkt: Packet) -> bool:
    """Does `rule` match `pkt`? Options the walk cannot judge (limits, logs) count as matching."""
    def check(key: str, ok: bool | None) -> bool:
        if ok is None:
            return True
        return ok != rule.negated(key)

    if (p := rule.get("proto")) and not check("proto", p == pkt.proto):
        return False
    if (s := rule.get("source")) and not check("source", _in_net(pkt.src, s)):
        return False
    if (d := rule.get("destination")) and not check("destination", _in_net(pkt.dst, d)):
        return False
    if (port := rule.dport) and not check("--dport", str(pkt.dport) in port.replace(":", ",").split(",")):
        return False
    if rule.get("--sport") or rule.get("--icmp-type") is not None:
        return False
    if (i := rule.get("in")) and not check("in", None if pkt.in_iface is None else i == pkt.in_iface):
        return False
    if (o := rule.get("out")) and not check("out", None if pkt.out_iface is None else o == pkt.out_iface):
        return False
    if rule.get("--dst-type") is not None and not check(
            "--dst-type", pkt.local_dst if rule.get("--dst-type") == "LOCAL" else False):
        return False
    state = rule.get("--ctstate") or rule.get("--state")
    if state and not check("--ctstate", pkt.state in state.split(",")):
        return False
    return True


def walk(lines: list[str], table: str, chain: str, pkt: Packet, depth: int = 0) -> tuple[list[Explained], str]:
    """Follow `pkt` through `chain` (and the chains it jumps to): the matching rules and the verdict
    (ACCEPT, DROP, REJECT, DNAT ip:port, or RETURN / the chain policy)."""
    rules = [r for r in (parse_rule(line) for line in lines if line.startswith(f"-A {chain} ")) if r]
    seen: list[Explained] = []
    for rule in rules:
        if not matches(rule, pkt):
            continue
        seen.append(explain_rule(rule, table))
        target = rule.target
        if target in ("ACCEPT", "DROP", "REJECT"):
            return seen, target
        if target == "DNAT":
            return seen, f"DNAT {rule.get('--to-destination')}"
        if target == "RETURN":
            return seen, "RETURN"
        if target in ("LOG", "MASQUERADE", "SNAT") or target is None or depth > 20:
            continue
        sub, verdict = walk(lines, table, target, pkt, depth + 1)
        seen += sub
        if verdict != "RETURN":
            return seen, verdict
    if depth == 0:
        pol = next((line.split()[2] for line in lines if line.startswith(f"-P {chain} ")), "ACCEPT")
        return seen, f"{pol} (policy of {chain})"
    return seen, "RETURN"
