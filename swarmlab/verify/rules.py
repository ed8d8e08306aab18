"""iptables rules as data: parse `iptables -S` lines and ask what a rule does, not how it is spelled.

Docker 26 and Docker 28 write different chain layouts (28 adds DOCKER-FORWARD, moves the
isolation jumps); checks built on these predicates hold on both.
"""

from __future__ import annotations

import ipaddress
import shlex
from dataclasses import dataclass, field

# option -> canonical key (short and long spellings)
_KEYS = {
    "-s": "source", "--source": "source",
    "-d": "destination", "--destination": "destination",
    "-i": "in", "--in-interface": "in",
    "-o": "out", "--out-interface": "out",
    "-p": "proto", "--protocol": "proto",
    "-j": "target", "--jump": "target",
    "-g": "goto", "--goto": "goto",
    "-m": "match",
}


@dataclass(frozen=True)
class Rule:
    """One `-A CHAIN ...` line: its chain, options (value, negated) and the raw text."""

    chain: str
    options: dict[str, tuple[str, bool]] = field(default_factory=dict)
    matches: tuple[str, ...] = ()
    raw: str = ""

    def get(self, key: str) -> str | None:
        value = self.options.get(key)
        return value[0] if value else None

    def negated(self, key: str) -> bool:
        value = self.options.get(key)
        return bool(value and value[1])

    @property
    def target(self) -> str | None:
        return self.get("target") or self.get("goto")

    @property
    def dport(self) -> str | None:
        return self.get("--dport") or self.get("--dports")


def parse_rule(line: str) -> Rule | None:
    """A Rule for an `-A` line; None for `-P`/`-N` lines and anything unparsable."""
    try:
        words = shlex.split(line)
    except ValueError:
        return None
    if len(words) < 2 or words[0] != "-A":
        return None
    options: dict[str, tuple[str, bool]] = {}
    matches: list[str] = []
    negate = False
    i = 2
    while i < len(words):
        word = words[i]
        if word == "!":
            negate = True
            i += 1
            continue
        if word.startswith("-") and i + 1 < len(words) and not words[i + 1].startswith("-"):
            key = _KEYS.get(word, word)
            if key == "match":
                matches.append(words[i + 1])
            else:
                options[key] = (words[i + 1], negate)
            i += 2
        else:
            options[_KEYS.get(word, word)] = ("", negate)
            i += 1
        negate = False
    return Rule(words[1], options, tuple(matches), line)


def parse_rules(lines: list[str]) -> list[Rule]:
    return [r for r in (parse_rule(line) for line in lines) if r is not None]


def policy(lines: list[str], chain: str) -> str | None:
    """The `-P CHAIN POLICY` of a built-in chain, if listed."""
    for line in lines:
        words = line.split()
        if len(words) == 3 and words[0] == "-P" and words[1] == chain:
            return words[2]
    return None


def _net(value: str | None) -> ipaddress.IPv4Network | None:
    try:
        return ipaddress.ip_network(value, strict=False) if value else None
    except ValueError:
        return None


def masquerades(rules: list[Rule], subnet: str, bridge: str) -> bool:
    """A rule that rewrites packets from `subnet` leaving by any interface but `bridge`."""
    want = _net(subnet)
    return any(
        r.target == "MASQUERADE" and _net(r.get("source")) == want
        and r.get("out") == bridge and r.negated("out")
        for r in rules
    )


def jumps(rules: list[Rule], chain: str, target: str) -> list[Rule]:
    """Unconditional-or-not jumps from `chain` to `target`."""
    return [r for r in rules if r.chain == chain and r.target == target]


def dnat_to(rules: list[Rule], port: int, proto: str, destination: str) -> bool:
    """A DNAT rule for `proto` traffic to `port` that sends it to `destination` (ip:port)."""
    return any(
        r.target == "DNAT" and r.get("proto") == proto and r.dport == str(port)
        and r.get("--to-destination") == destination
        for r in rules
    )


def forward_consults_docker_user(rules: list[Rule]) -> bool:
    """FORWARD sends packets to DOCKER-USER before any rule accepts them or hands them to
    Docker's own chains (the user's rules there come first, as Docker documents)."""
    for r in (r for r in rules if r.chain == "FORWARD"):
        if r.target == "DOCKER-USER":
            return True
        if r.target == "ACCEPT" or (r.target or "").startswith("DOCKER"):
            return False
    return False
