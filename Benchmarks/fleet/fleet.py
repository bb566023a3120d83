#!/usr/bin/env python3
"""Fleet mode: override propagation time and the query rate while overrides change.

Starts a real etcd (Debian's etcd-server) and three `meridian serve` instances in fleet mode
on free loopback ports, each with its own state folder.

1. Propagation: OVERRIDES changes (dc:ams down, then cleared, alternately) through the
   control API of one instance. For each, the time from sending the request to the moment
   the last of the three instances answers the new way (a UDP client asks each instance in
   turn, without pause), and to the API's reply (which waits for every acknowledgement).
   Reported as p50 and p99.
2. Query rate: dnsperf against one fleet instance while an override flips every 100 ms,
   against a fourth instance with the same configuration but no `fleet:` and no flips,
   interleaved over ROUNDS rounds of DURATION seconds each; the ratio of the medians.

    swift build --product meridian
    Benchmarks/fleet/fleet.py [--overrides 50] [--rounds 3] [--duration 5] [--bin .build/debug/meridian]

Bounded: every wait has a deadline (a propagation gives up after 10 s); traffic goes only to
127.0.0.1; every process started is stopped at the end, also on failure.
"""
import argparse, http.client, json, os, re, shutil, socket, statistics, subprocess, sys, tempfile, threading, time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "watch"))
import watch  # noqa: E402  (the UDP probe and the bounded wait, shared)

ZONE = "\n".join(["$ORIGIN ctl.test.", "$TTL 3600", "@ SOA ns1 hostmaster 1 7200 3600 1209600 300", "@ NS ns1",
                   "ns1 A 192.0.2.53", ""])

BODY = """zones:
  ctl.test:
    file: ctl.test.zone
    names:
      www: { policy: { failover: [ams, iad] } }
datacenters:
  ams: { lat: 52.37, lon: 4.90 }
  iad: { lat: 38.95, lon: -77.45 }
endpoints:
  ams-1: { v4: 192.0.2.10, dc: ams }
  iad-1: { v4: 198.51.100.10, dc: iad }
"""
AMS, IAD = "192.0.2.10", "198.51.100.10"


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def first_address(port, qid):
    return watch.first_address(port, qid, b"\3www\3ctl\4test\0")


wait = watch.wait


def request(port, method, path, body=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        c.request(method, path, body=json.dumps(body) if body else None, headers={"Content-Type": "application/json"})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def percentile(values, q):
    v = sorted(values)
    return v[min(len(v) - 1, int(round((len(v) - 1) * q)))]


class Fleet:
    def __init__(self, binary, folder):
        self.binary, self.folder, self.procs = binary, folder, []

    def start_etcd(self):
        self.etcd_port, peer = free_port(), free_port()
        url, purl = f"http://127.0.0.1:{self.etcd_port}", f"http://127.0.0.1:{peer}"
        log = open(os.path.join(self.folder, "etcd.log"), "w")
        self.procs.append(subprocess.Popen(["etcd", "--data-dir", os.path.join(self.folder, "etcd"),
                                            "--listen-client-urls", url, "--advertise-client-urls", url,
                                            "--listen-peer-urls", purl, "--initial-advertise-peer-urls", purl,
                                            "--initial-cluster", f"default={purl}"], stdout=log, stderr=log))
        ok = lambda: request(self.etcd_port, "POST", "/v3/kv/range", {"key": "AA=="})[0] == 200
        if not wait(lambda: _quiet(ok), 15):
            raise RuntimeError("etcd did not start; see " + self.folder + "/etcd.log")

    def start_meridian(self, name, fleet):
        config = os.path.join(self.folder, f"{name}.yaml")
        with open(config, "w") as f:
            if fleet:
                f.write(f"fleet:\n  etcd: [http://127.0.0.1:{self.etcd_port}]\n  prefix: /bench/\n  lease_ttl: 5s\n  ack_timeout: 5s\n")
            f.write(BODY)
        dns, ctl = free_port(), free_port()
        state = os.path.join(self.folder, f"state-{name}")
        os.makedirs(state)
        log = open(os.path.join(self.folder, f"{name}.log"), "w")
        self.procs.append(subprocess.Popen([self.binary, "serve", "--config", config, "--listen", f"127.0.0.1:{dns}",
                                            "--control", f"127.0.0.1:{ctl}", "--state-dir", state, "--fleet-name", name,
                                            "--log-level", "warning"], stdout=log, stderr=log))
        if not wait(lambda: first_address(dns, 1) == AMS and _quiet(lambda: request(ctl, "GET", "/healthz")[0] == 200), 15):
            raise RuntimeError(f"{name} did not start; see {self.folder}/{name}.log")
        return dns, ctl

    def stop(self):
        for p in reversed(self.procs):
            p.terminate()
        for p in self.procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill(); p.wait()


def _quiet(f):
    try:
        return f()
    except OSError:
        return False


def change(ctl, n):
    """The n-th change: even n forces ams down, odd n clears it. Returns the answer it leads to."""
    if n % 2 == 0:
        st, body = request(ctl, "POST", "/override", {"target": "dc:ams", "state": "down", "reason": f"bench {n}", "author": "bench"})
        return st, body, IAD
    st, body = request(ctl, "DELETE", "/override?target=dc:ams")
    return st, body, AMS


def propagation(instances, ctl, count):
    to_last, to_ack = [], []
    qid = 2
    for n in range(count):
        reply = {}
        expected = IAD if n % 2 == 0 else AMS
        t0 = time.monotonic()
        th = threading.Thread(target=lambda: reply.update(r=change(ctl, n), t=time.monotonic()))
        th.start()
        pending = set(instances)
        while pending and time.monotonic() - t0 < 10:
            for port in list(pending):
                qid = (qid + 1) & 0xFFFF
                if first_address(port, qid) == expected:
                    pending.discard(port)
        t_last = time.monotonic()
        th.join(15)
        if pending or "r" not in reply or reply["r"][0] != 200:
            raise RuntimeError(f"change {n} did not propagate: pending {sorted(pending)}, reply {reply.get('r')}")
        to_last.append(t_last - t0)
        to_ack.append(reply["t"] - t0)
    return to_last, to_ack


def dnsperf(port, seconds, folder):
    qfile = os.path.join(folder, "queries.txt")
    with open(qfile, "w") as f:
        f.write("www.ctl.test A\n" * 100)
    out = subprocess.run(["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", qfile, "-l", str(seconds), "-c", "4", "-q", "64"],
                         capture_output=True, text=True, timeout=seconds + 30).stdout
    m = re.search(r"Queries per second:\s+([\d.]+)", out)
    if not m:
        raise RuntimeError("dnsperf: " + out[-500:])
    return float(m.group(1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--overrides", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--bin", default=".build/debug/meridian")
    a = ap.parse_args()
    for tool in ("etcd", "dnsperf"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is not installed (scripts/setup installs etcd-server and dnsperf)")
    folder = tempfile.mkdtemp(prefix="meridian-fleet-bench-")
    with open(os.path.join(folder, "ctl.test.zone"), "w") as f:
        f.write(ZONE)
    fleet = Fleet(os.path.abspath(a.bin), folder)
    try:
        fleet.start_etcd()
        members = [fleet.start_meridian(n, True) for n in ("ns1", "ns2", "ns3")]
        alone = fleet.start_meridian("alone", False)
        dns_ports = [d for d, _ in members]
        last, ack = propagation(dns_ports, members[0][1], a.overrides)
        ms = lambda v: f"{v * 1000:.1f} ms"
        print(f"propagation over {a.overrides} overrides, 3 instances:")
        print(f"  request sent -> last instance answers the new way: p50 {ms(percentile(last, 0.5))}, p99 {ms(percentile(last, 0.99))}, max {ms(max(last))}")
        print(f"  request sent -> API reply (all acknowledged):      p50 {ms(percentile(ack, 0.5))}, p99 {ms(percentile(ack, 0.99))}")

        stop = threading.Event()
        def flip():
            n = 0
            while not stop.is_set():
                change(members[0][1], n); n += 1
                stop.wait(0.1)
        with_fleet, baseline = [], []
        for _ in range(a.rounds):
            stop.clear()
            th = threading.Thread(target=flip); th.start()
            try:
                with_fleet.append(dnsperf(members[1][0], a.duration, folder))
            finally:
                stop.set(); th.join(15)
            baseline.append(dnsperf(alone[0], a.duration, folder))
        mf, mb = statistics.median(with_fleet), statistics.median(baseline)
        print(f"query rate, {a.rounds} interleaved rounds of {a.duration} s (dnsperf -c 4 -q 64):")
        print(f"  fleet instance, an override flipping every 100 ms: median {mf:.0f} q/s  (rounds: {', '.join(f'{x:.0f}' for x in with_fleet)})")
        print(f"  same configuration without fleet, no overrides:    median {mb:.0f} q/s  (rounds: {', '.join(f'{x:.0f}' for x in baseline)})")
        print(f"  ratio fleet/baseline: {mf / mb:.3f}")
    finally:
        fleet.stop()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
