"""ICMP echo from inside a test namespace, for connectivity checks (the machine has no ``ping``).

The probe is a short Python program run with ``ip netns exec`` in the source
namespace: a raw ICMP socket (root), one echo request per try, 100 ms per try.
"""

from __future__ import annotations

import sys

from cnilib.testing import NetNS

__all__ = ["pings"]

_PROBE = r"""
import os, socket, struct, sys
def csum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xFFFF)
    return ~(s + (s >> 16)) & 0xFFFF
sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
sock.settimeout(0.1)
ident = os.getpid() & 0xFFFF
for seq in range(int(sys.argv[2])):
    pkt = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + b"cnilib-probe"
    sock.sendto(pkt[:2] + struct.pack("!H", csum(pkt)) + pkt[4:], (sys.argv[1], 0))
    try:
        while True:
            data = sock.recv(2048)
            icmp = data[(data[0] & 15) * 4:]
            if icmp[0] == 0 and struct.unpack("!H", icmp[4:6])[0] == ident:
                sys.exit(0)
    except socket.timeout:
        pass
sys.exit(1)
"""


def pings(ns: NetNS, dst: str, tries: int = 20) -> bool:
    """Whether an IPv4 echo request from *ns* to *dst* is answered within *tries* tries."""
    proc = ns.exec(sys.executable, "-c", _PROBE, dst, str(tries), check=False)
    return proc.returncode == 0
