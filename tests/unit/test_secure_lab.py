"""Issue #13: the spec's security fields, the lab TLS material (reuse and renewal), the swarm
options and autolock commands, and the CIS checks on recorded facts."""

from __future__ import annotations

import copy
import datetime as dt
import stat
from pathlib import Path

import pytest
import yaml

from swarmlab.cli import pipeline
from swarmlab.control import certs as tls
from swarmlab.model.spec import SpecError, duration_seconds, parse_spec
from swarmlab.provision.autolock import init_args, update_args
from swarmlab.provision.docker import daemon_config
from swarmlab.provision.swarm import init_command
from swarmlab.provision.tls import dropin_text, listener_drift
from swarmlab.verify import cis as security

ROOT = Path(__file__).resolve().parents[2]
SECURE = ROOT / "tests" / "live" / "labs" / "secure.yaml"
LOCAL = ROOT / "labs" / "local.yaml"


def _spec(path: Path = SECURE, **changes):
    data = yaml.safe_load(path.read_text())
    for dotted, value in changes.items():
        target = data
        *parents, last = dotted.split(".")
        for part in parents:
            target = target.setdefault(part, {})
        target[last] = value
    return parse_spec(yaml.safe_dump(data))


def _problems(path: Path = SECURE, **changes) -> list[str]:
    with pytest.raises(SpecError) as info:
        _spec(path, **changes)
    return info.value.problems


# --- spec ---------------------------------------------------------------------------------

def test_secure_lab_spec_is_valid_and_tls_is_accepted():
    spec = _spec()
    assert spec.docker.tls and spec.swarm.autolock and spec.security.profile == "hardened"


def test_defaults_keep_todays_labs():
    spec = _spec(LOCAL)
    assert spec.security.profile == "lab" and not spec.swarm.autolock and not spec.docker.tls
    assert "icc" not in daemon_config(spec)


def test_hardened_sets_the_cis_daemon_options():
    cfg = daemon_config(_spec())
    assert cfg["icc"] is False and cfg["no-new-privileges"] is True and cfg["userland-proxy"] is False


@pytest.mark.parametrize("changes, needle", [
    ({"swarm.cert_expiry": "90 days"}, "swarm.cert_expiry: '90 days' is not a duration"),
    ({"swarm.cert_expiry": "30m"}, "swarm.cert_expiry: '30m' is shorter than 3600 s"),
    ({"swarm.dispatcher_heartbeat": "5x"}, "swarm.dispatcher_heartbeat: '5x' is not a duration"),
    ({"swarm.dispatcher_heartbeat": "0s"}, "swarm.dispatcher_heartbeat: '0s' is shorter"),
    ({"swarm.task_history_limit": -1}, "swarm.task_history_limit"),
    ({"swarm.data_path_addr": "eth0; reboot"}, "swarm.data_path_addr: 'eth0; reboot' is not an interface"),
    ({"swarm.autolock": False}, "security.profile: hardened needs swarm.autolock: true"),
    ({"security.profile": "paranoid"}, "security.profile"),
    ({"docker.daemon": {"icc": True}}, "docker.daemon.icc: True contradicts security.profile: hardened"),
    ({"swarm.overlays": [{"name": "plain", "subnet": "10.129.2.0/24"}]},
     "swarm.overlays[0].encrypted: false under security.profile: hardened"),
])
def test_new_fields_are_validated(changes, needle):
    assert any(needle in p for p in _problems(**changes)), _problems(**changes)


def test_rotate_needs_autolock():
    problems = _problems(LOCAL, **{"swarm.rotate_unlock_key": True})
    assert any("swarm.rotate_unlock_key: true needs swarm.autolock: true" in p for p in problems)


def test_durations():
    assert duration_seconds("2160h") == 2160 * 3600
    assert duration_seconds("1h30m5s") == 5405
    assert duration_seconds("") is None and duration_seconds("5d") is None


# --- certificates -------------------------------------------------------------------------

def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_certificates_are_reused(tmp_path):
    spec = _spec()
    node = spec.nodes[0]
    first = tls.ensure_server_cert(tmp_path, spec.name, node)
    before = {p: p.read_bytes() for p in (first.ca, first.cert, first.key)}
    again = tls.ensure_server_cert(tmp_path, spec.name, node)
    assert {p: p.read_bytes() for p in (again.ca, again.cert, again.key)} == before
    assert _mode(tmp_path / "ca-key.pem") == 0o600 and _mode(first.key) == 0o600
    from cryptography import x509
    cert = x509.load_pem_x509_certificate(first.cert.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [node.name]
    assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == [node.ip]


def test_server_certificate_renewed_near_expiry(tmp_path):
    spec = _spec()
    node = spec.nodes[0]
    files = tls.ensure_server_cert(tmp_path, spec.name, node)
    old = files.cert.read_bytes()
    ca = (tmp_path / "ca.pem").read_bytes()
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=tls.LEAF_DAYS - 10)
    tls.ensure_server_cert(tmp_path, spec.name, node, now=later)
    assert files.cert.read_bytes() != old, "a certificate 10 days from expiry was reused"
    assert (tmp_path / "ca.pem").read_bytes() == ca, "the CA (years left) was replaced"


def test_server_certificate_renewed_when_the_ip_changes(tmp_path):
    spec = _spec()
    node = spec.nodes[0]
    files = tls.ensure_server_cert(tmp_path, spec.name, node)
    old = files.cert.read_bytes()
    moved = node.model_copy(update={"ip": "10.98.0.42"})
    tls.ensure_server_cert(tmp_path, spec.name, moved)
    assert files.cert.read_bytes() != old


def test_new_ca_reissues_leaves(tmp_path):
    spec = _spec()
    node = spec.nodes[0]
    files = tls.ensure_server_cert(tmp_path, spec.name, node)
    old = files.cert.read_bytes()
    (tmp_path / "ca-key.pem").unlink()  # CA key lost: a new CA, every certificate re-issued
    tls.ensure_server_cert(tmp_path, spec.name, node)
    assert files.cert.read_bytes() != old


def test_contexts_written_once(tmp_path, monkeypatch):
    monkeypatch.setenv("SWARMLAB_STATE", str(tmp_path))
    spec = _spec()
    config = tls.write_contexts(spec)
    metas = sorted(config.glob("contexts/meta/*/meta.json"))
    assert len(metas) == len(spec.nodes)
    stamp = [m.stat().st_mtime_ns for m in metas]
    tls.write_contexts(spec)
    assert [m.stat().st_mtime_ns for m in metas] == stamp
    keys = list(config.glob("contexts/tls/*/docker/key.pem"))
    assert keys and all(_mode(k) == 0o600 for k in keys)


# --- deploy commands ----------------------------------------------------------------------

def test_init_command_with_autolock_hides_its_output():
    cmd = init_command(_spec(), "10.98.0.11")
    assert "--autolock" in cmd and cmd.endswith(">/dev/null")
    assert "--cert-expiry 720h" in cmd and "--task-history-limit 3" in cmd


def test_swarm_update_only_when_an_option_differs():
    spec = _spec()
    same = {"EncryptionConfig": {"AutoLockManagers": True}, "CAConfig": {"NodeCertExpiry": 720 * 3600 * 10**9},
            "Dispatcher": {"HeartbeatPeriod": 10 * 10**9}, "Orchestration": {"TaskHistoryRetentionLimit": 3}}
    assert update_args(spec, same) == []
    docker_defaults = {"EncryptionConfig": {"AutoLockManagers": False},
                       "CAConfig": {"NodeCertExpiry": 7776000000000000},
                       "Dispatcher": {"HeartbeatPeriod": 5000000000},
                       "Orchestration": {"TaskHistoryRetentionLimit": 5}}
    assert update_args(spec, docker_defaults) == [
        "--autolock=true", "--cert-expiry", "720h", "--dispatcher-heartbeat", "10s",
        "--task-history-limit", "3"]
    assert "--data-path-addr" in init_args(_spec(**{"swarm.data_path_addr": "eth0"}))


def test_dropin_and_listener_drift():
    text = dropin_text("/usr/sbin/dockerd -H fd:// $DOCKER_OPTS", "10.98.0.11")
    assert "ExecStart=\nExecStart=/usr/sbin/dockerd -H fd:// $DOCKER_OPTS -H tcp://10.98.0.11:2376 --tlsverify" in text
    running = "/usr/sbin/dockerd -H fd:// -H tcp://10.98.0.11:2376 --tlsverify --tlscacert=/etc/docker/tls/ca.pem " \
              "--tlscert=/etc/docker/tls/server-cert.pem --tlskey=/etc/docker/tls/server-key.pem".split()
    assert listener_drift(running, "10.98.0.11") is None
    assert listener_drift(running, "10.98.0.12")
    assert listener_drift(running, None) == "dockerd still serves the TLS listener (docker.tls is off)"
    assert listener_drift(["/usr/sbin/dockerd", "-H", "fd://"], None) is None
    assert listener_drift(["/usr/sbin/dockerd", "-H", "tcp://127.0.0.1:2375"], None) is None  # not ours


# --- CIS checks ---------------------------------------------------------------------------

INFO = {
    "ServerVersion": "28.5.1", "Driver": "overlay2", "LoggingDriver": "json-file", "LiveRestoreEnabled": False,
    "SecurityOptions": ["name=seccomp,profile=builtin"], "ExperimentalBuild": False,
    "RegistryConfig": {"InsecureRegistryCIDRs": ["127.0.0.0/8", "::1/128"], "IndexConfigs": {}},
    "Plugins": {"Authorization": None},
    "Swarm": {"Managers": 1, "Cluster": {"Spec": {"EncryptionConfig": {"AutoLockManagers": False},
                                                  "CAConfig": {"NodeCertExpiry": 7776000000000000}}}},
}
STATS = {"/usr/lib/systemd/system/docker.service": ("root:root", 0o644),
         "/usr/lib/systemd/system/docker.socket": ("root:root", 0o644),
         "/etc/docker": ("root:root", 0o755), "/etc/docker/daemon.json": ("root:root", 0o644),
         "/run/docker.sock": ("root:docker", 0o660)}


def _facts(**over) -> security.Facts:
    f = security.Facts(
        info=copy.deepcopy(INFO), daemon_json={"log-driver": "json-file", "log-opts": {"max-size": "10m"}},
        args=["/usr/sbin/dockerd", "-H", "fd://"], stats=dict(STATS),
        units={"docker.service": "/usr/lib/systemd/system/docker.service",
               "docker.socket": "/usr/lib/systemd/system/docker.socket"},
        bridge_options={"com.docker.network.bridge.enable_icc": "true"},
        listeners_2377=["10.77.0.11:2377"],
        overlays=[{"Name": "ingress", "Ingress": True, "Scope": "swarm", "Options": {}},
                  {"Name": "labnet", "Scope": "swarm", "Options": {}},
                  {"Name": "secure", "Scope": "swarm", "Options": {"encrypted": ""}}],
        ca_days_left=7000.0, user="root", kernel={"esp4": "missing"},
        addresses=[{"ifname": "lo", "addr_info": [{"local": "127.0.0.1"}]},
                   {"ifname": "eth0", "addr_info": [{"local": "10.77.0.11"}]}],
        read=set(security.READS),
    )
    for k, v in over.items():
        setattr(f, k, v)
    return f


def _status(spec, facts) -> dict[str, str]:
    return {x.cis: x.status for x in security.evaluate_all(spec, spec.nodes[0], facts)}


def test_lab_profile_reports_lab_choices_not_failures():
    spec = _spec(LOCAL)
    status = _status(spec, _facts())
    assert not [c for c, s in status.items() if s == security.FAIL], status
    for cis in ("2.2", "2.9", "2.12", "2.13", "2.14", "2.16", "7.3", "7.5"):
        assert status[cis] == security.LAB, cis  # the measured docker-bench warnings
    finding = security.evaluate("2.2", spec, spec.nodes[0], _facts())
    assert finding.spec_field == "docker.daemon.icc"


TLS_ARGS = ["/usr/sbin/dockerd", "-H", "fd://", "-H", "tcp://10.98.0.11:2376", "--tlsverify",
            "--tlscacert=/etc/docker/tls/ca.pem", "--tlscert=/etc/docker/tls/server-cert.pem",
            "--tlskey=/etc/docker/tls/server-key.pem"]
TLS_STATS = {"/etc/docker/tls/ca.pem": ("root:root", 0o444),
             "/etc/docker/tls/server-cert.pem": ("root:root", 0o444),
             "/etc/docker/tls/server-key.pem": ("root:root", 0o400)}


def _hardened_facts() -> security.Facts:
    """A node of the secure lab where every requirement of `hardened` is met."""
    f = _facts(bridge_options={"com.docker.network.bridge.enable_icc": "false"},
               daemon_json={"icc": False, "no-new-privileges": True, "userland-proxy": False,
                            "log-opts": {"max-size": "10m"},
                            "default-ulimits": {"nofile": {"Name": "nofile", "Hard": 8192, "Soft": 1024}}},
               args=list(TLS_ARGS), stats={**STATS, **TLS_STATS})
    f.info["SecurityOptions"] = ["name=seccomp,profile=builtin", "name=userns"]
    f.info["Swarm"]["Managers"] = 3
    f.info["Swarm"]["Cluster"]["Spec"]["EncryptionConfig"]["AutoLockManagers"] = True
    f.key_age_days = 0.1
    f.listeners_2377 = ["10.98.0.11:2377"]
    f.addresses[1]["addr_info"][0]["local"] = "10.98.0.11"
    f.overlays = [{"Name": "ingress", "Ingress": True, "Scope": "swarm", "Options": {}},
                  {"Name": "securenet", "Scope": "swarm", "Options": {"encrypted": ""}}]
    return f


def test_hardened_profile_requires_the_daemon_options():
    spec = _spec()
    status = _status(spec, _facts())
    for cis in ("2.2", "2.8", "2.9", "2.14", "2.16", "7.5"):
        assert status[cis] == security.FAIL, cis
    status = _status(spec, _hardened_facts())
    assert [c for c, s in status.items() if s == security.FAIL] == [], status
    assert [c for c, s in status.items() if s == security.LAB] == ["2.1", "2.12", "2.13", "2.15", "7.3", "7.9"]


def test_tls_lab_fails_tls_checks_when_dockerd_serves_no_tls():
    """docker.tls on, dockerd without its TCP listener and files: 2.7 and 3.9-3.14 fail (they
    passed as "no TCP listener" before)."""
    spec = _spec()
    f = _hardened_facts()
    f.args = ["/usr/sbin/dockerd", "-H", "fd://"]
    status = _status(spec, f)
    assert [c for c in ("2.7", "3.9", "3.10", "3.11", "3.12", "3.13", "3.14")
            if status[c] != security.FAIL] == []


def test_ingress_encryption_depends_on_esp_on_the_node():
    """7.3's ingress case reads the kernel: no ESP is a lab necessity; ESP there (loaded or
    loadable) makes an unencrypted ingress a lab choice, a failure under `hardened`."""
    hardened, lab = _spec(), _spec(LOCAL)
    f = _hardened_facts()
    assert security.evaluate("7.3", hardened, hardened.nodes[0], f).status == security.LAB
    f.kernel = {"esp4": "loadable"}
    got = security.evaluate("7.3", hardened, hardened.nodes[0], f)
    assert (got.status, got.spec_field) == (security.FAIL, "security.profile")
    assert "ESP is loadable" in got.detail
    f = _facts(kernel={"esp4": "loaded"})
    got = security.evaluate("7.3", lab, lab.nodes[0], f)
    assert got.status == security.LAB and "ESP is loaded" in got.detail
    f = _hardened_facts()
    f.overlays = f.overlays[:1]  # the spec's securenet is gone
    got = security.evaluate("7.3", hardened, hardened.nodes[0], f)
    assert got.status == security.FAIL and "securenet" in got.detail


def test_daemon_user_and_planes_come_from_the_node():
    spec = _spec(LOCAL)
    node = spec.nodes[0]
    assert security.evaluate("2.1", spec, node, _facts(user="dockremap")).status == security.PASS
    assert security.evaluate("2.1", spec, node, _facts()).status == security.LAB
    f = _facts()
    f.addresses.append({"ifname": "eth1", "addr_info": [{"local": "192.168.9.2"}]})
    got = security.evaluate("7.9", spec, node, f)
    assert got.status == security.LAB and "eth1" in got.detail
    hardened = _spec(**{"nodes": [{"name": "s1", "distro": "debian-13", "ip": "10.98.0.11", "role": "manager"}]})
    f = _hardened_facts()
    f.addresses.append({"ifname": "eth1", "addr_info": [{"local": "192.168.9.2"}]})
    assert security.evaluate("7.9", hardened, hardened.nodes[0], f).status == security.FAIL
    f.addresses = [{"ifname": "eth1", "addr_info": [{"local": "10.1.1.1"}]}]
    got = security.evaluate("7.9", hardened, hardened.nodes[0], f)
    assert got.status == security.FAIL and "no interface carries" in got.detail
    with_dp = _spec(LOCAL, **{"swarm.data_path_addr": "eth1"})
    f = _facts()
    got = security.evaluate("7.9", with_dp, with_dp.nodes[0], f)
    assert got.status == security.FAIL and "on no interface" in got.detail
    f.addresses.append({"ifname": "eth1", "addr_info": [{"local": "192.168.9.2"}]})
    assert security.evaluate("7.9", with_dp, with_dp.nodes[0], f).status == security.PASS


def test_tcp_listener_without_tls_fails_and_file_modes_are_checked():
    spec = _spec(LOCAL)
    f = _facts(args=["dockerd", "-H", "fd://", "-H", "tcp://0.0.0.0:2375"])
    assert security.evaluate("2.7", spec, spec.nodes[0], f).status == security.FAIL
    f = _facts(args=["dockerd", "-H", "tcp://10.77.0.11:2376", "--tlsverify", "--tlscacert=/c",
                     "--tlscert=/s", "--tlskey=/k"])
    f.stats.update({"/c": ("root:root", 0o444), "/s": ("root:root", 0o444), "/k": ("root:root", 0o644)})
    assert security.evaluate("2.7", spec, spec.nodes[0], f).status == security.PASS
    assert security.evaluate("3.14", spec, spec.nodes[0], f).status == security.FAIL
    f.stats["/run/docker.sock"] = ("root:root", 0o666)
    assert security.evaluate("3.15", spec, spec.nodes[0], f).status == security.FAIL
    assert security.evaluate("3.16", spec, spec.nodes[0], f).status == security.FAIL


def test_wildcard_swarm_listener_and_secret_env_fail():
    spec = _spec(LOCAL)
    f = _facts(listeners_2377=["*:2377"],
               services=[{"Spec": {"Name": "db", "TaskTemplate": {"ContainerSpec": {"Env": ["DB_PASSWORD=x"]}}}}])
    assert security.evaluate("7.2", spec, spec.nodes[0], f).status == security.FAIL
    assert security.evaluate("7.4", spec, spec.nodes[0], f).status == security.FAIL


def test_summary_line_counts_security(tmp_path):
    v = pipeline.VerifyResult(passed=5, failed=0, skipped=0, seconds=1, skip_reasons=[], report=tmp_path,
                              security={"s1": {"pass": 3, "lab choice": 1, "fail": 0},
                                        "s2": {"pass": 2, "lab choice": 0, "fail": 1}})
    assert pipeline.summary_line(None, v, 2).endswith("skipped=0 security=5/1/1")
    xml = tmp_path / "r.xml"
    xml.write_text('<testsuite tests="1"><testcase name="t"><properties>'
                   '<property name="security" value="lab choice"/><property name="security_node" value="s1"/>'
                   '<property name="security_finding" value="s1 CIS 2.2 lab choice: x"/>'
                   '</properties></testcase></testsuite>')
    counts: dict = {}
    findings: list = []
    pipeline._add_security(xml, counts, findings)
    assert counts == {"s1": {"pass": 0, "lab choice": 1, "fail": 0}} and findings



def test_hardened_report_lists_each_lab_necessity_once_with_its_nodes(tmp_path):
    findings = ["s1 CIS 2.13 lab choice: logs — no log server (spec: docker.log_driver)",
                "s2 CIS 2.13 lab choice: logs — no log server (spec: docker.log_driver)",
                "s1 CIS 7.3 lab choice: overlays — ingress: no ESP", "s1 CIS 2.2 pass: icc off"]
    v = pipeline.VerifyResult(passed=4, failed=0, skipped=0, seconds=1, skip_reasons=[], report=tmp_path,
                              security={"s1": {"pass": 1, "lab choice": 2, "fail": 0},
                                        "s2": {"pass": 0, "lab choice": 1, "fail": 0}},
                              security_findings=findings)
    lab = pipeline.security_report(v)
    assert not any("lab necessities" in line for line in lab)
    hardened = pipeline.security_report(v, hardened=True)
    assert hardened[:len(lab)] == lab
    assert hardened[len(lab) + 1].startswith("lab necessities under security.profile: hardened")
    assert hardened[len(lab) + 2:] == [
        "  CIS 2.13: logs — no log server (spec: docker.log_driver) [s1, s2]",
        "  CIS 7.3: overlays — ingress: no ESP [s1]"]


@pytest.mark.parametrize(("cis", "key", "want", "good", "otherwise"), [
    ("2.14", "no-new-privileges", True, "no-new-privileges on", "containers may gain privileges (setuid)"),
    ("2.16", "userland-proxy", False, "userland-proxy off (published ports by iptables only)",
     "docker-proxy runs for published ports"),
])
def test_daemon_option_checks(cis, key, want, good, otherwise):
    spec = _spec(LOCAL)
    lab = security.evaluate(cis, spec, spec.nodes[0], _facts())
    assert (lab.status, lab.detail, lab.spec_field) == (security.LAB, otherwise, f"docker.daemon.{key}")
    on = security.evaluate(cis, spec, spec.nodes[0], _facts(daemon_json={key: want}))
    assert (on.status, on.detail, on.spec_field) == (security.PASS, good, None)
    other = security.evaluate(cis, spec, spec.nodes[0], _facts(args=["dockerd", f"--{key}={str(not want).lower()}"]))
    assert other.status == security.LAB
