"""The VM lab for real: three Debian 13 VMs on libvirt (KVM where a KVM guest boots, else TCG),
from the box swarmlab builds here, deployed and verified like any lab.

On a real guest kernel the checks that node containers skip must pass: the ingress routing
mesh, VIP load balancing and ESP on the wire for the encrypted overlay. Each is then broken on
a live VM and must fail. Then a worker and the manager reboot: verify passes with no deploy in
between (the static address, firewall, sysctls and modules come back from what the deploy
persisted; the swarm re-forms), and a deploy re-run changes nothing.

Runs in `make test-vm` (the nightly workflow runs it). Times go to
`<state>/ci-vm/vm-lab.json` and are printed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from swarmlab.control.inventory import vagrant_root
from swarmlab.model.spec import load_spec
from swarmlab.model.state import lab_state_dir, state_root
from swarmlab.verify.repairs import DOCKER_RESTART
from swarmlab.vm.lab import vm_env

SPEC_PATH = Path(__file__).parent / "labs" / "vm.yaml"
SPEC = load_spec(SPEC_PATH)
# one state directory for every command of the module, whatever their cwd
os.environ.setdefault("SWARMLAB_STATE", str(state_root()))
SUMMARY_RE = re.compile(r"^summary: hosts=(\d+)(?: changed=(\d+) failed=(\d+))?"
                        r"(?: verified=(\d+)/(\d+) skipped=(\d+))?", re.M)
# the checks node containers skip here (no IP_VS / ESP in the host kernel): they must pass
KERNEL_CHECKS = (
    "test_routing_mesh_answers_on_every_node",
    "test_vip_balances_over_tasks_on_two_nodes",
    "test_encrypted_overlay_is_esp_on_the_wire",
)
MEASURED: dict[str, float | int | str] = {}

pytestmark = pytest.mark.vm


class Run:
    def __init__(self, proc: subprocess.CompletedProcess[str], seconds: float):
        self.rc, self.out, self.err, self.seconds = proc.returncode, proc.stdout, proc.stderr, seconds

    @property
    def summary(self) -> dict[str, int]:
        m = SUMMARY_RE.search(self.out)
        assert m, f"no summary line in:\n{self.out[-3000:]}\n{self.err[-3000:]}"
        keys = ("hosts", "changed", "failed", "verified", "total", "skipped")
        return {k: int(v) for k, v in zip(keys, m.groups(), strict=True) if v is not None}


def swarmlab(*args: str) -> Run:
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "swarmlab.cli", *args, "--spec", str(SPEC_PATH)],
                          capture_output=True, text=True, env=dict(os.environ))
    print(f"$ swarmlab {' '.join(args)} (exit {proc.returncode}, {time.monotonic() - start:.0f} s)\n"
          f"{proc.stdout}{proc.stderr}")
    return Run(proc, time.monotonic() - start)


def on_vm(node: str, command: str, check: bool = True) -> str:
    """Run a shell command as root on a VM (vagrant ssh, the lab's Vagrant state)."""
    env = dict(os.environ, **vm_env(SPEC, SPEC_PATH))
    proc = subprocess.run(["vagrant", "ssh", node, "-c", f"sudo sh -c {json.dumps(command)}"],
                          capture_output=True, text=True, env=env, cwd=vagrant_root(), timeout=300)
    if check:
        assert proc.returncode == 0, f"{node}: {command}: {proc.stdout}{proc.stderr}"
    return proc.stdout


def check_results() -> dict[str, str]:
    """check name (with its node id) -> passed | failed | skipped, from the last verify's JUnit."""
    out = {}
    for case in ET.parse(lab_state_dir(SPEC.name) / "verify-junit.xml").iter("testcase"):
        state = "passed"
        for child in case:
            if child.tag in ("failure", "error"):
                state = "failed"
            elif child.tag == "skipped":
                state = "skipped: " + (child.get("message") or "")
        out[case.get("name", "")] = state
    return out


def phase_seconds(out: str, name: str) -> float | None:
    m = re.search(rf"^  ✓ {re.escape(name)} \(([\d.]+)s\)", out, re.M)
    return float(m.group(1)) if m else None


@pytest.fixture(scope="module")
def lab():
    if subprocess.run(["which", "vagrant"], capture_output=True).returncode != 0:
        pytest.fail("the VM lab needs vagrant and vagrant-libvirt: make test-vm installs them "
                    "(scripts/host-setup.sh --vm)")
    swarmlab("vm", "down")  # leftovers of an interrupted earlier run
    yield SPEC
    down = swarmlab("vm", "down")
    MEASURED["down_s"] = round(down.seconds, 1)
    (lab_state_dir(SPEC.name) / "vm-lab.json").write_text(json.dumps(MEASURED, indent=2) + "\n")
    print(f"VM lab measured: {json.dumps(MEASURED)}")
    assert down.rc == 0, down.out + down.err


def test_vm_up_deploys_and_verifies_with_the_kernel_checks(lab):
    run = swarmlab("vm", "up")
    MEASURED["vm_up_total_s"] = round(run.seconds, 1)
    for key, pattern in (("box_s", r"box swarmlab/debian-13 \((built|cached), (\d+) s\)"),
                         ("vagrant_up_s", r"VMs up: .* \((\d+) s\)")):
        m = re.search(pattern, run.out)
        if m:
            MEASURED[key] = int(m.groups()[-1])
            if key == "box_s":
                MEASURED["box"] = m.group(1)
    driver = re.search(r"libvirt driver (kvm|qemu) \(([^)]*)\)", run.out)
    assert driver, "the accelerator choice is not printed"
    MEASURED["driver"] = f"{driver.group(1)} ({driver.group(2)})"
    MEASURED["cold_deploy_s"] = phase_seconds(run.out, "deploy") or -1
    assert run.rc == 0, run.out[-6000:] + run.err[-3000:]
    s = run.summary
    MEASURED["cold_changed"], MEASURED["verified"] = s["changed"], f"{s['verified']}/{s['total']}"
    MEASURED["skipped"] = s["skipped"]
    assert s["hosts"] == 3 and s["failed"] == 0 and s["changed"] > 0
    assert s["verified"] == s["total"] > 0
    results = check_results()
    for name in KERNEL_CHECKS:
        assert results.get(name) == "passed", f"{name}: {results.get(name)}"
    # no check skips for a missing kernel feature on a VM
    kernel_skips = {k: v for k, v in results.items() if "kernel has no" in v}
    assert not kernel_skips, kernel_skips


# (node, what is broken there, the check that must fail, how the test puts it back). Each break
# touches only what its own check reads, so one verify run of the three checks shows all three.
BREAKS = (
    # (deleting the DOCKER-INGRESS jump is no break: Docker puts it back when the check's
    # service publishes its port, seen live; a DOCKER-USER rule is the user's and stays)
    ("vm2", "iptables -I DOCKER-USER -p tcp --dport 18082 -j DROP",
     "test_routing_mesh_answers_on_every_node", "iptables -D DOCKER-USER -p tcp --dport 18082 -j DROP"),
    ("vm1", "iptables -I INPUT 1 -s 10.94.0.12 -p udp --dport 4789 -j DROP",
     "test_vip_balances_over_tasks_on_two_nodes",
     "iptables -D INPUT -s 10.94.0.12 -p udp --dport 4789 -j DROP"),
    ("vm1", "ip xfrm policy flush", "test_encrypted_overlay_is_esp_on_the_wire", DOCKER_RESTART),
)


def test_kernel_checks_fail_when_broken(lab):
    """Each kernel check fails with its break in place (restored afterwards; the verify after
    the reboots below shows them passing again)."""
    for node, breaks, _, _ in BREAKS:
        on_vm(node, breaks)
    try:
        run = swarmlab("verify", "--check", " or ".join(name.removeprefix("test_") for *_, name, _ in BREAKS))
        MEASURED["verify_broken_s"] = round(run.seconds, 1)
        assert run.rc == 1, run.out[-4000:]
        results = check_results()
        for node, breaks, check, _ in BREAKS:
            assert results.get(check) == "failed", (
                f"{check} did not fail with `{breaks}` on {node}: {results.get(check)}")
        MEASURED["broken_checks_failed"] = sum(results.get(c) == "failed" for _, _, c, _ in BREAKS)
    finally:
        for node, _, _, restore in BREAKS:
            on_vm(node, restore, check=False)


def wait_swarm_ready(timeout: float = 600) -> None:
    """Every spec node Ready in the manager's view (after a restart or a reboot)."""
    deadline = time.monotonic() + timeout
    states = ""
    while time.monotonic() < deadline:
        states = on_vm("vm1", "docker node ls --format '{{.Hostname}} {{.Status}}'", check=False)
        ready = {line.split()[0] for line in states.splitlines() if line.endswith(" Ready")}
        if ready >= {n.name for n in SPEC.nodes}:
            return
        time.sleep(5)
    pytest.fail(f"the swarm did not re-form within {timeout:.0f} s: {states}")


def reboot(node: str) -> float:
    start = time.monotonic()
    boot_id = on_vm(node, "cat /proc/sys/kernel/random/boot_id").strip()
    on_vm(node, "systemctl reboot", check=False)
    deadline = start + 900
    while time.monotonic() < deadline:
        time.sleep(10)
        try:
            now = on_vm(node, "cat /proc/sys/kernel/random/boot_id", check=False).strip()
        except subprocess.TimeoutExpired:
            continue
        if now and now != boot_id:
            on_vm(node, "systemctl is-system-running --wait", check=False)
            return round(time.monotonic() - start, 1)
    pytest.fail(f"{node} did not come back from its reboot within 900 s")


def test_reboot_worker_and_manager_then_verify_without_deploy(lab):
    MEASURED["reboot_worker_s"] = reboot("vm2")
    MEASURED["reboot_manager_s"] = reboot("vm1")
    wait_swarm_ready()
    run = swarmlab("verify")
    MEASURED["verify_after_reboot_s"] = round(run.seconds, 1)
    s = run.summary
    MEASURED["verified_after_reboot"] = f"{s['verified']}/{s['total']}"
    assert run.rc == 0 and s["verified"] == s["total"] > 0, run.out[-5000:]
    results = check_results()
    for name in KERNEL_CHECKS:
        assert results.get(name) == "passed", f"after the reboots, {name}: {results.get(name)}"


def test_deploy_rerun_after_reboots_changes_nothing(lab):
    run = swarmlab("deploy", "--no-verify")
    MEASURED["rerun_s"] = round(run.seconds, 1)
    assert run.rc == 0, run.out[-4000:] + run.err[-2000:]
    MEASURED["rerun_changed"] = run.summary["changed"]
    assert run.summary["changed"] == 0, run.out[-4000:]
