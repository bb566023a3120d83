#!/usr/bin/env python3
"""Bounded soak test of the real `meridian` binary (issue 7).

For DURATION seconds (default 600): dnsperf sends load at a fixed rate (default 20,000 qps,
about half of what one core answers here; `--qps` to change), SIGHUP every 5 s alternating
two configurations whose answers differ, an endpoint flapping every 7 s through its state
file, and a checker that asks the GSLB and static names every 200 ms and verifies each answer
is one the current setup may give. Reports queries sent and lost (dnsperf), wrong answers,
reloads done, RSS at start and end, and whether the server crashed.

    Benchmarks/soak.py [--duration 600] [--qps 20000] [--bin .build/release/meridian]

Traffic goes only to 127.0.0.1; every loop is bounded by the duration.
"""
import argparse, os, re, shutil, signal, socket, struct, subprocess, sys, tempfile, time

ZONE = """$ORIGIN soak.test.
$TTL 300
@    IN SOA ns1 hostmaster 1 7200 3600 1209600 300
     IN NS  ns1
ns1  IN A   192.0.2.53
static IN A 192.0.2.100
"""

def config(version):
    # Version A sends "www" to dc a, version B to dc b; "fo" fails over a -> b by state file.
    first, second = ("a", "b") if version == 0 else ("b", "a")
    return f"""
defaults: {{ ttl: 5 }}
zones:
  soak.test:
    file: soak.test.zone
    names:
      www: {{ policy: {{ failover: [{first}, {second}] }} }}
      fo: {{ policy: {{ failover: [a, b] }} }}
checks:
  defaults: {{ interval: 500ms }}
  flap: {{ type: file, file: state }}
endpoints:
  a-1: {{ v4: 192.0.2.1, check: flap }}
  b-1: {{ v4: 192.0.2.2 }}
pools:
  a: [a-1]
  b: [b-1]
"""

def query(name, qid):
    q = struct.pack(">HHHHHH", qid, 0, 1, 0, 0, 0)
    for label in name.rstrip(".").split("."):
        q += bytes([len(label)]) + label.encode()
    return q + b"\0" + struct.pack(">HH", 1, 1)

def answers(port, name, qid):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(1.0)
        s.sendto(query(name, qid), ("127.0.0.1", port))
        r, _ = s.recvfrom(4096)
    an = struct.unpack(">H", r[6:8])[0]
    out, i = set(), 12
    while r[i] != 0:
        i += r[i] + 1
    i += 5
    for _ in range(an):
        i += 2  # compressed owner
        t, _, _, ln = struct.unpack(">HHIH", r[i:i + 10])
        if t == 1 and ln == 4:
            out.add(socket.inet_ntoa(r[i + 10:i + 14]))
        i += 10 + ln
    return out

def rss_kib(pid):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=600)
    ap.add_argument("--qps", type=int, default=20000)
    ap.add_argument("--bin", default=".build/release/meridian")
    ap.add_argument("--smoke", action="store_true",
                    help="CI smoke run: fail only on crashes, wrong answers or failed reloads, not on "
                         "queries lost to a busy shared machine")
    a = ap.parse_args()
    if not shutil.which("dnsperf"):
        sys.exit("dnsperf is not installed (apt-get install dnsperf)")
    work = tempfile.mkdtemp(prefix="meridian-soak-")
    open(os.path.join(work, "soak.test.zone"), "w").write(ZONE)
    open(os.path.join(work, "state"), "w").write("up\n")
    cfg = os.path.join(work, "meridian.yaml")
    open(cfg, "w").write(config(0))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
    log = open(os.path.join(work, "meridian.log"), "w")
    # Saved overrides go to a private folder, not the default /var/lib/meridian (which a
    # run as a user other than root cannot create).
    server = subprocess.Popen([a.bin, "serve", "--config", cfg, "--listen", f"127.0.0.1:{port}",
                               "--state-dir", os.path.join(work, "overrides")], stderr=log)
    deadline = time.time() + 15
    while True:
        if server.poll() is not None or time.time() > deadline:
            log.close()
            sys.exit("meridian did not start:\n" + open(os.path.join(work, "meridian.log")).read())
        try:
            answers(port, "static.soak.test", 1); break
        except OSError:
            time.sleep(0.1)
    rss_start = rss_kib(server.pid)
    qfile = os.path.join(work, "queries.txt")
    with open(qfile, "w") as f:
        for _ in range(100):
            f.write("www.soak.test A\nfo.soak.test A\nstatic.soak.test A\nnope.soak.test A\n")
    perf = subprocess.Popen(["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", qfile, "-l", str(int(a.duration)),
                             "-Q", str(a.qps), "-c", "4", "-t", "2"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    start = time.time()
    version, flap_up, reloads, checks, wrong, unanswered = 0, True, 0, 0, 0, 0
    next_reload, next_flap, qid = start + 5, start + 7, 0
    # Answers allowed in a window around a change (resolution takes up to one check interval).
    while time.time() - start < a.duration and server.poll() is None:
        now = time.time()
        if now >= next_reload:
            version ^= 1
            open(cfg + ".tmp", "w").write(config(version)); os.replace(cfg + ".tmp", cfg)
            server.send_signal(signal.SIGHUP); reloads += 1; next_reload += 5
        if now >= next_flap:
            flap_up = not flap_up
            open(os.path.join(work, "state.tmp"), "w").write("up\n" if flap_up else "down\n")
            os.replace(os.path.join(work, "state.tmp"), os.path.join(work, "state"))
            next_flap += 7
        for name, allowed in (("static.soak.test", [{"192.0.2.100"}]),
                              ("www.soak.test", [{"192.0.2.1"}, {"192.0.2.2"}]),
                              ("fo.soak.test", [{"192.0.2.1"}, {"192.0.2.2"}])):
            qid = (qid + 1) & 0xFFFF
            checks += 1
            try:
                got = answers(port, name, qid)
                if got not in allowed:
                    wrong += 1
                    print(f"wrong answer for {name}: {got}", file=sys.stderr)
            except OSError:
                unanswered += 1
        time.sleep(0.2)
    crashed = server.poll() is not None
    out, _ = perf.communicate(timeout=a.duration + 30)
    rss_end = rss_kib(server.pid)
    if not crashed:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=5)
        except subprocess.TimeoutExpired:
            server.kill()
    sent = re.search(r"Queries sent:\s+(\d+)", out)
    lost = re.search(r"Queries lost:\s+(\d+)", out)
    ok_reloads = open(os.path.join(work, "meridian.log")).read().count("reload ok")
    print(f"soak {a.duration:.0f} s at {a.qps} qps: queries sent {sent.group(1) if sent else '?'}, "
          f"lost {lost.group(1) if lost else '?'}; checker {checks} queries, {wrong} wrong, {unanswered} unanswered; "
          f"reloads {ok_reloads}/{reloads}; RSS start {rss_start} KiB end {rss_end} KiB; crashes {1 if crashed else 0}")
    shutil.rmtree(work, ignore_errors=True)
    lost_any = bool(lost and int(lost.group(1)) > 0)
    bad = crashed or wrong > 0 or ok_reloads != reloads or (lost_any and not a.smoke)
    return 1 if bad else 0

if __name__ == "__main__":
    sys.exit(main())
