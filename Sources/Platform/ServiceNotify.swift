import Glibc

/// The service manager's readiness protocol (systemd's `sd_notify`, `Type=notify`): one
/// datagram of `KEY=value` lines to the AF_UNIX socket named by `$NOTIFY_SOCKET` (a path, or
/// an abstract name when it starts with `@`). Without the variable every call does nothing.
///
/// Why it matters for signals: systemd starts a reload job (`ExecReload`, a SIGHUP) only once
/// the unit is active, and a `Type=notify` unit is active when it sent `READY=1`. Meridian
/// sends it after its signal thread takes SIGHUP, so `systemctl reload` right after
/// `systemctl start` waits instead of hitting a process that cannot handle the signal yet.
public enum ServiceNotify {
    /// The socket from the environment, read once at the first call: `unsetenv` by others
    /// later (exec children get a minimal environment anyway) does not change it.
    private static let target: String? = {
        guard let p = getenv("NOTIFY_SOCKET") else { return nil }
        let s = String(cString: p)
        return (s.hasPrefix("/") || s.hasPrefix("@")) ? s : nil
    }()

    /// Whether a service manager asked for notifications.
    public static var isEnabled: Bool { target != nil }

    /// Sends `text` (lines of `KEY=value`); returns false when it could not be sent or when
    /// there is no socket. Never blocks: the socket is non-blocking and one datagram is sent.
    @discardableResult
    public static func send(_ text: String) -> Bool {
        guard let target, let address = SocketAddress(unixPath: target) else { return false }
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        let bytes = Array(text.utf8)
        let sent = address.withSockaddr { sa, length in
            bytes.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL), sa, length) }
        }
        return sent == bytes.count
    }

    /// `READY=1` with the main pid and a status line.
    public static func ready(status: String) {
        send("READY=1\nMAINPID=\(getpid())\nSTATUS=\(status)")
    }

    /// `RELOADING=1` with the monotonic time systemd's `Type=notify-reload` asks for.
    public static func reloading() {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        send("RELOADING=1\nMONOTONIC_USEC=\(Int64(ts.tv_sec) * 1_000_000 + Int64(ts.tv_nsec) / 1000)")
    }

    public static func stopping() { send("STOPPING=1") }
}
