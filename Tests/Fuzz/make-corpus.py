#!/usr/bin/env python3
"""Writes the seed corpus in Tests/Fuzz/corpus/<target>/ (run from the repository root).

The seeds are committed; this script documents how each was made and regenerates them.
FuzzQuery seeds are one control byte (see Tests/Fuzz/FuzzQuery/Harness.swift) + a message;
FuzzRData seeds are one mode/type byte (Tests/Fuzz/FuzzRData/Harness.swift) + rdata.
"""
import os, shutil, struct, ipaddress, base64

ROOT = "Tests/Fuzz/corpus"

def out(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)

def wname(n):
    if n in (".", ""):
        return b"\0"
    b = b""
    for label in n.rstrip(".").split("."):
        b += bytes([len(label)]) + label.encode()
    return b + b"\0"

TYPES = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "PTR": 12, "HINFO": 13, "MX": 15, "TXT": 16, "AAAA": 28,
         "SRV": 33, "NAPTR": 35, "DNAME": 39, "OPT": 41, "DS": 43, "SSHFP": 44, "RRSIG": 46, "NSEC": 47,
         "DNSKEY": 48, "TLSA": 52, "SVCB": 64, "HTTPS": 65, "SPF": 99, "TKEY": 249, "IXFR": 251,
         "AXFR": 252, "MAILB": 253, "ANY": 255, "CAA": 257, "TYPE65534": 65534, "TYPE0": 0}

def header(id=0x1234, flags=0, qd=1, an=0, ns=0, ar=0):
    return struct.pack(">HHHHHH", id, flags, qd, an, ns, ar)

def opt(size=1232, ext=0, version=0, do=False, options=b"", owner=b"\0"):
    ttl = (ext << 24) | (version << 16) | (0x8000 if do else 0)
    return owner + struct.pack(">HHIH", 41, size, ttl, len(options)) + options

def option(code, data):
    return struct.pack(">HH", code, len(data)) + data

def ecs(family, source, scope, addr):
    return option(8, struct.pack(">HBB", family, source, scope) + addr)

def query(name, qtype, cls=1, flags=0, id=0x1234, edns=None, extra=b"", ar=None):
    q = wname(name) + struct.pack(">HH", TYPES.get(qtype, qtype) if isinstance(qtype, str) else qtype, cls)
    arcount = (1 if edns is not None else 0) if ar is None else ar
    return header(id=id, flags=flags, ar=arcount) + q + (edns or b"") + extra

def fuzz_query():
    t = "FuzzQuery"
    names = ["example.com.", "www.example.com.", "ns1.example.com.", "mail.example.com.", "docs.example.com.",
             "lab.example.com.", "ns1.lab.example.com.", "x.lab.example.com.", "foo.apps.example.com.",
             "_sip._tcp.example.com.", "nothing.example.com.", "fuzz.test.", "big.fuzz.test.", "bigtxt.fuzz.test.",
             "bigdeleg.fuzz.test.", "sub.fuzz.test.", "a.b.sub.fuzz.test.", "y.deep.fuzz.test.", "x.y.deep.fuzz.test.",
             "a.wild.fuzz.test.", "a.b.wild.fuzz.test.", "x.cw.fuzz.test.", "alias.fuzz.test.", "loop1.fuzz.test.",
             "dangling.fuzz.test.", "out.fuzz.test.", "c0.fuzz.test.", "mx.fuzz.test.", "gslb.fuzz.test.",
             "gslb-cname.fuzz.test.", "gslb-ecs.fuzz.test.", "q.gslb-wild.fuzz.test.", "MiXeDcAsE.FUZZ.test.",
             "dname.fuzz.test.", "x.dname.fuzz.test.", "example.org.", "."]
    for i, n in enumerate(names):
        out(t, f"name-{i:02d}-a", b"\0" + query(n, "A"))
        out(t, f"name-{i:02d}-any-edns", b"\0" + query(n, "ANY", edns=opt()))
    for ty in ["A", "NS", "CNAME", "SOA", "PTR", "HINFO", "MX", "TXT", "AAAA", "SRV", "NAPTR", "DNAME", "DS",
               "SSHFP", "TLSA", "SVCB", "HTTPS", "SPF", "CAA", "TYPE65534", "RRSIG", "DNSKEY", "NSEC"]:
        for n in ["fuzz.test.", "svc.fuzz.test.", "sub.fuzz.test.", ty.lower() + ".fuzz.test."]:
            out(t, f"type-{ty.lower()}-{n.split('.')[0] or 'root'}", b"\0" + query(n, ty, edns=opt()))
    # Refused and not-implemented kinds.
    out(t, "axfr", b"\1" + query("fuzz.test.", "AXFR"))
    out(t, "ixfr", b"\0" + query("fuzz.test.", "IXFR"))
    out(t, "mailb", b"\0" + query("fuzz.test.", "MAILB"))
    out(t, "tkey", b"\0" + query("fuzz.test.", "TKEY"))
    out(t, "qtype-opt", b"\0" + query("fuzz.test.", "OPT"))
    out(t, "qtype-0", b"\0" + query("fuzz.test.", "TYPE0"))
    out(t, "class-ch", b"\0" + query("version.bind.", "TXT", cls=3))
    out(t, "class-any", b"\0" + query("fuzz.test.", "SOA", cls=255))
    out(t, "class-none", b"\0" + query("fuzz.test.", "SOA", cls=254))
    out(t, "opcode-notify", b"\0" + query("fuzz.test.", "SOA", flags=4 << 11))
    out(t, "opcode-update", b"\0" + query("fuzz.test.", "SOA", flags=5 << 11))
    out(t, "rd-cd-set", b"\0" + query("fuzz.test.", "A", flags=0x0110))
    out(t, "qr-set", b"\0" + query("fuzz.test.", "A", flags=0x8000))
    # EDNS variants, with each control bit.
    for ctl in range(16):
        out(t, f"edns-big-ctl{ctl}", bytes([ctl]) + query("big.fuzz.test.", "AAAA", edns=opt(size=4096)))
        out(t, f"deleg-ctl{ctl}", bytes([ctl]) + query("x.bigdeleg.fuzz.test.", "A", edns=opt(size=700)))
    for size in [0, 511, 512, 513, 1232, 1400, 4096, 65535]:
        out(t, f"edns-size-{size}", b"\0" + query("bigtxt.fuzz.test.", "TXT", edns=opt(size=size)))
    out(t, "edns-do", b"\0" + query("fuzz.test.", "SOA", edns=opt(do=True)))
    out(t, "edns-version1", b"\0" + query("fuzz.test.", "SOA", edns=opt(version=1)))
    out(t, "edns-extrcode", b"\0" + query("fuzz.test.", "SOA", edns=opt(ext=1)))
    out(t, "ecs-v4-24", b"\0" + query("gslb-ecs.fuzz.test.", "A", edns=opt(options=ecs(1, 24, 0, bytes([198, 51, 100])))))
    out(t, "ecs-v4-32", b"\0" + query("gslb-ecs.fuzz.test.", "A", edns=opt(options=ecs(1, 32, 0, bytes([198, 51, 100, 7])))))
    out(t, "ecs-v4-0", b"\0" + query("gslb-ecs.fuzz.test.", "A", edns=opt(options=ecs(1, 0, 0, b""))))
    out(t, "ecs-v6-56", b"\x08" + query("gslb-ecs.fuzz.test.", "AAAA", edns=opt(options=ecs(2, 56, 0, bytes.fromhex("20010db8000000")))))
    out(t, "ecs-v6-128", b"\x08" + query("gslb.fuzz.test.", "AAAA", edns=opt(options=ecs(2, 128, 0, bytes(16)))))
    out(t, "ecs-scope-set", b"\0" + query("gslb-cname.fuzz.test.", "A", edns=opt(options=ecs(1, 24, 24, bytes([198, 51, 100])))))
    out(t, "nsid", b"\x02" + query("fuzz.test.", "SOA", edns=opt(options=option(3, b""))))
    out(t, "cookie-client", b"\0" + query("fuzz.test.", "A", edns=opt(options=option(10, bytes(range(8))))))
    out(t, "cookie-full", b"\0" + query("fuzz.test.", "A", edns=opt(options=option(10, bytes(range(24))))))
    out(t, "keepalive-tcp", b"\x01" + query("fuzz.test.", "A", edns=opt(options=option(11, b""))))
    out(t, "padding", b"\0" + query("fuzz.test.", "A", edns=opt(options=option(12, bytes(32)))))
    out(t, "unknown-option", b"\0" + query("fuzz.test.", "A", edns=opt(options=option(65001, b"xyz"))))
    out(t, "all-options", b"\x02" + query("gslb-ecs.fuzz.test.", "A", edns=opt(do=True, options=
        option(3, b"") + ecs(1, 24, 0, bytes([198, 51, 100])) + option(10, bytes(range(8))) + option(11, b"") + option(12, bytes(4)))))
    # Malformed messages: each should be FORMERR (or silence), never a crash.
    qtail = struct.pack(">HH", 1, 1)
    out(t, "bad-empty", b"\0")
    out(t, "bad-short-header", b"\0" + header()[:11])
    out(t, "bad-header-only", b"\0" + header())
    out(t, "bad-qdcount0", b"\0" + header(qd=0))
    out(t, "bad-qdcount2", b"\0" + header(qd=2) + wname("a.fuzz.test.") + qtail + wname("b.fuzz.test.") + qtail)
    out(t, "bad-pointer-self", b"\0" + header() + b"\xc0\x0c" + qtail)
    out(t, "bad-pointer-forward", b"\0" + header() + b"\xc0\x10" + qtail + wname("x."))
    out(t, "bad-pointer-loop", b"\0" + header() + b"\x01a\xc0\x0e\xc0\x0c" + qtail)
    out(t, "bad-pointer-out", b"\0" + header() + b"\xff\xff" + qtail)
    out(t, "bad-pointer-chain", b"\0" + header(an=1) + wname("a.fuzz.test.") + qtail + b"\xc0\x0e" + struct.pack(">HHIH", 1, 1, 0, 4) + bytes(4))
    out(t, "bad-label-64", b"\0" + header() + b"\x40" + b"a" * 64 + b"\0" + qtail)
    out(t, "bad-name-256", b"\0" + header() + (b"\x3f" + b"a" * 63) * 4 + b"\0" + qtail)
    out(t, "ok-name-255", b"\0" + header() + (b"\x3f" + b"a" * 63) * 3 + b"\x3d" + b"a" * 61 + b"\0" + qtail)
    out(t, "bad-label-type-01", b"\0" + header() + b"\x41a\0" + qtail)
    out(t, "bad-label-type-10", b"\0" + header() + b"\x81a\0" + qtail)
    out(t, "bad-truncated-question", b"\0" + header() + wname("fuzz.test.") + b"\0")
    out(t, "bad-truncated-name", b"\0" + header() + b"\x04fuz")
    out(t, "bad-trailing", b"\0" + query("fuzz.test.", "A") + b"\0\0")
    out(t, "bad-two-opt", b"\0" + query("fuzz.test.", "A", edns=opt() + opt(), ar=2))
    out(t, "bad-opt-in-answer", b"\0" + header(an=1) + wname("fuzz.test.") + qtail + opt())
    out(t, "bad-opt-in-authority", b"\0" + header(ns=1) + wname("fuzz.test.") + qtail + opt())
    out(t, "bad-opt-owner", b"\0" + query("fuzz.test.", "A", edns=opt(owner=wname("x."))))
    out(t, "bad-opt-owner-ptr", b"\0" + query("fuzz.test.", "A", edns=opt(owner=b"\xc0\x0c")))
    out(t, "bad-opt-rdlen", b"\0" + query("fuzz.test.", "A", edns=b"\0" + struct.pack(">HHIH", 41, 1232, 0, 10) + b"\0\x08"))
    out(t, "bad-option-overrun", b"\0" + query("fuzz.test.", "A", edns=opt(options=b"\0\x08\0\x20\0\x01")))
    out(t, "bad-option-short", b"\0" + query("fuzz.test.", "A", edns=opt(options=b"\0\x08\0")))
    out(t, "bad-ecs-family3", b"\0" + query("fuzz.test.", "A", edns=opt(options=ecs(3, 8, 0, b"\1"))))
    out(t, "bad-ecs-source33", b"\0" + query("fuzz.test.", "A", edns=opt(options=ecs(1, 33, 0, bytes(5)))))
    out(t, "bad-ecs-scope-129", b"\0" + query("fuzz.test.", "A", edns=opt(options=ecs(2, 56, 129, bytes(7)))))
    out(t, "bad-ecs-addr-long", b"\0" + query("fuzz.test.", "A", edns=opt(options=ecs(1, 8, 0, bytes([10, 0])))))
    out(t, "bad-ecs-addr-short", b"\0" + query("fuzz.test.", "A", edns=opt(options=ecs(1, 24, 0, bytes([10, 0])))))
    out(t, "bad-ecs-bits-past-prefix", b"\0" + query("fuzz.test.", "A", edns=opt(options=ecs(1, 20, 0, bytes([10, 0, 0xff])))))
    out(t, "bad-ecs-len3", b"\0" + query("fuzz.test.", "A", edns=opt(options=option(8, b"\0\1\0"))))
    out(t, "bad-cookie-5", b"\0" + query("fuzz.test.", "A", edns=opt(options=option(10, bytes(5)))))
    out(t, "bad-cookie-41", b"\0" + query("fuzz.test.", "A", edns=opt(options=option(10, bytes(41)))))
    out(t, "bad-record-overrun", b"\0" + header(ar=1) + wname("fuzz.test.") + qtail + wname(".") + struct.pack(">HHIH", 1, 1, 0, 40))
    out(t, "bad-count-overrun", b"\0" + header(an=0xffff, ns=0xffff, ar=0xffff) + wname("fuzz.test.") + qtail)

def fuzz_zonefile():
    t = "FuzzZoneFile"
    head = "$ORIGIN fuzz.test.\n$TTL 300\n@ IN SOA ns1 hostmaster 1 2h 1h 2w 5m\n  IN NS ns1\nns1 IN A 192.0.2.1\n"
    snippets = {
        "a": "www IN A 192.0.2.10\n", "aaaa": "www IN AAAA 2001:db8::10\n", "ns": "sub IN NS ns.sub\nns.sub IN A 192.0.2.2\n",
        "cname": "alias IN CNAME www\nwww IN A 192.0.2.1\n", "ptr": "p IN PTR host.example.\n",
        "mx": "@ IN MX 10 mail\nmail IN A 192.0.2.3\n", "txt": 'txt IN TXT "a b" c "\\"q\\"" "\\065\\255"\n',
        "spf": 'spf IN SPF "v=spf1 -all"\n', "srv": "_sip._tcp IN SRV 10 60 5060 sip\n",
        "caa": 'caa IN CAA 128 issue "ca.example; account=1"\n', "hinfo": 'h IN HINFO "INTEL" LINUX\n',
        "naptr": 'n IN NAPTR 100 10 "U" "E2U+sip" "!^.*$!sip:info@example.com!" .\n',
        "dname": "d IN DNAME example.net.\n", "ds": "sub IN NS ns.example.\nsub IN DS 60485 5 1 2BB183AF5F22588179A53B0A98631FAD1A292118\n",
        "sshfp": "s IN SSHFP 4 2 123456789abcdef67890123456789abcdef67890123456789abcdef123456789\n",
        "tlsa": "_443._tcp IN TLSA 3 1 1 ( 0C72AC70B745AC19998811B131D662C9\n AC69DBDBE7CB23E5B514B56664C5D3D6 )\n",
        "svcb": 'svc IN SVCB 1 . alpn="h2,h3" port=8443 ipv4hint=192.0.2.1,192.0.2.2 ipv6hint=2001:db8::1 mandatory=alpn,port ech=AEn+DQBFKwAgACABWIHUGj4u+PIggYXcR5JF0gYk3dCRioBW8uJq9H4mKAAIAAEAAQABAANAEnB1YmxpYy50bHMtZWNoLmRldgAA key65000="x\\,y"\n',
        "https": "h2 IN HTTPS 0 svc.fuzz.test.\nh3 IN HTTPS 1 . no-default-alpn alpn=h3\n",
        "generic": "u IN TYPE65534 \\# 4 0A000001\nv IN A \\# 4 C0000201\nw IN TYPE999 \\# 0\n",
        "wildcard": "*.w IN A 192.0.2.9\n*.w IN TXT wild\n", "ttl-units": "t 1w2d3h4m5s IN A 192.0.2.4\nt2 IN 90 A 192.0.2.5\n",
        "class-first": "c IN 60 A 192.0.2.6\n", "escapes": "a\\.b IN A 192.0.2.7\n\\097\\032x IN A 192.0.2.8\n",
        "parens": "p IN SOA ( ns1 hostmaster\n 1 ; serial\n 2 3 4 5 )\n", "blank-owner": "x IN A 192.0.2.1\n  IN AAAA ::1\n",
        "origin": "$ORIGIN sub.fuzz.test.\nx IN A 192.0.2.1\n$ORIGIN fuzz.test.\n", "include": "$INCLUDE inc.zone\n$INCLUDE inc.zone other.fuzz.test.\n",
        "include-escape": "$INCLUDE ../../../etc/passwd\n", "include-missing": "$INCLUDE nope.zone\n",
        "big-rrset": "".join(f"big IN A 10.0.{i // 256}.{i % 256}\n" for i in range(100)),
        "long-label": "a" * 63 + " IN A 192.0.2.1\n", "long-name": ".".join(["a" * 60] * 4) + " IN A 192.0.2.1\n",
    }
    for k, v in snippets.items():
        out(t, "ok-" + k, head + v)
    bad = {
        "no-soa": "$ORIGIN fuzz.test.\n$TTL 60\n@ IN NS ns1\n", "cname-and-a": "x IN CNAME y\nx IN A 192.0.2.1\n",
        "two-soa": "@ IN SOA a b 1 2 3 4 5\n", "below-dname": "d IN DNAME x.\na.d IN A 192.0.2.1\n",
        "below-cut": "s IN NS ns.x.\na.s IN TXT x\n", "ds-not-cut": "x IN DS 1 1 1 00\n", "out-of-zone": "x.example. IN A 192.0.2.1\n",
        "bad-ttl": "x 99999999999 IN A 192.0.2.1\n", "bad-class": "x CH A 192.0.2.1\n", "bad-type": "x IN FOO 1\n",
        "meta-type": "x IN ANY 1\n", "bad-a": "x IN A 300.1.1.1\n", "bad-aaaa": "x IN AAAA 1::2::3\n",
        "bad-label": "a" * 64 + " IN A 192.0.2.1\n", "bad-name": ".".join(["a" * 63] * 5) + " IN A 192.0.2.1\n",
        "unterminated-quote": 'x IN TXT "abc\n', "unbalanced-paren": "x IN A ( 192.0.2.1\n", "close-paren": "x IN A 192.0.2.1 )\n",
        "long-txt": "x IN TXT " + "a" * 256 + "\n", "bad-escape": "x IN TXT \\2\n", "generic-mismatch": "x IN A \\# 3 010203\n",
        "bad-svcb": "x IN SVCB 1 . mandatory=port\n", "svcb-dup": "x IN SVCB 1 . port=1 port=2\n", "bad-dir": "$FOO bar\n",
        "nul-bytes": "x IN A 192.0.2.1\0\n", "no-owner-first": "  IN A 192.0.2.1\n", "empty": "",
    }
    for k, v in bad.items():
        out(t, "bad-" + k, head + v if not k.startswith("no-") else v)
    out(t, "zone-example", open("zones/example.com.zone").read().replace("example.com.", "fuzz.test."))
    out(t, "zone-fixture", open("Tests/Fuzz/fixtures/fuzz.test.zone").read())

RD_TYPES = ["A", "AAAA", "NS", "CNAME", "PTR", "DNAME", "SOA", "MX", "TXT", "SPF", "SRV", "CAA", "HINFO", "NAPTR",
            "DS", "SSHFP", "TLSA", "SVCB", "HTTPS", "TYPE65534", "TYPE1099"]

def cs(s):
    s = s.encode() if isinstance(s, str) else s
    return bytes([len(s)]) + s

def fuzz_rdata():
    t = "FuzzRData"
    def wire(ty, name, data):
        out(t, f"wire-{ty.lower()}-{name}", bytes([RD_TYPES.index(ty)]) + data)
    def text(ty, name, s):
        out(t, f"text-{ty.lower()}-{name}", bytes([0x80 | RD_TYPES.index(ty)]) + s.encode())
    soa = wname("ns1.fuzz.test.") + wname("host\\.master.fuzz.test.".replace("\\.", ".")) + struct.pack(">IIIII", 1, 7200, 3600, 1209600, 300)
    wires = {
        "A": [bytes([192, 0, 2, 1]), b"\0\0\0", bytes(5)], "AAAA": [ipaddress.ip_address("2001:db8::1").packed, ipaddress.ip_address("::ffff:1.2.3.4").packed],
        "NS": [wname("ns1.fuzz.test."), b"\x03a.b\0", b"\x01a", wname(".")], "CNAME": [wname("Www.Example.")],
        "PTR": [b"\x01\\\x01\"\x01 \x01@\x01$\x01;\x01(\0"], "DNAME": [wname("example.net.")],
        "SOA": [soa, soa[:-1]], "MX": [b"\0\x0a" + wname("mail.fuzz.test."), b"\0\x0a"],
        "TXT": [cs("hello") + cs(""), cs(b"\0\xff\"\\ ;"), b"", b"\x05ab"], "SPF": [cs("v=spf1 -all")],
        "SRV": [struct.pack(">HHH", 10, 60, 5060) + wname("sip.fuzz.test.")], "CAA": [b"\0" + cs("issue") + b"ca.example", b"\x80" + cs("iodef") + b"", b"\0" + cs("is-sue") + b"x"],
        "HINFO": [cs("cpu") + cs("os")], "NAPTR": [struct.pack(">HH", 100, 10) + cs("U") + cs("E2U+sip") + cs("!^.*$!x!") + wname(".")],
        "DS": [struct.pack(">HBB", 60485, 5, 1) + bytes(20), struct.pack(">HBB", 1, 1, 1)], "SSHFP": [bytes([4, 2]) + bytes(32)],
        "TLSA": [bytes([3, 1, 1]) + bytes(range(32))],
        "SVCB": [struct.pack(">H", 1) + wname(".") + struct.pack(">HH", 0, 4) + struct.pack(">HH", 1, 3)
                 + struct.pack(">HH", 1, 6) + cs("h2") + cs("h3") + struct.pack(">HHH", 3, 2, 443)
                 + struct.pack(">HH", 4, 8) + bytes([192, 0, 2, 1, 192, 0, 2, 2]) + struct.pack(">HH", 5, 3) + b"abc"
                 + struct.pack(">HH", 6, 16) + bytes(16) + struct.pack(">HH", 9, 3) + b"x,y",
                 struct.pack(">H", 0) + wname("svc.fuzz.test.")],
        "HTTPS": [struct.pack(">H", 1) + wname(".") + struct.pack(">HH", 1, 3) + cs("h3") + struct.pack(">HH", 2, 0),
                  struct.pack(">H", 1) + wname(".") + struct.pack(">HH", 1, 4) + cs("a,\\")],
        "TYPE65534": [b"", b"\x01\x02\x03"], "TYPE1099": [bytes(range(16))],
    }
    for ty, items in wires.items():
        for i, d in enumerate(items):
            wire(ty, str(i), d)
    texts = {
        "A": ["192.0.2.1", "\\# 4 c0000201"], "AAAA": ["2001:db8::1", "::", "::ffff:192.0.2.1"], "NS": ["ns1", "a\\.b.c.", "\\000.x."],
        "CNAME": ["@"], "PTR": ["\\065\\.."], "DNAME": ["example.net."], "SOA": ["ns1 host 1 2h 1h 2w 5m", "( a b 4294967295 1w 0 0 0 )"],
        "MX": ["10 mail"], "TXT": ['"a b" c "\\"x" \\255 ""', '"' + "a" * 255 + '"'], "SPF": ['"v=spf1 -all"'],
        "SRV": ["10 60 5060 sip"], "CAA": ['0 issue "ca.example"', '128 tbs "\\"\\\\"', "0 x ''"], "HINFO": ['"cpu" os'],
        "NAPTR": ['100 10 "U" "E2U+sip" "!^.*$!sip:x@y!" .'], "DS": ["1 8 2 " + "ab" * 32, "1 8 2 ab cd"],
        "SSHFP": ["1 1 " + "12" * 20], "TLSA": ["3 1 1 " + "cd" * 32],
        "SVCB": ['1 . alpn="h2,h3" port=443 ipv4hint=192.0.2.1 ipv6hint=::1 mandatory=alpn,port', "0 svc.", '1 . alpn=h2\\,x key9="a\\"b" ech=' + base64.b64encode(b"ech!").decode()],
        "HTTPS": ["1 . no-default-alpn alpn=h3", "1 . key65534"], "TYPE65534": ["\\# 0", "\\# 2 ab cd"], "TYPE1099": ["\\# 1 ff"],
    }
    for ty, items in texts.items():
        for i, s in enumerate(items):
            text(ty, str(i), s)

if __name__ == "__main__":
    if os.path.isdir(ROOT):
        shutil.rmtree(ROOT)
    fuzz_query()
    fuzz_zonefile()
    fuzz_rdata()
