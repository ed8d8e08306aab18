"""The Vagrantfile's docker provider, for real, as docs/vms.md's three commands: `swarmlab
vagrant-prep` builds the node image, the lab network and key and prints the exports;
`vagrant up --provider=docker` runs the spec's nodes as systemd containers of that image, `pyinfra inventories/lab.py
deploys/swarm.py` converges them through the inventory's python-vagrant path (SSH user, key
and address from `vagrant ssh-config`), the verification suite passes, `vagrant destroy -f`
removes them.

Vagrant's machine state goes to `.state/vagrantlab/vagrant` (VAGRANT_DOTFILE_PATH, which the
inventory honours), never to a `.vagrant` dir in the project. Times and counts of the last run
are written to `.state/vagrantlab/vagrant-docker.json`.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from swarmlab.cli.pipeline import run_deploy, run_verify
from swarmlab.containerlab import docker_cli, provider
from swarmlab.containerlab.image import NODE_USER, NodeImage
from swarmlab.containerlab.vagrant_prep import vagrant_env
from swarmlab.control.inventory import lab_groups, vagrant_connections
from swarmlab.model.spec import LabSpec, load_spec
from swarmlab.model.state import PROJECT_ROOT, lab_state_dir

from .conftest import LABS, _engine

pytestmark = pytest.mark.live

# another spec (e.g. a lab of your own name and subnet): SWARMLAB_VAGRANT_TEST_SPEC
SPEC_PATH = Path(os.environ.get("SWARMLAB_VAGRANT_TEST_SPEC") or LABS / "vagrant.yaml").resolve()
VAGRANT = shutil.which("vagrant")
# what the caller may have set that would change which Vagrantfile, provider or SSH settings
# are used; the test chooses these itself
DROP_ENV = (
    "VAGRANT_CWD", "VAGRANT_VAGRANTFILE", "VAGRANT_DEFAULT_PROVIDER", "SWARMLAB_SSH_USER",
    "SWARMLAB_SSH_KEY", "SWARMLAB_DOCKER_NETWORK",
)


@dataclass
class VagrantLab:
    path: Path
    spec: LabSpec
    dotfile: Path
    key: Path
    measured: dict = field(default_factory=dict)
    volumes: set[str] = field(default_factory=set)  # the nodes' anonymous /var/lib/docker

    def vagrant(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        assert VAGRANT is not None
        proc = subprocess.run([VAGRANT, *args], cwd=PROJECT_ROOT, capture_output=True, text=True,
                              timeout=timeout)
        print(f"$ vagrant {' '.join(args)} (exit {proc.returncode})\n{proc.stdout}{proc.stderr}")
        return proc

    def timed(self, key: str, *args: str) -> subprocess.CompletedProcess[str]:
        start = time.monotonic()
        proc = self.vagrant(*args)
        self.measured[key] = round(time.monotonic() - start, 1)
        return proc

    def states(self) -> dict[str, str]:
        proc = self.vagrant("status", "--machine-readable")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        rows = [line.split(",", 3) for line in proc.stdout.splitlines()]
        return {r[1]: r[3] for r in rows if len(r) == 4 and r[2] == "state"}

    def containers(self) -> list[str]:
        return docker_cli.ids("container", f"{provider.LAB_LABEL}={self.spec.name}")

    def clean(self) -> None:
        """Vagrant's own destroy when it has state, then whatever of the lab is left."""
        if (self.dotfile / "machines").is_dir():
            self.vagrant("destroy", "-f")
        provider.remove_lab(self.spec.name)
        for vol in self.volumes:
            docker_cli.docker("volume", "rm", "-f", vol, check=False)


@pytest.fixture(scope="module")
def vlab():
    if VAGRANT is None:
        pytest.skip("the `vagrant` binary is not on PATH (apt-get install vagrant; "
                    "`scripts/host-setup.sh --vagrant`, as `make test` runs it, installs it)")
    _engine()
    spec = load_spec(SPEC_PATH)
    state = lab_state_dir(spec.name)
    expected = vagrant_env(spec, SPEC_PATH)
    lab = VagrantLab(SPEC_PATH, spec, Path(expected["VAGRANT_DOTFILE_PATH"]), state / "id_ed25519")
    with pytest.MonkeyPatch.context() as env:
        for var in DROP_ENV:
            env.delenv(var, raising=False)
        env.setenv("VAGRANT_DOTFILE_PATH", str(lab.dotfile))
        env.setenv("VAGRANT_CHECKPOINT_DISABLE", "1")
        env.setenv("VAGRANT_NO_COLOR", "1")
        lab.clean()  # leftovers of an interrupted earlier run
        # docs/vms.md's first command: image, network, key; the exports come on stdout
        prep = subprocess.run([sys.executable, "-m", "swarmlab.cli", "vagrant-prep", "--spec",
                               str(SPEC_PATH)], capture_output=True, text=True, cwd=PROJECT_ROOT)
        assert prep.returncode == 0, prep.stdout + prep.stderr
        exports = dict(shlex.split(line.removeprefix("export "))[0].split("=", 1)
                       for line in prep.stdout.splitlines())
        assert exports == expected
        for name, value in exports.items():
            env.setenv(name, value)
        assert docker_cli.image_exists(exports["SWARMLAB_NODE_IMAGE"])
        assert docker_cli.ids("network", f"{provider.LAB_LABEL}={spec.name}")
        assert lab.key.is_file()
        try:
            yield lab
        finally:
            lab.clean()
            shutil.rmtree(lab.dotfile, ignore_errors=True)
            (state / "vagrant-docker.json").write_text(json.dumps(lab.measured, indent=2) + "\n")
    assert not lab.containers(), "containers of the Vagrant lab are left"
    assert not docker_cli.ids("network", f"{provider.LAB_LABEL}={spec.name}")
    assert not (PROJECT_ROOT / ".vagrant").exists()


def test_vagrant_up_runs_the_spec_nodes(vlab: VagrantLab):
    up = vlab.timed("up_s", "up", "--provider=docker")
    assert up.returncode == 0, up.stdout + up.stderr
    assert vlab.states() == {n.name: "running" for n in vlab.spec.nodes}
    network = provider.LabNames(vlab.spec.name).network
    for node in vlab.spec.nodes:
        info = docker_cli.inspect(provider.LabNames(vlab.spec.name).container(node.name))[0]
        assert info["Config"]["Image"] == NodeImage(node.distro).tag
        assert info["Config"]["Hostname"] == node.name
        nets = info["NetworkSettings"]["Networks"]
        assert list(nets) == [network], f"{node.name} must be on the lab network only: {list(nets)}"
        assert nets[network]["IPAddress"] == node.ip
        assert info["Path"] == "/sbin/init" and info["HostConfig"]["CgroupnsMode"] == "host"
        vlab.volumes |= {m["Name"] for m in info["Mounts"] if m["Destination"] == "/var/lib/docker"}
        boot = docker_cli.docker("exec", info["Name"].lstrip("/"), "timeout", "60", "systemctl",
                                 "is-system-running", "--wait", check=False).strip()
        assert boot in ("running", "degraded"), f"{node.name}: systemd is {boot!r}"
    assert len(vlab.volumes) == len(vlab.spec.nodes)
    assert not (PROJECT_ROOT / ".vagrant").exists()


def test_inventory_takes_ssh_settings_from_vagrant(vlab: VagrantLab):
    """python-vagrant's ssh-config gives each node's spec IP, port 22, user lab, the lab key."""
    conns = vagrant_connections(vlab.spec)
    assert set(conns) == {n.name for n in vlab.spec.nodes}
    for node in vlab.spec.nodes:
        assert conns[node.name]["ssh_hostname"] == node.ip
        assert conns[node.name]["ssh_port"] == 22
        assert conns[node.name]["ssh_user"] == NODE_USER
        assert Path(conns[node.name]["ssh_key"]) == vlab.key
    managers, workers = lab_groups(SPEC_PATH)
    assert [m for m, _ in managers] == [n.name for n in vlab.spec.managers]
    assert [w for w, _ in workers] == [n.name for n in vlab.spec.workers]
    assert all(data["ssh_user"] == NODE_USER for _, data in managers + workers)


def test_deploy_converges_then_changes_nothing(vlab: VagrantLab):
    first = run_deploy(vlab.spec, vlab.path)
    vlab.measured.update(deploy_s=round(first.seconds, 1), deploy_changed=first.changed)
    assert not first.failed_hosts, first.log.read_text()[-3000:]
    assert first.changed > 0
    again = run_deploy(vlab.spec, vlab.path)
    vlab.measured.update(redeploy_s=round(again.seconds, 1), redeploy_changed=again.changed)
    assert not again.failed_hosts, again.log.read_text()[-3000:]
    assert again.changed == 0, again.changed_ops


def test_verification_passes(vlab: VagrantLab):
    result = run_verify(vlab.spec, vlab.path)
    vlab.measured.update(verify_s=round(result.seconds, 1), verify_passed=result.passed,
                         verify_failed=result.failed, verify_skipped=result.skipped)
    log = (lab_state_dir(vlab.spec.name) / "verify.log").read_text()
    assert result.failed == 0 and result.passed > 0, log[-4000:]
    # skips carry their reason (kernel features, what the spec leaves out), never silent
    assert all(result.skip_reasons), result.skip_reasons


def test_vagrant_destroy_removes_the_nodes(vlab: VagrantLab):
    down = vlab.timed("destroy_s", "destroy", "-f")
    assert down.returncode == 0, down.stdout + down.stderr
    assert vlab.states() == {n.name: "not_created" for n in vlab.spec.nodes}
    assert not vlab.containers()
    left = set(docker_cli.docker("volume", "ls", "-q").split()) & vlab.volumes
    assert not left, f"the nodes' /var/lib/docker volumes are left: {left}"
