"""The nightly workflow's own steps, run as the CI runner runs them: a non-root user in the
docker group with passwordless sudo, in its own copy of the checkout, with its own Python.

The steps are read from .github/workflows/nightly.yml (swarmlab.cli.nightly.workflow_run_steps), so
this test cannot drift from the workflow. The cells run one after another with two nodes each
(SWARMLAB_NIGHTLY_NODES; the workflow itself runs three) to keep `make test` short.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from swarmlab.cli.nightly import nightly_spec, workflow_run_steps
from swarmlab.containerlab import docker_cli, provider
from swarmlab.model.state import PROJECT_ROOT

pytestmark = pytest.mark.live

CI_USER = "swarmlab-ci"
SUDOERS = Path(f"/etc/sudoers.d/{CI_USER}")
CELLS = [("debian-13", "distro"), ("debian-14", "distro")]
NODES = 2  # one manager, one worker


def _labs() -> list[str]:
    return [nightly_spec(distro, source)["name"] for distro, source in CELLS]


def _remove_user() -> None:
    for lab in _labs():
        provider.remove_lab(lab)
    SUDOERS.unlink(missing_ok=True)
    try:
        pwd.getpwnam(CI_USER)
    except KeyError:
        return
    # processes this test started as the CI user (e.g. an SSH control master), by their ids
    pids = subprocess.run(["pgrep", "-u", CI_USER], capture_output=True, text=True).stdout.split()
    for pid in pids:
        subprocess.run(["kill", "-KILL", pid], capture_output=True)
    subprocess.run(["userdel", "--remove", CI_USER], capture_output=True, check=True)


def as_ci(command: str, cwd: Path, home: Path, timeout: float = 1800) -> subprocess.CompletedProcess:
    """One workflow step as the CI user: bash -e, like a GitHub `run:` step."""
    env = [
        f"HOME={home}", f"USER={CI_USER}", "CI=true",
        f"PATH={home / 'venv' / 'bin'}:/usr/local/bin:/usr/bin:/bin",
        f"SWARMLAB_NIGHTLY_NODES={NODES}",
        # a runner starts with no node images: set another mirror spelling to rebuild them
        *[f"{k}={os.environ[k]}" for k in ("SWARMLAB_MIRROR",) if k in os.environ],
    ]
    return subprocess.run(
        ["sudo", "-u", CI_USER, "-H", "env", "-i", *env, "bash", "-e", "-c", command],
        cwd=cwd, capture_output=True, text=True, timeout=timeout,
    )


@pytest.fixture(scope="module")
def ci_checkout():
    """A throwaway CI user and its copy of the checkout; removed afterwards, with the labs."""
    if not docker_cli.engine_available():
        pytest.fail("live tests need a Docker engine (make test starts one: scripts/host-setup.sh)")
    if os.geteuid() != 0:
        pytest.skip("creating the throwaway CI user needs root (make test runs as root)")
    if shutil.which("sudo") is None:
        pytest.fail("sudo is not installed (scripts/host-setup.sh installs it)")
    _remove_user()  # leftovers of an interrupted earlier run
    try:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", "--groups", "docker",
                        CI_USER], check=True, capture_output=True)
        SUDOERS.write_text(f"{CI_USER} ALL=(ALL) NOPASSWD:ALL\n")
        SUDOERS.chmod(0o440)
        home = Path(pwd.getpwnam(CI_USER).pw_dir)
        checkout = home / "swarmlab"
        files = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=PROJECT_ROOT, capture_output=True, text=True, check=True,
        ).stdout.split("\0")
        for name in filter(None, files):
            src = PROJECT_ROOT / name
            if src.is_file():
                (checkout / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, checkout / name)
        subprocess.run(["chown", "-R", f"{CI_USER}:{CI_USER}", str(checkout)], check=True)
        # what actions/setup-python gives the runner: a Python of its own on PATH
        made = as_ci(f"python3 -m venv {home / 'venv'}", checkout, home)
        assert made.returncode == 0, made.stdout + made.stderr
        yield checkout, home
    finally:
        _remove_user()
    for lab in _labs():
        assert not docker_cli.ids("container", f"swarmlab.lab={lab}")


@pytest.mark.parametrize(("distro", "source"), CELLS)
def test_nightly_cell_as_non_root_ci_user(ci_checkout, distro, source):
    checkout, home = ci_checkout
    whoami = as_ci("id -un; id -u; id -Gn; sudo -n true && echo sudo-ok", checkout, home)
    assert whoami.stdout.split("\n")[:2] == [CI_USER, str(pwd.getpwnam(CI_USER).pw_uid)]
    assert "docker" in whoami.stdout.split("\n")[2].split() and "sudo-ok" in whoami.stdout
    shutil.rmtree(checkout / "reports", ignore_errors=True)
    for step in workflow_run_steps(distro, source):
        start = time.monotonic()
        run = as_ci(step, checkout, home)
        print(f"[{distro}/{source}] {step}: exit {run.returncode} in {time.monotonic() - start:.1f}s")
        print(run.stdout[-3000:], run.stderr[-3000:])
        assert run.returncode == 0, f"step failed: {step}\n{run.stdout[-4000:]}\n{run.stderr[-4000:]}"
    reports = checkout / "reports"
    summary = (reports / "summary.txt").read_text()
    assert f"hosts={NODES} " in summary and " failed=0 " in summary, summary
    assert " rerun_changed=0" in summary, summary
    verified = summary.split("verified=")[1].split()[0].split("/")
    assert verified[0] == verified[1] and int(verified[0]) > 0, summary
    assert (reports / "junit.xml").stat().st_uid == pwd.getpwnam(CI_USER).pw_uid
    lab = nightly_spec(distro, source)["name"]
    assert not docker_cli.ids("container", f"swarmlab.lab={lab}"), "the cell left its lab behind"
