"""What crosses the wire between two nodes: a bounded packet count on the lab interface.

The node runs `capture_script(...)` with its own python3 (an AF_PACKET socket, no tcpdump
needed): for a few seconds it classifies every IPv4 frame between two lab addresses as ESP
(IPsec: an encrypted overlay's traffic), plain VXLAN whose inner packet belongs to a given
overlay subnet (that overlay's payload readable on the wire), or other. `classify` is the same
function on the node and in the unit tests.
"""

from __future__ import annotations

import inspect
import ipaddress
import shlex

ESP, PLAIN, OTHER = "esp", "plain", "other"


def classify(frame: bytes, a: bytes, b: bytes, net: int, mask: int, vxlan_port: int) -> str:
    """ESP | PLAIN | OTHER for one Ethernet frame (IPv4 addresses and the subnet as packed
    bytes/ints, so the function runs with nothing but the standard library on the node)."""
    if len(frame) < 34 or frame[12:14] != b"\x08\x00":
        return "other"
    ihl = (frame[14] & 0x0F) * 4
    src, dst = frame[26:30], frame[30:34]
    if {src, dst} != {a, b}:
        return "other"
    proto = frame[23]
    if proto == 50:
        return "esp"
    udp = 14 + ihl
    if proto != 17 or len(frame) < udp + 8 + 8 + 14 + 20:
        return "other"
    dport = int.from_bytes(frame[udp + 2:udp + 4], "big")
    if dport != vxlan_port:
        return "other"
    inner = udp + 8 + 8  # UDP header, VXLAN header
    if frame[inner + 12:inner + 14] != b"\x08\x00":
        return "other"
    ip = inner + 14
    for addr in (frame[ip + 12:ip + 16], frame[ip + 16:ip + 20]):
        if int.from_bytes(addr, "big") & mask == net:
            return "plain"
    return "other"


_LOOP = '''
import socket, sys, time
iface, a, b, net, mask, port, seconds = sys.argv[1:8]
a, b = socket.inet_aton(a), socket.inet_aton(b)
net, mask, port, seconds = int(net), int(mask), int(port), float(seconds)
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(3))
s.bind((iface, 0))
s.settimeout(0.2)
counts = {"esp": 0, "plain": 0, "other": 0}
end = time.monotonic() + seconds
print("capturing", flush=True)
while time.monotonic() < end:
    try:
        frame = s.recv(65535)
    except socket.timeout:
        continue
    counts[classify(frame, a, b, net, mask, port)] += 1
print("esp=%(esp)d plain=%(plain)d other=%(other)d" % counts)
'''


def capture_script(iface: str, a: str, b: str, subnet: str, vxlan_port: int, seconds: float) -> str:
    """The shell command that counts, for `seconds`, the frames between lab addresses a and b
    on `iface`: `esp=N plain=N other=N` (plain: VXLAN carrying `subnet`'s packets)."""
    net = ipaddress.ip_network(subnet)
    source = inspect.getsource(classify) + _LOOP
    args = [iface, a, b, str(int(net.network_address)), str(int(net.netmask)), str(vxlan_port), str(seconds)]
    return " ".join(["python3", "-c", shlex.quote(source), *map(shlex.quote, args)])


def parse_counts(output: str) -> dict[str, int]:
    """{'esp': N, 'plain': N, 'other': N} from the script's last line."""
    for line in reversed(output.strip().splitlines()):
        if line.startswith("esp="):
            return {k: int(v) for k, v in (part.split("=") for part in line.split())}
    raise ValueError(f"no counts in the capture's output: {output[-300:]!r}")
