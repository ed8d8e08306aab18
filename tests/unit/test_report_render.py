"""The report page from recorded facts (tests/unit/data/report-3nodes.json: a 3-node Debian 13 lab
with a container publishing 18080 -> 80 on r2 and a global service on the labnet overlay)."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pytest

from swarmlab.model.spec import load_spec
from swarmlab.report import collect, render

DATA = Path(__file__).parent / "data"
SPEC = """
name: ci-report
network: {subnet: 10.96.0.0/24, gateway: 10.96.0.1, dns: [127.0.0.11], interface: eth0}
docker: {source: distro, users: [lab]}
swarm:
  default_addr_pool: [10.128.128.0/17]
  overlays:
    - {name: labnet, subnet: 10.128.1.0/24, attachable: true}
    - {name: secure, subnet: 10.128.2.0/24, encrypted: true, attachable: true}
nodes:
  - {name: r1, distro: debian-13, ip: 10.96.0.11, role: manager}
  - {name: r2, distro: debian-13, ip: 10.96.0.12, role: worker}
  - {name: r3, distro: debian-13, ip: 10.96.0.13, role: worker}
"""


@pytest.fixture
def data() -> dict:
    return json.loads((DATA / "report-3nodes.json").read_text())


def _spec(tmp_path: Path, text: str = SPEC):
    path = tmp_path / "lab.yaml"
    path.write_text(text)
    return load_spec(path)


def _svg_text(svg: str) -> str:
    return " ".join(html.unescape(t) for t in re.findall(r"<text[^>]*>([^<]*)</text>", svg))


def test_svg_has_every_node_overlay_and_published_port(tmp_path, data):
    spec = _spec(tmp_path)
    svg = html.unescape(render.svg(spec, data))
    text = _svg_text(svg)
    for node in spec.nodes:
        assert f"{node.name}: {node.role}" in text and node.ip in text
        assert f'id="node-{node.name}"' in svg
    for name, vxlan in (("labnet", "4097"), ("secure", "4098"), ("ingress", "4096")):
        assert f'id="overlay-{name}"' in svg
        assert f"VXLAN id {vxlan}" in text
    assert "VXLAN id 4098 · encrypted" in text
    assert "published tcp 18080" in text and "→ web:80/tcp" in text
    # docker0 and docker_gwbridge of every node, with the veth to their container or netns
    assert text.count("docker0 (bridge)") == 3 and text.count("docker_gwbridge (docker_gwbridge)") == 3
    assert "container web" in text and "netns ingress_sbox" in text


def test_a_lab_matching_its_spec_has_no_differences(tmp_path, data):
    assert render.differences(_spec(tmp_path), data) == []


def test_differences_are_marked_on_the_picture(tmp_path, data):
    text = SPEC.replace("role: manager}", "role: worker}", 1).replace(
        "{name: r2, distro: debian-13, ip: 10.96.0.12, role: worker}",
        "{name: r2, distro: debian-13, ip: 10.96.0.12, role: manager}")
    text = text.replace("    - {name: secure, subnet: 10.128.2.0/24, encrypted: true, attachable: true}\n", "")
    text += "  - {name: r4, distro: debian-13, ip: 10.96.0.14, role: worker}\n"
    spec = _spec(tmp_path, text)
    data["nodes"]["r4"] = {"error": "no connection to this node"}
    diffs = {(d["kind"], d["subject"]) for d in render.differences(spec, data)}
    assert diffs == {("wrong role", "r1"), ("wrong role", "r2"), ("extra overlay", "secure"),
                     ("missing node", "r4")}
    svg_text = _svg_text(render.svg(spec, data))
    assert "WRONG ROLE: r1 is a manager; the spec says worker" in svg_text
    assert "MISSING: r4 did not answer" in svg_text
    assert "OVERLAY SECURE IS NOT IN THE SPEC" in svg_text


def test_page_is_self_contained_and_explains_each_node(tmp_path, data):
    page = render.html(_spec(tmp_path), data)
    assert not re.search(r"<(script|link|img)\b[^>]*(src|href)=", page)
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "").replace(
        'xmlns:xlink="http://www.w3.org/1999/xlink"', "")
    for node in ("r1", "r2", "r3"):
        assert f'id="rules-{node}"' in page
    assert "DNAT: tcp to port 18080 on any local address goes to 172.17.0.2:80" in page
    assert ("MASQUERADE: packets from 172.17.0.0/16 leaving by any interface but docker0 take the node&#39;s "
            "address") in page
    assert 'id="verification"' in page and "the spec has no rootless.users" in page


def test_veth_peers_are_matched_to_their_container():
    host = [
        {"ifindex": 3, "ifname": "docker0", "linkinfo": {"info_kind": "bridge"},
         "addr_info": [{"family": "inet", "local": "172.17.0.1", "prefixlen": 16}]},
        {"ifindex": 7, "ifname": "veth1a", "master": "docker0", "link_index": 2, "link_netnsid": 0,
         "linkinfo": {"info_kind": "veth"}, "addr_info": []},
    ]
    inside = [{"ifindex": 2, "ifname": "eth0", "link_index": 7, "link_netnsid": 0, "linkinfo": {"info_kind": "veth"},
               "addr_info": [{"family": "inet", "local": "172.17.0.2", "prefixlen": 16}]}]
    containers = [{"Id": "abcdef1234567890", "Name": "/web", "Config": {"Image": "x", "Labels": {}},
                   "NetworkSettings": {"Networks": {"bridge": {"IPAddress": "172.17.0.2"}},
                                       "Ports": {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "18080"}]}}}]
    out = "\n".join([
        f"{collect.SECTION}addr", json.dumps(host),
        f"{collect.SECTION}containers", json.dumps(containers),
        f"{collect.SECTION}ns container abcdef123456", json.dumps(inside),
        f"{collect.SECTION}ns netns abcdef123456", json.dumps(inside),
        f"{collect.SECTION}kernel", "6.1.0", "vxlan yes", "ip_vs no",
    ])
    facts = collect.parse_node(collect.split_sections(out))
    veth = next(link for link in facts["links"] if link["name"] == "veth1a")
    assert veth["peer"] == {"owner": "web", "kind": "container", "ifname": "eth0", "addresses": ["172.17.0.2/16"]}
    assert [ns["kind"] for ns in facts["namespaces"]] == ["container"]  # its sandbox netns is not repeated
    assert facts["containers"][0]["ports"] == [{"container": "80/tcp", "host_ip": "0.0.0.0", "host_port": "18080"}]
    assert facts["kernel"] == {"release": "6.1.0", "features": {"vxlan": "yes", "ip_vs": "no"}}


def test_a_worker_only_overlay_is_stale_not_extra(tmp_path, data):
    """Right after `docker stack rm` a worker keeps its copy of the stack's network for a while."""
    data["nodes"]["r3"]["networks"].append({
        "name": "swarmlab-probe_default", "id": "x", "driver": "overlay", "scope": "swarm",
        "subnets": ["10.128.130.0/24"], "bridge": None, "vxlan_id": "4099", "encrypted": False,
        "ingress": False, "attachable": False, "peers": [], "endpoints": {}})
    diffs = render.differences(_spec(tmp_path), data)
    assert [(d["kind"], d["subject"]) for d in diffs] == [("stale overlay", "swarmlab-probe_default")]
    assert "still on r3" in diffs[0]["text"]


def test_nftables_firewall_is_shown_raw_and_marked(tmp_path, data):
    data["nodes"]["r1"]["nftables"] = "table inet swarmlab {\n\tchain input {\n\t\ttcp dport 2377 accept\n\t}\n}"
    page = render.html(_spec(tmp_path), data)
    assert "⚠ not explained (nftables syntax, shown as listed)" in page
    assert "tcp dport 2377 accept" in page
