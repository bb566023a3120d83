#!/usr/bin/env python3
"""Writes a generated Meridian configuration into a folder (meridian.yaml + scale.test.zone).

    gen.py DIR --names N [--endpoints E] [--prefixes P] [--generation G]

- N GSLB names n0..n{N-1}.scale.test: even ones `failover` over two endpoints, odd ones
  `geo` over a CIDR-map label (office) and a default.
- E endpoints (at least 6), each with one IPv4 address that encodes its index and the
  generation, so a reload with another G changes every answer.
- P > 0 adds the name `sub.scale.test`: a `subnet` policy with P distinct /24 (and /48)
  prefixes over six endpoints, plus `default`.
Everything is loopback only: no checks (endpoints are always up), no sockets besides the
server's own.
"""
import argparse
import os


def address(i, g):
    # 10.g.x.y: unique per endpoint for up to 65,536 endpoints per generation.
    return f"10.{g % 256}.{(i >> 8) & 255}.{i & 255}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--names", type=int, default=1000)
    ap.add_argument("--endpoints", type=int, default=6)
    ap.add_argument("--prefixes", type=int, default=0)
    ap.add_argument("--generation", type=int, default=1)
    ap.add_argument("--port", type=int, default=5353)
    a = ap.parse_args()
    e = max(a.endpoints, 6)
    os.makedirs(a.dir, exist_ok=True)
    with open(os.path.join(a.dir, "scale.test.zone"), "w") as z:
        z.write("$ORIGIN scale.test.\n$TTL 300\n"
                "@ IN SOA ns1 hostmaster 1 3600 600 86400 300\n"
                "@ IN NS ns1\nns1 IN A 127.0.0.1\n")
    out = []
    w = out.append
    w("server:\n")
    w(f'  listen: ["127.0.0.1:{a.port}"]\n')
    w("  workers: 2\n")
    w("zones:\n  scale.test:\n    file: scale.test.zone\n    names:\n")
    for n in range(a.names):
        x, y = (2 * n) % e, (2 * n + 1) % e
        if n % 2 == 0:
            w(f"      n{n}: {{ policy: {{ failover: [e{x}, e{y}] }} }}\n")
        else:
            w(f"      n{n}: {{ policy: {{ geo: {{ office: e{x}, default: e{y} }} }} }}\n")
    if a.prefixes > 0:
        w("      sub:\n        policy:\n          subnet:\n")
        for p in range(a.prefixes):
            t = p % 6
            if p % 2 == 0:
                q = p // 2
                w(f"            {(q >> 16) % 224 + 1}.{(q >> 8) & 255}.{q & 255}.0/24: e{t}\n")
            else:
                q = p // 2
                w(f'            "2001:db8:{q >> 16:x}:{q & 0xffff:x}::/64": e{t}\n')
        w("            default: e0\n")
    w("geo:\n  cidr:\n    192.0.2.0/24: office\n")
    w("endpoints:\n")
    for i in range(e):
        w(f"  e{i}: {{ v4: {address(i, a.generation)} }}\n")
    with open(os.path.join(a.dir, "meridian.yaml"), "w") as f:
        f.write("".join(out))


if __name__ == "__main__":
    main()
