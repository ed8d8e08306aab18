"""Which nodes the package cache is written into: apt nodes only (Manjaro has no apt)."""

from __future__ import annotations

from pathlib import Path

import yaml

from swarmlab.containerlab import provider
from swarmlab.containerlab.cache import APT_PROXY_FILE, lab_uses_cache, proxy_file
from swarmlab.model.distros import DISTROS
from swarmlab.model.spec import parse_spec

ROOT = Path(__file__).resolve().parents[2]


def _spec(*distros: str):
    data = yaml.safe_load((ROOT / "labs/local.yaml").read_text())
    data["nodes"] = [dict(n, distro=d) for n, d in zip(data["nodes"], distros, strict=False)]
    data["docker"] = {"source": "distro"}
    data.pop("rootless", None)
    return parse_spec(yaml.safe_dump(data))


def test_proxy_file_per_package_family():
    for key, distro in DISTROS.items():
        assert proxy_file(key) == (APT_PROXY_FILE if distro.family == "apt" else None)


def test_a_lab_of_pacman_nodes_starts_no_cache():
    assert not lab_uses_cache(_spec("manjaro"))
    assert lab_uses_cache(_spec("manjaro", "debian-14"))


def _wait_ready_calls(monkeypatch, distro: str, proxy: str | None) -> list[tuple]:
    calls: list[tuple] = []

    def fake_docker(*args, check=True, input=None):
        calls.append(args)
        return "running\n" if "is-system-running" in args else ""

    monkeypatch.setattr(provider, "docker", fake_docker)
    monkeypatch.setattr(provider, "_port_open", lambda ip, port: True)
    spec = _spec(distro)
    provider.wait_ready(spec, spec.nodes[0], "ssh-ed25519 AAAA test\n", apt_proxy=proxy)
    return calls


def test_apt_nodes_get_the_proxy_file(monkeypatch):
    calls = _wait_ready_calls(monkeypatch, "debian-14", 'Acquire::http::Proxy "http://x:3142";\n')
    assert any(c[-5:] == ("sh", "-c", 'cat > "$1"', "sh", APT_PROXY_FILE) for c in calls), calls
    calls = _wait_ready_calls(monkeypatch, "debian-14", None)
    assert any(c[-3:] == ("rm", "-f", APT_PROXY_FILE) for c in calls)


def test_manjaro_nodes_get_no_apt_file(monkeypatch):
    for proxy in ('Acquire::http::Proxy "http://x:3142";\n', None):
        calls = _wait_ready_calls(monkeypatch, "manjaro", proxy)
        assert not any("/etc/apt" in " ".join(c) for c in calls), calls
        assert any(c[-3:] == ("sh", "/home/lab/.ssh/authorized_keys", "lab") for c in calls)  # the key still goes in
