#!/usr/bin/env python3
"""Reports Meridian's amplification factor (response bytes / query bytes) over UDP.

For each zone in a folder it asks ANY at the apex and, for every RRset in the zone files,
the question with the largest answer, with and without EDNS (4096-byte buffer, the largest
a reflection attacker would offer). Responses never exceed the negotiated size; the
report shows how close they come.

    Benchmarks/amplification.py [--zones zones] [--bin .build/debug/meridian]

Traffic goes only to 127.0.0.1, one query at a time, bounded by the number of RRsets.
"""
import argparse, os, random, re, socket, struct, subprocess, sys, time

def encode_name(name):
    out = b""
    for label in name.rstrip(".").split("."):
        if label:
            out += bytes([len(label)]) + label.encode()
    return out + b"\0"

TYPES = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "PTR": 12, "MX": 15, "TXT": 16, "AAAA": 28,
         "SRV": 33, "CAA": 257, "ANY": 255, "HTTPS": 65, "SVCB": 64, "DS": 43}

def query(name, qtype, edns):
    q = struct.pack(">HHHHHH", random.randrange(65536), 0, 1, 0, 0, 1 if edns else 0)
    q += encode_name(name) + struct.pack(">HH", TYPES[qtype], 1)
    if edns:
        q += b"\0" + struct.pack(">HHIH", 41, 4096, 0, 0)
    return q

def ask(port, name, qtype, edns):
    q = query(name, qtype, edns)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2)
        s.sendto(q, ("127.0.0.1", port))
        r, _ = s.recvfrom(65535)
    return len(q), len(r), bool(r[2] & 0x02)

def questions(zones):
    """(owner, type) pairs from every zone file, plus ANY at each origin."""
    out = set()
    for f in sorted(os.listdir(zones)):
        if not f.endswith(".zone"):
            continue
        origin = f[:-5].rstrip(".") + "."
        out.add((origin, "ANY"))
        owner = origin
        for line in open(os.path.join(zones, f), encoding="utf-8", errors="replace"):
            line = line.split(";")[0].rstrip()
            if not line or line.startswith("$"):
                m = re.match(r"\$ORIGIN\s+(\S+)", line)
                if m:
                    origin = m.group(1)
                continue
            fields = line.split()
            if not line[0].isspace():
                owner = fields[0]
                owner = origin if owner == "@" else (owner if owner.endswith(".") else owner + "." + origin)
            for tok in fields:
                if tok.upper() in TYPES and tok.upper() != "ANY":
                    if not owner.startswith("*"):
                        out.add((owner, tok.upper()))
                    break
    return sorted(out)

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--zones", default="zones")
    ap.add_argument("--bin", default=".build/debug/meridian")
    ap.add_argument("--port", type=int, default=0)
    a = ap.parse_args()
    port = a.port
    proc = None
    if port == 0:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
        proc = subprocess.Popen([a.bin, "serve", "--zones", a.zones, "--listen", f"127.0.0.1:{port}"],
                                stderr=subprocess.DEVNULL)
        time.sleep(1.0)
    try:
        rows = []
        for owner, qtype in questions(a.zones):
            for edns in (False, True):
                try:
                    qlen, rlen, tc = ask(port, owner, qtype, edns)
                except socket.timeout:
                    continue
                rows.append((rlen / qlen, owner, qtype, edns, qlen, rlen, tc))
        rows.sort(reverse=True)
        print(f"{'factor':>6}  {'query':>5}  {'reply':>5}  tc  edns  question")
        for f, owner, qtype, edns, qlen, rlen, tc in rows[:15]:
            print(f"{f:6.1f}  {qlen:5d}  {rlen:5d}  {'TC' if tc else '  '}  {'yes ' if edns else 'no  '}  {owner} {qtype}")
        anys = [r for r in rows if r[2] == "ANY"]
        if anys:
            print(f"ANY: largest factor {max(r[0] for r in anys):.1f}")
        if rows:
            print(f"largest factor {rows[0][0]:.1f} ({rows[0][1]} {rows[0][2]}); "
                  f"no reply over 512 bytes without EDNS: {all(r[5] <= 512 for r in rows if not r[3])}; "
                  f"none over 1232 with EDNS: {all(r[5] <= 1232 for r in rows if r[3])}")
    finally:
        if proc:
            proc.terminate(); proc.wait(timeout=5)

if __name__ == "__main__":
    sys.exit(main())
