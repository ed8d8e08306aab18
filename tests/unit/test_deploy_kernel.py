"""Command generation of the kernel-prerequisites deploy (swarmlab/provision/kernel.py), offline."""

from __future__ import annotations

import pytest
from deployfakes import LOCAL, VMLAB, present_lines, recorded, run_deploy
from pyinfra.facts.server import Sysctl

from swarmlab.provision.facts import KernelModules
from swarmlab.provision.kernel import SYSCTL_FILE, kernel_prerequisites

MODULES_FILE = "/etc/modules-load.d/swarmlab.conf"

# KernelModules output on a container-lab node: the host kernel has no IPVS
CONTAINER_NODE = """\
overlay loaded
br_netfilter loadable
vxlan loaded
ip_vs missing
xt_ipvs missing
"""

FULL_VM = """\
overlay loaded
br_netfilter loaded
vxlan loadable
ip_vs loadable
xt_ipvs loadable
"""


def modules(output: str) -> dict:
    return {KernelModules: recorded(KernelModules, output)}


def test_missing_ip_vs_warns_but_does_not_fail():
    run = run_deploy(kernel_prerequisites, LOCAL, "node1", modules(CONTAINER_NODE))
    assert not run.failed and run.errors == []
    warned = [w for w in run.warnings if "kernel has no" in w]
    assert len(warned) == 2
    (ip_vs,) = [w for w in warned if "kernel has no ip_vs " in w]
    assert "routing mesh" in ip_vs and "will not work on this node" in ip_vs
    assert any("xt_ipvs" in w for w in warned)
    # the rest of the deploy still runs
    assert run.op("sysctl net.ipv4.ip_forward=1").commands


def test_modules_file_lists_only_usable_modules_and_loads_the_loadable_ones():
    run = run_deploy(kernel_prerequisites, LOCAL, "node1", modules(CONTAINER_NODE))
    assert run.files[MODULES_FILE] == "overlay\nbr_netfilter\nvxlan\n"
    assert "chmod 644 " + MODULES_FILE in run.op("modules loaded at boot").commands
    modprobes = [o for o in run.ops if o.short_name.startswith("load ")]
    assert [o.short_name for o in modprobes] == ["load br_netfilter"]
    assert modprobes[0].commands == ["modprobe -a br_netfilter"]


def test_all_modules_available_no_warning():
    run = run_deploy(kernel_prerequisites, VMLAB, "node1", modules(FULL_VM))
    assert not any("kernel has no" in w for w in run.warnings)
    assert run.files[MODULES_FILE] == "overlay\nbr_netfilter\nvxlan\nip_vs\nxt_ipvs\n"
    assert [o.short_name for o in run.ops if o.short_name.startswith("load ")] == [
        "load vxlan", "load ip_vs", "load xt_ipvs"]


def test_sysctls_are_set_and_persisted_to_the_swarmlab_file():
    run = run_deploy(kernel_prerequisites, VMLAB, "node1", modules(FULL_VM))
    for key in ("net.ipv4.ip_forward", "net.bridge.bridge-nf-call-iptables",
                "net.bridge.bridge-nf-call-ip6tables"):
        cmds = run.op(f"sysctl {key}=1").commands
        assert cmds[0] == f"sysctl {key}=1"
        assert cmds[1] == f"echo '{key} = 1' >> {SYSCTL_FILE}"


def test_bridge_sysctls_skipped_without_br_netfilter():
    run = run_deploy(kernel_prerequisites, VMLAB, "node1",
                     modules(FULL_VM.replace("br_netfilter loaded", "br_netfilter missing")))
    sysctls = [o.short_name for o in run.ops if o.short_name.startswith("sysctl ")]
    assert sysctls == ["sysctl net.ipv4.ip_forward=1"]
    assert any("kernel has no br_netfilter" in w for w in run.warnings)


@pytest.mark.parametrize("node", ["node1", "node3"])  # ubuntu-24.04 and manjaro
def test_sysctl_already_set_and_persisted_changes_nothing(node):
    run = run_deploy(kernel_prerequisites, VMLAB, node, {
        **modules(FULL_VM.replace("loadable", "loaded")),
        Sysctl: {"net.ipv4.ip_forward": 1, "net.bridge.bridge-nf-call-iptables": 1,
                 "net.bridge.bridge-nf-call-ip6tables": 1},
        **present_lines({SYSCTL_FILE: "net.ipv4.ip_forward = 1\n"
                                      "net.bridge.bridge-nf-call-iptables = 1\n"
                                      "net.bridge.bridge-nf-call-ip6tables = 1\n"}),
    })
    for o in run.ops:
        if o.short_name.startswith("sysctl "):
            assert o.commands == [], o.short_name

