"""`swarmlab up` removes only what it owns; cache-clear and ssh check first (issue #12).

The docker CLI is replaced by a small in-memory engine that records every call.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from swarmlab.cli.commands import main
from swarmlab.containerlab import cache, docker_cli, provider
from swarmlab.containerlab.cache import CACHE_CONTAINER, CacheError, remove_cache
from swarmlab.containerlab.image import NodeImage
from swarmlab.containerlab.provider import LAB_LABEL, ProviderError, ensure_network, start_node
from swarmlab.model.spec import load_spec

ROOT = Path(__file__).resolve().parents[2]
LOCAL = ROOT / "labs" / "local.yaml"


class Engine:
    """Networks and containers as `docker inspect` shows them; `calls` lists every command."""

    def __init__(self) -> None:
        self.networks: dict[str, dict] = {}
        self.containers: dict[str, dict] = {}
        self.calls: list[tuple[str, ...]] = []

    def network(self, name: str, subnet: str, labels: dict | None = None,
                attached: tuple[str, ...] = ()) -> None:
        self.networks[name] = {
            "Name": name, "Labels": labels or {}, "IPAM": {"Config": [{"Subnet": subnet}]},
            "Containers": {f"id-{c}": {"Name": c} for c in attached},
        }

    def container(self, name: str, labels: dict | None = None, running: bool = True,
                  image: str = "other:1", ip: str = "") -> None:
        self.containers[f"id-{name}"] = {
            "Id": f"id-{name}", "Name": f"/{name}", "Config": {"Labels": labels or {},
                                                            "Image": image},
            "State": {"Running": running},
            "NetworkSettings": {"Networks": {"swarmlab-local": {"IPAddress": ip}}},
        }

    def _find(self, ref: str) -> dict:
        for cid, c in self.containers.items():
            if ref in (cid, c["Name"].lstrip("/")):
                return c
        if ref in self.networks:
            return self.networks[ref]
        raise docker_cli.DockerError(f"no such object {ref}")

    def docker(self, *args: str, check: bool = True, input: str | None = None) -> str:
        self.calls.append(args)
        if args[0] == "inspect":
            return json.dumps([self._find(ref) for ref in args[1:]])
        if args[:3] == ("network", "ls", "-q"):
            return "\n".join(self.networks)
        if args[:2] == ("ps", "-aq"):
            flt = args[3]
            if flt.startswith("label="):
                key, _, value = flt.removeprefix("label=").partition("=")
                return "\n".join(cid for cid, c in self.containers.items()
                                 if key in c["Config"]["Labels"]
                                 and (not value or c["Config"]["Labels"][key] == value))
            name = flt.removeprefix("name=^").removesuffix("$")
            return "\n".join(cid for cid, c in self.containers.items()
                             if c["Name"] == f"/{name}")
        return ""

    @property
    def removed(self) -> list[str]:
        return [a[-1] for a in self.calls if a[:2] == ("rm", "-f")] + [
            a[-1] for a in self.calls if a[:2] == ("network", "rm")]


@pytest.fixture
def engine(monkeypatch) -> Engine:
    eng = Engine()
    for module in (docker_cli, provider, cache):
        monkeypatch.setattr(module, "docker", eng.docker)
    monkeypatch.setattr(docker_cli, "engine_available", lambda: True)
    return eng


def test_same_named_network_with_a_foreign_container_is_not_taken_down(engine: Engine) -> None:
    engine.network("swarmlab-local", "10.66.0.0/24", {LAB_LABEL: "local"},
                   attached=("swarmlab-local-node1", "someones-db"))
    engine.container("swarmlab-local-node1", {LAB_LABEL: "local"})
    engine.container("someones-db", {})
    with pytest.raises(ProviderError, match="containers swarmlab does not own use it: someones-db"):
        ensure_network(load_spec(LOCAL))
    assert engine.removed == []


def test_same_named_network_swarmlab_did_not_create_is_refused(engine: Engine) -> None:
    engine.network("swarmlab-local", "10.66.0.0/24", labels={})
    with pytest.raises(ProviderError, match="swarmlab did not create it"):
        ensure_network(load_spec(LOCAL))
    assert engine.removed == []


def test_own_network_with_own_nodes_is_recreated(engine: Engine) -> None:
    engine.network("swarmlab-local", "10.66.0.0/24", {LAB_LABEL: "local"},
                   attached=("swarmlab-local-node1", CACHE_CONTAINER))
    engine.container("swarmlab-local-node1", {LAB_LABEL: "local"})
    assert ensure_network(load_spec(LOCAL)) is True
    assert engine.removed == ["id-swarmlab-local-node1", "swarmlab-local"]
    assert ("network", "create") == engine.calls[-1][:2]


def test_network_of_another_lab_with_stopped_nodes_is_kept(engine: Engine) -> None:
    engine.network("swarmlab-old", "10.77.0.0/24", {LAB_LABEL: "old"})
    engine.container("swarmlab-old-n1", {LAB_LABEL: "old"}, running=False)
    with pytest.raises(ProviderError, match="already used by docker network 'swarmlab-old'"):
        ensure_network(load_spec(LOCAL))
    assert engine.removed == []


def test_container_with_the_node_name_but_not_ours_is_not_removed(engine: Engine) -> None:
    engine.container("swarmlab-local-node1", {LAB_LABEL: "someone"}, image="x:1")
    spec = load_spec(LOCAL)
    with pytest.raises(ProviderError, match="does not remove containers it does not own"):
        start_node(spec, spec.nodes[0], NodeImage("debian-13"))
    assert engine.removed == []


def test_cache_clear_refuses_while_a_lab_uses_the_cache(engine: Engine) -> None:
    engine.container("swarmlab-local-node1", {LAB_LABEL: "local"}, running=False)
    with pytest.raises(CacheError, match="serves lab\\(s\\) local"):
        remove_cache()
    assert engine.removed == []
    result = CliRunner().invoke(main, ["cache-clear"])
    assert result.exit_code == 2 and "--force" in result.output
    assert engine.removed == []


def test_cache_clear_force_and_unused(engine: Engine) -> None:
    remove_cache(exclude=())
    assert engine.removed == [CACHE_CONTAINER]
    engine.container("swarmlab-local-node1", {LAB_LABEL: "local"})
    result = CliRunner().invoke(main, ["cache-clear", "--force"])
    assert result.exit_code == 0
    assert "lab(s) local used the cache" in result.output


def test_ssh_without_a_lab_up_says_so_and_creates_nothing(tmp_path: Path, monkeypatch) -> None:
    from swarmlab.cli import labkind
    from swarmlab.control import reach

    monkeypatch.setenv("SWARMLAB_STATE", str(tmp_path / "state"))
    monkeypatch.setattr(labkind, "kind_of", lambda spec: labkind.KINDS[0])
    monkeypatch.setattr(reach, "check", lambda entries: [
        reach.NodeReach(n, d["ssh_hostname"], "ssh: connect to host 10.77.0.11 port 22: No route to host")
        for n, d in entries])
    result = CliRunner().invoke(main, ["ssh", "--spec", str(LOCAL), "node1", "true"])
    assert result.exit_code == 3
    assert "error: node node1 of lab local does not answer over SSH (is the lab up?)" in result.output
    assert "node1 (10.77.0.11): ssh: connect to host 10.77.0.11 port 22: No route to host" in result.output
    assert f"fix: swarmlab up --spec {LOCAL}" in result.output
    assert not (tmp_path / "state").exists()


def test_up_says_what_the_container_lab_grants(monkeypatch) -> None:
    import swarmlab.cli.pipeline as pipeline

    def stop(*_a, **_k):
        raise provider.ProviderError("stopped here")

    monkeypatch.setattr(pipeline, "nodes_up", stop)
    result = CliRunner().invoke(main, ["up", "--spec", str(LOCAL)])
    assert "root in a node is root on this Docker host" in result.output
    assert result.exit_code == 2
