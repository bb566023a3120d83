import Glibc

/// Seconds on the monotonic clock: deadlines and measured intervals must not jump when NTP
/// steps the wall clock.
///
///     let t0 = monotonicSeconds()
///     let elapsed = monotonicSeconds() - t0
@inline(__always)
public func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}
