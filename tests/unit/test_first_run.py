"""A new user's first run (issue #17): each first-run failure names its fix, `up` ends with the
next steps for the lab, `vagrant-prep` prints exports a shell can eval, host-setup installs
vagrant only for the targets that run it."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_no_surprise_deletion import Engine

from swarmlab import report
from swarmlab.cli import nextsteps, pipeline, preflight
from swarmlab.cli.commands import main
from swarmlab.containerlab import cache, docker_cli, image, provider
from swarmlab.containerlab.provider import LAB_LABEL, NODE_LABEL, ProviderError
from swarmlab.model.spec import load_spec

PROJECT_ROOT = Path(__file__).resolve().parents[2]  # the repo (tests may run against an installed wheel)
LOCAL = PROJECT_ROOT / "labs" / "local.yaml"
VAGRANT_LAB = PROJECT_ROOT / "tests" / "live" / "labs" / "vagrant.yaml"
HOST_SETUP = PROJECT_ROOT / "scripts" / "host-setup.sh"


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> Engine:
    """test_no_surprise_deletion's in-memory engine in place of the docker CLI."""
    eng = Engine()
    for module in (docker_cli, provider, cache):
        monkeypatch.setattr(module, "docker", eng.docker)
    monkeypatch.setattr(docker_cli, "engine_available", lambda: True)
    return eng


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "state"
    monkeypatch.setenv("SWARMLAB_STATE", str(root))
    monkeypatch.delenv("SWARMLAB_SPEC", raising=False)
    return root


def stub_bin(tmp_path: Path, **scripts: str) -> Path:
    """A directory of shell stubs (name -> script body) to put first on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, body in scripts.items():
        stub = bin_dir / name
        stub.write_text(f"#!/bin/sh\n{body}\n")
        stub.chmod(0o755)
    return bin_dir


# ------------------------------------------------------------------ no Docker engine


@pytest.mark.parametrize(("docker_stub", "says"), [
    (None, "the docker CLI is not installed. Fix: run `make lab` as root"),
    ("echo 'Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker "
     "daemon running?' >&2; exit 1", "no Docker engine answers on this machine"),
    ("echo 'permission denied while trying to connect to the Docker daemon socket' >&2; exit 1",
     "Fix: sudo usermod -aG docker"),
])
def test_up_without_a_docker_engine_names_the_fix(tmp_path, monkeypatch, state, docker_stub, says):
    bin_dir = stub_bin(tmp_path, **({"docker": docker_stub} if docker_stub else {}))
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setattr(pipeline, "nodes_up", lambda *a, **k: pytest.fail("went past the engine"))
    result = CliRunner().invoke(main, ["up", "--spec", str(LOCAL)])
    assert result.exit_code == 2, result.output
    assert says in result.output
    assert "Fix:" in result.output and "Traceback" not in result.output


# ------------------------------------------------------------------ no root for host setup


def run_host_setup(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """host-setup.sh as uid 1000 on a machine with none of the lab's tools on PATH."""
    bin_dir = stub_bin(tmp_path, id="[ \"$1\" = -u ] && echo 1000 || echo dev")
    return subprocess.run(["/bin/bash", str(HOST_SETUP), *args], capture_output=True, text=True,
                          env={"PATH": str(bin_dir), "HOME": str(tmp_path)})


def test_host_setup_without_root_says_what_to_install_and_how(tmp_path):
    proc = run_host_setup(tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.startswith("swarmlab needs: docker.io")
    assert "Fix: run this as root (sudo make lab)" in proc.stderr
    assert "sudo apt-get install -y docker.io" in proc.stderr
    assert "vagrant" not in proc.stderr  # make lab installs no vagrant


def test_host_setup_installs_vagrant_only_when_asked(tmp_path):
    proc = run_host_setup(tmp_path, "--vagrant")
    assert proc.returncode == 1
    needs = proc.stderr.split("swarmlab needs: ", 1)[1].split(". Fix:", 1)[0].split()
    assert needs[0] == "docker.io" and needs[-1] == "vagrant"


def test_host_setup_refuses_unknown_arguments(tmp_path):
    proc = run_host_setup(tmp_path, "--vagrnat")
    assert proc.returncode == 2 and "usage:" in proc.stderr


def test_make_lab_installs_no_vagrant_and_make_test_does():
    """`make -n` shows each target's host step: lab without vagrant, test and vagrant with it."""
    def plan(target: str) -> str:
        proc = subprocess.run(["make", "-n", "-W", "pyproject.toml", target], cwd=PROJECT_ROOT,
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    assert "bash scripts/host-setup.sh\n" in plan("lab")
    assert "--vagrant" not in plan("lab")
    assert "bash scripts/host-setup.sh --vagrant" in plan("test")
    assert "bash scripts/host-setup.sh --vagrant" in plan("vagrant")
    assert "bash scripts/host-setup.sh --vagrant" not in plan("bench")


# ------------------------------------------------------------------ no debootstrap, no root


def test_image_build_without_debootstrap_names_the_fix(monkeypatch):
    monkeypatch.setattr(image.docker_cli, "image_exists", lambda tag: False)
    monkeypatch.setattr(image.shutil, "which", lambda name, path=None: None)
    with pytest.raises(image.ImageError) as err:
        image.ensure_image(image.NodeImage("debian-13"), log=lambda _: None)
    assert "debootstrap is not installed" in str(err.value)
    assert "Fix: run `make lab` as root" in str(err.value)
    assert "apt-get install -y debootstrap" in str(err.value)


def test_image_build_without_root_names_the_fix(monkeypatch):
    monkeypatch.setattr(image.docker_cli, "image_exists", lambda tag: False)
    monkeypatch.setattr(image.shutil, "which",
                        lambda name, path=None: "/usr/sbin/debootstrap" if name == "debootstrap" else None)
    monkeypatch.setattr(image.os, "geteuid", lambda: 1001)
    with pytest.raises(image.ImageError, match="run as root or as a user with passwordless sudo"):
        image.ensure_image(image.NodeImage("debian-13"), log=lambda _: None)


# ------------------------------------------------------------------ subnet used by another network


def test_subnet_of_another_docker_network_names_it_and_the_fix(engine: Engine) -> None:
    engine.network("someones-net", "10.77.0.0/24", attached=("db",))
    with pytest.raises(ProviderError) as err:
        provider.ensure_network(load_spec(LOCAL))
    msg = str(err.value)
    assert "network.subnet 10.77.0.0/24 is already used by docker network 'someones-net'" in msg
    assert "Fix: choose another network.subnet" in msg and "docker network rm someones-net" in msg
    assert not any(c[:2] in (("network", "create"), ("network", "rm")) for c in engine.calls)


def test_subnet_of_another_labs_network_names_the_lab(engine: Engine) -> None:
    engine.network("swarmlab-other", "10.77.0.0/24", {LAB_LABEL: "other"})
    engine.container("swarmlab-other-n1", {LAB_LABEL: "other", NODE_LABEL: "n1"})
    with pytest.raises(ProviderError, match=r"\(lab other: `swarmlab down` with its spec removes it\)"):
        provider.ensure_network(load_spec(LOCAL))


# ------------------------------------------------------------------ same lab name, another spec


def node_of(engine: Engine, node: str, ip: str, lab: str = "local") -> None:
    engine.container(f"swarmlab-{lab}-{node}", {LAB_LABEL: lab, NODE_LABEL: node}, ip=ip)


def other_spec(tmp_path: Path) -> Path:
    """Another spec file for lab `local`: one node at another address."""
    path = tmp_path / "mine.yaml"
    text = LOCAL.read_text().replace("ip: 10.77.0.11", "ip: 10.77.0.21")
    path.write_text(text)
    return path


def test_lab_up_from_another_spec_file_is_refused(engine: Engine, state: Path, tmp_path) -> None:
    for i in (1, 2, 3):
        node_of(engine, f"node{i}", f"10.77.0.1{i}")
    preflight.record_spec(load_spec(LOCAL), LOCAL)
    mine = other_spec(tmp_path)
    with pytest.raises(ProviderError) as err:
        preflight.check_same_name(load_spec(mine), mine)
    msg = str(err.value)
    assert f"lab local is already up from another spec ({LOCAL})" in msg
    assert f"Fix: `swarmlab down --spec {mine}` removes lab local" in msg
    assert "or give this spec another `name:`" in msg
    preflight.check_same_name(load_spec(LOCAL), LOCAL)  # its own spec, edited or not: fine


def test_lab_of_the_same_name_from_elsewhere_with_other_nodes_is_refused(
        engine: Engine, state: Path, tmp_path) -> None:
    """No record here (brought up from another checkout): the nodes themselves differ."""
    node_of(engine, "node1", "10.77.0.11")
    node_of(engine, "db", "10.77.0.40")
    with pytest.raises(ProviderError, match=r"node\(s\) this spec .* does not have at those "
                                            r"addresses: db 10.77.0.40: another spec"):
        preflight.check_same_name(load_spec(LOCAL), LOCAL)


def test_same_nodes_or_no_lab_pass(engine: Engine, state: Path) -> None:
    preflight.check_same_name(load_spec(LOCAL), LOCAL)  # nothing up
    for i in (1, 2, 3):
        node_of(engine, f"node{i}", f"10.77.0.1{i}")
    preflight.check_same_name(load_spec(LOCAL), LOCAL)  # the same lab, no record yet


def test_up_refuses_another_spec_before_touching_anything(engine: Engine, state: Path, tmp_path,
                                                          monkeypatch) -> None:
    for i in (1, 2, 3):
        node_of(engine, f"node{i}", f"10.77.0.1{i}")
    preflight.record_spec(load_spec(LOCAL), LOCAL)
    monkeypatch.setattr(pipeline, "nodes_up", lambda *a, **k: pytest.fail("touched the lab"))
    mine = other_spec(tmp_path)
    result = CliRunner().invoke(main, ["up", "--spec", str(mine)])
    assert result.exit_code == 2, result.output
    assert "already up from another spec" in result.output
    assert preflight.recorded_spec("local") == LOCAL  # the record still names the lab's spec
    assert not [c for c in engine.calls if c[0] in ("rm", "run") or c[:2] == ("network", "rm")]


# ------------------------------------------------------------------ next steps


def test_next_steps_for_the_default_lab(state: Path, monkeypatch) -> None:
    monkeypatch.setattr(nextsteps, "default_path", lambda: LOCAL)  # a checkout's default (installed: none)
    lines = nextsteps.next_steps(load_spec(LOCAL), LOCAL, ".venv/bin/swarmlab")
    assert lines[0] == "next steps:"
    cmds = [line.split("#")[0].strip() for line in lines[1:]]
    assert cmds == [".venv/bin/swarmlab ssh node1", ".venv/bin/swarmlab status",
                    ".venv/bin/swarmlab down"]


def test_next_steps_name_another_spec_quoted_and_the_report_once_it_exists(
        state: Path, tmp_path, monkeypatch) -> None:
    odd = tmp_path / "my lab's spec.yaml"
    odd.write_text(VAGRANT_LAB.read_text())
    monkeypatch.chdir(tmp_path)
    spec = load_spec(odd)
    cmds = [line.split("  #")[0].strip() for line in nextsteps.next_steps(spec, odd)[1:]]
    quoted = shlex.quote("my lab's spec.yaml")
    assert cmds == [f"swarmlab ssh --spec {quoted} v1", f"swarmlab status --spec {quoted}",
                    f"swarmlab down --spec {quoted}"]
    assert shlex.split(cmds[0]) == ["swarmlab", "ssh", "--spec", "my lab's spec.yaml", "v1"]
    report = state / "vagrantlab" / nextsteps.REPORT_FILE
    report.parent.mkdir(parents=True)
    report.write_text("<html></html>")
    cmds = [line.split("  #")[0].strip() for line in nextsteps.next_steps(spec, odd)[1:]]
    assert cmds[2] == "state/vagrantlab/report.html"  # relative to where the user is
    assert cmds[3].startswith("swarmlab down")


def test_program_is_the_path_run_unless_swarmlab_is_on_path(tmp_path, monkeypatch) -> None:
    venv_bin = stub_bin(tmp_path, swarmlab="exit 0")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert nextsteps.program(str(venv_bin / "swarmlab")) == "bin/swarmlab"
    monkeypatch.setenv("PATH", f"{venv_bin}:/usr/bin")
    assert nextsteps.program(str(venv_bin / "swarmlab")) == "swarmlab"
    assert nextsteps.program("/x/cli.py") == "swarmlab"  # python -m swarmlab.cli


def fake_run(monkeypatch, failed_hosts: list[str]) -> None:
    def deploy(spec, path, progress=print):
        return pipeline.DeployResult(hosts=3, changed=5, failed_hosts=failed_hosts, seconds=1.0,
                                     log=Path("/dev/null"))

    def verify(spec, path, check=None, progress=print):
        return pipeline.VerifyResult(passed=9, failed=0, skipped=0, seconds=1.0, skip_reasons=[],
                                     report=Path("/dev/null"))

    monkeypatch.setattr(provider, "ensure_engine", lambda: None)
    monkeypatch.setattr(preflight, "check_same_name", lambda spec, path: None)
    monkeypatch.setattr(pipeline, "nodes_up", lambda *a, **k: None)
    monkeypatch.setattr(pipeline, "run_deploy", deploy)
    monkeypatch.setattr(pipeline, "run_verify", verify)

    def no_report(spec, path, **_kw):  # no lab to collect from: `up` warns and goes on
        raise OSError("no lab here")

    monkeypatch.setattr(report, "build_report", no_report)


def test_up_prints_the_next_steps_after_the_summary(state: Path, monkeypatch) -> None:
    fake_run(monkeypatch, failed_hosts=[])
    result = CliRunner().invoke(main, ["up", "--spec", str(LOCAL)])
    assert result.exit_code == 0, result.output
    out = result.stdout.splitlines()
    summary = next(i for i, line in enumerate(out) if line.startswith("summary: "))
    assert out[summary] == "summary: hosts=3 changed=5 failed=0 verified=9/9 skipped=0"
    at = out.index("next steps:")  # after the summary (and the report step, when there is one)
    assert at > summary
    assert [line.split()[1] for line in out[at + 1:]] == ["ssh", "status", "down"]
    assert preflight.recorded_spec("local") == LOCAL


def test_up_prints_the_next_steps_after_a_failed_deploy_too(state: Path, monkeypatch) -> None:
    fake_run(monkeypatch, failed_hosts=["node2"])
    monkeypatch.setattr(nextsteps, "default_path", lambda: LOCAL)  # a checkout's default (installed: none)
    result = CliRunner().invoke(main, ["up", "--spec", str(LOCAL)])
    assert result.exit_code == 1
    assert "summary: hosts=3 changed=5 failed=1" in result.output
    assert "next steps:" in result.output and "ssh node1" in result.output


# ------------------------------------------------------------------ vagrant-prep


def test_vagrant_prep_prepares_and_prints_exports_a_shell_can_eval(
        state: Path, tmp_path, monkeypatch) -> None:
    done: list[str] = []
    from swarmlab.containerlab import vagrant_prep

    monkeypatch.setattr(provider, "ensure_engine", lambda: None)
    monkeypatch.setattr(vagrant_prep, "ensure_image",
                        lambda img, log: done.append(f"image {img.tag}") or False)
    monkeypatch.setattr(provider, "ensure_network", lambda spec: done.append("network") or True)
    monkeypatch.setattr(provider, "ssh_keypair",
                        lambda spec: done.append("key") or state / spec.name / "id_ed25519")
    weird = tmp_path / "it's a lab.yaml"
    weird.write_text(VAGRANT_LAB.read_text())
    conn = state / "vagrantlab" / "connection.json"
    conn.parent.mkdir(parents=True)
    conn.write_text("{}")
    result = CliRunner().invoke(main, ["vagrant-prep", "--spec", str(weird)])
    assert result.exit_code == 0, result.output
    tag = image.NodeImage("debian-13").tag
    assert done == [f"image {tag}", "network", "key"]
    assert not conn.exists(), "the container lab's connection file would hide Vagrant's"
    assert "next: vagrant up --provider=docker" in result.stderr
    env = subprocess.run(["bash", "-c", result.stdout + '\nprintf "%s\\n" "$SWARMLAB_SPEC" '
                          '"$SWARMLAB_NODE_IMAGE" "$VAGRANT_DOTFILE_PATH"'],
                         capture_output=True, text=True, env={"PATH": os.environ["PATH"]})
    assert env.stdout.splitlines() == [str(weird), tag, str(state / "vagrantlab" / "vagrant")]


def test_vagrant_prep_env_only_builds_nothing(state: Path, monkeypatch) -> None:
    from swarmlab.containerlab import vagrant_prep

    monkeypatch.setattr(vagrant_prep, "prepare", lambda *a, **k: pytest.fail("prepared"))
    result = CliRunner().invoke(main, ["vagrant-prep", "--env-only", "--spec", str(VAGRANT_LAB)])
    assert result.exit_code == 0, result.output
    assert f"export SWARMLAB_SPEC={VAGRANT_LAB}" in result.stdout


def test_vagrant_prep_refuses_a_lab_of_several_distros(state: Path, tmp_path) -> None:
    mixed = tmp_path / "mixed.yaml"
    mixed.write_text(VAGRANT_LAB.read_text().replace(
        "{name: v3, distro: debian-13", "{name: v3, distro: debian-12"))
    result = CliRunner().invoke(main, ["vagrant-prep", "--env-only", "--spec", str(mixed)])
    assert result.exit_code == 2
    assert "runs every node from one image" in result.output
    assert "give all nodes one distro" in result.output


def test_package_cache_start_says_what_it_does(engine: Engine, monkeypatch) -> None:
    """A cache that is not running: its image, the start and the network join are each said."""
    engine.container(cache.CACHE_CONTAINER, running=False)
    engine.containers[f"id-{cache.CACHE_CONTAINER}"]["NetworkSettings"]["Networks"] = {}
    monkeypatch.setattr(cache, "cache_image", lambda log: log("package cache: image") or "acng:1")
    monkeypatch.setattr(cache, "_wait_listening", lambda: None)
    said: list[str] = []
    url = cache.ensure_cache(load_spec(LOCAL), "swarmlab-local", log=said.append)
    assert url == "http://10.77.0.254:3142"
    assert [line.split(" (+")[0] for line in said] == [
        "package cache: image",
        f"package cache: starting container {cache.CACHE_CONTAINER}",
        "package cache: joining swarmlab-local at 10.77.0.254",
    ]
    assert all(line.endswith("s)") for line in said[1:])


def test_vagrant_docker_provider_is_three_commands() -> None:
    """docs/vms.md's docker-provider path: vagrant-prep, vagrant up, deploy; no python one-liner."""
    page = (PROJECT_ROOT / "docs" / "vms.md").read_text()
    section = page.split("## Docker provider (no VM)", 1)[1].split("\n## ", 1)[0]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    commands = [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]
    assert commands == [
        'eval "$(swarmlab vagrant-prep --spec tests/live/labs/vagrant.yaml)"',
        "vagrant up --provider=docker",
        "swarmlab deploy",
    ]
    assert "python -c" not in section
