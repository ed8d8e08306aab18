"""A new user's first run, live (issue #17), on a one-node lab `ci-first` (10.97.0.0/24):
a subnet taken by someone else's docker network stops `up` with the fix and touches nothing;
`up` ends with the next steps for the lab, and they work; another spec with the same lab name
is refused while the lab is up, and the lab is left as it was; `vagrant-prep` prepares the
docker provider's image, network and key and prints exports a shell can eval."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from swarmlab.containerlab import docker_cli
from swarmlab.containerlab.image import NodeImage
from swarmlab.containerlab.provider import LAB_LABEL, LabNames
from swarmlab.model.state import PROJECT_ROOT, state_root

from .conftest import Lab, lab_fixture, swarmlab

pytestmark = pytest.mark.live

lab = lab_fixture("first")
SQUATTER = "ci-first-squatter"


def lab_objects(name: str) -> tuple[list[str], list[str]]:
    return (docker_cli.ids("container", f"{LAB_LABEL}={name}"),
            docker_cli.ids("network", f"{LAB_LABEL}={name}"))


def test_subnet_of_another_docker_network_stops_up_with_the_fix(lab: Lab):
    docker_cli.docker("network", "rm", SQUATTER, check=False)
    docker_cli.docker("network", "create", "--subnet", lab.spec.network.subnet, SQUATTER)
    try:
        run = lab.run("up")
        assert run.rc == 2, run.out + run.err
        assert (f"network.subnet {lab.spec.network.subnet} is already used by docker network "
                f"'{SQUATTER}'") in run.err
        assert f"Fix: choose another network.subnet (and node IPs) in the spec, or remove that " \
               f"network: docker network rm {SQUATTER}" in run.err
        assert "Traceback" not in run.err
        assert lab_objects(lab.spec.name) == ([], [])
        assert docker_cli.inspect(SQUATTER)[0]["Name"] == SQUATTER  # not ours: left alone
    finally:
        docker_cli.docker("network", "rm", SQUATTER, check=False)


def test_up_ends_with_next_steps_that_work(lab: Lab):
    run = lab.run("up")
    assert run.rc == 0, run.out[-4000:] + run.err[-3000:]
    assert run.summary["failed"] == 0 and run.summary["verified"] == run.summary["total"] > 0
    out = run.out.splitlines()
    summary = next(i for i, line in enumerate(out) if line.startswith("summary: "))
    at = out.index("next steps:")  # after the summary and the report step
    assert at > summary
    rows = [shlex.split(line.split("  #")[0]) for line in out[at + 1:]]
    steps = [r for r in rows if len(r) > 1]
    assert [s[1] for s in steps] == ["ssh", "status", "down"]
    assert [Path(r[0]).name for r in rows if len(r) == 1] == ["report.html"], rows  # the page
    assert all(s[2] == "--spec" and Path(s[3]).resolve() == lab.path.resolve() for s in steps), steps
    assert steps[0][-1] == lab.spec.first_manager.name
    # the printed ssh and status commands, run as printed (swarmlab -> this interpreter's CLI)
    cli = [sys.executable, "-m", "swarmlab.cli"]
    ssh = subprocess.run(cli + steps[0][1:] + ["hostname"], capture_output=True, text=True,
                         cwd=PROJECT_ROOT, timeout=60)
    assert ssh.returncode == 0 and ssh.stdout.strip() == lab.spec.first_manager.name, ssh.stderr
    status = subprocess.run(cli + steps[1][1:], capture_output=True, text=True, cwd=PROJECT_ROOT)
    assert status.returncode == 0 and "running" in status.stdout, status.stdout + status.stderr


def test_another_spec_with_the_same_name_is_refused_and_the_lab_kept(lab: Lab, tmp_path):
    before = sorted(docker_cli.ids("container", f"{LAB_LABEL}={lab.spec.name}"))
    assert before, "the lab is not up"
    other = tmp_path / "someone-elses.yaml"
    other.write_text(lab.path.read_text().replace("ip: 10.97.0.11", "ip: 10.97.0.21"))
    run = swarmlab("up", spec=other)
    assert run.rc == 2, run.out + run.err
    assert f"lab ci-first is already up from another spec ({lab.path})" in run.err
    assert f"Fix: `swarmlab down --spec {other}` removes lab ci-first" in run.err
    assert sorted(docker_cli.ids("container", f"{LAB_LABEL}={lab.spec.name}")) == before
    node = docker_cli.inspect(LabNames(lab.spec.name).container("f1"))[0]
    assert node["State"]["Running"]
    assert node["NetworkSettings"]["Networks"][LabNames(lab.spec.name).network]["IPAddress"] \
        == "10.97.0.11"


def test_vagrant_prep_gives_image_network_key_and_exports(lab: Lab):
    lab.run("down")
    prep = subprocess.run([sys.executable, "-m", "swarmlab.cli", "vagrant-prep", "--spec",
                           str(lab.path)], capture_output=True, text=True, cwd=PROJECT_ROOT)
    assert prep.returncode == 0, prep.stdout + prep.stderr
    assert "lab network swarmlab-ci-first on 10.97.0.0/24 (created)" in prep.stderr
    shown = subprocess.run(["bash", "-c", prep.stdout + '\nprintf "%s\\n" "$SWARMLAB_SPEC" '
                            '"$SWARMLAB_NODE_IMAGE" "$VAGRANT_DOTFILE_PATH"'],
                           capture_output=True, text=True)
    spec_path, image, dotfile = shown.stdout.splitlines()
    assert spec_path == str(lab.path.resolve())
    assert image == NodeImage("debian-13").tag and docker_cli.image_exists(image)
    assert dotfile.endswith("/ci-first/vagrant")
    net = docker_cli.inspect(LabNames(lab.spec.name).network)[0]
    assert net["IPAM"]["Config"][0]["Subnet"] == "10.97.0.0/24"
    assert net["Labels"][LAB_LABEL] == "ci-first"
    key = state_root() / "ci-first" / "id_ed25519"
    assert key.is_file() and key.with_suffix(".pub").is_file()
