"""Command generation of the firewall deploy (swarmlab/provision/firewall.py), offline."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import jinja2
import pytest
from deployfakes import LOCAL, VMLAB, present_file, recorded, run_deploy, spec_file
from pyinfra.facts.pacman import PacmanPackages

from swarmlab.model.spec import load_spec
from swarmlab.provision.facts import NftTable
from swarmlab.provision.firewall import NFT_FILE, firewall_rules, swarm_firewall
from swarmlab.provision.ufw import UfwAddedRules, UfwStatus, ufw_rule_ports

ROOT = Path(__file__).resolve().parents[2]
VM_SUBNET = "192.168.56.0/24"

# lab.yaml: an encrypted overlay, default data path port
VMLAB_UFW = [
    "ufw allow 22/tcp",
    f"ufw allow from {VM_SUBNET} to any port 2377 proto tcp",
    f"ufw allow from {VM_SUBNET} to any port 7946 proto tcp",
    f"ufw allow from {VM_SUBNET} to any port 7946 proto udp",
    f"ufw allow from {VM_SUBNET} to any port 4789 proto udp",
    f"ufw allow from {VM_SUBNET} proto esp",
]

UFW_INACTIVE = "Status: inactive\n"
UFW_ACTIVE = """\
Status: active

To                         Action      From
--                         ------      ----
22/tcp                     ALLOW       Anywhere
2377/tcp                   ALLOW       192.168.56.0/24
"""


def ufw_added(rules: list[str]) -> str:
    """`ufw show added` output listing these rules."""
    return "Added user rules (see 'ufw status' for running firewall):\n" + "\n".join(rules) + "\n"


def ufw_commands(run) -> list[str]:
    return [c for c in run.commands if c.startswith("ufw ")]


def test_ufw_rules_from_the_lab_subnet_only_plus_ssh():
    run = run_deploy(swarm_firewall, VMLAB, "node1")
    assert not run.failed
    assert ufw_commands(run) == [*VMLAB_UFW, "ufw --force enable"]
    # every swarm port is limited to the lab subnet; only SSH is open to anywhere
    for cmd in ufw_commands(run):
        if "2377" in cmd or "7946" in cmd or "4789" in cmd or "esp" in cmd:
            assert f"from {VM_SUBNET}" in cmd
    assert any("install --no-install-recommends ufw" in c for c in run.op("ufw package").commands)
    assert not any("nft" in c for c in run.commands)


def test_ufw_enable_comes_after_the_ssh_rule():
    names = [o.short_name for o in run_deploy(swarm_firewall, VMLAB, "node1").ops]
    assert names.index("ufw rules: SSH, and swarm ports from the lab subnet") < names.index("ufw enabled")
    rules = run_deploy(swarm_firewall, VMLAB, "node1").op("ufw rules: SSH, and swarm ports from the lab subnet")
    assert rules.commands[0] == "ufw allow 22/tcp"


def test_no_esp_rule_without_an_encrypted_overlay(tmp_path):
    spec = spec_file(tmp_path, ["ubuntu-24.04"] * 3, base=VMLAB,
                     swarm={"overlays": [{"name": "labnet", "subnet": "10.30.0.0/24"}]})
    cmds = ufw_commands(run_deploy(swarm_firewall, spec, "node1"))
    assert not any("esp" in c for c in cmds)
    assert f"ufw allow from {VM_SUBNET} to any port 4789 proto udp" in cmds


def test_data_path_port_from_the_spec(tmp_path):
    spec = spec_file(tmp_path, ["ubuntu-22.04"] * 3, base=VMLAB,
                     swarm={"data_path_port": 4800}, firewall={"ssh_port": 2222})
    cmds = ufw_commands(run_deploy(swarm_firewall, spec, "node2"))
    assert f"ufw allow from {VM_SUBNET} to any port 4800 proto udp" in cmds
    assert not any("4789" in c for c in cmds)
    assert "ufw allow 2222/tcp" in cmds
    assert "ufw allow 22/tcp" not in cmds


def test_swarm_disabled_opens_only_ssh(tmp_path):
    spec = spec_file(tmp_path, ["ubuntu-24.04"] * 3, base=VMLAB, swarm={"enabled": False})
    assert ufw_commands(run_deploy(swarm_firewall, spec, "node1")) == [
        "ufw allow 22/tcp", "ufw --force enable",
    ]


def test_rules_ufw_already_has_are_not_added_again():
    facts = {UfwAddedRules: recorded(UfwAddedRules, ufw_added(VMLAB_UFW)),
             UfwStatus: recorded(UfwStatus, UFW_ACTIVE)}
    run = run_deploy(swarm_firewall, VMLAB, "node1", facts)
    assert ufw_commands(run) == []
    assert run.op("ufw rules: SSH, and swarm ports from the lab subnet").commands == []
    assert run.op("ufw enabled").commands == []


def test_only_missing_rules_are_added():
    have = [VMLAB_UFW[0], VMLAB_UFW[1], VMLAB_UFW[4]]
    facts = {UfwAddedRules: recorded(UfwAddedRules, ufw_added(have)),
             UfwStatus: recorded(UfwStatus, UFW_INACTIVE)}
    cmds = ufw_commands(run_deploy(swarm_firewall, VMLAB, "node1", facts))
    assert cmds == [VMLAB_UFW[2], VMLAB_UFW[3], VMLAB_UFW[5], "ufw --force enable"]


def test_ufw_enabled_only_when_inactive():
    active = run_deploy(swarm_firewall, VMLAB, "node1", {UfwStatus: recorded(UfwStatus, UFW_ACTIVE)})
    assert active.op("ufw enabled").commands == []
    inactive = run_deploy(swarm_firewall, VMLAB, "node1",
                          {UfwStatus: recorded(UfwStatus, UFW_INACTIVE)})
    assert inactive.op("ufw enabled").commands == ["ufw --force enable"]


def test_debian13_uses_ufw_too():
    run = run_deploy(swarm_firewall, LOCAL, "node1")
    assert "ufw allow from 10.77.0.0/24 to any port 2377 proto tcp" in ufw_commands(run)


def test_backend_none_does_nothing(tmp_path):
    spec = spec_file(tmp_path, firewall={"backend": "none"})
    run = run_deploy(swarm_firewall, spec, "node1")
    assert run.ops == [] and not run.failed


# --- nftables (Manjaro) -----------------------------------------------------------------

def test_manjaro_gets_an_nftables_table_instead_of_ufw():
    run = run_deploy(swarm_firewall, VMLAB, "node3")
    assert not run.failed
    assert ufw_commands(run) == []
    assert run.op("nftables package").commands == ["pacman -Syu --noconfirm --needed nftables"]
    table = run.op("nftables swarm table").commands
    assert f"upload {NFT_FILE}" in table and f"chmod 600 {NFT_FILE}" in table
    unit = "/etc/systemd/system/swarmlab-firewall.service"
    assert f"upload {unit}" in run.op("swarm table loaded at boot").commands
    assert f"ExecStart=/usr/bin/nft -f {NFT_FILE}" in run.files[unit]
    assert run.op("load the swarm table").commands == [f"nft -f {NFT_FILE}"]
    assert "systemctl enable swarmlab-firewall.service" in run.op("swarmlab-firewall at boot").commands
    # the distro's nftables.service (stock ruleset drops forwarded traffic) is left alone
    assert not any("nftables.service" in c or "/etc/nftables.conf" in c for c in run.commands)

    text = run.files[NFT_FILE]
    assert f"ip saddr {VM_SUBNET} tcp dport 2377 accept" in text
    assert f"ip saddr {VM_SUBNET} meta l4proto esp accept" in text


def test_manjaro_unchanged_table_is_not_reloaded():
    first = run_deploy(swarm_firewall, VMLAB, "node3")
    again = run_deploy(swarm_firewall, VMLAB, "node3", {
        PacmanPackages: recorded(PacmanPackages, "nftables 1:1.1.1-1\n"),
        **present_file(NFT_FILE, first.files[NFT_FILE], mode=600),
        NftTable: recorded(NftTable, LOADED_TABLE),
    })
    assert again.op("nftables package").commands == []
    assert again.op("nftables swarm table").commands == []
    assert again.op("load the swarm table").commands == []
    # same file, but the live table was flushed or lost a rule: loaded again
    for live in ("", LOADED_TABLE.replace("tcp dport 2377 drop", "")):
        drifted = run_deploy(swarm_firewall, VMLAB, "node3", {
            PacmanPackages: recorded(PacmanPackages, "nftables 1:1.1.1-1\n"),
            **present_file(NFT_FILE, first.files[NFT_FILE], mode=600),
            NftTable: recorded(NftTable, live),
        })
        assert drifted.op("load the swarm table").commands == [f"nft -f {NFT_FILE}"]


# `nft list table inet swarmlab` for lab.yaml's rules
LOADED_TABLE = """\
table inet swarmlab {
\tchain input {
\t\ttype filter hook input priority filter - 1; policy accept;
\t\tip saddr 192.168.56.0/24 tcp dport 2377 accept comment "swarm cluster management"
\t\ttcp dport 2377 drop
\t\tip saddr 192.168.56.0/24 tcp dport 7946 accept comment "swarm node gossip"
\t\ttcp dport 7946 drop
\t\tip saddr 192.168.56.0/24 udp dport 7946 accept comment "swarm node gossip"
\t\tudp dport 7946 drop
\t\tip saddr 192.168.56.0/24 udp dport 4789 accept comment "overlay VXLAN data path"
\t\tudp dport 4789 drop
\t\tip saddr 192.168.56.0/24 meta l4proto esp accept comment "encrypted overlay (IPsec ESP)"
\t\tmeta l4proto esp drop
\t}
}
"""


def render_nft(spec) -> str:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(ROOT / "templates"),
                             undefined=jinja2.StrictUndefined)
    return env.get_template("firewall.nft.j2").render(rules=firewall_rules(spec),
                                                      subnet=spec.network.subnet)


def statements(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines()
            if line.strip() and not line.strip().startswith("#")]


def test_rendered_nftables_table():
    lines = statements(render_nft(load_spec(VMLAB)))
    # replaced whole on every load, in its own table
    assert lines[:3] == ["table inet swarmlab", "delete table inet swarmlab",
                         "table inet swarmlab {"]
    assert "type filter hook input priority filter - 1; policy accept;" in lines
    body = [line for line in lines if "dport" in line or "l4proto" in line]
    assert body == [
        f'ip saddr {VM_SUBNET} tcp dport 2377 accept comment "swarm cluster management"',
        "tcp dport 2377 drop",
        f'ip saddr {VM_SUBNET} tcp dport 7946 accept comment "swarm node gossip"',
        "tcp dport 7946 drop",
        f'ip saddr {VM_SUBNET} udp dport 7946 accept comment "swarm node gossip"',
        "udp dport 7946 drop",
        f'ip saddr {VM_SUBNET} udp dport 4789 accept comment "overlay VXLAN data path"',
        "udp dport 4789 drop",
        f'ip saddr {VM_SUBNET} meta l4proto esp accept comment "encrypted overlay (IPsec ESP)"',
        "meta l4proto esp drop",
    ]
    # SSH is never dropped by the swarm table
    assert not any(re.search(r"dport 22\b", line) for line in lines)
    # braces balance
    text = "\n".join(lines)
    assert text.count("{") == text.count("}")


def test_rendered_nftables_table_follows_the_spec(tmp_path):
    spec = load_spec(spec_file(tmp_path, ["manjaro"] * 3, base=VMLAB,
                               swarm={"data_path_port": 4800, "overlays": []}))
    text = render_nft(spec)
    assert "udp dport 4800 drop" in text and "4789" not in text
    assert "esp" not in text


@pytest.mark.parametrize("overlays", [None, []])
def test_rendered_nftables_table_passes_nft_check(tmp_path, overlays):
    """`nft -c` (check only, nothing applied) when the binary is usable here."""
    nft = shutil.which("nft") or next((p for p in ("/usr/sbin/nft", "/sbin/nft")
                                       if Path(p).exists()), None)
    if nft is None:
        pytest.skip("nft is not installed")
    spec = load_spec(VMLAB) if overlays is None else load_spec(
        spec_file(tmp_path, ["ubuntu-24.04"] * 3, base=VMLAB, swarm={"overlays": overlays}))
    path = tmp_path / "swarmlab.nft"
    path.write_text(render_nft(spec))
    proc = subprocess.run([nft, "-c", "-f", str(path)], capture_output=True, text=True,
                          timeout=30, check=False)
    if proc.returncode and re.search(r"not permitted|Permission denied|Protocol not supported",
                                     proc.stderr):
        pytest.skip(f"nft -c cannot run here: {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stderr


def test_rules_that_open_swarm_ports_wider_are_deleted_others_kept():
    have = [*VMLAB_UFW, "ufw allow 2377/tcp", "ufw allow from 10.9.0.0/16 to any port 7946 proto udp",
            "ufw allow 8080/tcp", "ufw allow 7000:8000/udp"]
    facts = {UfwAddedRules: recorded(UfwAddedRules, ufw_added(have)),
             UfwStatus: recorded(UfwStatus, UFW_ACTIVE)}
    cmds = ufw_commands(run_deploy(swarm_firewall, VMLAB, "node1", facts))
    assert cmds == [
        "ufw delete allow 2377/tcp",
        "ufw delete allow from 10.9.0.0/16 to any port 7946 proto udp",
        "ufw delete allow 7000:8000/udp",
    ]  # the user's own 8080 rule stays


def test_default_incoming_policy_restored():
    facts = {UfwAddedRules: recorded(UfwAddedRules, ufw_added(VMLAB_UFW)),
             UfwStatus: recorded(UfwStatus, UFW_ACTIVE + 'DEFAULT_INPUT_POLICY="ACCEPT"\n')}
    run = run_deploy(swarm_firewall, VMLAB, "node1", facts)
    assert run.op("ufw enabled").commands == ["ufw default deny incoming"]


def test_ufw_rule_ports():
    assert ufw_rule_ports("allow 2377/tcp") == {"2377"}
    assert ufw_rule_ports("allow from 10.0.0.0/8 to any port 7946 proto udp") == {"7946"}
    assert ufw_rule_ports("allow from 10.0.0.0/8 proto esp") == {"esp"}
    assert ufw_rule_ports("allow 4788:4790/udp") == {"4788", "4789", "4790"}
    assert ufw_rule_ports("allow from 10.0.0.0/8") == set()
