#!/usr/bin/env python3
"""Quorum of vantages (docs/quorum.md): how long a backend's death takes to leave the answers
of the last of three fleet instances deciding by majority, against one instance deciding alone.

Starts a real etcd, a loopback HTTP backend, three `meridian serve` instances in fleet mode
probing it from 127.0.1.1, .2 and .3 (interval 1 s, fall 1, timeout 1 s, quorum majority) and a
fourth instance with the same check but no `fleet:`. Each trial kills the backend (closes its
listener: connections are refused at once) and measures, from that moment, the time until the
last fleet instance answers without it, and the time until the lone instance does, in the same
trial (a UDP client asks each instance in turn, without pause). The backend then comes back and
every instance returns to it before the next trial, after a random pause of 0 to 1 s so the
death falls at a random point of the probe interval.

    swift build --product meridian
    Benchmarks/quorum/quorum.py [--trials 20] [--bin .build/debug/meridian]

Bounded: a trial gives up after 15 s; traffic goes only to loopback; every process started is
stopped at the end, also on failure.
"""
import argparse, os, random, select, shutil, socket, sys, tempfile, threading, time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fleet"))
import fleet  # noqa: E402  (etcd launcher, process cleanup, the UDP probe, percentile)

AMS, IAD = fleet.AMS, fleet.IAD


class Backend:
    """An HTTP/1.1 server answering 200 on loopback that can die and come back on the same port."""

    def __init__(self):
        self.port = fleet.free_port()
        self.alive = threading.Event()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.alive.set()
        self.thread.start()

    def serve(self):
        listener = None
        while not self.stop.is_set():
            if self.alive.is_set() and listener is None:
                listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                listener.bind(("127.0.0.1", self.port))
                listener.listen(64)
            if not self.alive.is_set() and listener is not None:
                listener.close()
                listener = None
            if listener is None:
                time.sleep(0.005)
                continue
            r, _, _ = select.select([listener], [], [], 0.005)
            if r:
                c, _ = listener.accept()
                c.settimeout(1)
                try:
                    c.recv(4096)
                    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
                except OSError:
                    pass
                c.close()
        if listener is not None:
            listener.close()


def config(etcd_port, backend_port, source, in_fleet):
    head = ""
    if in_fleet:
        head = f"fleet:\n  etcd: [http://127.0.0.1:{etcd_port}]\n  prefix: /quorum-bench/\n  lease_ttl: 5s\n"
    body = fleet.BODY.replace("ams-1: { v4: 192.0.2.10, dc: ams }", "ams-1: { v4: 192.0.2.10, dc: ams, check: web }")
    check = (f"checks:\n  web: {{ type: http, host: 127.0.0.1, port: {backend_port}, source: {source}, quorum: majority,\n"
             f"         interval: 1s, timeout: 1s, rise: 1, fall: 1 }}\n")
    return head + body + check


def start(f, name, text):
    config_path = os.path.join(f.folder, f"{name}.yaml")
    with open(config_path, "w") as out:
        out.write(text)
    dns, ctl = fleet.free_port(), fleet.free_port()
    state = os.path.join(f.folder, f"state-{name}")
    os.makedirs(state)
    log = open(os.path.join(f.folder, f"{name}.log"), "w")
    f.procs.append(fleet.subprocess.Popen([f.binary, "serve", "--config", config_path, "--listen", f"127.0.0.1:{dns}",
                                           "--control", f"127.0.0.1:{ctl}", "--state-dir", state, "--fleet-name", name,
                                           "--log-level", "warning"], stdout=log, stderr=log))
    if not fleet.wait(lambda: fleet.first_address(dns, 1) == AMS, 15):
        raise RuntimeError(f"{name} did not start; see {f.folder}/{name}.log")
    return dns


def until_all(ports, expected, limit, qid):
    """Seconds from now until each port answers `expected` (dict port -> seconds)."""
    t0 = time.monotonic()
    done = {}
    while len(done) < len(ports) and time.monotonic() - t0 < limit:
        for p in ports:
            if p in done:
                continue
            qid[0] = (qid[0] + 1) & 0xFFFF
            if fleet.first_address(p, qid[0]) == expected:
                done[p] = time.monotonic() - t0
    return done


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--bin", default=".build/debug/meridian")
    a = ap.parse_args()
    if not shutil.which("etcd"):
        sys.exit("etcd is not installed (scripts/setup installs etcd-server)")
    folder = tempfile.mkdtemp(prefix="meridian-quorum-bench-")
    with open(os.path.join(folder, "ctl.test.zone"), "w") as out:
        out.write(fleet.ZONE)
    f = fleet.Fleet(os.path.abspath(a.bin), folder)
    backend = Backend()
    try:
        f.start_etcd()
        members = [start(f, f"ns{i}", config(f.etcd_port, backend.port, f"127.0.1.{i}", True)) for i in (1, 2, 3)]
        alone = start(f, "alone", config(f.etcd_port, backend.port, "127.0.0.1", False))
        time.sleep(3)  # every vantage published
        qid = [1]
        with_quorum, by_itself = [], []
        for n in range(a.trials):
            time.sleep(random.uniform(0, 1))
            backend.alive.clear()
            t = until_all(members + [alone], IAD, 15, qid)
            if len(t) < 4:
                raise RuntimeError(f"trial {n}: not every instance left the dead backend; logs in {folder}")
            with_quorum.append(max(t[p] for p in members))
            by_itself.append(t[alone])
            backend.alive.set()
            if len(until_all(members + [alone], AMS, 15, qid)) < 4:
                raise RuntimeError(f"trial {n}: not every instance came back; logs in {folder}")
        ms = lambda v: f"{v * 1000:.0f} ms"
        pq, pa = fleet.percentile(with_quorum, 0.5), fleet.percentile(by_itself, 0.5)
        print(f"backend death -> answers without it, {a.trials} trials, interval 1 s, fall 1, timeout 1 s:")
        print(f"  last of 3 instances, quorum majority: p50 {ms(pq)}, p99 {ms(fleet.percentile(with_quorum, 0.99))}, max {ms(max(with_quorum))}")
        print(f"  one instance deciding alone:          p50 {ms(pa)}, p99 {ms(fleet.percentile(by_itself, 0.99))}, max {ms(max(by_itself))}")
        print(f"  ratio quorum/alone: p50 {pq / pa:.2f}, p99 {fleet.percentile(with_quorum, 0.99) / fleet.percentile(by_itself, 0.99):.2f}")
    finally:
        f.stop()
        backend.stop.set()
        backend.thread.join(2)
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
