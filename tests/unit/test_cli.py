"""The CLI's validate command: clear errors, exit codes, no traceback, no host touched."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from swarmlab.cli.commands import main

ROOT = Path(__file__).resolve().parents[2]


def test_validate_ok():
    result = CliRunner().invoke(main, ["validate", str(ROOT / "labs/local.yaml")])
    assert result.exit_code == 0, result.output
    assert "ok — lab local, 1 manager(s), 2 worker(s) on 10.77.0.0/24" in result.output


def test_validate_bad_spec_names_the_field_and_exits_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    text = (ROOT / "labs/local.yaml").read_text().replace("ip: 10.77.0.13", "ip: 10.77.0.255")
    bad.write_text(text)
    result = CliRunner().invoke(main, ["validate", str(bad)])
    assert result.exit_code == 2
    assert "nodes[2].ip: 10.77.0.255 is the broadcast address of the lab subnet" in result.output
    assert "Traceback" not in result.output


def test_validate_yaml_error_gives_the_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nnodes: [\n  - a\n")
    result = CliRunner().invoke(main, ["validate", str(bad)])
    assert result.exit_code == 2
    assert "YAML syntax error at line" in result.output


def test_up_with_a_bad_spec_touches_nothing(tmp_path, monkeypatch):
    """Validation runs before the engine or any node is contacted."""
    bad = tmp_path / "bad.yaml"
    bad.write_text((ROOT / "labs/local.yaml").read_text().replace("role: manager", "role: worker"))
    import swarmlab.cli.pipeline as pipeline

    monkeypatch.setattr(pipeline, "nodes_up", lambda *a, **k: (_ for _ in ()).throw(AssertionError("touched")))
    result = CliRunner().invoke(main, ["up", "--spec", str(bad)])
    assert result.exit_code == 2
    assert "nodes: no node has role: manager" in result.output


def test_up_ends_with_the_report_and_a_report_failure_only_warns(monkeypatch, tmp_path):
    """The page is the last step of `up`; when it cannot be built, `up` still passes."""
    import swarmlab.cli.commands as cli
    import swarmlab.cli.pipeline as pipeline
    import swarmlab.report as report

    monkeypatch.setenv("SWARMLAB_STATE", str(tmp_path))
    monkeypatch.setattr(pipeline, "nodes_up", lambda *a, **k: None)
    monkeypatch.setattr(pipeline, "run_deploy", lambda *a, **k: pipeline.DeployResult(
        hosts=3, changed=0, failed_hosts=[], seconds=1.0, log=tmp_path / "deploy.log"))

    def broken(*_a, **_k):
        raise OSError("ssh: connect to host 10.77.0.11 port 22: Connection refused")

    monkeypatch.setattr(report, "build_report", broken)
    result = CliRunner().invoke(cli.main, ["up", "--no-verify", "--spec", str(ROOT / "labs/local.yaml")])
    assert result.exit_code == 0, result.output
    assert "warning: no report (OSError: ssh: connect to host 10.77.0.11 port 22" in result.output
    assert "summary: hosts=3 changed=0 failed=0" in result.output and "✗ report" in result.output

    monkeypatch.setattr(report, "build_report", lambda spec, path, **_kw: report.ReportResult(
        tmp_path / "report.json", tmp_path / "report.html", 0.9, []))
    result = CliRunner().invoke(cli.main, ["up", "--no-verify", "--spec", str(ROOT / "labs/local.yaml")])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    line = f"report: {tmp_path / 'report.html'}  (facts: {tmp_path / 'report.json'})"
    assert line in lines and lines.index(line) < lines.index("next steps:")  # then the next steps


def test_unknown_node_is_a_lab_error_with_exit_2():
    result = CliRunner().invoke(main, ["ssh", "--spec", str(ROOT / "labs/local.yaml"), "node9"])
    assert result.exit_code == 2
    assert result.stderr.splitlines()[-1] == "error: no node 'node9' in the spec (nodes: node1, node2, node3)"


def test_an_expected_error_in_any_command_exits_2_without_traceback(monkeypatch):
    """The group turns the EXPECTED errors into a LabError (click prints it, exit 2)."""
    import swarmlab.cli.commands as cli

    def no_engine() -> None:
        raise cli.provider.ProviderError("no Docker engine answers on unix:///var/run/docker.sock")

    monkeypatch.setattr(cli.provider, "ensure_engine", no_engine)
    result = CliRunner().invoke(main, ["down", "--spec", str(ROOT / "labs/local.yaml")])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [f"spec: {ROOT / 'labs/local.yaml'} (--spec)",
                                          "error: no Docker engine answers on unix:///var/run/docker.sock"]
    assert isinstance(result.exception, SystemExit)


def test_an_unexpected_error_is_not_swallowed(monkeypatch):
    import swarmlab.cli.commands as cli

    monkeypatch.setattr(cli.provider, "ensure_engine", lambda: 1 / 0)
    result = CliRunner().invoke(main, ["down", "--spec", str(ROOT / "labs/local.yaml")])
    assert result.exit_code == 1 and isinstance(result.exception, ZeroDivisionError)


def test_verify_exits_1_on_failed_checks(monkeypatch, tmp_path):
    import swarmlab.cli.commands as cli

    monkeypatch.setattr(cli.pipeline, "run_verify", lambda *a, **k: cli.pipeline.VerifyResult(
        passed=5, failed=1, skipped=0, seconds=1.0, skip_reasons=[], report=tmp_path / "j.xml",
        failures=["test_x[node1]: boom"]))
    result = CliRunner().invoke(main, ["verify", "--spec", str(ROOT / "labs/local.yaml")])
    assert result.exit_code == 1
    assert "failed: test_x[node1]: boom" in result.output and "verified=5/6" in result.output


def test_nightly_names_the_distros_it_knows():
    result = CliRunner().invoke(main, ["nightly", "--distro", "fedora-41", "--source", "distro"])
    assert result.exit_code == 2
    assert "'fedora-41' is not one of 'debian-12'" in result.output and "'ubuntu-24.04'" in result.output


def test_verify_writes_the_security_findings_beside_the_report(monkeypatch, tmp_path):
    import swarmlab.cli.commands as cli

    monkeypatch.setattr(cli.pipeline, "run_verify", lambda *a, **k: cli.pipeline.VerifyResult(
        passed=2, failed=0, skipped=0, seconds=1.0, skip_reasons=[], report=tmp_path / "j.xml",
        security={"node1": {"pass": 1, "lab choice": 1, "fail": 0}},
        security_findings=["node1 CIS 2.1 lab choice: x", "node1 CIS 2.3 pass: y"]))
    result = CliRunner().invoke(main, ["verify", "--spec", str(ROOT / "labs/local.yaml")])
    assert result.exit_code == 0, result.output
    page = tmp_path / "security-report.txt"
    assert f"  security findings: {page}" in result.output
    assert "  security node1: pass=1 lab choice=1 fail=0" in result.output
    assert page.read_text().splitlines() == [
        "security node1: pass=1 lab choice=1 fail=0", "node1 CIS 2.1 lab choice: x", "",
        "all findings:", "node1 CIS 2.1 lab choice: x", "node1 CIS 2.3 pass: y"]
