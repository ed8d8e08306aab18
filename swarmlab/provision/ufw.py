"""ufw: its facts (the rules it was told to add, its state) and operations (exactly the lab's
rules, enabled with incoming denied).

Hand-written: pyinfra has no ufw operations or facts.
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import FactBase, operation

from swarmlab.provision.shell import argv


class UfwFact(FactBase):
    """A fact read with the ufw command (none where ufw is not installed)."""

    def requires_command(self, *args, **kwargs) -> str:
        return "ufw"


class UfwAddedRules(UfwFact):
    """Rules ufw has been told to add (works while ufw is inactive), without `ufw `."""

    default = list

    def command(self) -> str:
        return "ufw show added"

    def process(self, output):
        return [line[4:].strip() for line in output if line.startswith("ufw ")]


class UfwStatus(UfwFact):
    """{"active": bool, "input_policy": "DROP" | "ACCEPT" | "REJECT" | None}: whether ufw is
    active, and its default incoming policy (from /etc/default/ufw, set while inactive too)."""

    default = dict

    def command(self) -> str:
        return "ufw status; grep -h '^DEFAULT_INPUT_POLICY=' /etc/default/ufw 2>/dev/null; true"

    def process(self, output):
        policy = None
        for line in output:
            if line.startswith("DEFAULT_INPUT_POLICY="):
                policy = line.split("=", 1)[1].strip().strip('"') or None
        return {"active": any(line.strip() == "Status: active" for line in output),
                "input_policy": policy}


def _ufw(*words: str) -> str:
    return argv("ufw", *words)


def ufw_rule_ports(rule: str) -> set[str]:
    """Ports (and "esp") a `ufw show added` rule opens or closes: `allow 2377/tcp`,
    `allow from X to any port 2377 proto tcp`, `allow 7000:8000/udp`, `allow from X proto esp`."""
    words = rule.split()
    specs = [words[i + 1] for i, w in enumerate(words[:-1]) if w == "port"]
    if len(words) >= 2 and words[0] in ("allow", "deny", "reject", "limit") and "from" not in words \
            and "to" not in words:
        specs.append(words[-1])
    out: set[str] = set()
    for spec in specs:
        for part in spec.split("/")[0].split(","):
            low, _, high = part.partition(":")
            if low.isdigit() and (not high or high.isdigit()):
                out.update(str(p) for p in range(int(low), int(high or low) + 1) if p <= 65535)
    if words[-2:] == ["proto", "esp"]:
        out.add("esp")
    return out


@operation()
def ufw_rules(rules: list[str], owned: list[str]):
    """Exactly these ufw rules for the `owned` ports: missing ones added, any other rule that
    opens or closes an owned port (e.g. `allow 2377/tcp` from anywhere) deleted.

    `rules` as `ufw show added` prints them, without `ufw`. One operation, one read of ufw's
    rules: ufw is a Python program and slow to start.
    """
    added = host.get_fact(UfwAddedRules)
    extra = [r for r in added if r not in rules and ufw_rule_ports(r) & set(owned)]
    missing = [r for r in rules if r not in added]
    for rule in extra:
        yield _ufw("delete", *rule.split())
    for rule in missing:
        yield _ufw(*rule.split())
    if not extra and not missing:
        host.noop("ufw has exactly the lab's rules")


@operation()
def ufw_enabled():
    """ufw active (and at boot), incoming packets denied unless a rule allows them."""
    status = host.get_fact(UfwStatus)
    if status.get("input_policy") not in (None, "DROP"):  # None: no /etc/default/ufw to read
        yield _ufw("default", "deny", "incoming")
    if not status.get("active"):
        yield _ufw("--force", "enable")
    elif status.get("input_policy") in (None, "DROP"):
        host.noop("ufw is active and denies incoming packets")
