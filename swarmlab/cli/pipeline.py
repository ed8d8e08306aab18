"""The lab pipeline: small named actions, each with a status line and its elapsed time.

up = node image -> nodes -> deploy (pyinfra) -> verify (testinfra) -> summary line.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from swarmlab.containerlab import provider
from swarmlab.containerlab.cache import ensure_cache, lab_uses_cache, proxy_config
from swarmlab.containerlab.image import NODE_USER, NodeImage, ensure_image
from swarmlab.control import sshconfig
from swarmlab.control.inventory import NO_HOST_KEY_CHECK, write_container_connection
from swarmlab.control.progress import run_streamed
from swarmlab.model.shipped import PACKAGE, shipped
from swarmlab.model.spec import LabSpec
from swarmlab.model.state import lab_state_dir, state_root
from swarmlab.verify import repairs as repair_hints

# the thin entry points a user runs with pyinfra; the wheel ships them inside the package
INVENTORY = shipped("inventories") / "lab.py"
SWARM_DEPLOY = shipped("deploys") / "swarm.py"
VERIFY_SUITE = PACKAGE / "verify"
# one pytest process, no xdist: the shared reads (one snapshot per host) and the workloads
# (all started at once) are per session, and each xdist worker would repeat them and pay
# its own start-up (measured on a 2-core machine: -n 0 36.6 s, -n 2 37.8 s for the state checks)
VERIFY_PARALLEL: tuple[str, ...] = ()


class PipelineError(RuntimeError):
    """A phase failed; the message says which and where to look."""


@dataclass
class DeployResult:
    hosts: int
    changed: int  # operations that ran commands, over all hosts
    failed_hosts: list[str]
    seconds: float
    log: Path
    changed_ops: list[str] = field(default_factory=list)


@dataclass
class VerifyResult:
    passed: int
    failed: int
    skipped: int
    seconds: float
    skip_reasons: list[str]
    report: Path
    failures: list[str] = field(default_factory=list)  # "test id: first message line"
    # CIS findings (swarmlab/verify/test_security.py): node -> {pass, lab choice, fail} counts
    security: dict[str, dict[str, int]] = field(default_factory=dict)
    security_findings: list[str] = field(default_factory=list)
    # failed test id -> lines to print under it ("repair on NODE (as root): COMMAND")
    repairs: dict[str, list[str]] = field(default_factory=dict)


@contextmanager
def phase(name: str, out: Callable[[str], None] = print) -> Iterator[dict]:
    """Print `==> name ...` then `  ✓ name (1.2s) detail` or `  ✗ name`."""
    out(f"==> {name}")
    start = time.monotonic()
    info: dict = {"detail": ""}
    try:
        yield info
    except Exception:
        out(f"  ✗ {name} ({time.monotonic() - start:.1f}s)")
        raise
    detail = f" {info['detail']}" if info["detail"] else ""
    out(f"  ✓ {name} ({time.monotonic() - start:.1f}s){detail}")


def nodes_up(spec: LabSpec, out: Callable[[str], None] = print, cache: bool = True) -> None:
    """Container lab: image(s), network, package cache, node containers, SSH access."""
    provider.ensure_engine()
    with phase("node image", out) as info:
        built = []
        for distro in sorted({n.distro for n in spec.nodes}):
            image = NodeImage(distro)
            if ensure_image(image, log=lambda m: out(f"    {m}")):
                built.append(image.tag)
        info["detail"] = f"built {', '.join(built)}" if built else "cached"
    with phase("nodes", out) as info:
        key = provider.ssh_keypair(spec)
        provider.ensure_network(spec)
        proxy = None
        if cache and lab_uses_cache(spec):  # no cache (nor its image) for a lab of pacman nodes
            began = time.monotonic()
            url = ensure_cache(spec, provider.LabNames(spec.name).network,
                               log=lambda m: out(f"    {m}"))
            proxy = proxy_config(url)
            out(f"    package cache {url} ({time.monotonic() - began:.1f}s)")
        started = [n.name for n in spec.nodes if provider.start_node(spec, n, NodeImage(n.distro))]
        pubkey = key.with_suffix(".pub").read_text()
        for node in spec.nodes:
            provider.wait_ready(spec, node, pubkey, apt_proxy=proxy)
        connection = {"ssh_user": NODE_USER, "ssh_key": str(key), **NO_HOST_KEY_CHECK}
        write_container_connection(spec, connection)
        write_ssh_config(spec, connection)
        info["detail"] = f"started {', '.join(started)}" if started else "all running"


def write_ssh_config(spec: LabSpec, connection: dict[str, str]) -> Path:
    """The container lab's OpenSSH config (`swarmlab ssh`, `ssh -F`): its nodes' IPs with the
    connection data the inventory hands pyinfra, through the one writer."""
    return sshconfig.write_ssh_config(
        [(node.name, {"ssh_hostname": node.ip, **connection}) for node in spec.nodes],
        lab_state_dir(spec.name) / sshconfig.LAB_CONFIG)


def _env(spec_path: Path) -> dict[str, str]:
    """pyinfra's and pytest's environment: this spec and this state directory (absolute: they
    run in the lab's state directory, away from any config.py or conftest.py of the user's)."""
    return dict(os.environ, SWARMLAB_SPEC=str(spec_path), SWARMLAB_STATE=str(state_root()),
                PYTHONUNBUFFERED="1")


def run_deploy(spec: LabSpec, spec_path: Path, deploy: Path = SWARM_DEPLOY,
               extra: list[str] | None = None,
               progress: Callable[[str], None] = lambda _: None) -> DeployResult:
    """Run the pyinfra CLI exactly as a user would, with --json to count changes."""
    dry = "-dry" if "--dry" in (extra or []) else ""  # a plan keeps the last run's log
    log = lab_state_dir(spec.name) / f"deploy-{deploy.stem}{dry}.log"
    # -y skips pyinfra's change detection: a --dry plan without it lists the changes and asks nothing
    cmd = [sys.executable, "-m", "pyinfra", *([] if dry else ["-y"]), "--json", str(INVENTORY),
           str(deploy), *(extra or [])]
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env(spec_path), cwd=log.parent)
    stdout: list[str] = []
    reader = threading.Thread(target=lambda: stdout.append(proc.stdout.read()), daemon=True)
    reader.start()
    group = None
    with log.open("w") as err:
        for line in proc.stderr:
            err.write(line)
            if line.startswith("--> Starting operation: "):
                name = line.removeprefix("--> Starting operation: ").strip()
                if name.split(" | ")[0] != group:
                    group = name.split(" | ")[0]
                    progress(f"    · {group} (+{time.monotonic() - start:.1f}s)")
    proc.wait()
    reader.join()
    seconds = time.monotonic() - start
    try:
        data = json.loads("".join(stdout))
        if data.get("results") is None and data.get("plan") is not None and proc.returncode == 0:
            return _planned(spec, data["plan"], seconds, log)  # --dry: the plan, nothing ran
        results = data["results"]
        if results is None:
            raise KeyError("results")
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
        results = _results_from_log(log, spec)
        if results is None:
            raise PipelineError(
                f"pyinfra did not finish (exit {proc.returncode}); its log: {log}\n" + tail(log)
            ) from None
    changed_ops = [
        f"{op['name']} on {','.join(op['success'])}" for op in results["operations"] if op["success"]
    ]
    failed = sorted(set(results["failed_hosts"]) | {
        h for op in results["operations"] for h in op["error"]
    })
    return DeployResult(
        hosts=len(spec.nodes),
        changed=results["totals"]["success"],
        failed_hosts=failed,
        seconds=seconds,
        log=log,
        changed_ops=changed_ops,
    )


def _planned(spec: LabSpec, plan: list[dict], seconds: float, log: Path) -> DeployResult:
    """pyinfra --dry --json: each operation with the hosts it would change (`maybe`: it depends
    on an earlier change)."""
    ops = []
    for op in plan:
        if op.get("hosts_with_change"):
            ops.append(f"{op['name']} on {','.join(op['hosts_with_change'])}")
        if op.get("hosts_with_conditional_change"):
            ops.append(f"{op['name']} on {','.join(op['hosts_with_conditional_change'])} (maybe)")
    changed = sum(len(op.get("hosts_with_change") or []) for op in plan)
    return DeployResult(hosts=len(spec.nodes), changed=changed, failed_hosts=[], seconds=seconds,
                        log=log, changed_ops=ops)


HOST_STATUS_RE = re.compile(r"^    \[(?P<host>[^\]]+)\] (?P<status>Success|No changes|Error)")


def _results_from_log(log: Path, spec: LabSpec) -> dict | None:
    """pyinfra prints no JSON when every host failed ("No hosts remaining"): count from its log."""
    text = log.read_text(errors="replace")
    if "No hosts remaining" not in text:
        return None
    names = {n.name for n in spec.nodes}
    success: list[str] = []
    failed: set[str] = set()
    for line in text.splitlines():
        m = HOST_STATUS_RE.match(line)
        if m and m["host"] in names:
            if m["status"] == "Success":
                success.append(m["host"])
            elif m["status"] == "Error":
                failed.add(m["host"])
    return {
        "operations": [],
        "totals": {"success": len(success)},
        "failed_hosts": sorted(failed or names),
    }


def tail(path: Path, lines: int = 25) -> str:
    text = path.read_text(errors="replace").splitlines() if path.exists() else []
    return "\n".join(f"    {line}" for line in text[-lines:])


# two phases: first the checks that read rules and state, then those that start workloads
# (Docker rewrites its chains whenever an endpoint changes; a read during that can race it)
# one run: the suite orders the checks that start workloads after the ones reading state
# (swarmlab/verify/conftest.py); a phase is (name, pytest -m expression or "" for all)
VERIFY_PHASES = (("all", ""),)


def run_verify(spec: LabSpec, spec_path: Path, extra: list[str] | None = None,
               check: str | None = None,
               progress: Callable[[str], None] = lambda _: None) -> VerifyResult:
    """Run the testinfra suite against the spec's hosts (`check`: a pytest -k expression);
    parse its JUnit reports. `progress` hears each phase as it starts."""
    state = lab_state_dir(spec.name)
    start = time.monotonic()
    totals = {"tests": 0, "failed": 0, "skipped": 0}
    reasons: set[str] = set()
    failures: list[str] = []
    security: dict[str, dict[str, int]] = {}
    findings: list[str] = []
    repairs: dict[str, list[str]] = {}
    logs = []
    phase_reports = []
    for phase_name, marker in VERIFY_PHASES:
        progress(f"    · {phase_name} checks (+{time.monotonic() - start:.1f}s)")
        report = state / f"verify-{phase_name}-junit.xml"
        report.unlink(missing_ok=True)
        cmd = [sys.executable, "-m", "pytest", str(VERIFY_SUITE), "-q", "-rs", "--durations=8",
               "-p", "no:cacheprovider", f"--junitxml={report}", *(["-m", marker] if marker else []),
               *VERIFY_PARALLEL, *(extra or [])]
        if check:
            cmd += ["-k", check]
        output: list[str] = []
        # a heartbeat line at most every 10 s while the checks run
        run_streamed(cmd, f"      {phase_name} checks", progress, sink=output.append,
                     env=_env(spec_path), cwd=state)
        text = "\n".join(output)
        logs.append(f"=== verify phase {phase_name}: {' '.join(cmd[2:])}\n{text}\n")
        if not report.exists():
            (state / "verify.log").write_text("\n".join(logs))
            raise PipelineError(f"the verification did not run:\n{text[-5000:]}")
        phase_reports.append(report)
        counts, phase_reasons, phase_failures = _junit(report)
        for key in totals:
            totals[key] += counts[key]
        reasons |= phase_reasons
        failures += phase_failures
        _add_security(report, security, findings)
        repairs.update(_repairs(report))
    (state / "verify.log").write_text("\n".join(logs))
    report = _merge_junit(phase_reports, state / "verify-junit.xml")
    passed = totals["tests"] - totals["failed"] - totals["skipped"]
    return VerifyResult(
        passed=passed, failed=totals["failed"], skipped=totals["skipped"],
        seconds=time.monotonic() - start, skip_reasons=sorted(reasons), report=report,
        failures=failures, security=security, security_findings=sorted(findings),
        repairs=repairs,
    )


SECURITY_STATUSES = ("pass", "lab choice", "fail")


def _add_security(report: Path, counts: dict[str, dict[str, int]], findings: list[str]) -> None:
    """Count the `security` JUnit properties per node (a failed check records its property
    before it asserts)."""
    import xml.etree.ElementTree as ET

    for case in ET.parse(report).getroot().iter("testcase"):
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        status, node = props.get("security"), props.get("security_node")
        if status in SECURITY_STATUSES and node:
            per = counts.setdefault(node, dict.fromkeys(SECURITY_STATUSES, 0))
            per[status] += 1
            findings.append(props.get("security_finding") or f"{node} {status}")


def security_totals(verify: VerifyResult) -> tuple[int, int, int]:
    """(pass, lab choice, fail) over every node."""
    return tuple(sum(c[s] for c in verify.security.values())  # type: ignore[return-value]
                 for s in SECURITY_STATUSES)


def security_report(verify: VerifyResult, hardened: bool = False) -> list[str]:
    """Per-node lines, then every finding that is not a plain pass; under the hardened
    profile, then each lab choice once with the nodes it holds on: what the hardened profile
    cannot require of a lab, so what a benchmark scan (docker-bench-security) still warns of."""
    lines = [f"security {node}: pass={c['pass']} lab choice={c['lab choice']} fail={c['fail']}"
             for node, c in sorted(verify.security.items())]
    lines += [f for f in verify.security_findings if " pass: " not in f]
    if not hardened:
        return lines
    nodes: dict[str, list[str]] = {}
    for finding in verify.security_findings:
        node, _, rest = finding.partition(" ")
        if " lab choice: " in rest:
            nodes.setdefault(rest.replace(" lab choice: ", ": ", 1), []).append(node)
    if nodes:
        lines += ["", "lab necessities under security.profile: hardened (a benchmark scan reports "
                  "these; the lab cannot do otherwise, and says why):"]
        lines += [f"  {text} [{', '.join(names)}]" for text, names in nodes.items()]
    return lines


def _merge_junit(reports: list[Path], dest: Path) -> Path:
    """One JUnit file (<testsuites>) holding every phase's suite."""
    import xml.etree.ElementTree as ET

    merged = ET.Element("testsuites")
    for report in reports:
        root = ET.parse(report).getroot()
        merged.extend(root.findall("testsuite") if root.tag == "testsuites" else [root])
    ET.ElementTree(merged).write(dest, encoding="utf-8", xml_declaration=True)
    return dest


def _junit(report: Path) -> tuple[dict[str, int], set[str], list[str]]:
    """(counts, skip reasons, failures as "test id: first line of the message")."""
    import xml.etree.ElementTree as ET

    root = ET.parse(report).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    failed = int(suite.get("failures", 0)) + int(suite.get("errors", 0))
    counts = {"tests": int(suite.get("tests", 0)), "failed": failed, "skipped": int(suite.get("skipped", 0))}
    reasons = {(s.get("message") or "").strip() for s in root.iter("skipped")}
    failures = []
    for case in root.iter("testcase"):
        for bad in (*case.findall("failure"), *case.findall("error")):
            message = (bad.get("message") or "").strip().splitlines()
            failures.append(f"{case.get('name')}: {message[0][:300] if message else bad.tag}")
    return counts, reasons, failures


def _repairs(report: Path) -> dict[str, list[str]]:
    """Failed test id -> the repair lines for it (swarmlab/verify/repairs.py)."""
    import xml.etree.ElementTree as ET

    out = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        if case.find("failure") is None and case.find("error") is None:
            continue
        recorded = [p.get("value") or "" for p in case.iter("property")
                    if p.get("name") == repair_hints.PROPERTY]
        lines = repair_hints.repairs_for(case.get("name") or "", recorded)
        if lines:
            out[case.get("name") or ""] = lines
    return out


def summary_line(deploy: DeployResult | None, verify: VerifyResult | None, hosts: int) -> str:
    """`summary: hosts=N changed=C failed=F verified=P/T skipped=S`; without a deploy (verify
    alone) there is nothing changed or failed to count, so those fields are left out."""
    line = f"summary: hosts={hosts}"
    if deploy is not None:
        line += f" changed={deploy.changed} failed={len(deploy.failed_hosts)}"
    if verify is not None:
        line += f" verified={verify.passed}/{verify.passed + verify.failed}"
        line += f" skipped={verify.skipped}"
        if verify.security:
            line += " security={}/{}/{}".format(*security_totals(verify))
    return line
