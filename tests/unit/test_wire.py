"""The wire classifier the encrypted-overlay check runs on a node (swarmlab/verify/wire.py)."""

from __future__ import annotations

import ipaddress
import socket
import struct
import subprocess
import sys

import pytest

from swarmlab.verify import wire

A, B, C = "10.94.0.11", "10.94.0.12", "10.94.0.13"
NET = ipaddress.ip_network("10.132.0.0/24")
ARGS = (socket.inet_aton(A), socket.inet_aton(B), int(NET.network_address), int(NET.netmask), 4789)


def ipv4(src: str, dst: str, proto: int, payload: bytes) -> bytes:
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0, 64, proto, 0,
                         socket.inet_aton(src), socket.inet_aton(dst))
    return header + payload


def ether(packet: bytes, ethertype: bytes = b"\x08\x00") -> bytes:
    return b"\x02" * 6 + b"\x04" * 6 + ethertype + packet


def vxlan(src: str, dst: str, inner_src: str, inner_dst: str, port: int = 4789) -> bytes:
    inner = ether(ipv4(inner_src, inner_dst, 1, b"\x08\x00" + b"\x00" * 30))
    udp = struct.pack("!HHHH", 40000, port, 8 + 8 + len(inner), 0) + b"\x08\x00\x00\x00\x00\x10\x01\x00" + inner
    return ether(ipv4(src, dst, 17, udp))


@pytest.mark.parametrize(("frame", "want"), [
    (ether(ipv4(A, B, 50, b"\x00" * 40)), "esp"),
    (ether(ipv4(B, A, 50, b"\x00" * 40)), "esp"),
    (vxlan(A, B, "10.132.0.5", "10.132.0.6"), "plain"),
    (vxlan(B, A, "10.132.0.6", "10.132.0.5"), "plain"),
    (vxlan(A, B, "10.131.0.5", "10.131.0.6"), "other"),  # another overlay's payload
    (vxlan(A, B, "10.132.0.5", "10.132.0.6", port=4790), "other"),  # not the data path port
    (ether(ipv4(A, C, 50, b"\x00" * 40)), "other"),  # another pair of nodes
    (ether(ipv4(A, B, 6, b"\x00" * 40)), "other"),
    (ether(ipv4(A, B, 50, b""), ethertype=b"\x86\xdd"), "other"),
    (b"\x00" * 20, "other"),
])
def test_classify(frame, want):
    assert wire.classify(frame, *ARGS) == want


def test_capture_script_is_valid_python_with_quoted_arguments():
    script = wire.capture_script("eth1", A, B, str(NET), 4789, 8)
    assert script.startswith("python3 -c ")
    source = script.split(" ", 2)[2]
    # the source given to python3 compiles: the classifier plus the loop, as the node runs it
    compiled = subprocess.run([sys.executable, "-c", "import shlex,sys; src=shlex.split(sys.argv[1])[0]; "
                               "compile(src, 'capture', 'exec')", source], capture_output=True, text=True)
    assert compiled.returncode == 0, compiled.stderr
    assert script.endswith(f"eth1 {A} {B} {int(NET.network_address)} {int(NET.netmask)} 4789 8")


def test_parse_counts():
    assert wire.parse_counts("capturing\nesp=12 plain=0 other=3\n") == {"esp": 12, "plain": 0, "other": 3}
    with pytest.raises(ValueError, match="no counts"):
        wire.parse_counts("Traceback: PermissionError")
