"""The VM lab's logic without VMs: box recipes, which boxes a spec needs, the accelerator choice,
Vagrant's progress lines (swarmlab/vm/)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from swarmlab.model.spec import load_spec
from swarmlab.vm import box as boxes
from swarmlab.vm import host, lab

ROOT = Path(__file__).resolve().parents[2]
KEY = "ssh-rsa AAAAB3Nza vagrant insecure public key"


def test_box_recipe_is_debootstrap_of_the_suite():
    box = boxes.Box("debian-13")
    assert box.suite == "trixie" and box.name == "swarmlab/debian-13"
    script = box.setup_script(KEY)
    assert f"printf '%s\\n' '{KEY}' > /home/vagrant/.ssh/authorized_keys" in script
    assert "NOPASSWD:ALL" in script and "chpasswd" not in script  # key login only
    assert "Name=eth0" in script and "DHCP=ipv4" in script  # Vagrant's management NIC
    assert "net.ifnames=0" in boxes.KERNEL_ARGS and "root=LABEL=swarmlab-root" in boxes.KERNEL_ARGS
    assert "linux-image-amd64" in boxes.BOX_PACKAGES and "openssh-server" in boxes.BOX_PACKAGES


def test_box_hash_follows_the_recipe():
    box = boxes.Box("debian-13")
    assert box.content_hash(KEY) == box.content_hash(KEY)
    assert box.content_hash(KEY) != box.content_hash(KEY + "x")
    assert box.content_hash(KEY) != boxes.Box("debian-14").content_hash(KEY)


def test_registry_distros_have_no_local_box():
    with pytest.raises(boxes.BoxError, match="only Debian suites"):
        _ = boxes.Box("ubuntu-24.04").suite


def test_installed_stamp_reads_the_box_store(tmp_path, monkeypatch):
    monkeypatch.setenv("VAGRANT_HOME", str(tmp_path))
    box = boxes.Box("debian-13")
    assert boxes.installed_stamp(box) is None
    where = tmp_path / "boxes" / "swarmlab-VAGRANTSLASH-debian-13" / "0" / "libvirt"
    where.mkdir(parents=True)
    (where / boxes.STAMP).write_text(json.dumps({"hash": "abc"}))
    assert boxes.installed_dir(box) == where
    assert boxes.installed_stamp(box) == {"hash": "abc"}


def test_ensure_box_skips_a_current_box(tmp_path, monkeypatch):
    monkeypatch.setenv("VAGRANT_HOME", str(tmp_path))
    monkeypatch.setattr(boxes, "vagrant_public_key", lambda: KEY)
    box = boxes.Box("debian-13")
    where = tmp_path / "boxes" / "swarmlab-VAGRANTSLASH-debian-13" / "0" / "libvirt"
    where.mkdir(parents=True)
    (where / boxes.STAMP).write_text(json.dumps({"hash": box.content_hash(KEY)}))
    assert boxes.ensure_box(box, log=lambda _: None) is False
    (where / boxes.STAMP).write_text(json.dumps({"hash": "old"}))
    monkeypatch.setattr(boxes, "missing_tools", lambda: ["extlinux"])
    with pytest.raises(boxes.BoxError, match="apt-get install -y extlinux"):
        boxes.ensure_box(box, log=lambda _: None)


def _spec(tmp_path: Path, **node_changes) -> Path:
    data = yaml.safe_load((ROOT / "labs" / "vm.yaml").read_text())
    data["nodes"][1].update(node_changes)
    path = tmp_path / "vm.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_own_boxes_of_the_vm_lab(tmp_path):
    spec = load_spec(ROOT / "labs" / "vm.yaml")
    assert lab.own_boxes(spec) == [boxes.Box("debian-13")]
    published = load_spec(_spec(tmp_path, box="debian/trixie64"))
    assert lab.own_boxes(published) == [boxes.Box("debian-13")]  # node1 and node3 still ours


def test_own_box_of_another_distro_names_the_node_and_the_fix(tmp_path):
    spec = load_spec(_spec(tmp_path, box="swarmlab/debian-14"))
    with pytest.raises(lab.VMLabError, match=r"nodes\[1\]\.box 'swarmlab/debian-14'.*box: swarmlab/debian-13"):
        lab.own_boxes(spec)


def test_vm_env_keeps_vagrant_state_in_the_lab_state_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("SWARMLAB_STATE", str(tmp_path / "state"))
    spec = load_spec(ROOT / "labs" / "vm.yaml")
    env = lab.vm_env(spec, ROOT / "labs" / "vm.yaml", "qemu")
    assert env["VAGRANT_DOTFILE_PATH"] == str(tmp_path / "state" / "vm" / "vagrant")
    assert env["SWARMLAB_CONSOLE_DIR"] == str(tmp_path / "state" / "vm" / "console")
    assert env["VAGRANT_DEFAULT_PROVIDER"] == "libvirt" and env[host.DRIVER_ENV] == "qemu"
    assert host.DRIVER_ENV not in lab.vm_env(spec, ROOT / "labs" / "vm.yaml")


@pytest.mark.parametrize(("line", "stage"), [
    ("==> node1: Uploading base box image as volume into Libvirt storage...",
     "node1: uploading the box to libvirt's pool"),
    ("==> node2: Waiting for domain to get an IP address...", "node2: booting (waiting for DHCP)"),
    ("    node3: Key inserted! Disconnecting and reconnecting using new SSH key...", None),
    ("==> node3: Machine booted and ready!", "node3: ready"),
    ("Progress: 45%", None),
])
def test_vagrant_stage(line, stage):
    assert lab.vagrant_stage(line) == stage


def test_driver_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(host.DRIVER_ENV, "qemu")
    assert host.choose_driver(tmp_path / "k", tmp_path / "i", tmp_path / "c.json", log=lambda _: None) == "qemu"
    monkeypatch.setenv(host.DRIVER_ENV, "xen")
    with pytest.raises(host.HostError, match="use kvm or qemu"):
        host.choose_driver(tmp_path / "k", tmp_path / "i", tmp_path / "c.json", log=lambda _: None)


@pytest.mark.parametrize(("kvm_boots", "want"), [(True, "kvm"), (False, "qemu")])
def test_driver_is_what_boots_and_is_cached(tmp_path, monkeypatch, kvm_boots, want):
    monkeypatch.delenv(host.DRIVER_ENV, raising=False)
    kernel = tmp_path / "vmlinuz"
    kernel.write_bytes(b"k" * 10)
    probes: list[str] = []

    def probe(accel, *_args, **_kw):
        probes.append(accel)
        return kvm_boots if accel == "kvm" else True

    monkeypatch.setattr(host, "probe_boot", probe)
    monkeypatch.setattr(host.shutil, "which", lambda _name: "/usr/bin/qemu-system-x86_64")
    monkeypatch.setattr(host, "_qemu_version", lambda: "QEMU 7.2")
    monkeypatch.setattr(host.os, "access", lambda *_: True)
    said: list[str] = []
    cache = tmp_path / "probe.json"
    assert host.choose_driver(kernel, tmp_path / "initrd", cache, log=said.append) == want
    assert probes == (["kvm"] if kvm_boots else ["kvm", "tcg"])
    assert said[-1].startswith(f"libvirt driver {want} (")
    assert host.choose_driver(kernel, tmp_path / "initrd", cache, log=said.append) == want
    assert len(probes) == (1 if kvm_boots else 2) and said[-1].endswith("; cached)")


def test_no_kvm_device_means_tcg_without_a_probe(tmp_path, monkeypatch):
    monkeypatch.delenv(host.DRIVER_ENV, raising=False)
    kernel = tmp_path / "vmlinuz"
    kernel.write_bytes(b"k")
    monkeypatch.setattr(host.shutil, "which", lambda _name: "/usr/bin/qemu-system-x86_64")
    monkeypatch.setattr(host, "_qemu_version", lambda: "QEMU 7.2")
    monkeypatch.setattr(host.os, "access", lambda *_: False)
    monkeypatch.setattr(host, "probe_boot", lambda *_a, **_k: pytest.fail("probed"))
    assert host.choose_driver(kernel, tmp_path / "i", tmp_path / "c.json", log=lambda _: None) == "qemu"


def test_probe_sees_a_kernel_that_reached_userspace(monkeypatch, tmp_path):
    class Done:
        stdout = "[    1.9] Run /bin/false as init process\n[ 2.0] Kernel panic - not syncing: Attempted to kill init!"
        stderr = ""

    monkeypatch.setattr(host.subprocess, "run", lambda *a, **k: Done())
    assert host.probe_boot("tcg", tmp_path / "k", tmp_path / "i")

    def hang(*_a, **_k):
        raise host.subprocess.TimeoutExpired("qemu", 1, output=b"Probing EDD (edd=off to disable)... ok")

    monkeypatch.setattr(host.subprocess, "run", hang)
    assert not host.probe_boot("kvm", tmp_path / "k", tmp_path / "i")


def test_libvirt_leftovers_are_only_this_labs_domains():
    spec = load_spec(ROOT / "labs" / "vm.yaml")
    domains = ["vm_node1", "vm_node3", "other_node1", "vm_node9", "ci-vm_node2"]
    assert lab.libvirt_leftovers(spec, domains) == ["vm_node1", "vm_node3"]


def test_vm_up_tries_vagrant_up_once_more(tmp_path, monkeypatch):
    monkeypatch.setenv("SWARMLAB_STATE", str(tmp_path))
    spec = load_spec(ROOT / "labs" / "vm.yaml")
    monkeypatch.setattr(lab, "prepare", lambda *a, **k: {"SWARMLAB_CONSOLE_DIR": "console"})
    calls: list[tuple[str, ...]] = []

    def vagrant(_spec, _env, *args, **_kw):
        calls.append(args)
        if len(calls) == 1:
            raise lab.VMLabError("vagrant up --provider=libvirt failed (exit 1):\nwait_for timeout")
        return ""

    monkeypatch.setattr(lab, "vagrant", vagrant)
    said: list[str] = []
    lab.up(spec, ROOT / "labs" / "vm.yaml", log=said.append)
    assert calls == [("up", "--provider=libvirt")] * 2
    assert any("trying again (2/2)" in line for line in said)
    calls.clear()
    monkeypatch.setattr(lab, "vagrant", lambda *a, **k: (_ for _ in ()).throw(lab.VMLabError("boom")))
    with pytest.raises(lab.VMLabError, match="boom"):
        lab.up(spec, ROOT / "labs" / "vm.yaml", log=said.append)
