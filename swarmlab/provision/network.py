"""Static lab addresses: netplan on Ubuntu/Debian, NetworkManager on Manjaro.

Hand-written: pyinfra has no netplan/NetworkManager apply (the files and units are pyinfra's)."""

from __future__ import annotations

import ipaddress
import shlex
import socket

from pyinfra import host, logger, state
from pyinfra.api import FactBase, operation
from pyinfra.api.operation import OperationMeta
from pyinfra.facts.hardware import Ipv4Addrs, NetworkDevices
from pyinfra.operations import files, systemd

from swarmlab.model.distros import NETWORK_BACKENDS, NETWORK_PACKAGES, Distro
from swarmlab.model.spec import LabSpec, NodeSpec
from swarmlab.provision.context import lab_deploy, template
from swarmlab.provision.factcache import Request
from swarmlab.provision.ops import changed, fail
from swarmlab.provision.packages import install_packages
from swarmlab.provision.prefetch import file_facts, register_facts, service_facts
from swarmlab.provision.shell import argv, line, q

NETPLAN_FILE = NETWORK_BACKENDS["netplan"].path
NM_CONNECTION = "swarmlab-{iface}"
NM_FILE = NETWORK_BACKENDS["networkmanager"].path
NETPLAN_ROUTE_METRIC = 200  # below a DHCP default route on another NIC (Vagrant's NAT)


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


def network_facts(spec: LabSpec, node: NodeSpec, distro: Distro) -> list[Request]:
    """What this step reads on a node (declared for the lab's fact batch)."""
    backend = distro.network_backend
    row = NETWORK_BACKENDS[backend]
    iface = node.interface or spec.network.interface
    out: list[Request] = [(NetworkDevices, {}), *service_facts(row.service)]
    if iface:
        out += [(LabLink, {"iface": iface, "backend": backend}),
                *file_facts(row.path.format(iface=iface))]
    return out


@lab_deploy("Lab network")
def static_address(spec: LabSpec, node: NodeSpec, distro: Distro) -> None:
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
    row = NETWORK_BACKENDS[distro.network_backend]
    install_packages(row.packages_step, list(NETWORK_PACKAGES[distro.network_backend]), distro)
    systemd.service(name=row.service_step, service=row.service, running=True, enabled=True)
    conf = files.template(
        name=row.file_step,
        src=template(row.template),
        dest=row.path.format(iface=iface),
        mode="0600",
        iface=iface,
        cidr=cidr,
        gateway=spec.network.gateway,
        dns=spec.network.dns,
        metric=NETPLAN_ROUTE_METRIC,  # netplan's template uses it
    )
    lab_address_applied(
        name="lab address applied",
        iface=iface, backend=distro.network_backend, cidr=cidr, gateway=spec.network.gateway,
        file_op=conf, dns=tuple(spec.network.dns),
    )


class LabLink(FactBase):
    """How the lab NIC is configured now, as its network manager sees it.

    networkd: the .network file it configured the link from (netplan writes
    10-netplan-IFACE.network), its setup state and the file's Address/Gateway/DNS lines.
    NetworkManager: the swarmlab connection's state, addresses, gateway and DNS servers.
    Both: the kernel's static default routes on the NIC ("route").
    """

    default = dict

    def command(self, iface: str, backend: str) -> str:
        i = shlex.quote(iface)
        routes = f"ip -4 -o route show default dev {i} proto static 2>/dev/null | sed 's/^/route=/'; "
        if backend == "netplan":
            status = f"LANG=C networkctl status {i} --no-pager 2>/dev/null"
            return (
                f"f=$({status} | sed -n 's/^ *Network File: //p'); echo \"file=$f\"; "
                f"{status} | sed -n 's/^ *State: /state=/p'; {routes}"
                '[ -f "$f" ] && sed -n "s/^Address=/address=/p; s/^Gateway=/gateway=/p; '
                's/^DNS=/dns=/p" "$f"; true'
            )
        conn = shlex.quote(NM_CONNECTION.format(iface=iface))
        return (
            routes + "LANG=C nmcli -t -f GENERAL.STATE,IP4.ADDRESS,IP4.GATEWAY,IP4.DNS connection "
            f"show {conn} 2>/dev/null | sed -e 's/^GENERAL.STATE:/state=/' "
            "-e 's/^IP4.ADDRESS[^:]*:/address=/' -e 's/^IP4.GATEWAY:/gateway=/' "
            "-e 's/^IP4.DNS[^:]*:/dns=/'; true"
        )

    def process(self, output):
        out: dict[str, list[str]] = {}
        for text in output:
            key, sep, value = text.partition("=")
            if sep:
                out.setdefault(key.strip(), []).append(value.strip())
        return out


def link_problems(link: dict, iface: str, backend: str, cidr: str, gateway: str,
                  dns: list[str] | tuple[str, ...] = ()) -> list[str]:
    """What keeps the lab NIC from being configured by its network manager as the spec says
    (`dns`: the spec's servers; none given, none are compared)."""
    problems = []
    if dns and (link.get("dns") or []) != list(dns):
        problems.append(f"{iface}'s DNS servers are {link.get('dns') or 'none'}, not {list(dns)}")
    if backend == "netplan":
        files_ = link.get("file") or [""]
        want = f"10-netplan-{iface}.network"
        if not files_[0].endswith("/" + want):
            problems.append(f"networkd does not manage {iface} from netplan's {want} "
                            f"(network file: {files_[0] or 'none'})")
        state = (link.get("state") or [""])[0]
        if "(configured)" not in state:
            problems.append(f"networkd has not configured {iface} (state: {state or 'unknown'})")
    else:
        state = (link.get("state") or [""])[0]
        if state != "activated":
            problems.append(f"NetworkManager connection {NM_CONNECTION.format(iface=iface)} is not "
                            f"active (state: {state or 'absent'})")
    if cidr not in (link.get("address") or []):
        problems.append(f"{iface} is not configured with {cidr} (has: {link.get('address') or 'none'})")
    if gateway not in (link.get("gateway") or []):
        problems.append(f"{iface} has no configured default route via {gateway}")
    elif not any(f"via {gateway} " in r + " " for r in link.get("route") or []):
        problems.append(f"the kernel has no static default route via {gateway} on {iface} "
                        "(removed since it was configured)")
    return problems


@operation()
def lab_address_applied(iface: str, backend: str, cidr: str, gateway: str, file_op: OperationMeta,
                        dns: tuple[str, ...] = ()):
    """Apply the address file when it changed in this run, or when the live configuration is
    not what the file says (an earlier apply failed, or someone reconfigured the NIC)."""
    problems = link_problems(host.get_fact(LabLink, iface=iface, backend=backend),
                             iface, backend, cidr, gateway, dns)
    if not changed(file_op) and not problems:
        host.noop(f"{iface} is configured with {cidr} via {gateway}")
        return
    if problems and state.is_executing:
        logger.info(f"{host.print_prefix}re-applying the lab address: {'; '.join(problems)}")
    if backend == "netplan":
        yield "netplan generate"
        # netplan apply needs udev, which containers lack: there networkd reloads instead
        yield line("if systemd-detect-virt --container --quiet; then networkctl reload && "
                   "networkctl reconfigure ", q(iface), "; else netplan apply; fi", sep="")
    else:
        yield "nmcli connection reload"
        yield argv("nmcli", "connection", "up", NM_CONNECTION.format(iface=iface))


register_facts(__name__, 30, lambda spec, node, distro: network_facts(spec, node, distro))
