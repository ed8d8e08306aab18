"""Kernel prerequisites for Docker and swarm: modules and sysctls, with a report of gaps."""

from __future__ import annotations

from io import StringIO

from pyinfra import host, logger
from pyinfra.api import deploy
from pyinfra.operations import files, server

from swarmlab.provision.context import declare_lab_facts
from swarmlab.provision.factcache import Request
from swarmlab.provision.facts import KernelModules
from swarmlab.provision.prefetch import file_facts, register_facts, sysctl_facts

# module -> what does not work without it
MODULE_FEATURES: dict[str, str] = {
    "overlay": "the overlay2 storage driver",
    "br_netfilter": "iptables filtering of bridged container traffic (bridge-nf-call-iptables)",
    "vxlan": "swarm overlay networks (VXLAN data path)",
    "ip_vs": "swarm VIP load balancing and the ingress routing mesh (published service ports)",
    "xt_ipvs": "the routing mesh's iptables match on IPVS traffic",
    "esp4": "encrypted overlay networks (IPsec ESP between nodes)",
}

SYSCTLS: dict[str, int] = {
    "net.ipv4.ip_forward": 1,
    "net.bridge.bridge-nf-call-iptables": 1,
    "net.bridge.bridge-nf-call-ip6tables": 1,
}
SYSCTL_FILE = "/etc/sysctl.d/99-swarmlab.conf"
MODULES_FILE = "/etc/modules-load.d/swarmlab.conf"
REQUIRED_MODULES = ("overlay", "br_netfilter", "vxlan")  # loaded at boot when the kernel can


def kernel_facts() -> list[Request]:
    """What this step reads on a node (declared for the lab's fact batch)."""
    out: list[Request] = [(KernelModules, {}), *file_facts(MODULES_FILE)]
    for key, value in SYSCTLS.items():
        out += sysctl_facts(key, value, SYSCTL_FILE)
    return out


def missing_features(modules: dict[str, str]) -> dict[str, str]:
    """module -> feature, for modules the kernel neither has nor can load."""
    return {m: MODULE_FEATURES[m] for m, state in modules.items() if state == "missing"}


@deploy("Kernel prerequisites")
def kernel_prerequisites() -> None:
    declare_lab_facts()
    modules = host.get_fact(KernelModules)
    usable = [m for m, s in modules.items() if s != "missing"]
    files.put(
        name="modules loaded at boot",
        src=StringIO("".join(f"{m}\n" for m in usable)),
        dest=MODULES_FILE,
        mode="0644",
    )
    for module in (m for m, s in modules.items() if s == "loadable"):
        server.modprobe(name=f"load {module}", module=module)
    for module, feature in missing_features(modules).items():
        logger.warning(
            f"{host.print_prefix}kernel has no {module} (cannot be loaded here): "
            f"{feature} will not work on this node"
        )
    bridge_nf = modules.get("br_netfilter", "missing") != "missing"
    for key, value in SYSCTLS.items():
        if key.startswith("net.bridge.") and not bridge_nf:
            continue
        server.sysctl(name=f"sysctl {key}={value}", key=key, value=value, persist=True,
                      persist_file=SYSCTL_FILE)


register_facts(__name__, 20, lambda spec, node, distro: kernel_facts())
