"""Shared setup: paths, logging, Debian packages, the Meridian build."""

import argparse
import datetime
import ipaddress
import os
import random
import re
import selectors
import shlex
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time



HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


REPO = os.path.dirname(HERE)


WORK = os.path.join(HERE, ".work")


SERVER_CPU = "0"


LOAD_CPU = "1"


CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


PEER_PACKAGES = {
    # binary -> Debian package
    "gdnsd": "gdnsd",
    "nsd": "nsd",
    "knotd": "knot",
    "pdns_server": "pdns-server",
    "dnsperf": "dnsperf",
    "dig": "bind9-dnsutils",
    "valgrind": "valgrind",
}


PDNS_BIND_BACKEND = "/usr/lib/x86_64-linux-gnu/pdns/libbindbackend.so"


def ensure_packages():
    wanted = [pkg for binary, pkg in PEER_PACKAGES.items() if shutil.which(binary) is None]
    if not os.path.exists(PDNS_BIND_BACKEND):
        wanted.append("pdns-backend-bind")
    wanted += [p for p in ("pdns-backend-geoip", "knot-module-geoip") if subprocess.run(
        ["dpkg", "-s", p], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode != 0]
    if not wanted:
        return
    log(f"installing {' '.join(wanted)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "--no-install-recommends"] + wanted
    if subprocess.run(cmd, env=env).returncode != 0:
        # Only when the package lists are missing or stale: one update, then retry once.
        run(["apt-get", "update"], env=env)
        run(cmd, env=env)


GEOIP_FALLBACK = "/work/shared/geoip/GeoLite2-City-Test.mmdb"


def geoip_database(install=True):
    """(path, note) of the GeoLite2-City database for the geo workload.

    The real database ships inside the PyPI package maxminddb-geolite2 (read with the
    maxminddb package); without it, MaxMind's small test database, and the note says so.
    """
    for attempt in range(2):
        try:
            import geolite2
            import maxminddb  # noqa: F401 (the subnets are picked with it)
            return geolite2.geolite2_database(), "GeoLite2-City from the PyPI package maxminddb-geolite2"
        except ImportError:
            if attempt or not install:
                break
            log("installing maxminddb and maxminddb-geolite2 with pip")
            subprocess.run([sys.executable, "-m", "pip", "install", "-q", "maxminddb", "maxminddb-geolite2"])
    return GEOIP_FALLBACK, (f"pip could not get maxminddb-geolite2: MaxMind's test database {GEOIP_FALLBACK} "
                            "(few networks)")


def build_meridian(scratch, extra_flags=()):
    log(f"building Meridian (release, scratch path {scratch}, extra flags {list(extra_flags)})")
    run(["swift", "build", "-c", "release", "--scratch-path", scratch, *extra_flags], cwd=REPO)
    return os.path.join(REPO, scratch, "release", "meridian")
