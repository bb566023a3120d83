import Glibc

/// Signal handling the POSIX way: block the signals in every thread before any thread starts
/// (the `meridian` binary does it from a C constructor, CEarlySignals, before the Swift
/// runtime runs; `blockAll()` is for other hosts), then take them one at a time with
/// `sigwait` on one thread. Nothing runs in signal context. Commands that do not take
/// signals themselves call `unblockAll()` once their arguments are parsed, so Ctrl-C and
/// SIGTERM stop them with the default action.
public enum Signals {
    public static let handled: [Int32] = [SIGHUP, SIGTERM, SIGINT, SIGUSR1]

    static func set() -> sigset_t {
        var s = sigset_t()
        sigemptyset(&s)
        for sig in handled { sigaddset(&s, sig) }
        return s
    }

    /// Blocks the handled signals in the calling thread and every thread it starts later.
    public static func blockAll() {
        var s = set()
        pthread_sigmask(SIG_BLOCK, &s, nil)
    }

    /// Unblocks the handled signals in the calling thread (default actions again: a pending
    /// SIGTERM or SIGINT ends the process now). For commands that start no signal thread.
    public static func unblockAll() {
        var s = set()
        pthread_sigmask(SIG_UNBLOCK, &s, nil)
    }

    /// Waits for the next handled signal.
    public static func wait() -> Int32 {
        var s = set()
        var sig: Int32 = 0
        while true {
            let r = sigwait(&s, &sig)
            if r == 0 { return sig }
            if r != EINTR { return SIGTERM }
        }
    }

    public static func name(_ sig: Int32) -> String {
        switch sig {
        case SIGHUP: return "SIGHUP"
        case SIGTERM: return "SIGTERM"
        case SIGINT: return "SIGINT"
        case SIGUSR1: return "SIGUSR1"
        default: return "signal \(sig)"
        }
    }
}
