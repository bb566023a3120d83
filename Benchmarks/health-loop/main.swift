// Health-loop benchmark: N TCP checks at a fixed interval against local listeners.
// Reports the loop's CPU share of one core and how late checks start (p50/p99/max).
//
//   swift run -c release --scratch-path .build-health HealthLoopBench [checks] [interval] [seconds] [workers]
//   e.g. HealthLoopBench 1000 1 20 8     and     HealthLoopBench 10000 10 40 8
//
// The listeners run in a child process (this binary in `serve` mode) so that getrusage
// of this process measures the health loop alone.
import Config
import Glibc
import Health
import Logging

func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

func cpuSeconds() -> Double {
    var u = rusage()
    getrusage(RUSAGE_SELF.rawValue, &u)
    return Double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + Double(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6
}

func listen127() -> (Int32, UInt16) {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
    var a = sockaddr_in()
    a.sin_family = sa_family_t(AF_INET)
    a.sin_addr.s_addr = inet_addr("127.0.0.1")
    _ = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
    listen(fd, 1024)
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
    return (fd, UInt16(bigEndian: a.sin_port))
}

/// Child: listeners that accept and close, until stdin closes (the parent exited).
func serve(_ count: Int) -> Never {
    var fds: [pollfd] = [pollfd(fd: 0, events: Int16(POLLIN), revents: 0)]
    var ports: [String] = []
    for _ in 0..<count {
        let (fd, port) = listen127()
        fds.append(pollfd(fd: fd, events: Int16(POLLIN), revents: 0))
        ports.append(String(port))
    }
    let line = ports.joined(separator: " ") + "\n"
    _ = line.withCString { write(1, $0, strlen($0)) }
    while true {
        _ = poll(&fds, nfds_t(fds.count), 1000)
        if fds[0].revents != 0 { exit(0) }
        for i in 1..<fds.count where fds[i].revents != 0 {
            while true {
                let c = accept(fds[i].fd, nil, nil)
                if c < 0 { break }
                close(c)
            }
        }
    }
}

let args = CommandLine.arguments
if args.count > 1 && args[1] == "serve" { serve(Int(args[2]) ?? 50) }
let checks = args.count > 1 ? Int(args[1]) ?? 1000 : 1000
let interval = args.count > 2 ? Double(args[2]) ?? 1 : 1
let duration = args.count > 3 ? Double(args[3]) ?? 20 : 20
let workers = args.count > 4 ? Int(args[4]) ?? 8 : 8
let listeners = 50

// Spawn the listener child with pipes for its stdin (lifetime) and stdout (ports).
var inPipe: [Int32] = [-1, -1], outPipe: [Int32] = [-1, -1]
pipe(&inPipe); pipe(&outPipe)
// The child must not inherit the parent's ends, or it never sees stdin close.
_ = fcntl(inPipe[1], F_SETFD, FD_CLOEXEC)
_ = fcntl(outPipe[0], F_SETFD, FD_CLOEXEC)
var actions = posix_spawn_file_actions_t()
posix_spawn_file_actions_init(&actions)
posix_spawn_file_actions_adddup2(&actions, inPipe[0], 0)
posix_spawn_file_actions_adddup2(&actions, outPipe[1], 1)
let argv: [UnsafeMutablePointer<CChar>?] = [strdup("/proc/self/exe"), strdup("serve"), strdup(String(listeners)), nil]
var child: pid_t = 0
guard argv.withUnsafeBufferPointer({ posix_spawn(&child, $0[0]!, &actions, nil, $0.baseAddress!, environ) }) == 0 else {
    print("spawn failed"); exit(1)
}
close(inPipe[0]); close(outPipe[1])
var buf = [UInt8](repeating: 0, count: 65536)
var got: [UInt8] = []
while !got.contains(10) {
    let n = buf.withUnsafeMutableBytes { read(outPipe[0], $0.baseAddress, $0.count) }
    if n <= 0 { print("listener child failed"); exit(1) }
    got += buf[0..<n]
}
let ports = String(decoding: got, as: UTF8.self).split(whereSeparator: { $0 == " " || $0 == "\n" }).compactMap { UInt16($0) }

var specs: [CheckSpec] = []
var endpoints: [Int: String] = [:]
for i in 0..<checks {
    var s = CheckSpec(name: "c\(i)", kind: .tcp(host: "127.0.0.1", port: ports[i % ports.count]))
    s.interval = interval
    s.timeout = 1
    specs.append(s)
    endpoints[i] = s.name
}
var logger = Logger(label: "bench")
logger.logLevel = .warning
let monitor = try HealthMonitor(checks: specs, endpointChecks: endpoints, endpointCount: checks, workers: workers, logger: logger)
try monitor.runInitialRound(timeout: 10)
// Warm up two intervals so first-run spreading has settled, then measure.
usleep(UInt32(min(2 * interval, 20) * 1_000_000))
monitor.resetLateness()
let c0 = cpuSeconds(), t0 = now()
usleep(UInt32(duration * 1_000_000))
let c1 = cpuSeconds(), t1 = now()
let late = monitor.lateness()
let down = monitor.snapshot.states.filter { $0 == .down }.count
monitor.stop()
close(inPipe[1])
var status: Int32 = 0
waitpid(child, &status, 0)

func ms(_ s: Double) -> String { "\(Double(Int(s * 10000)) / 10) ms" }
let cpu = (c1 - c0) / (t1 - t0) * 100
print("checks=\(checks) interval=\(interval)s workers=\(workers) window=\(Int(t1 - t0))s runs=\(late.count) down=\(down)")
print("cpu=\(Double(Int(cpu * 100)) / 100)% of one core  lateness p50=\(ms(late.p50)) p99=\(ms(late.p99)) max=\(ms(late.max))")
