"""Which verification checks assert each lab spec field on the live host.

Every leaf field of `LabSpec` (list items as `[]`: `nodes[].ip`) maps to the checks in
swarmlab/verify that read it back from the nodes, or to the reason no check can. A unit test
walks the model and fails on a field with neither; docs/verify-coverage.md shows `markdown_table()`.
"""

from __future__ import annotations

import types
import typing

from pydantic import BaseModel

from swarmlab.model.spec import LabSpec

CHECKS: dict[str, tuple[str, ...]] = {
    "network.subnet": ("test_lab_address_configured_by_the_deploy",
                       "test_firewall_rules_are_exactly_the_labs",
                       "test_swarm_ports_closed_to_outside_the_lab_subnet",
                       "test_no_foreign_rule_for_the_swarm_ports"),
    "network.gateway": ("test_default_route_via_lab_gateway",
                        "test_lab_address_configured_by_the_deploy", "test_netplan_file"),
    "network.dns": ("test_lab_dns_servers_configured_by_the_deploy",),
    "network.interface": ("test_lab_address_on_the_specs_interface",),
    "docker.source": ("test_docker_packages_from_the_specs_source",),
    "docker.version": ("test_docker_packages_from_the_specs_source",),
    "docker.log_driver": ("test_daemon_json_is_the_specs", "test_running_daemon_uses_daemon_json"),
    "docker.log_opts": ("test_daemon_json_is_the_specs", "test_running_daemon_uses_daemon_json"),
    "docker.daemon": ("test_daemon_json_is_the_specs", "test_running_daemon_uses_daemon_json"),
    "docker.users": ("test_docker_users_in_the_docker_group",),
    "docker.tls": ("test_docker_api_over_tls_answers_a_lab_client",
                   "test_docker_api_over_tls_refuses_a_client_without_certificate",
                   "test_docker_api_on_2376_refuses_plaintext",
                   "test_tls_listener_only_on_the_lab_address", "test_no_plaintext_docker_api"),
    "swarm.enabled": ("test_swarm_active_in_the_labs_cluster",),
    "swarm.data_path_port": ("test_vxlan_port_bound_where_overlays_run",
                             "test_firewall_rules_are_exactly_the_labs",
                             "test_overlay_traffic_across_nodes_by_ip_and_name"),
    "swarm.default_addr_pool": ("test_swarm_cluster_options_are_the_specs",),
    "swarm.default_addr_pool_mask_length": ("test_swarm_cluster_options_are_the_specs",),
    "swarm.overlays[].name": ("test_spec_overlays_exist",),
    "swarm.overlays[].subnet": ("test_spec_overlays_exist",),
    "swarm.overlays[].encrypted": ("test_spec_overlays_exist",
                                   "test_encrypted_overlay_traffic_across_nodes"),
    "swarm.overlays[].attachable": ("test_spec_overlays_exist",),
    "swarm.overlays[].labels": ("test_spec_overlays_exist",),
    "swarm.autolock": ("test_swarm_cluster_options_are_the_specs", "test_cis_swarm"),
    "swarm.cert_expiry": ("test_swarm_cluster_options_are_the_specs",),
    "swarm.dispatcher_heartbeat": ("test_swarm_cluster_options_are_the_specs",),
    "swarm.task_history_limit": ("test_swarm_cluster_options_are_the_specs",),
    "security.profile": ("test_cis_daemon_and_files", "test_cis_swarm"),
    "rootless.users": ("test_user_unit_active_and_enabled", "test_daemon_is_rootless_and_outside_the_swarm",
                       "test_login_shell_and_context_point_at_the_users_daemon",
                       "test_container_runs_under_subordinate_ids",
                       "test_docker_group_only_when_listed"),
    "firewall.backend": ("test_firewall_active_at_boot", "test_firewall_rules_are_exactly_the_labs"),
    "firewall.ssh_port": ("test_firewall_rules_are_exactly_the_labs",),
    "nodes[].name": ("test_manager_sees_every_spec_node_ready_with_its_role",),
    "nodes[].distro": ("test_node_runs_the_specs_distro",),
    "nodes[].ip": ("test_lab_address_configured_by_the_deploy", "test_swarm_active_in_the_labs_cluster",
                   "test_manager_sees_every_spec_node_ready_with_its_role"),
    "nodes[].role": ("test_manager_sees_every_spec_node_ready_with_its_role",),
    "nodes[].labels": ("test_manager_sees_every_spec_node_ready_with_its_role",),
    "nodes[].interface": ("test_lab_address_on_the_specs_interface",),
}

VAGRANT_ONLY = ("sizes the Vagrant VM (the Vagrantfile reads it); the deploy does not set it and "
                "a container lab ignores it")
NOT_CHECKABLE: dict[str, str] = {
    "name": "names swarmlab's own state (.state/<name>) and the container lab's Docker objects "
            "on the machine running swarmlab; nothing on a node carries it",
    "swarm.rotate_unlock_key": "an action of the run that sets it (a new unlock key, saved in "
                               ".state/<lab>), not a lasting state to read back",
    "swarm.data_path_addr": "given only to `docker swarm init/join`; Docker exposes no node's "
                            "data-path address to read back",
    "nodes[].box": VAGRANT_ONLY,
    "nodes[].cpus": VAGRANT_ONLY,
    "nodes[].memory": VAGRANT_ONLY,
}


def _model(annotation: typing.Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def leaf_fields(model: type[BaseModel] = LabSpec, prefix: str = "") -> list[str]:
    """Every leaf field path of the spec model (`swarm.overlays[].name`)."""
    out = []
    for name, info in model.model_fields.items():
        annotation = info.annotation
        path = f"{prefix}{name}"
        sub = _model(annotation)
        if sub is None and typing.get_origin(annotation) in (list, types.UnionType, typing.Union):
            items = [_model(a) for a in typing.get_args(annotation)]
            sub = next((m for m in items if m), None)
            if sub is not None and typing.get_origin(annotation) is list:
                path += "[]"
        out += leaf_fields(sub, path + ".") if sub else [path]
    return out


def unmapped() -> list[str]:
    """Leaf fields with neither a check nor a reason."""
    return [f for f in leaf_fields() if not CHECKS.get(f) and f not in NOT_CHECKABLE]


def markdown_table() -> str:
    """docs/verify-coverage.md's table: spec field -> the checks that assert it, or why none can."""
    lines = ["| spec field | checked on the live host by |", "|---|---|"]
    for path in leaf_fields():
        if CHECKS.get(path):
            lines.append(f"| `{path}` | {', '.join(f'`{c}`' for c in CHECKS[path])} |")
        else:
            lines.append(f"| `{path}` | not checkable: {NOT_CHECKABLE.get(path, 'UNMAPPED')} |")
    return "\n".join(lines)
