"""Command generation of the lab-network deploy (swarmlab/provision/network.py), offline."""

from __future__ import annotations

import pytest
import yaml
from deployfakes import LOCAL, VMLAB, present_file, recorded, run_deploy, spec_file
from pyinfra.facts.hardware import Ipv4Addrs, NetworkDevices

from swarmlab.provision.network import (
    NETPLAN_FILE,
    LabLink,
    NetworkPlanError,
    choose_interface,
    link_problems,
    static_address,
)

NM_FILE = "/etc/NetworkManager/system-connections/swarmlab-eth1.nmconnection"

# `ip -j addr show` on a Vagrant VirtualBox VM before the network deploy: eth0 is the NAT NIC,
# eth1 the private-network NIC that the Vagrantfile leaves unconfigured (auto_config: false).
IP_ADDR_VAGRANT_UNCONFIGURED = """[
{"ifindex":1,"ifname":"lo","flags":["LOOPBACK","UP","LOWER_UP"],"mtu":65536,"operstate":"UNKNOWN",
 "link_type":"loopback","address":"00:00:00:00:00:00",
 "addr_info":[{"family":"inet","local":"127.0.0.1","prefixlen":8,"scope":"host","label":"lo"}]},
{"ifindex":2,"ifname":"eth0","flags":["BROADCAST","MULTICAST","UP","LOWER_UP"],"mtu":1500,
 "operstate":"UP","link_type":"ether","address":"08:00:27:8a:3c:1e",
 "addr_info":[{"family":"inet","local":"10.0.2.15","prefixlen":24,"broadcast":"10.0.2.255",
               "scope":"global","dynamic":true,"label":"eth0"}]},
{"ifindex":3,"ifname":"eth1","flags":["BROADCAST","MULTICAST","UP","LOWER_UP"],"mtu":1500,
 "operstate":"UP","link_type":"ether","address":"08:00:27:d1:5b:07","addr_info":[]}
]"""

# The same VM once eth1 carries the lab address.
IP_ADDR_VAGRANT_CONFIGURED = IP_ADDR_VAGRANT_UNCONFIGURED.replace(
    '"addr_info":[]}',
    '"addr_info":[{"family":"inet","local":"192.168.56.11","prefixlen":24,'
    '"broadcast":"192.168.56.255","scope":"global","label":"eth1"}]}',
)

VAGRANT_ADDRS = {"lo": ["127.0.0.1"], "eth0": ["10.0.2.15"], "eth1": ["192.168.56.11"]}
VAGRANT_SSH = {"ssh_hostname": "127.0.0.1", "ssh_port": 2222}  # Vagrant's port forward


# --- choose_interface -------------------------------------------------------------------

def test_vagrant_case_lab_ip_to_eth1_over_the_port_forward():
    addrs = {"lo": ["127.0.0.1"], "eth0": ["10.0.2.15"], "eth1": []}
    assert choose_interface(addrs, "192.168.56.11", "eth1", "127.0.0.1") == "eth1"


def test_refuses_to_readdress_the_nic_pyinfra_is_connected_through():
    addrs = {"lo": ["127.0.0.1"], "eth0": ["10.0.2.15"]}
    with pytest.raises(NetworkPlanError) as err:
        choose_interface(addrs, "192.168.56.11", "eth0", "10.0.2.15")
    message = str(err.value)
    assert "refusing to configure eth0" in message
    assert "10.0.2.15" in message and "192.168.56.11" in message


def test_connected_over_the_lab_address_itself_is_fine():
    # the container lab: Docker put the lab address on eth0 and SSH uses it
    assert choose_interface({"eth0": ["10.77.0.11"]}, "10.77.0.11", "eth0", "10.77.0.11") == "eth0"


def test_the_nic_holding_the_lab_address_wins_without_a_configured_one():
    assert choose_interface(VAGRANT_ADDRS, "192.168.56.11", None, "127.0.0.1") == "eth1"


def test_lab_address_on_another_nic_than_the_spec_says():
    with pytest.raises(NetworkPlanError, match="192.168.56.11 is on eth1, but the spec says"):
        choose_interface(VAGRANT_ADDRS, "192.168.56.11", "eth2", None)


def test_unknown_interface_lists_the_real_ones():
    with pytest.raises(NetworkPlanError, match=r"eth7 .* does not exist .*eth0, lo"):
        choose_interface({"lo": ["127.0.0.1"], "eth0": ["10.0.2.15"]}, "192.168.56.11", "eth7", None)


def test_no_interface_named_and_none_has_the_address():
    with pytest.raises(NetworkPlanError, match="set network.interface"):
        choose_interface({"eth0": ["10.0.2.15"]}, "192.168.56.11", None, None)


# --- netplan (Ubuntu/Debian) ------------------------------------------------------------

def test_netplan_file_for_the_lab_address():
    run = run_deploy(static_address, VMLAB, "node1", {Ipv4Addrs: VAGRANT_ADDRS},
                     host_data_overrides=VAGRANT_SSH)
    assert not run.failed
    conf = run.op("netplan file for the lab address")
    assert f"upload {NETPLAN_FILE}" in conf.commands
    assert f"chmod 600 {NETPLAN_FILE}" in conf.commands

    text = run.files[NETPLAN_FILE]
    assert "gateway4" not in text
    eth1 = yaml.safe_load(text)["network"]["ethernets"]["eth1"]
    assert eth1 == {
        "dhcp4": False,
        "addresses": ["192.168.56.11/24"],
        "routes": [{"to": "default", "via": "192.168.56.1", "metric": 200}],
        "nameservers": {"addresses": ["1.1.1.1", "9.9.9.9"]},
    }
    assert yaml.safe_load(text)["network"]["renderer"] == "networkd"

    apply = run.op("lab address applied").commands
    assert apply[0] == "netplan generate"
    assert "netplan apply" in apply[1] and "networkctl reconfigure eth1" in apply[1]
    assert any("install --no-install-recommends netplan.io" in c
               for c in run.op("netplan").commands)
    assert not any("nmcli" in c for c in run.commands)


def test_netplan_without_dns_has_no_nameservers(tmp_path):
    spec = spec_file(tmp_path, network={"dns": []})
    run = run_deploy(static_address, spec, "node2", {Ipv4Addrs: {"eth0": ["10.77.0.12"]}})
    eth0 = yaml.safe_load(run.files[NETPLAN_FILE])["network"]["ethernets"]["eth0"]
    assert "nameservers" not in eth0
    assert eth0["routes"] == [{"to": "default", "via": "10.77.0.1", "metric": 200}]


# `LabLink` output on a node whose NIC networkd configured from netplan's file
NETWORKD_CONFIGURED = """\
file=/run/systemd/network/10-netplan-eth1.network
state=routable (configured)
address=192.168.56.11/24
gateway=192.168.56.1
route=default via 192.168.56.1 proto static metric 200
dns=1.1.1.1
dns=9.9.9.9
"""


def test_netplan_applies_when_the_file_changes_or_the_live_state_drifted():
    first = run_deploy(static_address, VMLAB, "node1", {Ipv4Addrs: VAGRANT_ADDRS},
                       host_data_overrides=VAGRANT_SSH)
    same = run_deploy(static_address, VMLAB, "node1", {
        Ipv4Addrs: VAGRANT_ADDRS, **present_file(NETPLAN_FILE, first.files[NETPLAN_FILE], mode=600),
        LabLink: recorded(LabLink, NETWORKD_CONFIGURED),
    }, host_data_overrides=VAGRANT_SSH)
    assert same.op("netplan file for the lab address").commands == []
    assert same.op("lab address applied").commands == []

    # same file, but networkd no longer configures the NIC from it (an earlier apply failed,
    # or someone ran `networkctl down`/removed the generated file): applied again
    for drifted in (NETWORKD_CONFIGURED.replace("(configured)", "(unmanaged)"),
                    "file=\nstate=routable (unmanaged)\n",
                    NETWORKD_CONFIGURED.replace("address=192.168.56.11/24", "address=192.168.56.99/24"),
                    NETWORKD_CONFIGURED.replace("route=default via 192.168.56.1 proto static metric 200", ""),
                    NETWORKD_CONFIGURED.replace("dns=9.9.9.9", "dns=10.254.254.53")):
        again = run_deploy(static_address, VMLAB, "node1", {
            Ipv4Addrs: VAGRANT_ADDRS, **present_file(NETPLAN_FILE, first.files[NETPLAN_FILE], mode=600),
            LabLink: recorded(LabLink, drifted),
        }, host_data_overrides=VAGRANT_SSH)
        assert again.op("lab address applied").commands[0] == "netplan generate", drifted

    other = run_deploy(static_address, VMLAB, "node1", {
        Ipv4Addrs: VAGRANT_ADDRS,
        **present_file(NETPLAN_FILE, first.files[NETPLAN_FILE].replace("/24", "/16"), mode=600),
    }, host_data_overrides=VAGRANT_SSH)
    assert f"upload {NETPLAN_FILE}" in other.op("netplan file for the lab address").commands
    assert other.op("lab address applied").commands[0] == "netplan generate"


def test_container_lab_configures_eth0_it_is_connected_through():
    run = run_deploy(static_address, LOCAL, "node1", {Ipv4Addrs: {"lo": ["127.0.0.1"],
                                                                  "eth0": ["10.77.0.11"]}})
    assert not run.failed
    assert "eth0" in yaml.safe_load(run.files[NETPLAN_FILE])["network"]["ethernets"]


def test_deploy_refuses_a_change_that_drops_the_ssh_connection(tmp_path):
    spec = spec_file(tmp_path, ["ubuntu-24.04"] * 3, base=VMLAB, network={"interface": "eth0"})
    run = run_deploy(static_address, spec, "node1",
                     {Ipv4Addrs: {"lo": ["127.0.0.1"], "eth0": ["10.0.2.15"]}},
                     host_data_overrides={"ssh_hostname": "10.0.2.15"})
    assert run.failed
    (message,) = run.errors
    assert "node1: refusing to configure eth0" in message
    assert "10.0.2.15" in message
    assert NETPLAN_FILE not in run.files
    assert not any("netplan" in c for c in run.commands)


def test_deploy_accepts_vagrant_with_the_lab_address_already_on_eth1():
    facts = {NetworkDevices: recorded(NetworkDevices, IP_ADDR_VAGRANT_CONFIGURED)}
    run = run_deploy(static_address, VMLAB, "node1", facts, host_data_overrides=VAGRANT_SSH)
    assert not run.failed
    assert "eth1" in yaml.safe_load(run.files[NETPLAN_FILE])["network"]["ethernets"]


def test_deploy_configures_the_vagrant_private_nic_that_has_no_address_yet():
    facts = {NetworkDevices: recorded(NetworkDevices, IP_ADDR_VAGRANT_UNCONFIGURED)}
    run = run_deploy(static_address, VMLAB, "node1", facts, host_data_overrides=VAGRANT_SSH)
    assert run.errors == []
    assert "eth1" in yaml.safe_load(run.files[NETPLAN_FILE])["network"]["ethernets"]


# --- NetworkManager (Manjaro) -----------------------------------------------------------

def test_manjaro_gets_a_networkmanager_keyfile_not_netplan():
    addrs = {"lo": ["127.0.0.1"], "eth0": ["10.0.2.15"], "eth1": ["192.168.56.13"]}
    run = run_deploy(static_address, VMLAB, "node3", {Ipv4Addrs: addrs},
                     host_data_overrides=VAGRANT_SSH)
    assert not run.failed
    assert NETPLAN_FILE not in run.files
    assert not any("netplan" in c or "apt-get" in c for c in run.commands)

    keyfile = run.files[NM_FILE]
    lines = keyfile.splitlines()
    assert "id=swarmlab-eth1" in lines
    assert "interface-name=eth1" in lines
    assert "method=manual" in lines
    assert "address1=192.168.56.13/24,192.168.56.1" in lines
    assert "dns=1.1.1.1;9.9.9.9;" in lines
    assert f"chmod 600 {NM_FILE}" in run.op("NetworkManager keyfile for the lab address").commands
    assert run.op("lab address applied").commands == [
        "nmcli connection reload", "nmcli connection up swarmlab-eth1",
    ]


def test_manjaro_keyfile_unchanged_is_not_reactivated():
    addrs = {"eth0": ["10.0.2.15"], "eth1": ["192.168.56.13"]}
    first = run_deploy(static_address, VMLAB, "node3", {Ipv4Addrs: addrs},
                       host_data_overrides=VAGRANT_SSH)
    again = run_deploy(static_address, VMLAB, "node3", {
        Ipv4Addrs: addrs, **present_file(NM_FILE, first.files[NM_FILE], mode=600),
        LabLink: recorded(LabLink, "state=activated\naddress=192.168.56.13/24\ngateway=192.168.56.1\n"
                                   "route=default via 192.168.56.1 proto static metric 100\n"
                                   "dns=1.1.1.1\ndns=9.9.9.9\n"),
    }, host_data_overrides=VAGRANT_SSH)
    assert again.op("lab address applied").commands == []
    down = run_deploy(static_address, VMLAB, "node3", {
        Ipv4Addrs: addrs, **present_file(NM_FILE, first.files[NM_FILE], mode=600),
        LabLink: recorded(LabLink, "state=\n"),
    }, host_data_overrides=VAGRANT_SSH)
    assert down.op("lab address applied").commands == [
        "nmcli connection reload", "nmcli connection up swarmlab-eth1",
    ]


def test_link_problems_name_what_is_wrong():
    link = recorded(LabLink, NETWORKD_CONFIGURED)
    args = ("eth1", "netplan", "192.168.56.11/24", "192.168.56.1")
    assert link_problems(link, *args) == []
    assert link_problems({}, *args) == [
        "networkd does not manage eth1 from netplan's 10-netplan-eth1.network (network file: none)",
        "networkd has not configured eth1 (state: unknown)",
        "eth1 is not configured with 192.168.56.11/24 (has: none)",
        "eth1 has no configured default route via 192.168.56.1",
    ]
