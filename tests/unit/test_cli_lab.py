"""The CLI when the lab is not (all) there, the one spec rule, status for any lab, the deploy's
guards for one's own hosts, and the conventions (-h, --version, --json, completion)."""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from swarmlab.cli import commands as cli
from swarmlab.cli import labkind, pipeline
from swarmlab.control import reach, sshconfig
from swarmlab.model import specfile, state
from swarmlab.model.spec import load_spec

ROOT = Path(__file__).resolve().parents[2]
LOCAL = ROOT / "labs/local.yaml"
SERVERS = ROOT / "labs/servers.example.yaml"
REFUSED = "ssh: connect to host {ip} port 22: Connection refused"
NODE_FACING = [("explain", "node1"), ("report",), ("verify",), ("ssh", "node1"), ("status",)]


@pytest.fixture
def lab(tmp_path, monkeypatch) -> Path:
    """A copy of the container lab spec in a directory of its own, state beside it."""
    monkeypatch.delenv("SWARMLAB_STATE", raising=False)
    monkeypatch.delenv("SWARMLAB_SPEC", raising=False)
    spec = tmp_path / "my lab" / "lab one.yaml"
    spec.parent.mkdir()
    spec.write_text(LOCAL.read_text().replace("name: local", "name: unitlab"))
    monkeypatch.setattr(labkind, "KINDS", (labkind.Kind(
        "container lab", lambda s: True, lambda s: {n.name: "running" for n in s.nodes},
        lambda s, args: f"swarmlab up{args}"),))
    return spec


def answering(monkeypatch, *up: str) -> None:
    """Only the nodes in `up` answer; the others refuse the connection."""
    def check(entries):
        return [reach.NodeReach(name, data["ssh_hostname"], None, 22) if name in up else
                reach.NodeReach(name, data["ssh_hostname"], REFUSED.format(ip=data["ssh_hostname"]))
                for name, data in entries]

    monkeypatch.setattr(reach, "check", check)


def run(*args: str):
    return CliRunner().invoke(cli.main, list(args))


def never(*_a, **_k):
    raise AssertionError("a lab that is not up was asked for more than the quick check")


# ------------------------------------------------------------------ the lab is down


@pytest.mark.parametrize("command", NODE_FACING, ids=[c[0] for c in NODE_FACING])
def test_lab_down_every_node_facing_command_says_so_in_one_line_per_node(lab, monkeypatch, command):
    answering(monkeypatch)
    monkeypatch.setattr(pipeline, "run_verify", never)
    monkeypatch.setattr("swarmlab.report.build_report", never)
    monkeypatch.setattr("swarmlab.report.collect.collect_lab", never)
    monkeypatch.setattr(os, "execvp", never)
    result = run(command[0], "--spec", str(lab), *command[1:])
    assert result.exit_code == cli.EXIT_DOWN, result.output
    err = result.stderr
    nodes = ["node1"] if command[0] in ("explain", "ssh") else ["node1", "node2", "node3"]
    for i, name in enumerate(nodes, 1):
        ip = f"10.77.0.1{i}"
        assert f"  {name} ({ip}): {REFUSED.format(ip=ip)}\n" in err
    assert f"fix: swarmlab up --spec {shlex.quote(str(lab))}" in err  # the spec as the user gave it
    assert "CommandResult" not in result.output and "@@@swarmlab" not in result.output
    assert "Traceback" not in result.output
    assert "✓" not in result.output  # nothing claims success


def test_lab_down_fix_repeats_no_spec_when_none_was_given(lab, monkeypatch):
    answering(monkeypatch)
    monkeypatch.chdir(lab.parent)
    (lab.parent / "lab.yaml").write_text(lab.read_text())
    result = run("status")
    assert result.exit_code == cli.EXIT_DOWN
    assert "fix: swarmlab up\n" in result.stderr


# ------------------------------------------------------------------ half up


def test_half_up_status_lists_every_node_and_exits_1(lab, monkeypatch):
    answering(monkeypatch, "node1", "node3")
    result = run("status", "--spec", str(lab))
    assert result.exit_code == cli.EXIT_FAILED
    out = result.stdout.splitlines()
    assert out[0].startswith("lab unitlab · container lab · 2/3 nodes answer over SSH · spec ")
    assert out[1].split() == ["NODE", "ROLE", "DISTRO", "ADDRESS", "MACHINE", "SSH"]
    assert [line.split()[-1] for line in out[2:]] == ["ok", "no", "ok"]
    assert f"  node2 (10.77.0.12): {REFUSED.format(ip='10.77.0.12')}" in result.stderr


def test_half_up_verify_refuses_and_names_the_silent_node(lab, monkeypatch):
    answering(monkeypatch, "node1", "node3")
    monkeypatch.setattr(pipeline, "run_verify", never)
    result = run("verify", "--spec", str(lab))
    assert result.exit_code == cli.EXIT_FAILED
    assert "1 of 3 nodes do not answer over SSH; this command needs every node" in result.stderr
    assert "node2 (10.77.0.12)" in result.stderr and "node1 (" not in result.stderr


def test_half_up_report_writes_the_page_for_the_others_and_exits_1(lab, monkeypatch, tmp_path):
    import swarmlab.report as report

    answering(monkeypatch, "node1", "node3")
    seen = {}

    def build(spec, path, unreachable=None):
        seen.update(unreachable)
        return report.ReportResult(tmp_path / "r.json", tmp_path / "r.html", 0.5, [])

    monkeypatch.setattr(report, "build_report", build)
    result = run("report", "--spec", str(lab), "--json")
    assert result.exit_code == cli.EXIT_FAILED
    data = json.loads(result.stdout)
    assert data["unreachable"] == {"node2": REFUSED.format(ip="10.77.0.12")} == seen
    assert data["html"] == str(tmp_path / "r.html")


def test_half_up_explain_and_ssh_of_a_silent_node_exit_3_of_an_answering_one_go_on(lab, monkeypatch):
    answering(monkeypatch, "node1")
    assert run("explain", "--spec", str(lab), "node2").exit_code == cli.EXIT_DOWN
    assert run("ssh", "--spec", str(lab), "node2").exit_code == cli.EXIT_DOWN
    ran = []
    monkeypatch.setattr(os, "execvp", lambda prog, argv: ran.append(argv))
    result = run("ssh", "--spec", str(lab), "node1", "hostname")
    assert result.exit_code == 0, result.output
    config = state.state_root() / "unitlab" / sshconfig.LAB_CONFIG
    assert ran == [["ssh", "-F", str(config), "node1", "hostname"]]
    assert "Host node1" in config.read_text()


def test_collect_names_an_unreachable_node_in_one_line():
    """testinfra raises with the whole command result (remote script included): one line stays."""
    class Result:
        stderr = "debug1: x\nssh: connect to host 10.77.0.12 port 22: No route to host\n"

    err = RuntimeError(Result())
    assert reach.short_error(err) == "ssh: connect to host 10.77.0.12 port 22: No route to host"
    assert reach.short_error(OSError("a\nb\n")) == "b"


def test_probe_reports_the_last_line_of_ssh_and_the_port(tmp_path, monkeypatch):
    """The real check's parsing, with an `ssh` on PATH that answers like OpenSSH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "ssh"
    fake.write_text('#!/bin/sh\ncase "$*" in *down*) echo "kex: x" >&2; '
                    'echo "ssh: connect to host 10.0.0.9 port 22: No route to host" >&2; exit 255;; '
                    'esac\necho swarmlab-port=2222\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.undo()  # the autouse fake check, and PATH: set them again below
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setattr(sshconfig, "USER_CONFIG", tmp_path / "none")
    got = reach.check([("up", {"ssh_hostname": "10.0.0.8"}), ("down", {"ssh_hostname": "10.0.0.9"})])
    assert got == [reach.NodeReach("up", "10.0.0.8", None, 2222),
                   reach.NodeReach("down", "10.0.0.9",
                                   "ssh: connect to host 10.0.0.9 port 22: No route to host")]


# ------------------------------------------------------------------ one spec rule


CHECKOUT_ONLY = pytest.mark.skipif(bool(os.environ.get("SWARMLAB_TEST_INSTALLED")),
                                   reason="a source checkout's default spec and state: none when installed")


@CHECKOUT_ONLY
def test_spec_rule_order_and_the_line_naming_it(tmp_path, monkeypatch):
    monkeypatch.delenv("SWARMLAB_SPEC", raising=False)
    monkeypatch.chdir(tmp_path)
    assert specfile.find_spec() == specfile.Found(LOCAL, "the checkout's default")
    (tmp_path / "lab.yaml").write_text(LOCAL.read_text())
    assert specfile.find_spec().source == "./lab.yaml in the current directory"
    monkeypatch.setenv("SWARMLAB_SPEC", str(SERVERS))
    assert specfile.find_spec() == specfile.Found(SERVERS, "$SWARMLAB_SPEC")
    given = specfile.find_spec("x.yaml")
    assert given == specfile.Found(tmp_path / "x.yaml", "--spec")
    assert given.line() == f"spec: {tmp_path / 'x.yaml'} (--spec)"
    monkeypatch.setattr(specfile, "default_spec", lambda _relative: None)  # installed
    monkeypatch.delenv("SWARMLAB_SPEC")
    (tmp_path / "lab.yaml").unlink()
    assert specfile.find_spec() is None


def test_the_command_prints_its_spec_and_the_inventory_uses_the_same_rule(tmp_path, monkeypatch):
    from swarmlab.control import inventory

    monkeypatch.delenv("SWARMLAB_SPEC", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "lab.yaml").write_text(SERVERS.read_text())
    result = run("validate")
    assert result.exit_code == 0, result.output
    assert f"spec: {tmp_path / 'lab.yaml'} (./lab.yaml in the current directory)" in result.stderr
    assert inventory.spec_path() == tmp_path / "lab.yaml"


@CHECKOUT_ONLY
def test_state_follows_the_spec_not_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.delenv("SWARMLAB_STATE", raising=False)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    spec = tmp_path / "labs" / "mine.yaml"
    spec.parent.mkdir()
    spec.write_text(LOCAL.read_text())
    specfile.find_spec(spec)
    assert state.state_root() == tmp_path / "labs" / ".swarmlab"
    specfile.find_spec(LOCAL)  # a spec inside the checkout: the checkout's root
    assert state.state_root() == ROOT / ".swarmlab"
    state.follow_spec(None)
    assert state.state_root() == elsewhere / ".swarmlab"


def test_validate_takes_the_path_or_spec_and_h_works():
    assert run("validate", str(SERVERS)).exit_code == 0
    result = run("validate", "--spec", str(SERVERS))
    assert result.exit_code == 0 and "ok — lab servers, 1 manager(s), 2 worker(s)" in result.stdout
    assert run("validate", str(SERVERS), "--spec", str(LOCAL)).exit_code == 2
    for args in (["-h"], ["status", "-h"], ["deploy", "-h"]):
        result = run(*args)
        assert result.exit_code == 0 and "Usage: " in result.stdout


def test_help_names_the_rule_no_command_is_cut_and_every_option_is_explained():
    text = run("-h").stdout
    commands = text.split("Commands:")[1]
    assert "..." not in commands, text
    assert "./lab.yaml" in text and "$SWARMLAB_SPEC" in text
    for name, command in cli.main.commands.items():
        for param in command.params:
            if param.param_type_name == "option":
                assert param.help, f"{name} {param.opts} has no help text"
    deploy_help = run("deploy", "-h").stdout
    assert "./lab.yaml in the current directory" in deploy_help and "labs/local.yaml" in deploy_help
    assert "default in a checkout" not in deploy_help


def test_version_and_completion():
    result = run("--version")
    assert result.exit_code == 0 and result.stdout.startswith("swarmlab, version ")
    result = run("completion", "bash")
    assert result.exit_code == 0 and "_SWARMLAB_COMPLETE=bash_complete" in result.stdout


# ------------------------------------------------------------------ status for any lab


def test_status_json_for_ssh_hosts(monkeypatch, tmp_path):
    monkeypatch.setenv("SWARMLAB_STATE", str(tmp_path))
    monkeypatch.setattr(labkind, "_vagrant_ids", lambda spec: {})
    monkeypatch.setattr(labkind, "_container_detect", lambda spec: False)
    monkeypatch.setattr(labkind, "KINDS", (
        labkind.Kind("container lab", labkind._container_detect, never, never), *labkind.KINDS[1:]))
    answering(monkeypatch, "srv1", "srv2", "srv3")
    result = run("status", "--spec", str(SERVERS), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["kind"] == "SSH hosts" and data["answering"] == 3 and data["fix"] is None
    assert [(n["name"], n["ip"], n["machine"], n["ssh"]) for n in data["nodes"]] == [
        ("srv1", "192.0.2.11", "-", "ok"), ("srv2", "192.0.2.12", "-", "ok"),
        ("srv3", "192.0.2.13", "-", "ok")]


def test_status_of_absent_containers_checks_no_ssh_and_exits_1(lab, monkeypatch):
    machines = {"node1": "running", "node2": "absent", "node3": "running"}
    monkeypatch.setattr(labkind, "KINDS", (labkind.Kind(
        "container lab", lambda s: True, lambda s: machines, lambda s, args: f"swarmlab up{args}"),))
    asked = []

    def check(entries):
        asked.extend(name for name, _ in entries)
        return [reach.NodeReach(name, d["ssh_hostname"], None, 22) for name, d in entries]

    monkeypatch.setattr(reach, "check", check)
    result = run("status", "--spec", str(lab))
    assert result.exit_code == cli.EXIT_FAILED and asked == ["node1", "node3"]
    assert "node2 (10.77.0.12): not checked: the machine is absent" in result.stderr


def test_vagrant_machines_are_found_in_the_dotfile(tmp_path, monkeypatch):
    monkeypatch.setenv("VAGRANT_DOTFILE_PATH", str(tmp_path / "dot"))
    (tmp_path / "dot/machines/node1/libvirt").mkdir(parents=True)
    (tmp_path / "dot/machines/node1/libvirt/id").write_text("x")
    spec = load_spec(ROOT / "lab.yaml")
    assert labkind._vagrant_ids(spec) == {"node1": "libvirt"}


# ------------------------------------------------------------------ own hosts


def test_the_servers_example_is_a_valid_three_server_spec():
    spec = load_spec(SERVERS)
    assert [n.name for n in spec.nodes] == ["srv1", "srv2", "srv3"]
    assert len(spec.managers) == 1 and spec.firewall.ssh_port == 22
    assert spec.warnings() == []
    assert "labs/servers.example.yaml" in (ROOT / "docs/own-hosts.md").read_text()


def test_deploy_refuses_a_firewall_that_cuts_its_ssh_connection(lab, monkeypatch):
    monkeypatch.setattr(reach, "check", lambda entries: [
        reach.NodeReach(name, d["ssh_hostname"], None, 2222) for name, d in entries])
    monkeypatch.setattr(pipeline, "run_deploy", never)
    result = run("deploy", "--spec", str(lab))
    assert result.exit_code == 2
    assert ("firewall.ssh_port is 22, but this deploy's SSH connection reaches node1 on port 2222, "
            "node2 on port 2222, node3 on port 2222") in result.stderr
    assert "Fix: set `firewall: {ssh_port: 2222}`" in result.stderr
    fine = lab.read_text().replace("backend: auto", "backend: auto\n  ssh_port: 2222")
    lab.write_text(fine)
    monkeypatch.setattr(pipeline, "run_deploy", lambda *a, **k: pipeline.DeployResult(
        3, 0, [], 1.0, lab.parent / "deploy.log"))
    assert run("deploy", "--spec", str(lab), "--no-verify").exit_code == 0


def test_first_deploy_to_hosts_shows_the_plan_and_asks(tmp_path, monkeypatch):
    monkeypatch.setenv("SWARMLAB_STATE", str(tmp_path))
    monkeypatch.setattr(labkind, "kind_of", lambda spec: labkind.KINDS[-1])
    calls = []

    def deploy(spec, path, deploy=None, extra=None, progress=None):
        calls.append(extra)
        return pipeline.DeployResult(3, 2, [], 1.0, tmp_path / "d.log",
                                     changed_ops=["Write netplan on srv1", "Enable ufw on srv1"])

    monkeypatch.setattr(pipeline, "run_deploy", deploy)
    result = run("deploy", "--spec", str(SERVERS), "--no-verify")
    assert result.exit_code == 2 and calls == [["--dry"]]
    assert "    would run: Write netplan on srv1" in result.stdout
    assert "Fix: run `swarmlab deploy --spec" in result.stderr and "--yes" in result.stderr
    result = run("deploy", "--spec", str(SERVERS), "--no-verify", "--yes")
    assert result.exit_code == 0, result.output
    assert calls == [["--dry"], ["--dry"], None]
    assert (tmp_path / "servers" / cli.DEPLOYED).is_file()
    calls.clear()
    assert run("deploy", "--spec", str(SERVERS), "--no-verify").exit_code == 0
    assert calls == [None]  # after the first one: no plan, no question
    assert run("deploy", "--spec", str(SERVERS), "--dry").exit_code == 0 and calls == [None, ["--dry"]]


def test_user_ssh_config_reaches_the_openssh_blocks(tmp_path, monkeypatch):
    config = tmp_path / "config"
    config.write_text("Host 192.0.2.*\n  User admin\n  Port 2200\n  ProxyJump bastion\n")
    monkeypatch.setattr(sshconfig, "USER_CONFIG", config)
    block = sshconfig.host_block("srv1", {"ssh_hostname": "192.0.2.11"})
    assert {"  User admin", "  Port 2200", "  ProxyJump bastion"} <= set(block)
    block = sshconfig.host_block("srv1", {"ssh_hostname": "192.0.2.11", "ssh_user": "lab"})
    assert "  User lab" in block and "  User admin" not in block
    assert "  User admin" not in sshconfig.host_block("n1", {"ssh_hostname": "10.0.0.5"})


def test_a_dry_run_reads_pyinfras_plan(tmp_path, monkeypatch):
    """pyinfra --dry --json prints {"plan": [...], "results": null} (pyinfra 3.10, seen live)."""
    monkeypatch.setenv("SWARMLAB_STATE", str(tmp_path))
    out = json.dumps({"results": None, "plan": [
        {"name": "Swarm firewall | ufw enabled", "hosts_with_change": ["srv1", "srv2"],
         "hosts_with_conditional_change": []},
        {"name": "Network | netplan applied", "hosts_with_change": [],
         "hosts_with_conditional_change": ["srv3"]},
        {"name": "Docker | packages", "hosts_with_change": [], "hosts_with_conditional_change": []}]})
    fake = tmp_path / "pyinfra.py"
    fake.write_text(f"print({out!r})\n")
    python = tmp_path / "py"  # stands in for `python -m pyinfra ...`: prints the plan
    python.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} {shlex.quote(str(fake))}\n")
    python.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(python))
    result = pipeline.run_deploy(load_spec(SERVERS), SERVERS, extra=["--dry"])
    assert result.changed == 2 and result.failed_hosts == []
    assert result.changed_ops == ["Swarm firewall | ufw enabled on srv1,srv2",
                                  "Network | netplan applied on srv3 (maybe)"]
    assert result.log.name == "deploy-swarm-dry.log"


def test_the_pyinfra_inventory_file_names_the_spec_it_reads(tmp_path, monkeypatch, capsys):
    import runpy

    monkeypatch.setenv("SWARMLAB_STATE", str(tmp_path))
    monkeypatch.setenv("VAGRANT_CWD", str(tmp_path))  # no Vagrant environment here
    monkeypatch.setenv("SWARMLAB_SPEC", str(SERVERS))
    names = runpy.run_path(str(ROOT / "inventories/lab.py"))
    assert f"swarmlab inventory: spec: {SERVERS} ($SWARMLAB_SPEC)" in capsys.readouterr().err
    assert [name for name, _ in names["managers"]] == ["srv1"]
    assert [name for name, _ in names["workers"]] == ["srv2", "srv3"]


def test_state_of_a_spec_shipped_in_the_installed_package_is_the_current_directory(tmp_path, monkeypatch):
    """Installed, the shipped example spec lives in site-packages: its lab state never goes there."""
    from swarmlab.model import shipped

    monkeypatch.delenv("SWARMLAB_STATE", raising=False)
    monkeypatch.setattr(shipped, "checkout", lambda: None)
    monkeypatch.chdir(tmp_path)
    try:
        state.follow_spec(shipped.PACKAGE / "labs" / "local.yaml")
        assert state.state_root() == tmp_path / ".swarmlab"
        state.follow_spec(tmp_path / "mine" / "lab.yaml")
        assert state.state_root() == tmp_path / "mine" / ".swarmlab"
    finally:
        state.follow_spec(None)
