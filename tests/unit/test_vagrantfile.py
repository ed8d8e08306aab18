"""The Vagrantfile builds its machines from the lab spec: checked with the real `vagrant`.

`vagrant validate` and `vagrant status` only load and check the Vagrantfile; they create no
machine. The provider tools are stand-ins on PATH (a `VBoxManage` and a `docker` that only
answer version queries), so these tests need neither VirtualBox nor a Docker engine, and a
test fails if Vagrant asks them for anything else. Vagrant's per-project state goes to a
temporary VAGRANT_DOTFILE_PATH, so no `.vagrant` dir appears in the project (the inventory
switches to Vagrant connections when it sees one); one that appears anyway is removed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from swarmlab.model.spec import load_spec

ROOT = Path(__file__).resolve().parents[2]
VAGRANT = shutil.which("vagrant")
SPECS = ["lab.yaml", "labs/local.yaml", "labs/vm.yaml"]
PROVIDERS = ["virtualbox", "libvirt", "docker"]

VBOXMANAGE_STUB = """#!/bin/sh
echo "VBoxManage $*" >> "$SWARMLAB_TEST_STUB_LOG"
case "$1" in --version) echo 7.0.14r161095 ;; *) exit 1 ;; esac
"""
DOCKER_STUB = """#!/bin/sh
echo "docker $*" >> "$SWARMLAB_TEST_STUB_LOG"
case "$1" in version) echo "Client: stand-in" ;; *) exit 1 ;; esac
"""
VERSION_QUERIES = {"VBoxManage --version", "docker version"}


@pytest.fixture(scope="module")
def vagrant_bin() -> str:
    if VAGRANT is None:
        pytest.skip(
            "the `vagrant` binary is not on PATH (apt-get install vagrant); CI installs it, so these tests run there"
        )
    return VAGRANT


@pytest.fixture(scope="module")
def plugins(vagrant_bin: str) -> str:
    out = subprocess.run(
        [vagrant_bin, "plugin", "list"],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, VAGRANT_CHECKPOINT_DISABLE="1"),
    )
    return out.stdout


@pytest.fixture(autouse=True)
def no_vagrant_dir_left():
    """Remove a `.vagrant` dir that a test created in the project (none existed before)."""
    dot = ROOT / ".vagrant"
    existed = dot.exists()
    yield
    if not existed and dot.exists():
        shutil.rmtree(dot, ignore_errors=True)


@pytest.fixture
def env(tmp_path: Path, vagrant_bin: str) -> dict[str, str]:
    """A clean environment: no SWARMLAB_*/provider settings from the caller, stub tools."""
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    for name, text in (("VBoxManage", VBOXMANAGE_STUB), ("docker", DOCKER_STUB)):
        (stubs / name).write_text(text)
        (stubs / name).chmod(0o755)
    drop = ("VAGRANT_DEFAULT_PROVIDER", "VAGRANT_CWD", "VAGRANT_VAGRANTFILE", "VAGRANT_HOME")
    out = {k: v for k, v in os.environ.items() if not k.startswith("SWARMLAB_") and k not in drop}
    out.update(
        PATH=f"{stubs}{os.pathsep}{os.environ.get('PATH', '')}",
        VAGRANT_DOTFILE_PATH=str(tmp_path / "dotvagrant"),
        VAGRANT_CHECKPOINT_DISABLE="1",
        VAGRANT_BOX_UPDATE_CHECK_DISABLE="1",
        VAGRANT_NO_COLOR="1",
        SWARMLAB_TEST_STUB_LOG=str(tmp_path / "stub-calls.log"),
    )
    return out


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    assert VAGRANT is not None
    proc = subprocess.run([VAGRANT, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    log = Path(env["SWARMLAB_TEST_STUB_LOG"])
    calls = set(log.read_text().splitlines()) if log.exists() else set()
    assert calls <= VERSION_QUERIES, f"vagrant {' '.join(args)} drove a provider: {calls}"
    return proc


def use_provider(env: dict[str, str], provider: str, plugins: str, tmp_path: Path) -> dict[str, str]:
    if provider == "libvirt" and "vagrant-libvirt" not in plugins:
        pytest.skip("the vagrant-libvirt plugin is not installed (Debian: vagrant-libvirt)")
    env = dict(env, VAGRANT_DEFAULT_PROVIDER=provider)
    if provider == "docker":
        key = tmp_path / "id_lab"
        key.write_text("not a real key; vagrant validate only checks that it exists\n")
        env.update(
            SWARMLAB_NODE_IMAGE="swarmlab/node:test",
            SWARMLAB_DOCKER_NETWORK="swarmlab-test",
            SWARMLAB_SSH_KEY=str(key),
        )
    return env


def status(proc: subprocess.CompletedProcess[str]) -> tuple[list[str], set[str]]:
    """(machine names in order, provider names) from `vagrant status --machine-readable`."""
    names, providers = [], set()
    for line in proc.stdout.splitlines():
        parts = line.split(",", 3)
        if len(parts) == 4 and parts[2] == "state":
            names.append(parts[1])
        if len(parts) == 4 and parts[2] == "provider-name":
            providers.add(parts[3])
    return names, providers


def spec_names(spec: str | Path) -> list[str]:
    return [n.name for n in load_spec(ROOT / spec).nodes]


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("spec", SPECS)
def test_vagrant_validate(env: dict[str, str], plugins: str, tmp_path: Path, spec: str, provider: str) -> None:
    env = dict(use_provider(env, provider, plugins, tmp_path), SWARMLAB_SPEC=spec)
    proc = run(env, "validate")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "validated successfully" in proc.stdout


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("spec", SPECS)
def test_vagrant_status_lists_the_spec_nodes(
    env: dict[str, str], plugins: str, tmp_path: Path, spec: str, provider: str
) -> None:
    env = dict(use_provider(env, provider, plugins, tmp_path), SWARMLAB_SPEC=spec)
    proc = run(env, "status", "--machine-readable")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    names, providers = status(proc)
    assert names == spec_names(spec)
    assert providers == {provider}


def test_default_spec_is_lab_yaml(env: dict[str, str]) -> None:
    proc = run(env, "status", "--machine-readable")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert status(proc)[0] == spec_names("lab.yaml")


def test_machines_follow_the_spec_not_the_vagrantfile(env: dict[str, str], tmp_path: Path) -> None:
    data = yaml.safe_load((ROOT / "lab.yaml").read_text())
    for node, name in zip(data["nodes"], ("alpha", "beta", "gamma"), strict=True):
        node["name"] = name
    spec = tmp_path / "renamed.yaml"
    spec.write_text(yaml.safe_dump(data))
    proc = run(dict(env, SWARMLAB_SPEC=str(spec)), "status", "--machine-readable")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert status(proc)[0] == ["alpha", "beta", "gamma"]


def test_yaml_error_names_the_spec(env: dict[str, str], tmp_path: Path) -> None:
    spec = tmp_path / "broken.yaml"
    spec.write_text("name: broken\nnodes:\n  - {name: node1, distro: debian-13\n  ip: [\n")
    proc = run(dict(env, SWARMLAB_SPEC=str(spec)), "status")
    assert proc.returncode != 0
    assert str(spec) in proc.stderr
    assert "not valid YAML" in proc.stderr
    assert "line " in proc.stderr


def test_missing_spec_names_the_path(env: dict[str, str], tmp_path: Path) -> None:
    spec = tmp_path / "absent.yaml"
    proc = run(dict(env, SWARMLAB_SPEC=str(spec)), "status")
    assert proc.returncode != 0
    assert f"SWARMLAB_SPEC {spec} does not exist" in proc.stderr


def test_spec_without_nodes_is_refused(env: dict[str, str], tmp_path: Path) -> None:
    spec = tmp_path / "empty.yaml"
    spec.write_text("name: empty\nnodes: []\n")
    proc = run(dict(env, SWARMLAB_SPEC=str(spec)), "status")
    assert proc.returncode != 0
    assert f"the lab spec {spec} has no `nodes:` list" in proc.stderr


@pytest.mark.parametrize("box", [None, "local/manjaro"])
def test_up_without_the_manjaro_box_says_which_box(env: dict[str, str], tmp_path: Path, box: str | None) -> None:
    """`vagrant up` stops before touching anything when the Manjaro box is not installed.

    An empty VAGRANT_HOME makes sure no box is installed, and the box server points at a
    closed local port, so even a broken check could not download anything.
    """
    data = yaml.safe_load((ROOT / "lab.yaml").read_text())
    manjaro = next(n for n in data["nodes"] if n["distro"] == "manjaro")
    if box:
        manjaro["box"] = box
    spec = tmp_path / "lab.yaml"
    spec.write_text(yaml.safe_dump(data))
    env = dict(
        env,
        SWARMLAB_SPEC=str(spec),
        VAGRANT_HOME=str(tmp_path / "vagrant-home"),
        VAGRANT_SERVER_URL="http://127.0.0.1:9",
        VAGRANT_DEFAULT_PROVIDER="virtualbox",
    )
    proc = run(env, "up", manjaro["name"])
    assert proc.returncode != 0
    wanted = box or "Zelec/manjarolinux"
    assert f'the Manjaro box "{wanted}" for {manjaro["name"]} is not installed' in proc.stderr
    assert f"vagrant box add {wanted} --provider virtualbox" in proc.stderr
    assert "`box:" in proc.stderr and str(spec) in proc.stderr
    assert not (tmp_path / "dotvagrant" / "machines" / manjaro["name"] / "virtualbox" / "id").exists()


@pytest.mark.parametrize("missing", ["SWARMLAB_NODE_IMAGE", "key"])
def test_docker_up_needs_the_image_and_the_lab_key(env: dict[str, str], tmp_path: Path, missing: str) -> None:
    """`vagrant up --provider=docker` stops before touching docker without the node image or
    the lab key (default: the lab's state key, SWARMLAB_STATE/<lab>/id_ed25519)."""
    state = tmp_path / "state"
    env = dict(env, SWARMLAB_SPEC="labs/local.yaml", SWARMLAB_STATE=str(state),
               SWARMLAB_NODE_IMAGE="swarmlab/node:test")
    key = state / "local" / "id_ed25519"
    if missing == "SWARMLAB_NODE_IMAGE":
        del env["SWARMLAB_NODE_IMAGE"]
        key.parent.mkdir(parents=True)
        key.write_text("stand-in\n")
        key.with_suffix(".pub").write_text("stand-in\n")
    proc = run(env, "up", "--provider=docker")
    assert proc.returncode != 0
    if missing == "key":
        assert f"the SSH key {key} (and {key}.pub) of the node user `lab` does not exist" in proc.stderr
    else:
        assert "the docker provider needs SWARMLAB_NODE_IMAGE" in proc.stderr
    assert not (tmp_path / "dotvagrant" / "machines" / "node1" / "docker" / "id").exists()
