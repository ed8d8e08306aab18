"""Pipeline pieces that need no Docker: summary line, results when pyinfra prints no JSON."""

from __future__ import annotations

from pathlib import Path

import pytest

from swarmlab.cli import pipeline
from swarmlab.model.spec import load_spec

ROOT = Path(__file__).resolve().parents[2]
ALL_FAILED_LOG = """--> Starting operation: Kernel prerequisites | modules loaded at boot
    [b1] Success
--> Starting operation: Docker Engine | Docker packages available
    [b1] b1: debian-12 with docker.source=distro cannot give Docker with buildx and compose v2
    [b1] Error: executed 0 commands
--> pyinfra error: No hosts remaining!
"""


def test_summary_line_formats():
    deploy = pipeline.DeployResult(hosts=3, changed=0, failed_hosts=[], seconds=1.0, log=Path("x"))
    verify = pipeline.VerifyResult(passed=60, failed=0, skipped=13, seconds=9.0, skip_reasons=[],
                                   report=Path("r"))
    assert pipeline.summary_line(deploy, verify, 3) == (
        "summary: hosts=3 changed=0 failed=0 verified=60/60 skipped=13"
    )
    assert pipeline.summary_line(deploy, None, 3) == "summary: hosts=3 changed=0 failed=0"


def test_results_from_log_when_every_host_failed(tmp_path):
    spec = load_spec(ROOT / "tests/live/labs/bookworm.yaml")
    log = tmp_path / "deploy.log"
    log.write_text(ALL_FAILED_LOG)
    results = pipeline._results_from_log(log, spec)
    assert results["failed_hosts"] == ["b1"]
    assert results["totals"]["success"] == 1


def test_results_from_log_is_none_for_other_crashes(tmp_path):
    spec = load_spec(ROOT / "tests/live/labs/bookworm.yaml")
    log = tmp_path / "deploy.log"
    log.write_text("Traceback (most recent call last):\n")
    assert pipeline._results_from_log(log, spec) is None


def test_phase_prints_status_lines():
    lines: list[str] = []
    with pipeline.phase("nodes", lines.append) as info:
        info["detail"] = "started a"
    assert lines[0] == "==> nodes"
    assert lines[1].startswith("  ✓ nodes (") and lines[1].endswith("started a")
    with pytest.raises(RuntimeError), pipeline.phase("deploy", lines.append):
        raise RuntimeError("boom")
    assert lines[-1].startswith("  ✗ deploy (")


def test_verify_says_each_phase_as_it_starts(tmp_path, monkeypatch):
    """The verify phase is not silent for its whole run: its pytest run is announced, with
    a heartbeat while its checks run; the log keeps all of pytest's output."""
    monkeypatch.setenv("SWARMLAB_STATE", str(tmp_path))
    junit = ('<testsuite tests="2" failures="0" errors="0" skipped="0">'
             '<testcase name="a"/><testcase name="b"/></testsuite>')
    real_cmd = pipeline.sys.executable

    def fake_pytest(cmd, label, out, sink=None, env=None, cwd=None, **_kw):
        assert cmd[0] == real_cmd and cmd[1:3] == ["-m", "pytest"]
        report = next(a for a in cmd if a.startswith("--junitxml=")).split("=", 1)[1]
        Path(report).write_text(junit)
        out(f"{label}: running (10 s)")
        sink("..  [100%]")
        return None

    monkeypatch.setattr(pipeline, "run_streamed", fake_pytest)
    said: list[str] = []
    spec = load_spec(ROOT / "labs" / "local.yaml")
    result = pipeline.run_verify(spec, Path("labs/local.yaml"), progress=said.append)
    assert [line.split(" (")[0] for line in said] == ["    · all checks", "      all checks: running"]
    assert result.passed == 2 and result.failed == 0
    assert "..  [100%]" in (tmp_path / "local" / "verify.log").read_text()
