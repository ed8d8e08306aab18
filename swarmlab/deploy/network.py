"""Static lab addresses: netplan on Ubuntu/Debian, NetworkManager on Manjaro."""

from __future__ import annotations

import ipaddress
import socket

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.facts.hardware import Ipv4Addrs, NetworkDevices
from pyinfra.operations import files, server, systemd

from swarmlab.deploy.context import lab_node, lab_spec, template
from swarmlab.deploy.ops import fail
from swarmlab.deploy.packages import checked_distro, install_packages
from swarmlab.deploy.shell import argv, line, q
from swarmlab.distros import NETWORK_PACKAGES

NETPLAN_FILE = "/etc/netplan/60-swarmlab.yaml"
NM_FILE = "/etc/NetworkManager/system-connections/swarmlab-{iface}.nmconnection"


class NetworkPlanError(Exception):
    """The address change cannot be made safely."""


def choose_interface(
    addrs: dict[str, list[str]], lab_ip: str, configured: str | None, connected_ip: str | None
) -> str:
    """The NIC to carry the lab address; refuse a change that drops the connection in use.

    `addrs` is interface -> IPv4 addresses now; `configured` the spec's interface (node or
    network level); `connected_ip` the local address pyinfra reached the host on, if known.
    """
    holders = [iface for iface, ips in addrs.items() if lab_ip in ips]
    if holders:
        iface = holders[0]
        if configured and configured != iface:
            raise NetworkPlanError(
                f"the lab address {lab_ip} is on {iface}, but the spec says interface "
                f"{configured}; fix network.interface / nodes[].interface"
            )
    elif configured:
        iface = configured
        if iface not in addrs and addrs:
            raise NetworkPlanError(
                f"interface {iface} (from the spec) does not exist on this host "
                f"(it has: {', '.join(sorted(addrs))})"
            )
    else:
        raise NetworkPlanError(
            f"no interface carries {lab_ip} yet and the spec names none; "
            "set network.interface (or nodes[].interface) to the lab NIC"
        )
    current = addrs.get(iface, [])
    if connected_ip and connected_ip in current and connected_ip != lab_ip:
        raise NetworkPlanError(
            f"refusing to configure {iface}: pyinfra is connected through {connected_ip} on "
            f"{iface} and the new configuration ({lab_ip}) would drop it. Connect over the "
            "lab address or another interface, or set the lab interface in the spec"
        )
    return iface


def connected_address() -> str | None:
    """The address pyinfra connects to, resolved (None when it cannot be resolved)."""
    target = host.data.get("ssh_hostname") or host.name
    try:
        return socket.gethostbyname(target)
    except OSError:
        return None


@deploy("Lab network")
def static_address() -> None:
    spec = lab_spec()
    node = lab_node()
    distro = checked_distro()
    if distro is None:
        return
    # every NIC, with its IPv4 addresses (an unconfigured private NIC has none yet)
    addrs = {iface: [] for iface in host.get_fact(NetworkDevices) or {}}
    addrs.update(host.get_fact(Ipv4Addrs) or {})
    try:
        iface = choose_interface(
            addrs, node.ip, node.interface or spec.network.interface, connected_address()
        )
    except NetworkPlanError as err:
        fail(name="Choose the lab interface", message=f"{host.name}: {err}")
        return
    cidr = f"{node.ip}/{ipaddress.ip_network(spec.network.subnet).prefixlen}"
    packages = list(NETWORK_PACKAGES[distro.network_backend])

    if distro.network_backend == "netplan":
        install_packages("netplan", packages, distro)
        systemd.service(name="systemd-networkd", service="systemd-networkd.service",
                        running=True, enabled=True)
        conf = files.template(
            name="netplan file for the lab address",
            src=template("netplan.yaml.j2"),
            dest=NETPLAN_FILE,
            mode="0600",
            iface=iface,
            cidr=cidr,
            gateway=spec.network.gateway,
            dns=spec.network.dns,
        )
        server.shell(
            name="validate and apply netplan",
            commands=[
                "netplan generate",
                # netplan apply needs udev, which containers lack: there networkd reloads instead
                line("if systemd-detect-virt --container --quiet; then networkctl reload && "
                     "networkctl reconfigure ", q(iface), "; else netplan apply; fi", sep=""),
            ],
            _if=conf.did_change,
        )
    else:
        install_packages("NetworkManager", packages, distro)
        systemd.service(name="NetworkManager", service="NetworkManager.service",
                        running=True, enabled=True)
        conf = files.template(
            name="NetworkManager keyfile for the lab address",
            src=template("nm-keyfile.nmconnection.j2"),
            dest=NM_FILE.format(iface=iface),
            mode="0600",
            iface=iface,
            cidr=cidr,
            gateway=spec.network.gateway,
            dns=spec.network.dns,
        )
        server.shell(
            name="load and activate the connection",
            commands=["nmcli connection reload",
                      argv("nmcli", "connection", "up", f"swarmlab-{iface}")],
            _if=conf.did_change,
        )
