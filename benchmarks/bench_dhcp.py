"""The dhcp IPAM plugin and its lease daemon against a real DHCP server (dnsmasq
``--no-ping``): Go's plugin and daemon, cnilib's as executables and cnilib's
plugin in process, side by side in one run. Each side has its own lease daemon
and its own containers:

- Go: ``/usr/lib/cni/dhcp`` exec'd, talking to ``/usr/lib/cni/dhcp daemon``;
- cnilib executables: the ``dhcp`` executable of ``python -m cnilib.plugins
  install``, talking to ``python -m cnilib.plugins dhcp daemon``;
- cnilib in-process: ``cnilib.plugins.InProcessExecutor`` running the dhcp
  plugin (no plugin process), talking to cnilib's daemon;
- cnilib in-process against Go's daemon (no goal): the same client as the row
  above with Go's daemon, to tell the daemons' share from the plugin's.

Go and cnilib executables are like for like (a plugin process per call, a
daemon process); the in-process side is what a runtime using cnilib's
in-process executor sees. The plugin is called directly as IPAM, as a main
plugin would call it, on a container whose ``eth0`` is a veth into a bridge of
the node namespace; dnsmasq runs in a server namespace on the same bridge.

Measured: ADD then DEL of one attachment, each side in turn in every round
(``measure_interleaved``); VERSION of each plugin executable (the cost of its
process, without the daemon); 20 ADDs at once then 20 DELs at once from 20
threads, wall time, a few rounds, also interleaved.

The script re-runs itself inside a throwaway node namespace (``ip netns
exec``); the daemons run there too (``ip netns exec <node>``), dnsmasq in the
server namespace. Only 192.0.2.0/24 is used, only inside the namespaces. At the
end, also on failure, the daemons and dnsmasq are stopped by pid (SIGTERM,
SIGKILL after a bound) and every namespace is deleted.

Goals (those of docs/performance.md): cnilib executables + daemon ADD no slower
than 1.5x Go's; in-process ADD no slower than Go's; 20 concurrent ADDs no
slower than Go's (cnilib executables, and in-process). DEL has no goal; its
ratios are printed.
Needs root, /usr/lib/cni/dhcp and dnsmasq. Run: ``python3
benchmarks/bench_dhcp.py`` (``BENCH_RUNS=30 BENCH_ROUNDS=5`` by default).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _harness import (
    GO_DIR,
    Row,
    measure_interleaved,
    print_table,
    report_verdict,
    rerun_inside_node,
)

from cnilib import CNIError
from cnilib.invoke import Executor, Invocation, SubprocessExecutor

RUNS = int(os.environ.get("BENCH_RUNS", "30"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
BURST = 20
EXE_GOAL, INPROC_GOAL, BURST_GOAL = 1.5, 1.0, 1.0  # over Go's, each

GO, EXE, INP, INP_GO = "go", "exe", "inp", "inpgo"
LABELS = {
    GO: "Go plugin + Go daemon",
    EXE: "cnilib executable + cnilib daemon",
    INP: "cnilib in-process + cnilib daemon",
    INP_GO: "cnilib in-process + Go daemon",
}
SIDES = (GO, EXE, INP, INP_GO)
EXECUTABLES = {GO: "Go plugin", EXE: "cnilib executable"}
# Container namespace roles: each side's timed one and its burst's.
CONTAINERS = tuple(
    f"{side}-{n}" for side in SIDES for n in ("one", *(f"b{i:02d}" for i in range(BURST)))
)
NETWORK = "benchdhcp"
SERVER_IP, ROUTER = "192.0.2.1", "192.0.2.1"
DHCP_RANGE = "192.0.2.10,192.0.2.250,255.255.255.0,1h"  # 1 h: no renewal during the run
# Each client's own address (dnsmasq --dhcp-host, by client ID). Without them, dnsmasq
# picks a released client's next address by hashing, now and then offers one address to two
# clients of a burst and NAKs the second's REQUEST ("address in use"); that client's retry,
# a second or more on either daemon, would be the burst's wall time.
ADDRESSES = {role: f"192.0.2.{10 + n}" for n, role in enumerate(CONTAINERS)}
DNSMASQ = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"


def wire(prefix: str) -> None:
    """The bridge ``br0`` in the node, the server's ``eth0`` and each container's
    ``eth0`` veths into it (one ``ip -batch`` for the node's side)."""
    node = f"{prefix}-node"
    lines = [
        "link add br0 type bridge",
        "link set br0 up",
        f"link add srv0 type veth peer name eth0 netns {prefix}-srv",
        "link set srv0 master br0 up",
    ]
    for n, role in enumerate(CONTAINERS):
        lines.append(f"link add vb{n} type veth peer name eth0 netns {prefix}-{role}")
        lines.append(f"link set vb{n} master br0 up")
    subprocess.run(["ip", "-n", node, "-batch", "-"], input="\n".join(lines).encode(), check=True)
    srv = f"{prefix}-srv"
    subprocess.run(["ip", "-n", srv, "addr", "add", f"{SERVER_IP}/24", "dev", "eth0"], check=True)
    subprocess.run(["ip", "-n", srv, "link", "set", "eth0", "up"], check=True)
    for role in CONTAINERS:
        subprocess.run(["ip", "-n", f"{prefix}-{role}", "link", "set", "eth0", "up"], check=True)


def container_id(role: str) -> str:
    """The CNI container ID of ``role``'s attachment."""
    return f"bench-dhcp-{role}"


def dhcp_hosts() -> list[str]:
    """dnsmasq's ``--dhcp-host=id:<client ID>,<address>`` for :data:`ADDRESSES` (the client
    ID is ``0x00`` + ``<container ID>/<network>/<ifname>``, on both daemons). Options, not a
    file: dnsmasq reads a hosts file after dropping its privileges."""
    options = []
    for role, address in ADDRESSES.items():
        client_id = b"\0" + f"{container_id(role)}/{NETWORK}/eth0".encode()
        options.append(f"--dhcp-host=id:{':'.join(f'{b:02x}' for b in client_id)},{address}")
    return options


def wait_until(ready: Callable[[], bool], what: str, proc: subprocess.Popen[bytes]) -> None:
    """Poll ``ready`` (at most 10 s); fail if ``proc`` exits first."""
    deadline = time.monotonic() + 10
    while not ready():
        if proc.poll() is not None:
            sys.exit(f"{what} exited with {proc.returncode} (see its log)")
        if time.monotonic() > deadline:
            sys.exit(f"{what} not ready after 10 s")
        time.sleep(0.01)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM by pid, SIGKILL after 5 s; reaped either way."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(5)


@contextlib.contextmanager
def processes() -> Iterator[Callable[[list[str], Path], subprocess.Popen[bytes]]]:
    """``start(argv, log)`` starts a process (output to ``log``); every one started is
    stopped on the way out, the last first, also on failure."""
    started: list[subprocess.Popen[bytes]] = []

    def start(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        started.append(proc)
        return proc

    try:
        yield start
    finally:
        for proc in reversed(started):
            stop(proc)


def start_dnsmasq(start: Callable[[list[str], Path], subprocess.Popen[bytes]],
                  prefix: str, tmp: str) -> None:  # fmt: skip
    """dnsmasq on the server's ``eth0``, no ping check before an offer; returns once it
    listens on port 67 (``ip netns exec`` execs it: its /proc/<pid>/net is the server's)."""
    proc = start(
        ["ip", "netns", "exec", f"{prefix}-srv", DNSMASQ, "--conf-file=/dev/null",
         "--keep-in-foreground", "--port=0", "--bind-interfaces", "--interface=eth0",
         "--except-interface=lo", "--no-ping", f"--dhcp-range={DHCP_RANGE}",
         f"--dhcp-leasefile={tmp}/dnsmasq.leases", f"--pid-file={tmp}/dnsmasq.pid",
         f"--dhcp-option=option:router,{ROUTER}", f"--log-facility={tmp}/dnsmasq.log",
         *dhcp_hosts()],
        Path(tmp, "dnsmasq.stderr"),
    )  # fmt: skip

    def listening() -> bool:
        with contextlib.suppress(OSError):
            udp = Path(f"/proc/{proc.pid}/net/udp").read_text().splitlines()[1:]
            return any(line.split()[1].endswith(":0043") for line in udp)
        return False

    wait_until(listening, "dnsmasq", proc)


def start_daemon(start: Callable[[list[str], Path], subprocess.Popen[bytes]],
                 prefix: str, argv: list[str], sock: str, log: Path) -> int:  # fmt: skip
    """A lease daemon in the node namespace; returns its pid once its socket accepts."""
    proc = start(["ip", "netns", "exec", f"{prefix}-node", *argv], log)

    def accepts() -> bool:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            try:
                s.connect(sock)
            except OSError:
                return False
        return True

    wait_until(accepts, f"the daemon {argv[0]}", proc)
    return proc.pid


def cpu_ms(pid: int) -> float:
    """CPU time (user + system, all threads) process ``pid`` has used so far, in ms."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


class Side:
    """One side: an executor, a plugin path and a daemon socket; its containers are
    ``<prefix>-<side>-one`` and ``<prefix>-<side>-bNN``."""

    def __init__(self, key: str, prefix: str, executor: Executor,
                 path: str, sock: str) -> None:  # fmt: skip
        self.key, self.prefix, self.executor, self.path = key, prefix, executor, (path,)
        conf = {
            "cniVersion": "1.0.0",
            "name": NETWORK,
            "ipam": {"type": "dhcp", "daemonSocketPath": sock},
        }
        self.stdin = json.dumps(conf).encode()

    def call(self, command: str, role: str) -> bytes:
        """``command`` on ``role``'s ``eth0``; an ADD must answer with the container's
        address (a side that measured something else would be a wrong figure)."""
        out = self.executor.exec(
            Invocation(
                command=command,
                plugin_type="dhcp",
                stdin=self.stdin,
                container_id=container_id(f"{self.key}-{role}"),
                netns=f"/run/netns/{self.prefix}-{self.key}-{role}",
                ifname="eth0",
                path=self.path,
            )
        )
        if command == "ADD":
            address = json.loads(out)["ips"][0]["address"]
            if address != f"{ADDRESSES[f'{self.key}-{role}']}/24":
                sys.exit(f"{LABELS[self.key]}: ADD answered {address}")
        return out

    def fail(self, role: str) -> None:
        """An ADD against a socket no daemon listens on: the plugin process alone (start,
        imports, configuration, a refused connect); it must fail."""
        try:
            self.call("ADD", role)
        except CNIError:
            return
        sys.exit(f"{LABELS[self.key]}: an ADD with no daemon succeeded")

    def burst(self, pool: ThreadPoolExecutor, command: str) -> None:
        """``command`` on the side's 20 burst containers at once; fails if any failed."""
        roles = [f"b{i:02d}" for i in range(BURST)]
        for future in [pool.submit(self.call, command, role) for role in roles]:
            future.result()


def inner(prefix: str) -> None:
    """The measurement, already running inside the node namespace."""
    from cnilib.plugins import InProcessExecutor

    with tempfile.TemporaryDirectory() as tmp, processes() as start:
        exe_dir, empty = f"{tmp}/exe", f"{tmp}/empty"
        os.mkdir(empty)  # the in-process sides' plugin path: nothing can be exec'd from it
        subprocess.run(
            [sys.executable, "-m", "cnilib.plugins", "install", exe_dir],
            check=True,
            capture_output=True,
        )
        start_dnsmasq(start, prefix, tmp)
        go_sock, py_sock = f"{tmp}/go.sock", f"{tmp}/py.sock"
        go_pid = start_daemon(start, prefix, [f"{GO_DIR}/dhcp", "daemon", "-socketpath", go_sock],
                              go_sock, Path(tmp, "go-daemon.log"))  # fmt: skip
        py_daemon = [sys.executable, "-m", "cnilib.plugins", "dhcp", "daemon",
                     "-socketpath", py_sock, "-statedir", f"{tmp}/state"]  # fmt: skip
        py_pid = start_daemon(start, prefix, py_daemon, py_sock, Path(tmp, "py-daemon.log"))
        cpu_before = {GO: cpu_ms(go_pid), EXE: cpu_ms(py_pid)}

        in_process = InProcessExecutor()
        subprocess_ = SubprocessExecutor()
        sides = {
            GO: Side(GO, prefix, subprocess_, GO_DIR, go_sock),
            EXE: Side(EXE, prefix, subprocess_, exe_dir, py_sock),
            INP: Side(INP, prefix, in_process, empty, py_sock),
            INP_GO: Side(INP_GO, prefix, in_process, empty, go_sock),
        }
        cases: list[tuple[str, Callable[[], object]]] = [
            (f"{LABELS[key]}: {verb}", functools.partial(side.call, verb, "one"))
            for key, side in sides.items()
            for verb in ("ADD", "DEL")
        ]
        for key, directory in ((GO, GO_DIR), (EXE, exe_dir)):
            version = Invocation.version("dhcp", [directory])
            exec_version = functools.partial(subprocess_.exec, version)
            cases.append((f"{EXECUTABLES[key]}: VERSION", exec_version))
            nobody = Side(key, prefix, subprocess_, directory, f"{tmp}/nobody.sock")
            cases.append(
                (f"{EXECUTABLES[key]}: ADD, no daemon", functools.partial(nobody.fail, "one"))
            )
        rows = {row.label: row for row in measure_interleaved(cases, runs=RUNS)}

        with ThreadPoolExecutor(BURST) as pool:
            burst_cases: list[tuple[str, Callable[[], object]]] = [
                (f"{LABELS[key]}: {BURST} {verb}s", functools.partial(side.burst, pool, verb))
                for key, side in sides.items()
                for verb in ("ADD", "DEL")
            ]
            bursts = {
                row.label: row for row in measure_interleaved(burst_cases, runs=ROUNDS, warmup=1)
            }

        def pick(table: dict[str, Row], suffix: str) -> list[Row]:
            return [table[f"{LABELS[key]}: {suffix}"] for key in SIDES]

        go_add = f"{LABELS[GO]}: ADD"
        print_table("One attachment: ADD (inside a node namespace)", pick(rows, "ADD"),
                    baseline=go_add)  # fmt: skip
        print_table("One attachment: DEL", pick(rows, "DEL"), baseline=f"{LABELS[GO]}: DEL")
        floors = [rows[f"{EXECUTABLES[key]}: {case}"] for case in ("VERSION", "ADD, no daemon")
                  for key in (GO, EXE)]  # fmt: skip
        print_table("The plugin executable alone: VERSION, and ADD with no daemon listening",
                    floors, baseline=floors[0].label)  # fmt: skip
        print_table(f"{BURST} ADDs at once (wall time of the burst)", pick(bursts, f"{BURST} ADDs"),
                    baseline=f"{LABELS[GO]}: {BURST} ADDs")  # fmt: skip
        print_table(f"{BURST} DELs at once", pick(bursts, f"{BURST} DELs"),
                    baseline=f"{LABELS[GO]}: {BURST} DELs")  # fmt: skip
        # Each daemon served two sides: (warm-up + runs) single pairs and (warm-up + rounds)
        # bursts of BURST pairs each (ADD + DEL = one pair).
        pairs = 2 * ((2 + RUNS) + (1 + ROUNDS) * BURST)
        print("\n### The lease daemons' CPU time (user + system, over the whole run)\n")
        print("| daemon | ADD+DEL pairs served | CPU ms per pair |")
        print("|---|---:|---:|")
        for key, pid, name in ((GO, go_pid, "Go's"), (EXE, py_pid, "cnilib's")):
            used = cpu_ms(pid) - cpu_before[key]
            print(f"| {name} | {pairs} | {used / pairs:.2f} |")
        print()
        for line in verdicts(rows, bursts):
            print(line)


def ratio_text(row: Row, base: Row, limit: float | None = None) -> str:
    """The ratio of ``row`` to ``base`` with both medians (and the limit in ms)."""
    text = f"{row.median / base.median:.2f}x: {row.median:.2f} ms against {base.median:.2f} ms"
    if limit is not None:
        text += f" ({limit:g}x is {base.median * limit:.2f} ms)"
    return text


def verdicts(rows: dict[str, Row], bursts: dict[str, Row]) -> list[str]:
    """Report each goal's verdict (``report_verdict``); return DEL's ratios, which have
    no goal."""

    def one(key: str, verb: str) -> Row:
        return rows[f"{LABELS[key]}: {verb}"]

    def burst(key: str, verb: str) -> Row:
        return bursts[f"{LABELS[key]}: {BURST} {verb}s"]

    def within(row: Row, base: Row, limit: float) -> bool:
        return row.median / base.median <= limit

    go_add, go_burst = one(GO, "ADD"), burst(GO, "ADD")
    report_verdict(
        f"dhcp: cnilib's executable + daemon ADD at most {EXE_GOAL:g}x Go's plugin + daemon",
        ratio_text(one(EXE, "ADD"), go_add, EXE_GOAL),
        met=within(one(EXE, "ADD"), go_add, EXE_GOAL),
        source="bench_dhcp.py",
    )
    report_verdict(
        "dhcp: in-process ADD (cnilib's daemon) no slower than Go's plugin + daemon",
        ratio_text(one(INP, "ADD"), go_add),
        met=within(one(INP, "ADD"), go_add, INPROC_GOAL),
        source="bench_dhcp.py",
    )
    report_verdict(
        f"dhcp: {BURST} concurrent ADDs no slower than Go's",
        f"executables + daemon {ratio_text(burst(EXE, 'ADD'), go_burst)}; "
        f"in-process {ratio_text(burst(INP, 'ADD'), go_burst)}",
        met=all(within(burst(k, "ADD"), go_burst, BURST_GOAL) for k in (EXE, INP)),
        source="bench_dhcp.py",
    )
    lines = []
    for key in (EXE, INP):
        ratio = one(key, "DEL").median / one(GO, "DEL").median
        lines.append(f"dhcp: {LABELS[key]} DEL {ratio:.2f}x Go's (no goal)")
    return lines


def main() -> None:
    if not os.access(DNSMASQ, os.X_OK):
        sys.exit("needs dnsmasq (Debian's dnsmasq-base)")
    rerun_inside_node(__file__, ("srv", *CONTAINERS), ("dhcp",), wire)


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "--inner":
        inner(sys.argv[2])
    else:
        main()
