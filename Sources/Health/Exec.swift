import CShim
import Config
import Glibc
import Platform

/// Runs a command with arguments (no shell) through `posix_spawn`; up when it exits 0
/// within the timeout. The child gets only `ProcessBounds.execEnvironment` and descriptors
/// 0, 1 and 2, and leads its own process group: when it exits or times out the whole group is
/// killed, so a script's background children die with it (`ExecChildren`). The first
/// `maxOutput` bytes of stdout and stderr are kept for the status view.
final class ExecChecker: Checker {
    let command: [String]
    /// 4 KiB: enough for a script's one-line status or a short error, small enough to keep
    /// for thousands of checks.
    static let maxOutput = 4096

    init(command: [String]) throws(HealthError) {
        guard let first = command.first, !first.isEmpty else { throw HealthError("exec check: empty command") }
        self.command = command
    }

    /// The program to run: as given when it has a slash, else the first executable of that
    /// name in `ProcessBounds.execSearchPath` (the child's PATH, not the server's).
    static func resolve(_ name: String) -> String? {
        if name.contains("/") { return name }
        for dir in ProcessBounds.execSearchPath where access(dir + "/" + name, X_OK) == 0 {
            return dir + "/" + name
        }
        return nil
    }

    func run(start: Double, deadline: Double) -> CheckResult {
        guard let path = ExecChecker.resolve(command[0]) else {
            return CheckResult(ok: false, reason: "spawn \(command[0]): not found in \(ProcessBounds.execSearchPath.joined(separator: ":"))",
                               latency: monotonicSeconds() - start)
        }
        var fds: [Int32] = [-1, -1]
        guard cshim_pipe_cloexec(&fds) == 0 else {
            return CheckFailure(phase: "spawn", "pipe2: \(errnoText(errno))").result(start: start)
        }
        let readFD = fds[0], writeFD = fds[1]
        let spawned = ExecChildren.spawn(path: path, arguments: command, environment: ProcessBounds.execEnvironment, output: writeFD)
        close(writeFD)
        guard let pid = spawned.pid else {
            close(readFD)
            return CheckResult(ok: false, reason: "spawn \(command[0]): \(errnoText(spawned.errno))", latency: monotonicSeconds() - start)
        }
        _ = fcntl(readFD, F_SETFL, fcntl(readFD, F_GETFL) | O_NONBLOCK)
        defer { close(readFD) }

        var output: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        var open = true
        var status: Int32 = 0
        var exited = false
        // Each pass reads output or waits at most 10 ms for the child; the deadline bounds it.
        while monotonicSeconds() < deadline {
            if open {
                switch waitFor(readFD, events: Int16(POLLIN), deadline: min(deadline, monotonicSeconds() + 0.01)) {
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
            // Exited but not reaped: `finish` kills its group while the pid is still taken.
            if cshim_child_exited(pid) != 0 { exited = true; break }
        }
        let latency = monotonicSeconds() - start
        status = ExecChildren.finish(pid)
        if exited {
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
            return CheckResult(ok: false, reason: "timeout after \(DurationText.format(latency, style: .milliseconds)) running \(command[0]); killed", latency: latency, output: out)
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
