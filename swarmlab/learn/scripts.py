"""The root shells `swarmlab trace` runs on a node: start the kernel's tracing and a bounded
capture, read what they saw, and take everything away again.

Every TRACE rule carries the comment TRACE_COMMENT, so the cleanup finds all of them (also those
of an interrupted earlier run). A dead man's switch on the node removes them by itself if the
control machine never comes back.
"""

from __future__ import annotations

import shlex

from swarmlab.learn.tracelog import TRACE_COMMENT

DIR = "/run/swarmlab-trace"
SECTION = "@@@swarmlab-trace "
DEAD_MAN_SECONDS = 300

CLEANUP = f"""
for f in {DIR}/*.pid; do [ -f "$f" ] && kill -- -"$(cat "$f")" 2>/dev/null; rm -f "$f"; done
iptables-save -t raw 2>/dev/null | grep -e '--comment {TRACE_COMMENT}' | sed 's/^-A /-D /' |
  while read -r rule; do iptables -w -t raw $rule; done
rm -f {DIR}/token
true
"""


def start(rules: list[list[str]], capture: str, iface: str, token: str) -> str:
    """Check the node can trace, start `xtables-monitor --trace` and `tcpdump` (both bounded),
    arm the dead man's switch, then insert the TRACE rules (raw table)."""
    inserts = "\n".join(
        "iptables -w -t raw -I " + " ".join(shlex.quote(w) for w in rule)
        + f" -m comment --comment {TRACE_COMMENT} -j TRACE" for rule in rules)
    dead_man = f"sleep {DEAD_MAN_SECONDS}; [ \"$(cat {DIR}/token 2>/dev/null)\" = {token} ] || exit 0\n{CLEANUP}"
    return f"""
{CLEANUP}
[ -f {DIR}/deadman.pidfile ] && kill -- -"$(cat {DIR}/deadman.pidfile)" 2>/dev/null
set -e
mkdir -p {DIR}; rm -f {DIR}/*
command -v xtables-monitor >/dev/null || {{ echo 'no xtables-monitor on this node (package iptables)'; exit 3; }}
iptables -V | grep -q nf_tables || {{ echo "$(iptables -V): the legacy backend traces only to the kernel log";
  exit 4; }}
command -v tcpdump >/dev/null || {{ echo 'no tcpdump on this node'; exit 5; }}
echo {token} > {DIR}/token
nohup setsid sh -c {shlex.quote(dead_man)} >/dev/null 2>&1 </dev/null &
echo $! > {DIR}/deadman.pidfile
nohup setsid timeout {DEAD_MAN_SECONDS} stdbuf -oL xtables-monitor --trace >{DIR}/monitor.txt 2>&1 </dev/null &
echo $! > {DIR}/monitor.pid
nohup setsid timeout {DEAD_MAN_SECONDS} tcpdump -i {shlex.quote(iface)} -nn -l -c 12 {shlex.quote(capture)} \
  >{DIR}/wire.txt 2>{DIR}/wire.err </dev/null &
echo $! > {DIR}/tcpdump.pid
for i in $(seq 50); do grep -q listening {DIR}/wire.err 2>/dev/null && break; sleep 0.1; done
{inserts}
sleep 0.5
echo started
"""


def cleanup() -> str:
    """Only take the tracing away (the path of an interrupted or failed trace)."""
    return f"[ -f {DIR}/deadman.pidfile ] && kill -- -\"$(cat {DIR}/deadman.pidfile)\" 2>/dev/null\n{CLEANUP}"


def finish() -> str:
    """Stop the monitors, remove the rules, print what was seen (sections monitor, wire)."""
    return f"""
sleep 0.5
[ -f {DIR}/deadman.pidfile ] && kill -- -"$(cat {DIR}/deadman.pidfile)" 2>/dev/null
{CLEANUP}
sleep 0.3
printf '\\n{SECTION}monitor\\n'; cat {DIR}/monitor.txt 2>/dev/null
printf '\\n{SECTION}wire\\n'; cat {DIR}/wire.txt 2>/dev/null
printf '\\n{SECTION}left\\n'; iptables-save -t raw 2>/dev/null | grep -c -e '--comment {TRACE_COMMENT}' || true
"""


def split(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    name = None
    for line in text.splitlines():
        if line.startswith(SECTION):
            name = line[len(SECTION):].strip()
            out[name] = ""
        elif name is not None:
            out[name] += line + "\n"
    return out
