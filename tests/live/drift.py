"""The drift suite: break exactly the state a verification check reads, on a live lab node;
`swarmlab verify` must fail and name that check; then either a re-run of the deploy repairs it
(state the deploy owns), or verify printed, under the failed check, the command that repairs it
(Docker's own rules, a user's conflicting rule or drop-in): the test runs that printed command
as root on the node, and the check must pass again.

Breaks are grouped in rounds of independent ones (different nodes or different checks), so
one verify run and one deploy serve several. Each run records what happened per break (caught,
repaired by the deploy, repaired by the printed command) in docs/drift-results.json and
rewrites docs/verify-coverage.md, whose drift table is made from that record.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from swarmlab.model.spec import LabSpec
from swarmlab.verify.repairs import DOCKER_RESTART as RESTART

ALICE = "cd / && sudo -u alice env XDG_RUNTIME_DIR=/run/user/$(id -u alice) "


@dataclass(frozen=True)
class Drift:
    """One breakage: the check that must catch it, where, how, and who repairs it."""

    check: str  # test function name in swarmlab/verify
    node: str  # "m" (first manager), "w1", "w2" (workers)
    how: str  # what the break does, for people
    shell: str  # root shell on the node that breaks it ({subnet}, {gateway}, {ip} filled in)
    owned: bool = True  # a deploy re-run repairs it
    printed: bool = False  # not owned: verify prints the repair command under a failed check
    restore: str = ""  # not owned: root shell that puts it back (when nothing is printed, or
    # when the run fails midway)
    param: str = ""  # the check's parameter after the node id (rootless user)
    failure: str = ""  # the failed test id when it is not check[node] ({node} filled in)
    also: tuple[str, ...] = ()  # further checks (on the same node) that must fail too


ROUNDS: list[list[Drift]] = [
    [  # Docker daemon and its configuration
        Drift("test_docker_service_running_and_enabled", "w1", "`systemctl disable docker`",
              "systemctl disable docker.service 2>/dev/null"),
        Drift("test_daemon_json_is_the_specs", "m",
              "daemon.json set to `log-driver: local` and docker restarted (the repair must restart it)",
              "sed -i 's/\"json-file\"/\"local\"/' /etc/docker/daemon.json && " + RESTART),
        Drift("test_running_daemon_uses_daemon_json", "w2",
              "daemon.json edited (`log-driver: local`), docker not restarted",
              "sed -i 's/\"json-file\"/\"local\"/' /etc/docker/daemon.json && touch /etc/docker/daemon.json"),
        Drift("test_no_plaintext_docker_api", "w1",
              "a drop-in adds `-H tcp://127.0.0.1:2375` to dockerd",
              "mkdir -p /etc/systemd/system/docker.service.d && printf '[Service]\\nEnvironment="
              "\"DOCKER_OPTS=-H tcp://127.0.0.1:2375\"\\n' > /etc/systemd/system/docker.service.d/tcp.conf"
              " && systemctl daemon-reload && " + RESTART,
              owned=False, printed=True, also=("test_no_dropin_serves_plaintext_api",),
              restore="rm -f /etc/systemd/system/docker.service.d/tcp.conf && systemctl daemon-reload"
                      " && " + RESTART),
        Drift("test_docker_users_in_the_docker_group", "w2", "the docker.users account `lab` "
              "removed from the docker group", "gpasswd -d lab docker >/dev/null"),
    ],
    [  # host network and kernel settings
        Drift("test_netplan_file", "w1", "netplan file mode 0644", "chmod 0644 /etc/netplan/60-swarmlab.yaml"),
        Drift("test_lab_address_configured_by_the_deploy", "w2",
              "networkd's generated config for the NIC changed behind netplan (another address)",
              "sed -i 's|^Address=.*|Address=10.254.254.254/24|' /run/systemd/network/10-netplan-eth0.network"),
        Drift("test_default_route_via_lab_gateway", "m", "the static default route deleted",
              "ip route del default via {gateway} proto static"),
        Drift("test_lab_dns_servers_configured_by_the_deploy", "m",
              "networkd's generated config for the NIC given another DNS server behind netplan",
              "sed -i 's|^DNS=.*|DNS=10.254.254.53|' /run/systemd/network/10-netplan-eth0.network"),
        Drift("test_sysctls_set_and_persisted", "m", "/etc/sysctl.d/99-swarmlab.conf removed",
              "rm /etc/sysctl.d/99-swarmlab.conf",
              failure="test_sysctls_set_and_persisted[{node}-net.ipv4.ip_forward]"),  # one id per key
        Drift("test_kernel_modules_loaded_at_boot", "w2", "/etc/modules-load.d/swarmlab.conf removed",
              "rm /etc/modules-load.d/swarmlab.conf",
              failure="test_kernel_modules_loaded_at_boot[{node}-overlay]"),  # one id per module
        Drift("test_bridge_nf_call_iptables", "w1", "`sysctl net.bridge.bridge-nf-call-iptables=0`",
              "sysctl -qw net.bridge.bridge-nf-call-iptables=0"),
    ],
    [  # firewall
        Drift("test_swarm_ports_closed_to_outside_the_lab_subnet", "m", "`ufw default allow incoming`",
              "ufw default allow incoming >/dev/null"),
        Drift("test_firewall_rules_are_exactly_the_labs", "w1", "`ufw allow 2377/tcp` (from anywhere)",
              "ufw allow 2377/tcp >/dev/null"),
        Drift("test_firewall_active_at_boot", "w2", "`ufw disable`", "ufw disable >/dev/null"),
    ],
    [  # firewall, continued
        Drift("test_swarm_ports_closed_to_outside_the_lab_subnet", "w2",
              "an `iptables -I INPUT -p tcp --dport 2377 -j ACCEPT` before ufw's chains",
              "iptables -I INPUT -p tcp --dport 2377 -j ACCEPT", owned=False, printed=True,
              also=("test_no_foreign_rule_for_the_swarm_ports",),
              restore="iptables -D INPUT -p tcp --dport 2377 -j ACCEPT"),
        Drift("test_swarm_ports_reachable_from_another_lab_node", "m",
              "the ufw rule for 2377/tcp from the lab subnet deleted",
              "ufw delete allow from {subnet} to any port 2377 proto tcp >/dev/null"),
        Drift("test_overlay_traffic_across_nodes_by_ip_and_name", "w1",
              "the ufw rule for VXLAN 4789/udp from the lab subnet deleted",
              "ufw delete allow from {subnet} to any port 4789 proto udp >/dev/null"),
    ],
    [  # Docker's own NAT and filter rules (Docker writes them: verify prints a docker restart)
        Drift("test_nat_masquerade_for_docker0_subnet", "m", "docker0's MASQUERADE rule deleted",
              "iptables -t nat -D POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE",
              owned=False, printed=True, restore=RESTART),
        Drift("test_docker0_bridge_with_address", "m", "docker0's address flushed",
              "ip addr flush dev docker0", owned=False, printed=True, restore=RESTART),
        Drift("test_nat_docker_chain_hooked", "w1", "nat PREROUTING's jump to DOCKER deleted",
              "iptables -t nat -D PREROUTING -m addrtype --dst-type LOCAL -j DOCKER",
              owned=False, printed=True, restore=RESTART),
        Drift("test_forward_passes_docker_user", "w2", "FORWARD's jump to DOCKER-USER deleted",
              "iptables -D FORWARD -j DOCKER-USER", owned=False, printed=True, restore=RESTART),
    ],
    [  # docker_gwbridge and the swarm's gossip (Docker's rules; raw iptables)
        Drift("test_docker_gwbridge_with_masquerade", "w1", "docker_gwbridge's MASQUERADE rule deleted",
              "s=$(docker network inspect docker_gwbridge -f '{{{{(index .IPAM.Config 0).Subnet}}}}') && "
              "iptables -t nat -D POSTROUTING -s $s ! -o docker_gwbridge -j MASQUERADE",
              owned=False, printed=True, restore=RESTART),
        Drift("test_host_mode_port_with_dnsrr_service", "w2",
              "gossip (7946 tcp+udp) dropped in and out by raw iptables rules: the node's task never "
              "reaches the others' DNS",
              "for c in INPUT OUTPUT; do for p in tcp udp; do iptables -I $c -p $p --dport 7946 -j DROP;"
              " iptables -I $c -p $p --sport 7946 -j DROP; done; done",
              owned=False, printed=True, also=("test_no_foreign_rule_for_the_swarm_ports",),
              restore="for c in INPUT OUTPUT; do for p in tcp udp; do iptables -D $c -p $p --dport 7946 -j DROP;"
                      " iptables -D $c -p $p --sport 7946 -j DROP; done; done"),
    ],
    [  # swarm membership and networks
        Drift("test_swarm_active_in_the_labs_cluster", "w1", "the worker left the swarm",
              "docker swarm leave --force >/dev/null"),
        Drift("test_spec_overlays_exist", "m", "the spec's first overlay removed",
              "docker network rm {overlay} >/dev/null"),
        Drift("test_ingress_network_exists", "m", "the ingress network removed",
              "echo y | docker network rm ingress >/dev/null"),
    ],
    [  # swarm node spec and the cluster's options
        Drift("test_manager_sees_every_spec_node_ready_with_its_role", "m", "node label `zone` removed",
              "docker node update --label-rm zone $(docker info -f '{{{{.Swarm.NodeID}}}}') >/dev/null"),
        Drift("test_swarm_cluster_options_are_the_specs", "m",
              "`docker swarm update --task-history-limit 3` (the spec sets 10)",
              "docker swarm update --task-history-limit 3 >/dev/null"),
    ],
    [
        Drift("test_manager_sees_every_spec_node_ready_with_its_role", "m", "a worker promoted to manager",
              "docker node promote {w2} >/dev/null"),
    ],
    [  # a daemon.json dockerd refuses under swarm: systemd gives up ("start request repeated too
        # quickly"), and a plain start is refused until `systemctl reset-failed`
        Drift("test_docker_service_running_and_enabled", "w1",
              "`live-restore: true` in daemon.json, docker restarted until systemd gave up (unit failed)",
              "sed -i 's/\"live-restore\": false/\"live-restore\": true/' /etc/docker/daemon.json; "
              "systemctl restart docker 2>/dev/null; for i in $(seq 30); do "
              "systemctl is-failed -q docker.service && break; sleep 1; done; systemctl is-failed docker.service"),
    ],
    [  # rootless Docker (alice)
        Drift("test_user_unit_active_and_enabled", "m", "alice's daemon stopped",
              ALICE + "systemctl --user stop docker.service", param="alice"),
        Drift("test_user_unit_active_and_enabled", "w1", "alice no longer lingers",
              "loginctl disable-linger alice", param="alice"),
        Drift("test_docker_group_only_when_listed", "w2", "alice added to the docker group",
              "usermod -aG docker alice", param="alice"),
    ],
    [
        Drift("test_login_shell_and_context_point_at_the_users_daemon", "w1",
              "alice's `rootless` docker context removed",
              ALICE + "docker context rm -f rootless >/dev/null", param="alice"),
        Drift("test_container_runs_under_subordinate_ids", "w2", "alice's /etc/subuid range removed",
              "sed -i '/^alice:/d' /etc/subuid", param="alice"),
    ],
]

DRIFTS = [d for r in ROUNDS for d in r]

# checks no drift round breaks, with the reason (docs/verify-coverage.md lists them; a unit test asks
# that every check in swarmlab/verify is broken in a round or named here)
_SWARM_LISTENERS = ("the swarm's own listener: breaking it means leaving the swarm (the "
                    "`swarm leave` round covers that)")
_WORKLOAD = ("a workload the check starts itself; the rules it relies on are broken in the "
             "Docker-rules rounds")
_ROOTLESSKIT = "a property of rootlesskit itself, not of state the deploy writes"
_THREE_MANAGERS = "needs 3 managers (the ci-ha lab takes a manager down)"
_SECURE_LAB = "TLS labs only (ci-secure); its drift rounds break the listener, not the refusals"
_ON_VMS = ("skipped in node containers here (the kernel has no IP_VS/ESP); broken on the VM lab by "
           "tests/vm/test_vm_lab.py (the published port dropped in DOCKER-USER, VXLAN from a peer "
           "dropped, IPsec policies flushed)")
NOT_BROKEN = {
    "test_required_kernel_feature": "overlay/vxlan are kernel features of this machine; a node "
    "container cannot unload them",
    "test_encrypted_overlay_traffic_across_nodes": "skipped here: the kernel has no ESP",
    "test_routing_mesh_answers_on_every_node": _ON_VMS,
    "test_vip_balances_over_tasks_on_two_nodes": _ON_VMS,
    "test_encrypted_overlay_is_esp_on_the_wire": _ON_VMS,
    "test_managers_share_one_cluster_id": _THREE_MANAGERS,
    "test_managers_reachable": _THREE_MANAGERS,
    "test_cluster_port_listening_on_managers": _SWARM_LISTENERS,
    "test_gossip_ports_listening": _SWARM_LISTENERS,
    "test_vxlan_port_bound_where_overlays_run": _SWARM_LISTENERS,
    "test_docker_server_answers": "docker stopped: covered by the trio lab's worker-down test",
    "test_buildx_plugin": "a plugin package removed is re-installed by the package step; the "
    "removal takes the package source",
    "test_compose_v2_plugin": "as buildx: a package the package step installs",
    "test_stack_deploy_with_secret": _WORKLOAD,
    "test_published_port_dnat_and_reachable_from_another_node": _WORKLOAD,
    "test_daemon_is_rootless_and_outside_the_swarm": _ROOTLESSKIT,
    "test_container_root_is_the_user_on_the_host": _ROOTLESSKIT,
    "test_docker_api_on_2376_refuses_plaintext": _SECURE_LAB,
    "test_docker_api_over_tls_refuses_a_client_without_certificate": _SECURE_LAB,
    "test_tls_listener_only_on_the_lab_address": _SECURE_LAB,
    "test_docker_packages_from_the_specs_source": "replacing the engine package with another "
    "source's takes the package source and minutes per node; the deploy installs the spec's",
    "test_lab_address_on_the_specs_interface": "a node container has one NIC: the lab address "
    "cannot move to another",
    "test_node_runs_the_specs_distro": "the node's OS, not state the deploy writes (the deploy "
    "refuses a host whose /etc/os-release is not a supported distro)",
}


# the secure lab only (3 managers: "m", "m2", "m3"; TLS, autolock, hardened)
DOCKER_UNIT_DIR = "/etc/systemd/system/docker.service.d"
SECURE_ROUNDS: list[list[Drift]] = [
    [
        Drift("test_cis_daemon_and_files", "m", "the TLS server key made 0644 (CIS 3.14)",
              "chmod 0644 /etc/docker/tls/server-key.pem", failure="test_cis_daemon_and_files[{node}-3.14]"),
        Drift("test_cis_daemon_and_files", "m2",
              "`icc: true` in daemon.json and docker restarted: the manager comes back locked (CIS 2.2)",
              "sed -i 's/\"icc\": false/\"icc\": true/' /etc/docker/daemon.json && " + RESTART,
              failure="test_cis_daemon_and_files[{node}-2.2]"),
        Drift("test_cis_daemon_and_files", "m3", "docker.sock made 0666 (CIS 3.16)",
              "chmod 0666 /run/docker.sock", failure="test_cis_daemon_and_files[{node}-3.16]",
              owned=False, restore="chmod 0660 /run/docker.sock"),
    ],
    [
        Drift("test_cis_swarm", "m", "`docker swarm update --autolock=false` (CIS 7.5)",
              "docker swarm update --autolock=false >/dev/null", failure="test_cis_swarm[{node}-7.5]"),
        Drift("test_docker_api_over_tls_answers_a_lab_client", "m3",
              "the TLS drop-in removed and docker restarted (no listener; the manager is locked)",
              f"rm -f {DOCKER_UNIT_DIR}/swarmlab-tls.conf && systemctl daemon-reload && "
              + RESTART),
        Drift("test_cis_daemon_and_files", "m2",
              "the TLS drop-in removed and docker restarted: no TLS listener on a docker.tls lab (CIS 2.7)",
              f"rm -f {DOCKER_UNIT_DIR}/swarmlab-tls.conf && systemctl daemon-reload && "
              + RESTART, failure="test_cis_daemon_and_files[{node}-2.7]"),
        Drift("test_cis_swarm", "m", "the encrypted spec overlay removed (CIS 7.3)",
              "docker network rm securenet >/dev/null", failure="test_cis_swarm[{node}-7.3]"),
    ],
]


def node_name(spec: LabSpec, role: str) -> str:
    if role in ("m2", "m3"):  # further managers (the secure lab has three and no workers)
        return spec.managers[int(role[1]) - 1].name
    if role == "m":
        return spec.first_manager.name
    return spec.workers[int(role[1]) - 1].name  # w1, w2


def expand(spec: LabSpec, shell: str) -> str:
    w2 = spec.workers[1].name if len(spec.workers) > 1 else ""
    return shell.format(subnet=spec.network.subnet, gateway=spec.network.gateway,
                        w2=w2, overlay=spec.swarm.overlays[0].name)


# checks run once for the lab (not parametrized by node): verify names them without a node
LAB_WIDE_CHECKS = frozenset({
    "test_manager_sees_every_spec_node_ready_with_its_role", "test_spec_overlays_exist",
    "test_ingress_network_exists", "test_host_mode_port_with_dnsrr_service",
    "test_overlay_traffic_across_nodes_by_ip_and_name", "test_swarm_cluster_options_are_the_specs",
})


def _failure_id(spec: LabSpec, drift: Drift, check: str) -> str:
    if check in LAB_WIDE_CHECKS:
        return check
    name = node_name(spec, drift.node)
    return f"{check}[{drift.param}-{name}]" if drift.param else f"{check}[{name}]"


def failure_id(spec: LabSpec, drift: Drift) -> str:
    """How `swarmlab verify` names the failed check for this drift's node."""
    if drift.failure:
        return drift.failure.format(node=node_name(spec, drift.node))
    return _failure_id(spec, drift, drift.check)


def failure_ids(spec: LabSpec, drift: Drift) -> list[str]:
    """Every failed test id this drift must cause (its check, then `also`)."""
    return [failure_id(spec, drift)] + [_failure_id(spec, drift, c) for c in drift.also]


def drift_key(drift: Drift) -> str:
    """A drift's name in the results record (stable while the break stays the same)."""
    return f"{drift.check}[{drift.node}] {drift.how}"


RESULTS = Path(__file__).resolve().parents[2] / "docs" / "drift-results.json"


def load_results() -> dict:
    """lab -> drift key -> {caught, repaired, when}: what the last drift run of each lab saw."""
    return json.loads(RESULTS.read_text()) if RESULTS.exists() else {}


def save_result(lab: str, drift: Drift, caught: bool, repaired: str | None) -> None:
    """Record one break's outcome (`repaired`: "deploy", "printed command" or None)."""
    data = load_results()
    data.setdefault(lab, {})[drift_key(drift)] = {
        "caught": caught, "repaired": repaired, "when": time.strftime("%Y-%m-%d")}
    RESULTS.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


def _cell(results: dict, key: str, test) -> str:
    """"yes (lab, lab)" / "NO (lab)" / "not run" for one drift over every recorded lab."""
    seen = {lab: r[key] for lab, r in sorted(results.items()) if key in r}
    if not seen:
        return "not run"
    yes = [lab for lab, r in seen.items() if test(r)]
    no = [lab for lab in seen if lab not in yes]
    parts = ([f"yes ({', '.join(yes)})"] if yes else []) + ([f"NO ({', '.join(no)})"] if no else [])
    return "; ".join(parts)


def markdown_table(results: dict | None = None) -> str:
    """docs/verify-coverage.md's drift table, from the recorded runs (docs/drift-results.json): check ->
    how it was broken -> caught -> repaired by a deploy re-run -> repaired by the printed command."""
    results = load_results() if results is None else results
    lines = ["| check | how it was broken | caught | repaired by a deploy re-run "
             "| repaired by the printed command |", "|---|---|---|---|---|"]
    for d in DRIFTS:
        key = drift_key(d)
        caught = _cell(results, key, lambda r: r["caught"])
        deploy = _cell(results, key, lambda r: r["repaired"] == "deploy") if d.owned else "-"
        printed = _cell(results, key, lambda r: r["repaired"] == "printed command") \
            if d.printed else "-"
        checks = ", ".join(f"`{c}`" for c in (d.check, *d.also))
        lines.append(f"| {checks} | {d.how} | {caught} | {deploy} | {printed} |")
    return "\n".join(lines)


def not_broken_table() -> str:
    """docs/verify-coverage.md's list of checks no drift round breaks, with the reason."""
    lines = ["| check | why no drift round breaks it |", "|---|---|"]
    lines += [f"| `{check}` | {why} |" for check, why in NOT_BROKEN.items()]
    return "\n".join(lines)


REPORT = Path(__file__).resolve().parents[2] / "reports" / "drift.json"

# "a day later" (root shell on a node): the apt stamp and lists aged past the deploy's cache
# window; the suite's last test and the bench (bench/run.py) run it before a re-run
A_DAY_LATER = ("touch -d '2 days ago' /var/lib/apt/periodic/update-success-stamp"
               " /var/lib/apt/lists/* 2>/dev/null; true")


def record(lab: str, round_no: int, timings: dict) -> None:
    """Keep each round's timings in reports/drift.json (for docs/checks.md and the notes)."""
    REPORT.parent.mkdir(exist_ok=True)
    data = json.loads(REPORT.read_text()) if REPORT.exists() else {}
    data.setdefault(lab, {})[str(round_no)] = dict(timings, when=time.strftime("%Y-%m-%d %H:%M"))
    REPORT.write_text(json.dumps(data, indent=2))


def drift_tests():
    """The drift rounds as test functions for a lab module (its `lab` fixture)."""
    import pytest

    @pytest.mark.parametrize("round_no", range(len(ROUNDS)),
                             ids=[f"round{i}" for i in range(len(ROUNDS))])
    def test_drift_round(lab, round_no):
        record(lab.spec.name, round_no, run_round(lab, ROUNDS[round_no]))

    def test_after_the_drift_rounds_nothing_changes_even_a_day_later(lab):
        """Every round repaired: a deploy changes nothing, also with the apt lists aged past
        the cache window (re-runs refresh lists only to install something)."""
        for node in lab.spec.nodes:
            lab.exec(node.name, "sh", "-c", A_DAY_LATER)
        run = lab.run("deploy")
        assert run.rc == 0, run.out + run.err
        s = run.summary
        assert s["changed"] == 0 and s["verified"] == s["total"] > 0, run.out

    return test_drift_round, test_after_the_drift_rounds_nothing_changes_even_a_day_later


def _failed_ids(stderr: str) -> set[str]:
    return {line[len("  failed: "):].split(": ", 1)[0] for line in stderr.splitlines()
            if line.startswith("  failed: ")}


def _run_printed_repairs(lab, drifts: list[Drift], caught) -> None:
    """Run, as root on its node, each repair command verify printed under a printed drift's
    failed check (each distinct command once); assert one was printed for every such drift."""
    from swarmlab.verify.repairs import printed_repairs

    spec, done = lab.spec, set()
    for d in drifts:
        if not d.printed:
            continue
        found = [r for fid in failure_ids(spec, d) for r in printed_repairs(caught.err, fid)]
        assert found, f"{d.how}: verify printed no repair command under {failure_ids(spec, d)}:\n{caught.err}"
        for node, command in found:
            assert node == node_name(spec, d.node), (node, command)
            if (node, command) not in done:
                done.add((node, command))
                lab.exec(node, "sh", "-c", command)


def run_round(lab, drifts: list[Drift]) -> dict:
    """Break, verify (must fail naming each check), repair (the printed commands, run as
    printed; then a deploy re-run for what it owns; the test restores the rest), verify again
    (must pass). Records each break's outcome; returns timings."""
    spec = lab.spec
    names = sorted({c for d in drifts for c in (d.check, *d.also)})
    checks = " or ".join(names)
    timings: dict = {"checks": names}
    outcome: dict[str, dict] = {drift_key(d): {"caught": False, "repaired": None} for d in drifts}
    restored = False
    try:
        for d in drifts:
            lab.exec(node_name(spec, d.node), "sh", "-c", expand(spec, d.shell))
        start = time.monotonic()
        caught = lab.run("verify", "--check", checks)
        timings["verify_broken_s"] = round(time.monotonic() - start, 1)
        failed = _failed_ids(caught.err)
        for d in drifts:
            outcome[drift_key(d)]["caught"] = caught.rc == 1 and set(failure_ids(spec, d)) <= failed
        assert caught.rc == 1, f"verify passed on a broken lab:\n{caught.out}\n{caught.err}"
        for d in drifts:
            for fid in failure_ids(spec, d):
                assert f"  failed: {fid}" in caught.err, (
                    f"{d.how} on {node_name(spec, d.node)}: verify did not name {fid}:\n{caught.err}")
        printed = [d for d in drifts if d.printed]
        if printed:
            _run_printed_repairs(lab, drifts, caught)
            names_p = sorted({c for d in printed for c in (d.check, *d.also)})
            after = _verify_until_green(lab, " or ".join(names_p),
                                        ok=lambda run: not _printed_still_failing(spec, printed, run))
            still = _printed_still_failing(spec, printed, after)
            for d in printed:
                if d not in still:
                    outcome[drift_key(d)]["repaired"] = "printed command"
            assert not still, f"the printed commands did not repair: {[d.how for d in still]}\n{after.err}"
        for d in drifts:
            if not d.owned and not d.printed:
                lab.exec(node_name(spec, d.node), "sh", "-c", expand(spec, d.restore))
        restored = True
        start = time.monotonic()
        deploy = lab.run("deploy", "--no-verify")
        timings["repair_deploy_s"] = round(time.monotonic() - start, 1)
        timings["repair_changed"] = deploy.summary["changed"] if deploy.rc == 0 else None
        assert deploy.rc == 0, deploy.out + deploy.err
        if any(d.owned for d in drifts):
            assert deploy.summary["changed"] >= 1, "the deploy re-run repaired nothing"
        start = time.monotonic()
        healed = _verify_until_green(lab, checks)
        timings["verify_repaired_s"] = round(time.monotonic() - start, 1)
        if healed.rc == 0:
            for d in drifts:
                if d.owned:
                    outcome[drift_key(d)]["repaired"] = "deploy"
        assert healed.rc == 0, f"not repaired:\n{healed.out}\n{healed.err}"
    finally:
        for d in drifts:
            save_result(spec.name, d, **outcome[drift_key(d)])
        from .checks_doc import main as write_checks_doc  # the page follows the record

        write_checks_doc()
        if not restored:  # a failed assertion above: leave the lab usable for the next round
            for d in drifts:
                if not d.owned:
                    lab.exec(node_name(spec, d.node), "sh", "-c", expand(spec, d.restore), check=False)
            lab.run("deploy", "--no-verify")
    return timings


def _printed_still_failing(spec: LabSpec, printed: list[Drift], run) -> list[Drift]:
    """The printed drifts whose checks still fail (all of them when verify did not run)."""
    if run.rc == 0:
        return []
    failed = _failed_ids(run.err)
    if run.rc != 1 or not failed:
        return list(printed)
    return [d for d in printed if set(failure_ids(spec, d)) & failed]


def _verify_until_green(lab, checks: str, tries: int = 3, ok=lambda run: run.rc == 0):
    """Swarm state converges asynchronously after a repair (a rejoined node turns Ready, a
    re-created overlay spreads): give it a few verify runs, each a full check."""
    for attempt in range(tries):
        run = lab.run("verify", "--check", checks)
        if ok(run) or attempt == tries - 1:
            return run
        time.sleep(5)
    return run
