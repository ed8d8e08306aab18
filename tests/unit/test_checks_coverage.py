"""Every spec field has a live check (or a stated reason), every check is broken by the drift
suite (or named with a reason), and docs/verify-coverage.md is made from that data; the repairs verify
prints for state the deploy does not own."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic import BaseModel

import swarmlab.verify
from swarmlab.cli import pipeline
from swarmlab.cli.commands import main
from swarmlab.model.spec import load_spec
from swarmlab.provision.network import link_problems
from swarmlab.verify import coverage, repairs
from swarmlab.verify.foreign import conflicting_rules
from swarmlab.verify.rules import parse_rules
from swarmlab.verify.test_swarm import cluster_option_problems

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from tests.live import checks_doc, drift  # noqa: E402

VERIFY = Path(swarmlab.verify.__file__).parent
TRIO = load_spec(ROOT / "tests" / "live" / "labs" / "trio.yaml")


def _defined_checks() -> set[str]:
    out = set()
    for f in VERIFY.glob("test_*.py"):
        out |= {line[4:].split("(")[0] for line in f.read_text().splitlines()
                if line.startswith("def test_")}
    return out


def test_every_spec_field_has_a_check_or_a_reason():
    assert coverage.unmapped() == [], "spec fields with no live check and no reason: add them " \
        "to swarmlab/verify/coverage.py"
    fields = set(coverage.leaf_fields())
    stray = (set(coverage.CHECKS) | set(coverage.NOT_CHECKABLE)) - fields
    assert not stray, f"coverage names fields the spec does not have: {stray}"
    assert not set(coverage.CHECKS) & set(coverage.NOT_CHECKABLE)


def test_the_walk_finds_nested_and_list_fields_and_a_new_field_is_unmapped():
    class Item(BaseModel):
        a: int
        b: dict[str, str] = {}

    class Top(BaseModel):
        x: str
        items: list[Item] = []
        one: Item | None = None

    assert coverage.leaf_fields(Top) == ["x", "items[].a", "items[].b", "one.a", "one.b"]
    assert "nodes[].ip" in coverage.leaf_fields() and "swarm.overlays[].labels" in coverage.leaf_fields()


def test_every_check_named_exists_in_the_verify_suite():
    defined = _defined_checks()
    named = {c for checks in coverage.CHECKS.values() for c in checks}
    assert named - defined == set()


def test_every_check_is_broken_by_the_drift_suite_or_says_why_not():
    defined = _defined_checks()
    broken = {c for d in drift.DRIFTS for c in (d.check, *d.also)}
    broken |= {d.check for r in drift.SECURE_ROUNDS for d in r}
    assert broken - defined == set(), "the drift suite names checks that do not exist"
    assert set(drift.NOT_BROKEN) - defined == set()
    assert not broken & set(drift.NOT_BROKEN), "a check both broken and listed as not broken"
    assert defined - broken - set(drift.NOT_BROKEN) == set(), "checks neither broken nor explained"


def test_docs_checks_page_is_made_from_the_data():
    assert (ROOT / "docs" / "verify-coverage.md").read_text() == checks_doc.render(), \
        "docs/verify-coverage.md is stale: run .venv/bin/python -m tests.live.checks_doc"


def test_drift_table_comes_from_the_recorded_outcomes():
    d = next(x for x in drift.DRIFTS if x.printed)
    key = drift.drift_key(d)
    results = {"ci-trio": {key: {"caught": True, "repaired": "printed command", "when": "x"}},
               "ci-forky": {key: {"caught": False, "repaired": None, "when": "x"}}}
    row = next(line for line in drift.markdown_table(results).splitlines() if d.how in line)
    assert "| yes (ci-trio); NO (ci-forky) | - | yes (ci-trio); NO (ci-forky) |" in row
    owned = next(x for x in drift.DRIFTS if x.owned)
    row = next(line for line in drift.markdown_table({}).splitlines() if owned.how in line)
    assert row.endswith("| not run | not run | - |")


def test_every_not_owned_trio_break_is_repaired_by_a_printed_command():
    assert [d.how for d in drift.DRIFTS if not d.owned and not d.printed] == []


# --- foreign rules -------------------------------------------------------------------------

RULES = [
    "-P INPUT ACCEPT",
    "-A INPUT -j ufw-before-input",
    "-A INPUT -p tcp -m tcp --dport 7946 -j DROP",  # drops gossip from everyone: conflicts
    "-A OUTPUT -p udp -m udp --sport 7946 -j DROP",  # gossip replies: conflicts
    "-A INPUT -s 10.88.0.0/24 -p udp -m udp --dport 4789 -j REJECT --reject-with icmp-port-unreachable",
    "-A INPUT -s 192.168.9.0/24 -p tcp -m tcp --dport 2377 -j DROP",  # outside the lab: user's own
    "-A INPUT -p tcp -m tcp --dport 2377 -j ACCEPT",  # opens 2377 to everyone: conflicts
    "-A INPUT -s 10.88.0.0/24 -p tcp -m tcp --dport 2377 -j ACCEPT",  # the lab subnet: fine
    "-A INPUT -p tcp -m tcp --dport 8080 -j DROP",  # not a swarm port: user's own
    "-A INPUT -p tcp -m multiport --dports 22,2377 -j DROP",  # multiport: conflicts
    "-A ufw-user-input -p tcp -m tcp --dport 2377 -j DROP",  # ufw's own chain: not ours to judge
    '-A INPUT -p tcp -m tcp --dport 7946 -m comment --comment "a b" -j DROP',
]


def test_foreign_rules_that_conflict_with_the_lab_and_only_those():
    found = conflicting_rules(parse_rules(RULES), TRIO)
    assert [r.raw for r, _ in found] == [RULES[i] for i in (2, 3, 4, 6, 9, 11)]
    assert "drops tcp 7946 of the lab subnet 10.88.0.0/24" in found[0][1]
    assert "accepts tcp 2377 from outside the lab subnet" in found[3][1]


def test_the_printed_delete_is_the_rule_quoted():
    assert repairs.delete_rule(RULES[2]) == "iptables -w 90 -t filter -D INPUT -p tcp -m tcp --dport 7946 -j DROP"
    assert repairs.delete_rule(RULES[11]).endswith("--comment 'a b' -j DROP")


# --- printed repairs -----------------------------------------------------------------------

def test_repairs_for_a_failed_check_name_the_node_and_the_command():
    assert repairs.repairs_for("test_nat_docker_chain_hooked[t2]", []) == [
        "repair on t2 (as root): systemctl reset-failed docker.service && systemctl restart docker.service"]
    assert repairs.repairs_for("test_no_foreign_rule_for_the_swarm_ports[t1]", ["iptables -D X"]) == [
        "repair on t1 (as root): iptables -D X"]
    assert repairs.repairs_for("test_daemon_json_is_the_specs[t1]", []) == []


def test_verify_prints_the_recorded_repair_under_its_failed_check(tmp_path, monkeypatch):
    monkeypatch.setenv("SWARMLAB_STATE", str(tmp_path))
    junit = ('<testsuite tests="2" failures="1" errors="0" skipped="0">'
             '<testcase name="test_no_dropin_serves_plaintext_api[t2]"><properties>'
             '<property name="repair" value="rm -f /etc/x.conf &amp;&amp; systemctl daemon-reload"/>'
             '</properties><failure message="drop-ins open it"/></testcase>'
             '<testcase name="test_nat_docker_chain_hooked[t1]"/></testsuite>')

    def fake_pytest(cmd, label, out, sink=None, env=None, cwd=None, **_kw):
        Path(next(a for a in cmd if a.startswith("--junitxml=")).split("=", 1)[1]).write_text(junit)

    monkeypatch.setattr(pipeline, "run_streamed", fake_pytest)
    result = CliRunner().invoke(
        main, ["verify", "--spec", str(ROOT / "tests" / "live" / "labs" / "trio.yaml")])
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    i = lines.index("  failed: test_no_dropin_serves_plaintext_api[t2]: drop-ins open it")
    assert lines[i + 1] == "    repair on t2 (as root): rm -f /etc/x.conf && systemctl daemon-reload"
    assert repairs.printed_repairs(result.stderr, "test_no_dropin_serves_plaintext_api[t2]") == [
        ("t2", "rm -f /etc/x.conf && systemctl daemon-reload")]
    assert repairs.printed_repairs(result.stderr, "test_nat_docker_chain_hooked[t1]") == []


# --- the new checks' expected values, from the spec ---------------------------------------

def _cluster(**spec_parts) -> dict:
    base = {"EncryptionConfig": {"AutoLockManagers": False}, "CAConfig": {"NodeCertExpiry": 7776000 * 10**9},
            "Dispatcher": {"HeartbeatPeriod": 5 * 10**9},
            "Orchestration": {"TaskHistoryRetentionLimit": 10}}
    base.update(spec_parts)
    return {"Spec": base, "DefaultAddrPool": ["10.120.0.0/16"], "SubnetSize": 24}


def test_cluster_options_compared_with_the_spec():
    assert cluster_option_problems(TRIO, _cluster()) == []
    assert cluster_option_problems(TRIO, _cluster(Orchestration={"TaskHistoryRetentionLimit": 3})) == [
        "TaskHistoryRetentionLimit is 3, swarm.task_history_limit is 10"]
    locked = cluster_option_problems(TRIO, _cluster(EncryptionConfig={"AutoLockManagers": True}))
    assert locked == ["autolock is True, swarm.autolock is False"]
    other_pool = dict(_cluster(), DefaultAddrPool=["10.0.0.0/8"])
    assert "address pool ['10.0.0.0/8'] /24" in cluster_option_problems(TRIO, other_pool)[0]


@pytest.mark.parametrize("dns, problem", [
    (["127.0.0.11"], None), ([], "eth0's DNS servers are none, not ['127.0.0.11']"),
    (["10.254.254.53"], "eth0's DNS servers are ['10.254.254.53'], not ['127.0.0.11']"),
])
def test_link_problems_compare_the_dns_servers(dns, problem):
    link = {"file": ["/run/systemd/network/10-netplan-eth0.network"], "state": ["routable (configured)"],
            "address": ["10.88.0.11/24"], "gateway": ["10.88.0.1"],
            "route": ["default via 10.88.0.1 dev eth0 proto static"], "dns": dns}
    got = link_problems(link, "eth0", "netplan", "10.88.0.11/24", "10.88.0.1", ["127.0.0.11"])
    assert got == ([problem] if problem else [])
    assert link_problems(link, "eth0", "netplan", "10.88.0.11/24", "10.88.0.1") == []


def test_every_drift_names_a_check_id_the_suite_reports():
    """Each break's expected failure is a test id the verify suite really produces for that lab
    (a check parametrized per key or module changes its ids: the drift must follow)."""
    import os
    import subprocess

    for lab, rounds in (("trio", drift.ROUNDS), ("forky", drift.ROUNDS), ("secure", drift.SECURE_ROUNDS)):
        path = ROOT / "tests" / "live" / "labs" / f"{lab}.yaml"
        suite = Path(swarmlab.verify.__file__).parent  # the suite under test (checkout or wheel)
        out = subprocess.run([sys.executable, "-m", "pytest", str(suite), "--collect-only",
                              "-q", "-p", "no:cacheprovider"], capture_output=True, text=True,
                             env={**os.environ, "SWARMLAB_SPEC": str(path)})
        ids = {line.split("::")[-1] for line in out.stdout.splitlines() if "::" in line}
        assert ids, out.stdout[-2000:] + out.stderr[-2000:]
        spec = load_spec(path)
        missing = [f for r in rounds for d in r for f in drift.failure_ids(spec, d) if f not in ids]
        assert not missing, f"{lab}: drift failure ids the suite never reports: {missing}"
