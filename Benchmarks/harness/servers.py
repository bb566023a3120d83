"""Server adapters: each writes its configuration in its own folder and starts pinned to CPU 0."""

from .common import *  # noqa: F401,F403


class Server:
    name = "?"
    notes = ""
    reference = False  # a reference responder gives no real answers and is not verified

    def __init__(self, port, workload, directory, zone_paths):
        self.port = port
        self.workload = workload
        self.dir = directory
        self.zone_paths = zone_paths
        self.proc = None
        os.makedirs(directory, exist_ok=True)

    def command(self):
        raise NotImplementedError

    def env(self):
        return None

    def start(self, pin=True, extra_env=None):
        cmd = self.command()
        if pin:
            cmd = ["taskset", "-c", SERVER_CPU] + cmd
        env = dict(os.environ)
        if self.env():
            env.update(self.env())
        if extra_env:
            env.update(extra_env)
        self.log = open(os.path.join(self.dir, "server.log"), "w")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, cwd=self.dir,
                                     env=env, start_new_session=True)

    def pids(self):
        """The server's process tree (NSD forks a server child and xfrd)."""
        if self.proc is None:
            return []
        root = self.proc.pid
        children = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                children.setdefault(int(fields[1]), []).append(int(entry))
            except (OSError, IndexError):
                continue
        out, todo = [], [root]
        while todo:
            p = todo.pop()
            out.append(p)
            todo.extend(children.get(p, []))
        return out

    def cpu_seconds(self):
        total = 0
        for p in self.pids():
            try:
                with open(f"/proc/{p}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])  # utime, stime
            except (OSError, IndexError):
                continue
        return total / CLK_TCK

    def memory(self):
        """(sum of VmHWM, sum of VmRSS, sum of Pss, sum of RssAnon) over the process tree, in KiB.

        RssAnon is the process's own heap and stacks; the rest of RSS is mapped files, mostly
        shared libraries (for a Swift binary, the runtime and Foundation).
        """
        hwm = rss = pss = anon = 0
        for p in self.pids():
            try:
                with open(f"/proc/{p}/status") as f:
                    for line in f:
                        if line.startswith("VmHWM:"):
                            hwm += int(line.split()[1])
                        elif line.startswith("VmRSS:"):
                            rss += int(line.split()[1])
                        elif line.startswith("RssAnon:"):
                            anon += int(line.split()[1])
                with open(f"/proc/{p}/smaps_rollup") as f:
                    for line in f:
                        if line.startswith("Pss:"):
                            pss += int(line.split()[1])
            except OSError:
                continue
        return hwm, rss, pss, anon

    def stop(self):
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None
        self.log.close()


class Meridian(Server):
    name = "meridian"
    notes = "`serve --workers 1` (one UDP worker thread; TCP served by its own thread)"
    binary = None

    def command(self):
        zones = os.path.dirname(next(iter(self.zone_paths.values())))
        # A workload's config names the zone folder itself (zones_dir); --zones beside it would
        # load the same zones twice.
        source = self.workload.meridian_args(self.dir, zones) or ["--zones", zones]
        return [self.binary, "serve", *source, "--listen", f"127.0.0.1:{self.port}",
                "--workers", str(self.workload.workers), "--log-level", "warning"]


class MeridianBase(Meridian):
    """Another build of Meridian (`--base-bin`, e.g. the previous commit's release binary),
    measured in the same interleaved rounds: the A/B comparison of a change, with the same
    workload, pinning and load, so the host's drift between runs cancels out."""
    name = "meridian-base"
    notes = "the `--base-bin` build, same settings as meridian"
    binary = None


class NSD(Server):
    name = "nsd"
    notes = "`server-count: 1`, `rrl-ratelimit: 0`, `database: \"\"` (zone files read at start), no reuseport"

    def command(self):
        d = self.dir
        zones = "".join(f"zone:\n    name: {o}\n    zonefile: {p}\n" for o, p in self.zone_paths.items())
        conf = f"""server:
    ip-address: 127.0.0.1@{self.port}
    do-ip6: no
    server-count: {self.workload.workers}
    reuseport: no
    username: ""
    chroot: ""
    database: ""
    zonelistfile: "{d}/zone.list"
    xfrdfile: "{d}/xfrd.state"
    xfrdir: "{d}"
    pidfile: "{d}/nsd.pid"
    logfile: "{d}/nsd.log"
    verbosity: 0
    rrl-ratelimit: 0
    rrl-whitelist-ratelimit: 0
remote-control:
    control-enable: no
{zones}"""
        path = os.path.join(d, "nsd.conf")
        with open(path, "w") as f:
            f.write(conf)
        return ["nsd", "-d", "-c", path]


class Knot(Server):
    name = "knot"
    notes = "`udp-workers: 1`, `tcp-workers: 1`, `background-workers: 1`, no journal, no RRL module"

    def command(self):
        d = self.dir
        module, zone_lines = self.workload.knot_extra(d)
        zones = "".join(f"  - domain: {o}\n    file: {p}\n{zone_lines}" for o, p in self.zone_paths.items())
        conf = f"""server:
    rundir: "{d}"
    listen: 127.0.0.1@{self.port}
    udp-workers: {self.workload.workers}
    edns-client-subnet: {"on" if self.workload.ecs else "off"}
    tcp-workers: 1
    background-workers: 1
log:
  - target: stderr
    any: warning
database:
    storage: "{d}/db"
control:
    listen: "{d}/knot.sock"
{module}
template:
  - id: default
    storage: "{d}"
    zonefile-sync: -1
    zonefile-load: whole
    journal-content: none
    semantic-checks: off
zone:
{zones}"""
        path = os.path.join(d, "knot.conf")
        with open(path, "w") as f:
            f.write(conf)
        return ["knotd", "-c", path]


class Gdnsd(Server):
    name = "gdnsd"
    notes = "`udp_threads => 1`, `tcp_threads => 1` on the one listener"

    def command(self):
        d = self.dir
        zdir = os.path.join(d, "zones")
        os.makedirs(zdir, exist_ok=True)
        for o, p in self.zone_paths.items():
            shutil.copyfile(p, os.path.join(zdir, o))
        os.makedirs(os.path.join(d, "run"), exist_ok=True)
        os.makedirs(os.path.join(d, "state"), exist_ok=True)
        conf = f"""options => {{
    listen => {{ 127.0.0.1:{self.port} => {{ udp_threads => {self.workload.workers}, tcp_threads => 1 }} }}
    run_dir => {d}/run
    state_dir => {d}/state
}}
{self.workload.gdnsd_extra(d)}
"""
        with open(os.path.join(d, "config"), "w") as f:
            f.write(conf)
        return ["gdnsd", "-c", d, "start"]


class PowerDNS(Server):
    name = "pdns"
    notes = ("bind backend; `receiver-threads=1`, `distributor-threads=1`, `reuseport=no`; "
             "caches off: `cache-ttl=0` (packet cache), `query-cache-ttl=0`, `negquery-cache-ttl=0`; "
             "`security-poll-suffix=` (no outside lookups)")

    def command(self):
        d = self.dir
        named = "".join(f'zone "{o}" {{ type master; file "{p}"; }};\n' for o, p in self.zone_paths.items())
        with open(os.path.join(d, "named.conf"), "w") as f:
            f.write(named)
        extra = self.workload.pdns_extra(d)
        # A workload that launches its own backend (the geoip one) serves the zone from it.
        backend = "" if "launch=" in extra else f"launch=bind\nbind-config={d}/named.conf\n"
        conf = f"""{backend}local-address=127.0.0.1
local-port={self.port}
receiver-threads={self.workload.workers}
distributor-threads=1
reuseport=no
cache-ttl=0
query-cache-ttl=0
negquery-cache-ttl=0
security-poll-suffix=
daemon=no
guardian=no
disable-syslog=yes
loglevel=3
socket-dir={d}
setuid=
setgid=
webserver=no
api=no
{extra}
"""
        with open(os.path.join(d, "pdns.conf"), "w") as f:
            f.write(conf)
        return ["pdns_server", f"--config-dir={d}"]


class Floor(Server):
    """The reference: a C responder that echoes each query with QR set (Benchmarks/floor)."""

    name = "floor"
    notes = "reference echo responder (floor/floor.c): recvmmsg/sendmmsg, no DNS work; not verified"
    reference = True
    binary = None

    def command(self):
        return [self.binary, str(self.port)]


SERVER_CLASSES = {c.name: c for c in (Meridian, MeridianBase, Gdnsd, NSD, Knot, PowerDNS, Floor)}
