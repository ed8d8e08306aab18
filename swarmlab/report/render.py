"""The report page: a Graphviz topology (DOT -> SVG by Debian's `dot`) and the explained rules,
in one self-contained HTML file (inline SVG and CSS; nothing fetched when it is opened)."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any

import graphviz
import jinja2

from swarmlab.model.spec import LabSpec
from swarmlab.report.explain import explain_save, grouped

TEMPLATES = Path(__file__).parent / "templates"
BRIDGE_COLOR = "#e8f1fb"
OVERLAY_COLOR = "#fdf1dc"
WRONG = "#c62828"
TRACE = "#6a1b9a"


def _id(*parts: str) -> str:
    return "-".join(re.sub(r"[^A-Za-z0-9_.-]", "_", p) for p in parts)


def _l(text: str) -> str:
    """A DOT label: newlines as DOT's line breaks."""
    return text.replace("\n", "\\n")


def swarm_view(data: dict[str, Any]) -> dict[str, dict[str, str]]:
    """hostname -> {role, status, manager_status, engine} as the managers see the swarm."""
    view: dict[str, dict[str, str]] = {}
    for facts in data["nodes"].values():
        for row in facts.get("swarm_nodes") or []:
            view[row["Hostname"]] = {
                "role": "manager" if row.get("ManagerStatus") else "worker",
                "status": row.get("Status", ""), "manager_status": row.get("ManagerStatus", ""),
                "engine": row.get("EngineVersion", ""),
            }
    return view


def overlays(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Swarm-scope overlays by name, merged over the nodes: subnet, VXLAN id, the nodes carrying it."""
    out: dict[str, dict[str, Any]] = {}
    for node, facts in data["nodes"].items():
        for net in facts.get("networks") or []:
            if net["driver"] != "overlay":
                continue
            o = out.setdefault(net["name"], {**net, "carriers": set(), "holders": set()})
            o["holders"].add(node)
            o["peers"] = sorted(set(o["peers"]) | set(net["peers"]))
            if net["peers"] or net["endpoints"]:
                o["carriers"].add(node)
    ip_of = {n: f.get("docker", {}).get("node_addr") for n, f in data["nodes"].items() if "docker" in f}
    managers = {n for n, f in data["nodes"].items() if (f.get("docker") or {}).get("is_manager")}
    for o in out.values():
        o["carriers"] |= {n for n, ip in ip_of.items() if ip and ip in o["peers"]}
        o["carriers"] = sorted(o["carriers"])
        # swarm networks are defined by the managers; a worker-only copy is one being removed
        o["stale"] = bool(managers) and not (managers & o["holders"])
        o["holders"] = sorted(o["holders"])
    return out


def differences(spec: LabSpec, data: dict[str, Any]) -> list[dict[str, str]]:
    """What the live lab does not share with its spec (kind, subject, text)."""
    diffs = []
    view = swarm_view(data)
    for node in spec.nodes:
        facts = data["nodes"].get(node.name, {})
        if facts.get("error"):
            diffs.append({"kind": "missing node", "subject": node.name,
                          "text": f"{node.name} did not answer: {facts['error']}"})
        elif view and node.name not in view:
            diffs.append({"kind": "missing node", "subject": node.name,
                          "text": f"{node.name} is not in the swarm"})
        elif view and view[node.name]["role"] != node.role:
            diffs.append({"kind": "wrong role", "subject": node.name,
                          "text": f"{node.name} is a {view[node.name]['role']}; the spec says {node.role}"})
        elif view and view[node.name]["status"] != "Ready":
            diffs.append({"kind": "node down", "subject": node.name,
                          "text": f"{node.name} is {view[node.name]['status']} in the swarm"})
    names = {n.name for n in spec.nodes}
    for host in sorted(set(view) - names):
        diffs.append({"kind": "extra node", "subject": host, "text": f"{host} is in the swarm but not in the spec"})
    live = overlays(data)
    wanted = {o.name: o for o in spec.swarm.overlays} if spec.swarm else {}
    for name, o in sorted(live.items()):
        if o["ingress"]:
            continue
        if o["stale"]:
            diffs.append({"kind": "stale overlay", "subject": name,
                          "text": f"overlay {name} is gone from the swarm but still on {', '.join(o['holders'])} "
                          "(a worker drops its copy shortly)"})
        elif name not in wanted:
            diffs.append({"kind": "extra overlay", "subject": name, "text": f"overlay {name} is not in the spec"})
        elif o["encrypted"] != bool(wanted[name].encrypted):
            diffs.append({"kind": "overlay differs", "subject": name,
                          "text": f"overlay {name} encrypted={o['encrypted']}, the spec says {wanted[name].encrypted}"})
    for name in sorted(set(wanted) - set(live)):
        diffs.append({"kind": "missing overlay", "subject": name, "text": f"overlay {name} of the spec does not exist"})
    return diffs


def _published(facts: dict[str, Any]) -> list[dict[str, str]]:
    """Published ports on a node: container ports (docker run -p) and service ports (ingress)."""
    ports = []
    for c in facts.get("containers") or []:
        for p in c["ports"]:
            ports.append({"port": p["host_port"], "proto": p["container"].split("/")[-1],
                          "to": c["name"], "target": p["container"]})
    for s in facts.get("services") or []:
        for m in re.finditer(r"\*:(\d+)->(\d+)/(\w+)", s.get("Ports", "")):
            ports.append({"port": m[1], "proto": m[3], "to": f"service {s.get('Name')}", "target": f"{m[2]}/{m[3]}",
                          "mesh": "yes"})
    return ports


def dot_source(spec: LabSpec, data: dict[str, Any]) -> graphviz.Digraph:
    """The lab as a Graphviz graph: underlay, per-node bridges/veths/containers, overlays, ports."""
    g = graphviz.Graph("lab", engine="dot")
    g.attr(rankdir="LR", fontname="Helvetica", fontsize="11", newrank="true", nodesep="0.25", ranksep="0.5",
           bgcolor="white", id="topology")
    g.attr("node", fontname="Helvetica", fontsize="10", shape="box", style="rounded,filled", fillcolor="white")
    g.attr("edge", fontname="Helvetica", fontsize="9", color="#555555")
    diffs = {(d["kind"], d["subject"]): d["text"] for d in differences(spec, data)}
    view = swarm_view(data)
    g.node("underlay", _l(f"lab subnet {spec.network.subnet}\ngateway {spec.network.gateway}"), shape="box",
           style="filled", fillcolor="#eeeeee", id="underlay")
    mesh_ports: dict[str, dict[str, str]] = {}
    drawn: set[str] = set()  # container/netns boxes: edges only to what is drawn
    for node in spec.nodes:
        facts = data["nodes"].get(node.name, {})
        missing = ("missing node", node.name) in diffs
        wrong = diffs.get(("wrong role", node.name))
        live = view.get(node.name, {})
        label = f"{node.name}: {node.role}"
        if live.get("manager_status"):
            label += f" ({live['manager_status']})"
        version = facts.get("docker", {}).get("version")
        label += f"\\n{node.ip}" + (f" · Docker {version}" if version else "")
        if missing:
            label += f"\\nMISSING: {diffs[('missing node', node.name)]}"
        if wrong:
            label += f"\\nWRONG ROLE: {wrong}"
        with g.subgraph(name=f"cluster_{_id(node.name)}") as c:
            c.attr(label=label, style="rounded" + (",dashed" if missing else ""), color=WRONG if (missing or wrong)
                   else "#333333", fontcolor=WRONG if (missing or wrong) else "black", id=_id("node", node.name),
                   labeljust="l")
            nic = _id(node.name, "eth")
            iface = spec.network.interface
            c.node(nic, _l(f"{iface}\n{node.ip}"), shape="box", style="filled", fillcolor="#dddddd")
            g.edge("underlay", nic, color=WRONG if missing else "#333333", style="dashed" if missing else "solid")
            if facts.get("error"):
                continue
            links = {link["name"]: link for link in facts.get("links", [])}
            services = {ctr["name"]: ctr["service"] for ctr in facts.get("containers") or [] if ctr.get("service")}
            for net in facts.get("networks") or []:
                if net["driver"] != "bridge" or not net.get("bridge"):
                    continue
                br = net["bridge"]
                bid = _id(node.name, "br", br)
                addr = ", ".join(links.get(br, {}).get("addresses") or net["subnets"])
                c.node(bid, _l(f"{br} ({net['name']})\n{addr}"), fillcolor=BRIDGE_COLOR, id=bid)
                c.edge(nic, bid, style="dotted", label="NAT" if net["name"] in ("bridge", "docker_gwbridge") else "")
                for link in facts.get("links", []):
                    if link.get("master") != br:
                        continue
                    peer = link.get("peer") or {}
                    owner = peer.get("owner", f"peer of {link['name']} not found (gone while collecting?)")
                    oid = _id(node.name, "ns", owner)
                    what = "container" if peer.get("kind") == "container" else "netns"
                    service = services.get(owner)
                    short = f"{owner.split('.')[0]}.{owner.split('.')[-1][:6]} (task of {service})" if service \
                        else owner if len(owner) <= 30 else owner[:27] + "..."
                    c.node(oid, _l(f"{what} {short}\n" + "\n".join(
                        f"{ifc['name']} {', '.join(ifc['addresses'])}" for ns in facts.get("namespaces", [])
                        if ns["name"] == owner for ifc in ns["links"] if ifc["addresses"] and ifc["name"] != "lo")),
                        shape="component", id=oid)
                    drawn.add(oid)
                    c.edge(bid, oid, label=_l(f"{link['name']}\n↔ {peer.get('ifname', '?')}"))
            for p in _published(facts):
                if p.get("mesh"):
                    mesh_ports[p["port"]] = p
                    continue
                pid = _id(node.name, "port", p["port"], p["proto"])
                c.node(pid, _l(f"published {p['proto']} {p['port']}\n→ {p['to']}:{p['target']}"), shape="cds",
                       fillcolor="#e3f6e3", id=_id("port", node.name, p["port"]))
                c.edge(nic, pid)
                if _id(node.name, "ns", p["to"]) in drawn:
                    c.edge(pid, _id(node.name, "ns", p["to"]), style="dashed")
    for name, o in sorted(overlays(data).items()):
        oid = _id("overlay", name)
        extra = diffs.get(("extra overlay", name)) or diffs.get(("overlay differs", name)) \
            or diffs.get(("stale overlay", name))
        label = (f"overlay {name}{' (ingress)' if o['ingress'] else ''}\n{', '.join(o['subnets'])}"
                 f"\nVXLAN id {o['vxlan_id'] or '?'} · {'encrypted' if o['encrypted'] else 'not encrypted'}")
        if not o["carriers"]:
            label += "\nno task on any node yet"
        if extra:
            label += f"\n{extra.upper()}"
        g.node(oid, _l(label), shape="ellipse", fillcolor=OVERLAY_COLOR, color=WRONG if extra else "#b26a00",
               fontcolor=WRONG if extra else "black", id=oid)
        for node in o["carriers"] or [m.name for m in spec.managers]:
            g.edge(_id(node, "eth"), oid, color="#b26a00", style="bold" if o["carriers"] else "dashed",
                   label="VXLAN udp/4789" if o["carriers"] else "defined here")
    live_overlays = overlays(data)
    for node in spec.nodes:  # containers (swarm tasks) attached to overlays
        for ctr in data["nodes"].get(node.name, {}).get("containers") or []:
            for net, ip in ctr["networks"].items():
                if net in live_overlays and _id(node.name, "ns", ctr["name"]) in drawn:
                    g.edge(_id(node.name, "ns", ctr["name"]), _id("overlay", net), label=ip, color="#b26a00",
                           style="dashed")
    for port, p in sorted(mesh_ports.items()):
        pid = _id("port", "mesh", port)
        g.node(pid, _l(f"published {p['proto']} {port} (routing mesh)\n→ {p['to']}:{p['target']}"), shape="cds",
               fillcolor="#e3f6e3", id=pid)
        g.edge(pid, _id("overlay", "ingress"), style="dashed")
    for d in (d for d in differences(spec, data) if d["kind"] in ("missing overlay", "extra node")):
        did = _id("diff", d["subject"])
        g.node(did, d["text"].upper(), shape="note", color=WRONG, fontcolor=WRONG, id=did)
    trace_path(g, spec, data, drawn_ids(g))
    return g


def drawn_ids(g: graphviz.Graph) -> set[str]:
    """The ids of the boxes already in the graph source (a path is drawn only between those)."""
    return set(re.findall(r"^\s*\"?([A-Za-z0-9_.-]+)\"? \[", "\n".join(g.body), re.M))


def trace_points(trace: dict[str, Any]) -> list[tuple[str, str]]:
    """Where the traced packet went, as (kind, name) boxes: one more point than hops."""
    a, b = (h["node"] for h in trace["hops"][:2])
    if trace["kind"] == "masquerade":
        return [("bridge", a), ("eth", a), ("eth", b)]
    if trace["kind"] == "overlay":
        return [("eth", a), ("overlay", trace.get("meta", {}).get("overlay", "")), ("eth", b)]
    return [("eth", a), ("eth", b), ("bridge", b)]


def trace_path(g: graphviz.Graph, spec: LabSpec, data: dict[str, Any], drawn: set[str]) -> None:
    """The last `swarmlab trace` as numbered arrows over the topology, one per hop."""
    trace = data.get("trace")
    if not trace or trace.get("lab") != spec.name or len(trace.get("hops") or []) < 2:
        return
    ids = []
    for kind, name in trace_points(trace):
        box = {"eth": _id(name, "eth"), "bridge": _id(name, "br", "docker0"), "overlay": _id("overlay", name)}[kind]
        ids.append(box if box in drawn or kind == "eth" else _id(trace["hops"][0 if not ids else 1]["node"], "eth"))
    for i, hop in enumerate(trace["hops"], 1):
        rules = sum(e["kind"] == "rule" for e in hop["events"])
        dropped = hop["verdict"] == "DROP"
        g.edge(ids[i - 1], ids[i], color=WRONG if dropped else TRACE, fontcolor=WRONG if dropped else TRACE,
               penwidth="2.5", dir="forward", constraint="false", style="dashed" if dropped else "bold",
               label=_l(f"trace {i}: {hop['node']}\n{rules} rule(s) hit, {hop['verdict']}"), id=_id("trace", str(i)))


def svg(spec: LabSpec, data: dict[str, Any]) -> str:
    """The topology as inline SVG (no XML prolog)."""
    out = dot_source(spec, data).pipe(format="svg", encoding="utf-8")
    return out[out.index("<svg"):]


def node_rules(facts: dict[str, Any], tables: tuple[str, ...] = ("nat", "filter")) -> dict[str, list]:
    """A node's rules explained and grouped by purpose."""
    text = "\n".join(facts.get("iptables", {}).get(t, "") for t in tables)
    return grouped(explain_save(text, tables))


def _addr_in(addr: str, subnet: str) -> bool:
    try:
        return ipaddress.ip_address(addr) in ipaddress.ip_network(subnet, strict=False)
    except ValueError:
        return False


def html(spec: LabSpec, data: dict[str, Any]) -> str:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             trim_blocks=True, lstrip_blocks=True)
    checks = data["verification"]["checks"]
    counts = {k: sum(c["outcome"] == k for c in checks) for k in ("passed", "failed", "skipped")}
    trace = data.get("trace") if (data.get("trace") or {}).get("lab") == spec.name else None
    return env.get_template("report.html.j2").render(trace=trace,
        spec=spec, data=data, svg=svg(spec, data), diffs=differences(spec, data),
        rules={n: node_rules(f) for n, f in data["nodes"].items() if not f.get("error")},
        overlays=overlays(data), view=swarm_view(data), counts=counts,
        published={n: _published(f) for n, f in data["nodes"].items()},
    )


def write(spec: LabSpec, data: dict[str, Any], dest: Path) -> Path:
    dest.write_text(html(spec, data), encoding="utf-8")
    return dest
