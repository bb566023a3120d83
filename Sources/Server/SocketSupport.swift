import CShim
import DNSWire
import Glibc

/// A failed system call: the syscall's name, its `errno`, and what it was acting on.
///
///     do { try server.start() } catch let e as SystemError {
///         print(e)   // "bind(127.0.0.1:53, udp): Permission denied (errno 13)"
///     }
public struct SystemError: Error, Sendable, CustomStringConvertible, Equatable {
    public let syscall: String
    public let errno: Int32
    /// What the call was acting on, e.g. "127.0.0.1:53, udp"; empty when nothing useful.
    public let context: String

    public init(_ syscall: String, errno: Int32, context: String = "") {
        self.syscall = syscall; self.errno = errno; self.context = context
    }

    public var description: String {
        let text = String(cString: strerror(errno))
        return context.isEmpty ? "\(syscall): \(text) (errno \(errno))"
                               : "\(syscall)(\(context)): \(text) (errno \(errno))"
    }
}

/// Runs a call returning -1 on failure, retrying EINTR (the pattern of swift-nio's System.swift).
@inline(__always)
func retryingEINTR(_ name: StaticString, context: @autoclosure () -> String = "",
                   _ body: () -> Int32) throws(SystemError) -> Int32 {
    while true {
        let r = body()
        if r >= 0 { return r }
        let e = Glibc.errno
        if e == EINTR { continue }
        throw SystemError("\(name)", errno: e, context: context())
    }
}

/// Closes `fd`. POSIX leaves the fd state unspecified after EINTR from close, and on
/// Linux it is always released, so EINTR is not retried (retrying could close a reused fd).
func closeSocket(_ fd: Int32) {
    if fd >= 0 { _ = Glibc.close(fd) }
}

func setIntOption(_ fd: Int32, _ level: Int32, _ name: Int32, _ value: Int32,
                  _ label: StaticString, context: String) throws(SystemError) {
    var v = value
    let r = Glibc.setsockopt(fd, level, name, &v, socklen_t(MemoryLayout<Int32>.size))
    if r != 0 { throw SystemError("setsockopt(\(label))", errno: Glibc.errno, context: context) }
}

/// Milliseconds on the monotonic clock, for timeouts that must not jump with wall time.
@inline(__always)
func monotonicMilliseconds() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
}

/// Reads a family/16-byte address pair the C shim filled into an `IPAddress`, with an
/// IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, from a dual-stack peer) unmapped.
@inline(__always)
func ipAddress(family: Int32, bytes: UnsafePointer<UInt8>) -> IPAddress {
    var hi: UInt64 = 0, lo: UInt64 = 0
    for i in 0..<8 { hi = hi << 8 | UInt64(bytes[i]) }
    if family != 4 { for i in 8..<16 { lo = lo << 8 | UInt64(bytes[i]) } }
    return ipAddress(family: family, hi: hi, lo: lo)
}

/// The same from the 16 bytes read as two big-endian words (`cshim_batch_rx_slot`).
@inline(__always) func ipAddress(family: Int32, hi: UInt64, lo: UInt64) -> IPAddress {
    if family == 4 {
        return IPAddress(family: .v4, hi: hi & 0xFFFF_FFFF_0000_0000, lo: 0)
    }
    return IPAddress(family: .v6, hi: hi, lo: lo).unmappingV4
}

/// A joinable POSIX thread. Foundation's `Thread` cannot be joined, and `stop()` must
/// know every worker has left its loop before it closes the sockets the worker uses.
final class JoinableThread {
    private var handle: pthread_t

    private final class Body {
        let run: () -> Void
        init(_ run: @escaping () -> Void) { self.run = run }
    }

    init(name: String, _ body: @escaping @Sendable () -> Void) throws(SystemError) {
        let box = Unmanaged.passRetained(Body {
            cshim_name_current_thread(name)
            body()
        }).toOpaque()
        var t = pthread_t()
        let r = pthread_create(&t, nil, { arg in
            guard let arg else { return nil }
            let body = Unmanaged<Body>.fromOpaque(arg).takeRetainedValue()
            body.run()
            return nil
        }, box)
        if r != 0 {
            Unmanaged<Body>.fromOpaque(box).release()
            throw SystemError("pthread_create", errno: r, context: name)
        }
        handle = t
    }

    func join() { _ = pthread_join(handle, nil) }
}
