import Glibc

/// Runs a command with arguments (no shell) through `posix_spawnp`; up when it exits 0
/// within the timeout. On timeout the whole process group is killed, so a script's children
/// die with it. The first `maxOutput` bytes of stdout and stderr are kept for the status view.
final class ExecChecker: Checker {
    let command: [String]
    /// 4 KiB: enough for a script's one-line status or a short error, small enough to keep
    /// for thousands of checks.
    static let maxOutput = 4096

    init(command: [String]) throws(HealthError) {
        guard let first = command.first, !first.isEmpty else { throw HealthError("exec check: empty command") }
        self.command = command
    }

    func run(start: Double, deadline: Double) -> CheckResult {
        var fds: [Int32] = [-1, -1]
        // pipe2 is a GNU extension Glibc's module does not import; a child spawned by another
        // worker in between may inherit these ends, which only delays its EOF, not our waitpid.
        guard pipe(&fds) == 0 else {
            return CheckFailure(phase: "spawn", "pipe: \(errnoText(errno))").result(start: start)
        }
        let readFD = fds[0], writeFD = fds[1]
        _ = fcntl(readFD, F_SETFD, FD_CLOEXEC)
        _ = fcntl(writeFD, F_SETFD, FD_CLOEXEC)
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, writeFD, 1)
        posix_spawn_file_actions_adddup2(&actions, writeFD, 2)

        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        // The server blocks SIGHUP/SIGTERM/SIGINT for its sigwait thread; a child must not
        // inherit that mask. Its own process group lets a timeout kill the whole tree.
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attr, &empty)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        sigaddset(&defaults, SIGPIPE)
        posix_spawnattr_setsigdefault(&attr, &defaults)
        posix_spawnattr_setpgroup(&attr, 0)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP))

        let argv: [UnsafeMutablePointer<CChar>?] = command.map { strdup($0) } + [nil]
        defer { for p in argv { free(p) } }
        var pid: pid_t = 0
        let rc = argv.withUnsafeBufferPointer { a in
            posix_spawnp(&pid, a[0]!, &actions, &attr, a.baseAddress!, environ)
        }
        close(writeFD)
        guard rc == 0 else {
            close(readFD)
            return CheckResult(ok: false, reason: "spawn \(command[0]): \(errnoText(rc))", latency: monotonicNow() - start)
        }
        _ = fcntl(readFD, F_SETFL, fcntl(readFD, F_GETFL) | O_NONBLOCK)
        defer { close(readFD) }

        var output: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        var open = true
        var status: Int32 = 0
        var exited = false
        // Each pass reads output or waits at most 10 ms for the child; the deadline bounds it.
        while monotonicNow() < deadline {
            if open {
                switch waitFor(readFD, events: Int16(POLLIN), deadline: min(deadline, monotonicNow() + 0.01)) {
                case .ready:
                    let n = buf.withUnsafeMutableBytes { read(readFD, $0.baseAddress, $0.count) }
                    if n > 0 {
                        // Keep reading past the bound (and drop it) so the child never blocks on a full pipe.
                        let room = ExecChecker.maxOutput - output.count
                        if room > 0 { output.append(contentsOf: buf[0..<min(n, room)]) }
                    } else if n == 0 || (errno != EAGAIN && errno != EINTR) {
                        open = false
                    }
                case .timeout, .failed: break
                }
            } else {
                usleep(2000)
            }
            let w = waitpid(pid, &status, WNOHANG)
            if w == pid { exited = true; break }
        }
        let latency = monotonicNow() - start
        if !exited {
            kill(-pid, SIGKILL)
            kill(pid, SIGKILL)
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        } else {
            // Collect what the child wrote just before exiting.
            while output.count < ExecChecker.maxOutput {
                let n = buf.withUnsafeMutableBytes { read(readFD, $0.baseAddress, $0.count) }
                if n <= 0 { break }
                output.append(contentsOf: buf[0..<min(n, ExecChecker.maxOutput - output.count)])
            }
        }
        let text = String(decoding: output, as: UTF8.self)
        let out = text.isEmpty ? nil : text
        guard exited else {
            return CheckResult(ok: false, reason: "timeout after \(seconds(latency)) running \(command[0]); killed", latency: latency, output: out)
        }
        // The wait status layout (WIFEXITED and friends are macros Swift does not import).
        let signal = status & 0x7F
        if signal != 0 {
            return CheckResult(ok: false, reason: "\(command[0]) killed by signal \(signal)", latency: latency, output: out)
        }
        let code = (status >> 8) & 0xFF
        if code != 0 {
            let line = out.map { ": " + String($0.split(separator: "\n").first ?? "").prefix(200) } ?? ""
            return CheckResult(ok: false, reason: "\(command[0]) exited \(code)\(line)", latency: latency, output: out)
        }
        return CheckResult(ok: true, reason: "\(command[0]) exited 0", latency: latency, output: out)
    }
}
