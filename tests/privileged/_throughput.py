"""A small TCP sender and receiver for measuring a rate between two test namespaces.

Run inside a namespace (``ip netns exec <ns> python _throughput.py ...``):

- ``recv ADDR PORT SECONDS``: listens, prints ``ready``, accepts one
  connection and reads for at most SECONDS after the first byte, then prints
  ``{"bytes": n, "seconds": t}`` and closes (which stops the sender).
- ``send ADDR PORT SECONDS``: connects and writes as fast as it can until the
  receiver closes or SECONDS have passed.

Both stop by themselves; nothing listens beyond the one connection.
"""

from __future__ import annotations

import json
import socket
import sys
import time

_CHUNK = b"\0" * 65536


def recv(addr: str, port: int, seconds: float) -> None:
    with socket.create_server((addr, port)) as server:
        server.settimeout(10.0)
        print("ready", flush=True)
        conn, _ = server.accept()
        with conn:
            conn.settimeout(5.0)
            total = len(conn.recv(65536))
            start = time.monotonic()
            while time.monotonic() - start < seconds:
                data = conn.recv(65536)
                if not data:
                    break
                total += len(data)
            elapsed = time.monotonic() - start
    print(json.dumps({"bytes": total, "seconds": elapsed}), flush=True)


def send(addr: str, port: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    with socket.create_connection((addr, port), timeout=5.0) as conn:
        try:
            while time.monotonic() < deadline:
                conn.sendall(_CHUNK)
        except OSError:
            pass  # the receiver has measured enough and closed


if __name__ == "__main__":
    mode, address, port_text, duration = sys.argv[1:5]
    (recv if mode == "recv" else send)(address, int(port_text), float(duration))
