"""`swarmlab trace KIND`: send one real packet between the lab's own nodes and record every
netfilter rule it hit on each node it crossed (the kernel's nftrace, read with
`xtables-monitor --trace`), plus what a bounded `tcpdump` saw on the lab interface.

Kinds: `port` (a TCP connect from one node to a port a container publishes on another),
`overlay` (a ping between two tasks of a service on the spec's first attachable overlay: VXLAN
on the wire), `masquerade` (a container on docker0 of one node opens the SSH port of another
node's lab address: MASQUERADE). The tracing is removed in a `finally`, on every node, also on
Ctrl-C (and by a dead man's switch on the node if the control machine goes away).
"""

from __future__ import annotations

import secrets
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from swarmlab.control.parallel import on_each
from swarmlab.learn import scripts
from swarmlab.learn.tracelog import disagreements, first_packet, parse_monitor, reachable, verdict_of
from swarmlab.model.distros import DISTROS, TRACE_TOOLS_INSTALL
from swarmlab.model.spec import LabSpec
from swarmlab.report.explain import split_tables

KINDS = ("port", "overlay", "masquerade")
PORT = 18090  # the port the trace's web container publishes
WEB = "swarmlab-trace-web"
TASKS = "swarmlab-trace-tasks"
OUT = "swarmlab-trace-out"


class TraceError(Exception):
    """The trace could not run (a node cannot trace, a workload did not start)."""


@dataclass
class Plan:
    """One packet: where it starts, the nodes it crosses and what each one traces."""

    kind: str
    title: str
    path: list[str]  # node names in the order the packet crosses them
    rules: dict[str, list[list[str]]]  # node -> TRACE rule matches (raw table: chain first)
    capture: tuple[str, str]  # (node, tcpdump filter) on the lab interface
    send: Callable[[], str] = lambda: ""
    explain_node: str | None = None  # the node whose static walk is compared
    static: Callable[[dict[str, Any]], Any] | None = None
    meta: dict[str, str] = field(default_factory=dict)


class Tracer:
    """Runs plans on a lab through the suite's SSH connections (testinfra hosts)."""

    def __init__(self, spec: LabSpec, hosts: dict[str, Any], log: Callable[[str], None] = lambda _: None):
        self.spec, self.hosts, self.log = spec, hosts, log
        self.iface = spec.network.interface

    def sh(self, node: str, script: str, check: bool = True) -> str:
        result = self.hosts[node].run(f"sh -c {shlex.quote(script)}")
        if check and result.rc != 0:
            raise TraceError(f"{node}: {(result.stdout + result.stderr).strip()[-400:] or f'exit {result.rc}'}")
        return result.stdout

    def ip(self, node: str) -> str:
        return self.spec.node(node).ip

    # ---- the packet kinds ---------------------------------------------------------------

    def plan(self, kind: str, src: str | None = None, dst: str | None = None) -> Plan:
        names = [n.name for n in self.spec.nodes]
        if len(names) < 2:
            raise TraceError("a trace needs two nodes")
        src = src or names[1]
        dst = dst or (names[0] if src != names[0] else names[1])
        if src == dst:
            raise TraceError("--from and --to must be different nodes")
        return {"port": self._port, "overlay": self._overlay, "masquerade": self._masquerade}[kind](src, dst)

    def _port(self, src: str, dst: str) -> Plan:
        from swarmlab.verify.probe import IMAGE

        s, d = self.ip(src), self.ip(dst)
        flow = ["-p", "tcp", "-d", d, "--dport", str(PORT), "--syn"]

        def send() -> str:
            self.sh(dst, f"docker rm -f {WEB} >/dev/null 2>&1; docker run -d --name {WEB} --label swarmlab.trace=1 "
                         f"-p {PORT}:80 {IMAGE} sh -c 'echo hello-from-$(hostname) > /www/index.html; "
                         "httpd -f -p 80 -h /www' >/dev/null")
            return self._connect(src, d, PORT)

        return Plan("port", f"TCP connect from {src} ({s}) to {dst}:{PORT}, a port a container publishes",
                    [src, dst], {src: [["OUTPUT", *flow]], dst: [["PREROUTING", "-s", s, *flow]]},
                    (dst, f"tcp port {PORT} and host {s}"), send, dst,
                    lambda facts: self._static_port(facts, d, s))

    def _overlay(self, src: str, dst: str) -> Plan:
        nets = [o.name for o in self.spec.swarm.overlays if o.attachable]
        if not nets:
            raise TraceError("the overlay trace needs an attachable overlay in the spec (swarm.overlays)")
        s, d = self.ip(src), self.ip(dst)
        vxlan = ["-p", "udp", "--dport", str(self.spec.swarm.data_path_port)]
        plan = Plan("overlay", f"ping between two tasks on overlay {nets[0]}: {src} -> {dst} (VXLAN)",
                    [src, dst], {src: [["OUTPUT", "-d", d, *vxlan]], dst: [["PREROUTING", "-s", s, "-d", d, *vxlan]]},
                    (dst, f"udp port {self.spec.swarm.data_path_port} and host {s}"))
        plan.send = lambda: self._overlay_ping(plan, nets[0], src, dst)
        return plan

    def _masquerade(self, src: str, dst: str) -> Plan:
        from swarmlab.verify.probe import IMAGE

        s, d = self.ip(src), self.ip(dst)
        flow = ["-p", "tcp", "-d", d, "--dport", "22", "--syn"]

        def send() -> str:
            out = self.sh(src, f"docker rm -f {OUT} >/dev/null 2>&1; docker run --rm --name {OUT} "
                               f"--label swarmlab.trace=1 {IMAGE} sh -c "
                               + shlex.quote(f"hostname -i; nc -w 3 {d} 22 </dev/null | head -1"), check=False)
            words = out.split()
            banner = next((w for w in words if w.startswith("SSH-")), "")
            return (f"reached: {banner}" if banner else f"no answer from {d}:22") + \
                f" (from the container address {words[0] if words else '?'})"

        return Plan("masquerade", f"a container on docker0 of {src} opens {dst}'s SSH port ({d}:22)",
                    [src, dst], {src: [["PREROUTING", "-i", "docker0", *flow]], dst: [["PREROUTING", "-s", s, *flow]]},
                    (dst, f"tcp port 22 and host {s}"), send)

    def _connect(self, node: str, addr: str, port: int) -> str:
        code = ("import socket,sys\ntry:\n socket.create_connection((sys.argv[1], int(sys.argv[2])), 3).close()\n"
                " print('connected')\nexcept OSError as e:\n print('not connected:', e)")
        for _ in range(10):  # the container needs a moment to listen
            out = self.sh(node, f"python3 -c {shlex.quote(code)} {addr} {port}").strip()
            if out == "connected" or "timed out" in out:
                return out
            time.sleep(0.5)
        return out

    def _overlay_ping(self, plan: Plan, net: str, src: str, dst: str) -> str:
        from swarmlab.verify.probe import IMAGE

        manager = self.spec.first_manager.name
        self.sh(manager, f"docker service inspect {TASKS} >/dev/null 2>&1 || docker service create -d --name {TASKS} "
                         f"--label swarmlab.trace=1 --mode global --endpoint-mode dnsrr --stop-grace-period 1s "
                         f"--network {shlex.quote(net)} {IMAGE} sleep 86400 >/dev/null")
        find = (f"for i in $(seq 60); do c=$(docker ps -q --filter label=com.docker.swarm.service.name={TASKS}"
                " | head -1); [ -n \"$c\" ] && break; sleep 1; done; [ -n \"$c\" ] && echo $c && "
                f"docker inspect -f '{{{{(index .NetworkSettings.Networks \"{net}\").IPAddress}}}}' $c")
        (a, _), (b, b_ip) = on_each(lambda n: tuple(self.sh(n, find).split()), [src, dst])
        plan.meta.update(overlay=net, task_from=a, task_to=b, task_to_ip=b_ip)
        out = self.sh(src, f"docker exec {shlex.quote(a)} ping -c 1 -W 3 {shlex.quote(b_ip)}", check=False)
        return next((line for line in out.splitlines() if "bytes from" in line or "packet loss" in line), out.strip())

    def _static_port(self, facts: dict[str, Any], d: str, s: str):
        from swarmlab.report.trace import static_walk

        return static_walk(facts, d, s, PORT, iface=self.iface)

    # ---- the run --------------------------------------------------------------------------

    def run(self, plan: Plan, linger: float = 1.0) -> dict[str, Any]:
        """Trace `plan`: tools, workload image, tracing on, the packet, tracing off (always)."""
        from swarmlab.verify.probe import Probe

        nodes = list(dict.fromkeys(plan.path))
        installed = on_each(lambda n: self.sh(n, TRACE_TOOLS_INSTALL[DISTROS[self.spec.node(n).distro].family]).strip(),
                            nodes)
        for n, what in zip(nodes, installed, strict=True):
            if what:
                self.log(f"{n}: tcpdump installed (the trace reads the wire with it)")
        Probe(self.spec, {n: self.hosts[n] for n in self.hosts}).build_everywhere()
        token = secrets.token_hex(6)
        capture_node, capture = plan.capture
        result: dict[str, Any] = {"lab": self.spec.name, "kind": plan.kind, "title": plan.title, "path": plan.path,
                                  "taken": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
        try:
            on_each(lambda n: self.sh(n, scripts.start(plan.rules.get(n, []), capture if n == capture_node else
                                                       "udp port 9 and host 127.0.0.2", self.iface, token)), nodes)
            result["sent"] = plan.send()
            time.sleep(linger)
            facts = self._facts(plan)  # the static walk reads the rules while the workload runs
            seen = dict(zip(nodes, on_each(lambda n: scripts.split(self.sh(n, scripts.finish())), nodes), strict=True))
        finally:
            on_each(lambda n: self.sh(n, scripts.cleanup(), check=False), nodes)
            self._remove_workloads(nodes)
        result["meta"] = plan.meta
        result["hops"] = []
        for n in plan.path:
            trace = parse_monitor(seen[n].get("monitor", ""))
            events = first_packet(trace)
            pkt = trace.packets.get(events[0].packet, {}) if events else {}
            result["hops"].append({
                "node": n, "ip": self.ip(n), "events": [e.to_dict() for e in events], "packet": pkt,
                "more_packets": len({e.packet for e in trace.events}) - (1 if events else 0),
                "verdict": verdict_of(events),
                "wire": seen[n].get("wire", "").strip().splitlines() if n == capture_node else [],
                "left": seen[n].get("left", "").strip(),
                "monitor": seen[n].get("monitor", ""),  # the kernel's trace as xtables-monitor printed it
            })
        result["verdict"] = overall(result["hops"])
        result["disagreements"] = self._compare(plan, result, facts)
        return result

    def _facts(self, plan: Plan) -> dict[str, Any] | None:
        if plan.static is None or plan.explain_node is None:
            return None
        from swarmlab.report.collect import collect

        return collect(self.spec, {plan.explain_node: self.hosts[plan.explain_node]})["nodes"][plan.explain_node]

    def _compare(self, plan: Plan, result: dict[str, Any], facts: dict[str, Any] | None) -> list[str] | None:
        """The static walk of `explain --port` against what the kernel did (port kind only)."""
        if facts is None or plan.static is None:
            return None
        from swarmlab.learn.tracelog import Event

        static, verdict = plan.static(facts)
        tables = split_tables(facts["iptables"]["nat"] + "\n" + facts["iptables"]["filter"])
        scope = {("nat", c) for c in reachable(tables.get("nat", []), "PREROUTING")}
        scope |= {("filter", c) for c in reachable(tables.get("filter", []), "FORWARD")}
        hop = next(h for h in result["hops"] if h["node"] == plan.explain_node)
        traced = [Event(**e) for e in hop["events"]]
        result["static_verdict"] = verdict
        out = disagreements(static, traced, scope)
        kernel = hop["verdict"]
        if not verdict.startswith("no DNAT") and ("DROP" in verdict or "REJECT" in verdict) != (kernel == "DROP"):
            out.append(f"verdict: the static walk says {verdict}, the kernel's was {kernel}")
        return out

    def _remove_workloads(self, nodes: list[str]) -> None:
        from swarmlab.verify.probe import Probe

        Probe(self.spec, self.hosts).remove_services([TASKS])  # waits until the tasks are gone
        on_each(lambda n: self.sh(n, "docker ps -aq --filter label=swarmlab.trace=1 | xargs -r docker rm -f "
                                     ">/dev/null 2>&1; true", check=False), nodes)


def overall(hops: list[dict[str, Any]]) -> str:
    """The packet's fate over the whole path, with the rule that decided a drop."""
    for hop in hops:
        if hop["verdict"] == "DROP":
            last = next((e for e in reversed(hop["events"]) if e["kind"] != "return"), None)
            return f"DROPPED on {hop['node']}" + (f": {last['sentence']}" if last else "")
        if hop["verdict"] == "not seen":
            return f"never seen on {hop['node']} (lost before it, or sent another way)"
    return "ACCEPTED on every node it crossed"


def lines(result: dict[str, Any]) -> list[str]:
    """The trace for people: the hops in order, each rule in plain words, the verdicts, the wire,
    and where the static walk disagrees."""
    out = [f"trace: {result['title']}", f"sent: {result.get('sent', '')}", ""]
    for i, hop in enumerate(result["hops"], 1):
        pkt = hop["packet"]
        seen = " ".join(f"{k}={pkt[k]}" for k in ("IN", "OUT", "SRC", "DST", "SPORT", "DPORT") if pkt.get(k))
        out.append(f"hop {i}: {hop['node']} ({hop['ip']})" + (f"  [{seen}]" if seen else ""))
        if not hop["events"]:
            out.append("  the kernel traced no packet here (it never arrived, or left by another path)")
        for e in hop["events"]:
            if e["kind"] == "return":
                continue
            verdict = e["verdict"].split(":")[0].lower() if ":" in e["verdict"] else e["verdict"]
            out.append(f"  {e['table']:<6} {e['chain']:<24} {verdict:<8} {e['sentence']}")
        if hop["more_packets"] > 0:
            out.append(f"  (+{hop['more_packets']} more packet(s) of the same flow traced: retransmits or fragments)")
        out.append(f"  verdict on {hop['node']}: {hop['verdict']}")
        if hop["wire"]:
            out.append(f"  on the wire ({hop['node']}, lab interface):")
            out += [f"    {w}" for w in hop["wire"][:6]]
        out.append("")
    out += [f"verdict: {result.get('verdict') or overall(result['hops'])}", ""]
    diffs = result.get("disagreements")
    if diffs is None:
        out.append("explain --port: models published ports only; nothing to compare for this packet")
    elif not diffs:
        out.append(f"explain --port agrees with the kernel (static verdict: {result.get('static_verdict')})")
    else:
        out.append(f"explain --port disagrees with the kernel (static verdict: {result.get('static_verdict')}):")
        out += [f"  - {d}" for d in diffs]
    return out
