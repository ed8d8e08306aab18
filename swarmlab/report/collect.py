"""Live facts of a lab, one wide command per node over the SSH connections the suite uses.

Per node: interfaces and addresses (host and every container / Docker netns, so each veth is
matched to its peer), Docker networks, containers, the nat and filter tables, the swarm view,
kernel features. Plus the last verification results from the lab's JUnit report.
Saved as `.state/<lab>/report.json`.
"""

from __future__ import annotations

import ast
import json
import shlex
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from swarmlab.control.parallel import on_each
from swarmlab.control.reach import short_error
from swarmlab.model.shipped import PACKAGE
from swarmlab.model.spec import LabSpec
from swarmlab.model.state import lab_state_dir
from swarmlab.provision.facts import KERNEL_MARKERS

SECTION = "@@@swarmlab-report "

# one script per node; each section starts with a marker line, errors never stop the others
_KERNEL = "; ".join(
    f"if {test}; then echo {shlex.quote(name)} yes; else echo {shlex.quote(name)} no; fi"
    for name, test in KERNEL_MARKERS.items()
)
SCRIPT = f"""
sec() {{ printf '\\n{SECTION}%s\\n' "$*"; }}
sec addr; ip -j -d addr
sec nat; iptables-save -t nat
sec filter; iptables-save -t filter
sec nft; command -v nft >/dev/null && nft list table inet swarmlab 2>/dev/null
sec info; docker info --format '{{{{json .}}}}'
sec networks; docker network ls -q | xargs -r docker network inspect
sec containers; docker ps -q | xargs -r docker inspect
sec nodes; docker node ls --format '{{{{json .}}}}' 2>/dev/null
sec services; docker service ls --format '{{{{json .}}}}' 2>/dev/null
for c in $(docker ps -q); do
  pid=$(docker inspect -f '{{{{.State.Pid}}}}' "$c")
  sec ns container "$c"; nsenter -t "$pid" -n ip -j -d addr
done
for f in /run/docker/netns/*; do
  [ -e "$f" ] || continue
  sec ns netns "${{f##*/}}"; nsenter --net="$f" ip -j -d addr
done
sec kernel; uname -r; {_KERNEL}
"""


def split_sections(text: str) -> dict[str, str]:
    """Script output -> {section name: its text}."""
    out: dict[str, str] = {}
    name = None
    lines: list[str] = []
    for line in text.splitlines():
        if line.startswith(SECTION):
            if name is not None:
                out[name] = "\n".join(lines).strip()
            name, lines = line[len(SECTION):].strip(), []
        else:
            lines.append(line)
    if name is not None:
        out[name] = "\n".join(lines).strip()
    return out


def _json(text: str, default: Any) -> Any:
    try:
        return json.loads(text) if text else default
    except json.JSONDecodeError:
        return default


def _json_lines(text: str) -> list[dict]:
    return [v for v in (_json(line, None) for line in text.splitlines()) if isinstance(v, dict)]


def _links(addr: list[dict]) -> list[dict]:
    """`ip -j -d addr` -> the fields the report needs per interface."""
    out = []
    for link in addr:
        info = link.get("linkinfo") or {}
        out.append({
            "name": link.get("ifname"),
            "index": link.get("ifindex"),
            "kind": info.get("info_kind"),
            "master": link.get("master"),
            "peer_index": link.get("link_index"),
            "peer_netns": link.get("link_netnsid"),
            "state": link.get("operstate"),
            "mac": link.get("address"),
            "vxlan_id": (info.get("info_data") or {}).get("id") if info.get("info_kind") == "vxlan" else None,
            "addresses": [f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info", [])
                          if a.get("family") == "inet"],
        })
    return out


def parse_node(sections: dict[str, str]) -> dict[str, Any]:
    """One node's script output -> its facts."""
    links = _links(_json(sections.get("addr", ""), []))
    containers = []
    for c in _json(sections.get("containers", ""), []):
        labels = c.get("Config", {}).get("Labels") or {}
        nets = c.get("NetworkSettings", {}).get("Networks") or {}
        ports = []
        for spec, binds in (c.get("NetworkSettings", {}).get("Ports") or {}).items():
            for b in binds or []:
                ports.append({"container": spec, "host_ip": b.get("HostIp"), "host_port": b.get("HostPort")})
        containers.append({
            "id": c.get("Id", "")[:12],
            "name": c.get("Name", "").lstrip("/"),
            "image": c.get("Config", {}).get("Image"),
            "service": labels.get("com.docker.swarm.service.name"),
            "task": labels.get("com.docker.swarm.task.name"),
            "networks": {n: v.get("IPAddress") for n, v in nets.items()},
            "ports": ports,
        })
    by_id = {c["id"]: c for c in containers}
    namespaces = []
    for name, text in sections.items():
        if not name.startswith("ns "):
            continue
        _, kind, ident = name.split(" ", 2)
        owner = by_id.get(ident[:12], {}).get("name", ident) if kind == "container" else ident
        namespaces.append({"kind": kind, "name": owner, "links": _links(_json(text, []))})
    networks = []
    for n in _json(sections.get("networks", ""), []):
        options = n.get("Options") or {}
        networks.append({
            "name": n.get("Name"),
            "id": n.get("Id", "")[:12],
            "driver": n.get("Driver"),
            "scope": n.get("Scope"),
            "subnets": [c.get("Subnet") for c in (n.get("IPAM", {}).get("Config") or []) if c.get("Subnet")],
            "bridge": options.get("com.docker.network.bridge.name")
            or (f"br-{n.get('Id', '')[:12]}" if n.get("Driver") == "bridge" else None),
            "vxlan_id": options.get("com.docker.network.driver.overlay.vxlanid_list"),
            "encrypted": "encrypted" in options,
            "ingress": bool(n.get("Ingress")),
            "attachable": bool(n.get("Attachable")),
            "peers": [p.get("IP") for p in n.get("Peers") or []],
            "endpoints": {k: {"name": v.get("Name"), "ip": (v.get("IPv4Address") or "").split("/")[0]}
                          for k, v in (n.get("Containers") or {}).items()},
        })
    # veth peers: a namespace interface whose peer index is a host interface on a bridge
    host_by_index = {link["index"]: link for link in links}
    for ns in namespaces:
        for link in ns["links"]:
            host = host_by_index.get(link["peer_index"]) if link["kind"] == "veth" else None
            if host and host.get("peer_netns") is not None and host.get("peer", {}).get("kind") != "container":
                host["peer"] = {"owner": ns["name"], "kind": ns["kind"], "ifname": link["name"],
                                "addresses": link["addresses"]}
    owned = {link["peer_index"] for ns in namespaces if ns["kind"] == "container" for link in ns["links"]}
    namespaces = [ns for ns in namespaces if any(link["kind"] for link in ns["links"])
                  and (ns["kind"] == "container" or not {link["peer_index"] for link in ns["links"]
                                                         if link["kind"] == "veth"} & owned)]
    kernel_lines = sections.get("kernel", "").splitlines()
    info = _json(sections.get("info", ""), {})
    swarm = info.get("Swarm") or {}
    return {
        "links": links,
        "namespaces": namespaces,
        "networks": networks,
        "containers": containers,
        "iptables": {"nat": sections.get("nat", ""), "filter": sections.get("filter", "")},
        "nftables": sections.get("nft", ""),  # the nftables firewall backend's own table (Manjaro)
        "docker": {"version": info.get("ServerVersion"), "swarm_state": swarm.get("LocalNodeState"),
                   "node_addr": swarm.get("NodeAddr"), "is_manager": swarm.get("ControlAvailable"),
                   "managers": swarm.get("Managers"), "nodes": swarm.get("Nodes")},
        "swarm_nodes": _json_lines(sections.get("nodes", "")),
        "services": _json_lines(sections.get("services", "")),
        "kernel": {"release": kernel_lines[0] if kernel_lines else None,
                   "features": dict(line.split(" ", 1) for line in kernel_lines[1:] if " " in line)},
    }


def verification(state: Path) -> dict[str, Any]:
    """The last verification run (verify-junit.xml): every check with its outcome and evidence."""
    report = state / "verify-junit.xml"
    if not report.exists():
        return {"available": False, "checks": []}
    docs = _check_docs()
    checks = []
    for case in ET.parse(report).getroot().iter("testcase"):
        name = case.get("name", "")
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            el = case.find(tag)
            if el is not None:
                outcome = "failed" if tag != "skipped" else "skipped"
                message = (el.get("message") or el.text or "").strip()
                break
        checks.append({
            "name": name, "module": (case.get("classname") or "").rsplit(".", 1)[-1],
            "outcome": outcome, "seconds": float(case.get("time") or 0),
            "checks": docs.get(name.split("[")[0], ""), "message": message[:600],
        })
    return {"available": True, "taken": datetime.fromtimestamp(report.stat().st_mtime, timezone.utc).isoformat(),
            "checks": checks}


def _check_docs() -> dict[str, str]:
    """test function -> what it checks (the docstring, or the name in words)."""
    out = {}
    for path in (PACKAGE / "verify").glob("test_*.py"):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                doc = ast.get_docstring(node)
                out[node.name] = " ".join(doc.split()) if doc else node.name[5:].replace("_", " ")
    return out


def collect(spec: LabSpec, hosts: dict[str, Any], log: Callable[[str], None] = lambda _: None,
            skip: dict[str, str] | None = None) -> dict[str, Any]:
    """Facts of every spec node reachable in `hosts` (testinfra hosts), in parallel; the nodes
    in `skip` (node -> why) are not asked."""
    start = time.monotonic()

    def one(name: str) -> tuple[str, dict[str, Any]]:
        t0 = time.monotonic()
        host = hosts[name]
        try:
            result = host.run(f"sh -c {shlex.quote(SCRIPT)}")
        except Exception as err:  # an unreachable node is a fact of the report, not its end
            return name, {"error": short_error(err), "seconds": round(time.monotonic() - t0, 2)}
        facts = parse_node(split_sections(result.stdout))
        facts["seconds"] = round(time.monotonic() - t0, 2)
        if result.rc != 0 and not result.stdout.strip():
            facts["error"] = (result.stderr or f"exit {result.rc}").strip()[:500]
        return name, facts

    skip = skip or {}
    nodes = dict(on_each(one, [n.name for n in spec.nodes if n.name in hosts and n.name not in skip]))
    nodes.update({name: {"error": why or "no connection to this node"} for name, why in skip.items()})
    for n in spec.nodes:
        nodes.setdefault(n.name, {"error": "no connection to this node"})
    seconds = round(time.monotonic() - start, 2)
    log(f"collected {len(nodes)} nodes in {seconds}s")
    return {
        "lab": spec.name,
        "collected": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seconds": seconds,
        "spec": spec.model_dump(mode="json") if hasattr(spec, "model_dump") else {},
        "nodes": nodes,
        "verification": verification(lab_state_dir(spec.name)),
    }


def testinfra_hosts(spec: LabSpec, spec_file: Path) -> tuple[dict[str, Any], Path]:
    """testinfra hosts of the spec's nodes, built as the suite builds them (its SSH config)."""
    from swarmlab.control.inventory import lab_groups
    from swarmlab.control.sshconfig import testinfra_hosts as hosts_of

    managers, workers = lab_groups(spec_file)
    return hosts_of(managers + workers)


def collect_lab(spec: LabSpec, spec_file: Path, only: str | None = None,
                skip: dict[str, str] | None = None) -> dict[str, Any]:
    """Connect like the suite, collect (one node with `only`; not the nodes in `skip`), return
    the report data."""
    hosts, config = testinfra_hosts(spec, spec_file)
    try:
        if only:
            hosts = {only: hosts[only]}
        return collect(spec, hosts, skip=skip)
    finally:
        config.unlink(missing_ok=True)


def save(data: dict[str, Any]) -> Path:
    path = lab_state_dir(data["lab"]) / "report.json"
    path.write_text(json.dumps(data, indent=1, sort_keys=False))
    return path
