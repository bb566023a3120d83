#!/usr/bin/env python3
"""Time from a backend's death to the answer change, with and without `watch: true`.

Each run starts `meridian serve` with one failover name over a tcp (or http) check at a 10 s
interval, fall 1, on a loopback backend that runs as its own process and keeps every
connection it accepts. After the primary answers (and, with watch, the watched connection
is up) and a random 1-3 s, the backend is killed with SIGKILL: its kernel closes the listener
and the connections. A UDP client asks every 10 ms until the answer moves to the backup and
reports the time from the kill. Median of RUNS runs per mode.

    Benchmarks/watch/watch.py [--runs 5] [--type tcp|http] [--bin .build/debug/meridian]

Bounded: each run gives up 15 s after the kill; traffic goes only to 127.0.0.1.
"""
import argparse, os, random, signal, socket, statistics, struct, subprocess, sys, tempfile, time

BACKEND = r"""
import selectors, socket, sys
ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", 0)); ls.listen(128)
print(ls.getsockname()[1], flush=True)
sel = selectors.DefaultSelector(); sel.register(ls, selectors.EVENT_READ)
buf = {}
while True:
    for key, _ in sel.select():
        s = key.fileobj
        if s is ls:
            c, _ = ls.accept(); sel.register(c, selectors.EVENT_READ); buf[c] = b""
            continue
        d = s.recv(4096)
        buf[s] += d
        if d and b"\r\n\r\n" in buf[s]:
            s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            d = b""
        if not d:
            sel.unregister(s); s.close(); del buf[s]
"""

ZONE = """$ORIGIN bench.test.
$TTL 300
@    IN SOA ns1 hostmaster 1 7200 3600 1209600 300
     IN NS  ns1
ns1  IN A   192.0.2.53
"""

def config(kind, port, watch):
    path = ", path: /health" if kind == "http" else ""
    w = ", watch: true" if watch else ""
    return f"""defaults: {{ ttl: 1 }}
zones:
  bench.test:
    file: bench.test.zone
    names:
      fo: {{ policy: {{ failover: [primary, backup] }} }}
checks:
  be: {{ type: {kind}, host: 127.0.0.1, port: {port}{path}, interval: 10s, timeout: 1s, rise: 1, fall: 1{w} }}
endpoints:
  primary: {{ v4: 192.0.2.1, check: be }}
  backup: {{ v4: 192.0.2.2 }}
"""

def first_address(port, qid, qname=b"\2fo\5bench\4test\0"):
    """The first A record's address in the answer to `qname` (wire form), None when none."""
    q = struct.pack(">HHHHHH", qid, 0, 1, 0, 0, 0) + qname + struct.pack(">HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.5)
        try:
            s.sendto(q, ("127.0.0.1", port))
            r, _ = s.recvfrom(4096)
        except OSError:
            return None
    if struct.unpack(">H", r[6:8])[0] == 0:
        return None
    i = len(q)  # header and question echoed; then a 2-byte name pointer and 10 bytes of type, class, TTL, length
    return socket.inet_ntoa(r[i + 12:i + 16])

def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

def connections_to(port):
    # Established connections whose remote end is the backend (the watched one), from /proc.
    n = 0
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            parts = line.split()
            if parts[2].endswith(":%04X" % port) and parts[3] == "01":
                n += 1
    return n

def wait(cond, seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.02)
    return False

def one_run(binary, kind, watch, folder):
    backend = subprocess.Popen([sys.executable, "-c", BACKEND], stdout=subprocess.PIPE, text=True)
    server = None
    try:
        bport = int(backend.stdout.readline())
        with open(os.path.join(folder, "meridian.yaml"), "w") as f:
            f.write(config(kind, bport, watch))
        dport = free_port()
        log = open(os.path.join(folder, "log.txt"), "w")
        server = subprocess.Popen([binary, "serve", "--config", os.path.join(folder, "meridian.yaml"),
                                   "--listen", f"127.0.0.1:{dport}"], stdout=log, stderr=log)
        if not wait(lambda: first_address(dport, 1) == "192.0.2.1", 10):
            raise RuntimeError("meridian did not answer with the primary; see " + folder + "/log.txt")
        if watch and not wait(lambda: connections_to(bport) >= 1, 5):
            raise RuntimeError("no watched connection")
        time.sleep(random.uniform(1, 3))
        t0 = time.monotonic()
        backend.send_signal(signal.SIGKILL)
        qid = 2
        while time.monotonic() - t0 < 15:
            qid = (qid + 1) & 0xFFFF
            if first_address(dport, qid) == "192.0.2.2":
                return time.monotonic() - t0
            time.sleep(0.01)
        return None
    finally:
        backend.kill(); backend.wait()
        if server:
            server.terminate()
            try:
                server.wait(5)
            except subprocess.TimeoutExpired:
                server.kill(); server.wait()

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--type", choices=["tcp", "http"], default="tcp")
    ap.add_argument("--bin", default=".build/debug/meridian")
    a = ap.parse_args()
    folder = tempfile.mkdtemp(prefix="meridian-watch-")
    with open(os.path.join(folder, "bench.test.zone"), "w") as f:
        f.write(ZONE)
    for watch in (True, False):
        times = [one_run(a.bin, a.type, watch, folder) for _ in range(a.runs)]
        done = [t for t in times if t is not None]
        shown = ", ".join("never" if t is None else f"{t * 1000:.0f}" for t in times)
        median = f"{statistics.median(done) * 1000:.0f} ms" if len(done) == len(times) else "n/a (a run never moved)"
        print(f"{a.type} interval 10s fall 1 watch={'yes' if watch else 'no '}: median {median}  (runs, ms: {shown})")

if __name__ == "__main__":
    main()
