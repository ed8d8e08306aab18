"""The kernel's rule trace in plain words: `xtables-monitor --trace` output parsed into events,
each rule put into the sentence `swarmlab explain` uses, and compared with the static walk.

Pure functions over recorded text (unit-tested on traces taken from Docker 26 and 28 nodes).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

from swarmlab.report.explain import Explained, explain_rule
from swarmlab.verify.rules import parse_rule

TRACE_COMMENT = "swarmlab-trace"  # every TRACE rule swarmlab inserts carries this comment

# " TRACE: 2 fb0b23a7 nat:PREROUTING:rule:0x3:JUMP:DOCKER  -4 -t nat -A PREROUTING ... -j DOCKER"
_TRACE = re.compile(r"^\s*TRACE: (\d+) ([0-9a-f]+) ([\w-]+):(\S+?):(rule|return|policy):\s*(.*)$")
# " PACKET: 2 fb0b23a7 IN=eth0 ... SRC=10.0.0.1 DST=10.0.0.2 ... DPORT=80 SYN"
_PACKET = re.compile(r"^\s*PACKET: (\d+) ([0-9a-f]+) (.*)$")
_RULE = re.compile(r"^0x([0-9a-f]+):(\S+)\s*(.*)$")
# nftables' own verdict codes, printed as numbers by some xtables-monitor versions
NFT_VERDICTS = {"0xffffffff": "CONTINUE", "0xfffffffe": "BREAK", "0xfffffffd": "JUMP",
                "0xfffffffc": "GOTO", "0xfffffffb": "RETURN"}


@dataclass
class Event:
    """One line of the kernel's trace: a rule that matched, a chain's end (return) or a policy."""

    packet: str  # which packet: "ip-id N" (its IP header's ID)
    table: str
    chain: str
    kind: str  # rule | return | policy
    verdict: str  # ACCEPT, DROP, JUMP:DOCKER, CONTINUE, RETURN, ... ("" for a plain return)
    raw: str = ""  # the rule, iptables-save style ("" for returns and policies)
    sentence: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class NodeTrace:
    """What one node's kernel reported: packets (id -> fields) and events in order."""

    packets: dict[str, dict[str, str]] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)


def _rule_line(text: str) -> str:
    """'-4 -t nat -A PREROUTING -m addrtype ...' -> '-A PREROUTING -m addrtype ...'."""
    at = text.find("-A ")
    return text[at:].strip() if at >= 0 else text.strip()


def _packet_fields(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for word in text.split():
        key, eq, value = word.partition("=")
        out[key] = value if eq else "yes"
    return out


def words(table: str, chain: str, kind: str, verdict: str, raw: str) -> str:
    """The event in the plain words `swarmlab explain` uses for the same rule."""
    if kind == "policy":
        what = {"ACCEPT": "accepted", "DROP": "dropped"}.get(verdict, verdict)
        return f"{chain} policy ({table}): no rule decided, the packet is {what}"
    if kind == "return":
        return f"{chain} ({table}): no further rule matched, back to the calling chain"
    rule = parse_rule(raw) if raw else None
    if rule is None:
        return f"{chain} ({table}): rule {raw or '(not shown)'} -> {verdict}"
    explained: Explained = explain_rule(rule, table)
    return explained.sentence or f"(not explained) {raw}"


def parse_monitor(text: str) -> NodeTrace:
    """`xtables-monitor --trace` output -> the packets and events it holds; the TRACE rules
    swarmlab inserted itself are left out."""
    trace = NodeTrace()
    pid = ""
    for line in text.splitlines():
        if m := _PACKET.match(line):
            # the kernel's trace id changes between hooks and is reused: the IP header's ID is
            # what stays the same for one packet (through DNAT and MASQUERADE too)
            fields = _packet_fields(m.group(3))
            pid = f"ip-id {fields.get('ID', m.group(2))}"
            trace.packets.setdefault(pid, fields)
            continue
        m = _TRACE.match(line)
        if not m:
            continue
        _, _, table, chain, kind, rest = m.groups()
        verdict, raw = rest.strip(), ""
        if kind == "rule" and (r := _RULE.match(rest.strip())):
            verdict, raw = NFT_VERDICTS.get(r.group(2), r.group(2)), _rule_line(r.group(3))
        if TRACE_COMMENT in raw or (table == "raw" and kind != "rule" and chain in ("PREROUTING", "OUTPUT")):
            continue  # our own TRACE rule and the raw chains it sits in
        trace.events.append(Event(pid, table, chain, kind, verdict, raw, words(table, chain, kind, verdict, raw)))
    return trace


def first_packet(trace: NodeTrace) -> list[Event]:
    """The events of the first packet traced (later ones are retransmits or the same flow)."""
    if not trace.events:
        return []
    pid = trace.events[0].packet
    return [e for e in trace.events if e.packet == pid]


def verdict_of(events: list[Event]) -> str:
    """The packet's fate on this node: the last terminal verdict the kernel reported."""
    for e in reversed(events):
        if e.verdict in ("DROP", "REJECT") or e.verdict.startswith("DROP"):
            return "DROP"
    for e in reversed(events):
        if e.table == "filter" and e.verdict == "ACCEPT":
            return "ACCEPT"
    return "ACCEPT" if events else "not seen"


def _key(table: str, raw: str) -> str:
    """A rule's identity for comparing: its chain and sentence (formatting differences between
    iptables-save and xtables-monitor vanish)."""
    rule = parse_rule(raw)
    if rule is None:
        return f"{table} {raw}"
    sentence = explain_rule(rule, table).sentence
    return f"{table} {rule.chain} {sentence or ' '.join(sorted(raw.split()))}"


def reachable(lines: list[str], root: str) -> set[str]:
    """`root` and every chain a rule of it (or of those) jumps to, in one table's `-S` lines."""
    seen, todo = set(), [root]
    while todo:
        chain = todo.pop()
        if chain in seen:
            continue
        seen.add(chain)
        for rule in (parse_rule(x) for x in lines if x.startswith(f"-A {chain} ")):
            if rule and rule.target and rule.target not in seen:
                todo.append(rule.target)
    return seen


def disagreements(static: list[Explained], traced: list[Event], scope: set[tuple[str, str]]) -> list[str]:
    """Where the static walk (`explain --port`) and the kernel differ, over the (table, chain)s
    of `scope` (the chains the static walk could reach); empty when they agree."""
    static_keys = {_key(e.table, e.raw): e for e in static if e.raw.startswith("-A ")}
    traced_keys = {_key(e.table, e.raw): e for e in traced
                   if e.kind == "rule" and e.raw and (e.table, e.chain) in scope}
    out = []
    for key, e in static_keys.items():
        if key not in traced_keys:
            out.append(f"the static walk expected this rule, the kernel never hit it: {e.sentence or e.raw}")
    for key, e in traced_keys.items():
        if key not in static_keys:
            out.append(f"the kernel hit a rule the static walk did not expect: {e.sentence}")
    return out
