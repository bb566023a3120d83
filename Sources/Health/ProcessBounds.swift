/// The bounds of the server's process management, in one place (the operations guide lists
/// them under "limits").
public enum ProcessBounds {
    /// The whole environment of an exec check: a fixed PATH and nothing else. The server's
    /// environment may carry secrets (tokens, cloud credentials) that a check script has no
    /// business seeing; the config has no per-check environment, so nothing is added.
    /// A command without a slash is looked up in this PATH, not the server's.
    public static let execSearchPath = ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
    public static var execEnvironment: [String] { ["PATH=" + execSearchPath.joined(separator: ":")] }

    /// How often the server looks for orphans that were reparented to it (it is a child
    /// subreaper): descendants of exec checks that left their process group (`setsid`) or
    /// outlived it. They are killed and reaped. 1 s keeps an escaped process's life short
    /// and costs one read of /proc/self/task/*/children per second. A finished exec check
    /// also triggers a sweep at once.
    public static let orphanSweepInterval: Double = 1

    /// On SIGTERM: how long the server keeps killing and reaping the process groups of
    /// running checks and their orphans before it exits. 0.5 s: SIGKILL takes effect in
    /// milliseconds; this only covers a chain of processes reparented one after another.
    public static let stopReapWindow: Double = 0.5

    /// The longest one reload may take (parse, validate, build, hand over health) before it
    /// is abandoned: its result is dropped even if it finishes later, the failure is logged
    /// and counted, and later reloads run. 60 s is far above a normal reload (milliseconds
    /// to a few seconds for a million records) and below what an operator waits for.
    public static let reloadDeadline: Double = 60

    /// Abandoned reloads whose thread is still blocked (say, in `open` on a FIFO) at most:
    /// past this, a SIGHUP is refused with an error instead of starting one more thread
    /// that may block the same way. Each holds one thread and its stack.
    public static let maxAbandonedReloads = 4
}
