#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Platform
import Synchronization

/// NLnet Labs Unbound (Debian's `unbound`) as a validating resolver on a loopback port, with
/// one stub zone pointing at a server under test and that zone's DS as its trust anchor.
///
/// No chroot, no user switch, one thread, the config and log in a private temporary folder;
/// `subnetcache` on, so a client's EDNS Client Subnet is passed on to the stub
/// (`send-client-subnet: 127.0.0.1`). Validation failures are logged (`val-log-level: 2`).
///
///     let ub = try await UnboundServer.start(zone: "example.com.", stubPort: meridian.port, trustAnchor: ds)
///     let r = try await Dig.run(["@127.0.0.1", "-p", "\(ub.port)", "+dnssec", "www.example.com"])
///     await ub.stop()
public final class UnboundServer: Sendable {
    public let child: ChildProcess
    public let port: UInt16
    public let folder: String

    private init(child: ChildProcess, port: UInt16, folder: String) {
        self.child = child; self.port = port; self.folder = folder
    }

    public static var binary: String? { findExecutable("unbound") }
    public static var isAvailable: Bool { binary != nil }

    /// Starts Unbound on a free port; `trustAnchor` is a DS or DNSKEY record in
    /// presentation form (`example.com. IN DS 123 13 2 ...`).
    public static func start(zone: String, stubPort: UInt16, trustAnchor: String, readyTimeout: Duration = .seconds(10)) async throws -> UnboundServer {
        guard let bin = binary else { throw ProcessError.notFound("unbound (apt-get install unbound, or run scripts/setup)") }
        let dir = try makeTemporaryDirectory(prefix: "meridian-unbound")
        var attempt = 0
        while true {
            attempt += 1
            let p = try freePort()
            let conf = dir.appendingPathComponent("unbound.conf")
            let text = """
                server:
                  interface: 127.0.0.1
                  port: \(p)
                  do-ip6: no
                  username: ""
                  chroot: ""
                  directory: "\(dir.path)"
                  pidfile: ""
                  use-syslog: no
                  logfile: ""
                  verbosity: 1
                  num-threads: 1
                  so-reuseport: no
                  do-not-query-localhost: no
                  access-control: 127.0.0.0/8 allow
                  module-config: "subnetcache validator iterator"
                  send-client-subnet: 127.0.0.1
                  client-subnet-always-forward: yes
                  qname-minimisation: no
                  val-log-level: 2
                  trust-anchor: "\(trustAnchor)"
                stub-zone:
                  name: "\(zone)"
                  stub-addr: 127.0.0.1@\(stubPort)
                remote-control:
                  control-enable: no

                """
            try text.write(to: conf, atomically: true, encoding: .utf8)
            let child = try ChildProcess(path: bin, arguments: ["-d", "-c", conf.path])
            do {
                try await waitUntilAnswering(host: "127.0.0.1", port: p, child: child, what: "unbound", probeName: zone, timeout: readyTimeout)
                return UnboundServer(child: child, port: p, folder: dir.path)
            } catch {
                await child.stop(grace: .seconds(2))
                if attempt < 3 && "\(error)".contains("in use") { continue }
                throw error
            }
        }
    }

    /// Its log (validation failures among it).
    public var logText: String { child.stderrText + child.stdoutText }

    @discardableResult
    public func stop() async -> Int32 {
        let s = await child.stop(grace: .seconds(5))
        try? FileManager.default.removeItem(atPath: folder)
        return s
    }
}

/// A UDP proxy on loopback that forwards queries to `upstream` and changes the answers on
/// the way back: every occurrence of `find` in a response becomes `replace`. A validating
/// resolver behind it must then reject the answer (the signature no longer matches).
///
/// One thread, polling with a 100 ms timeout; `stop()` ends it. Each query waits at most
/// one second for the upstream answer.
///
///     let proxy = try TamperingUDPProxy(upstream: meridian.port, find: [192, 0, 2, 1], replace: [192, 0, 2, 99])
///     defer { proxy.stop() }
public final class TamperingUDPProxy: Sendable {
    public let port: UInt16
    private let fd: Int32
    private let running = Atomic<Bool>(true)
    private let done = Atomic<Bool>(false)
    /// Responses changed so far.
    public let tampered = Atomic<Int>(0)

    public init(upstream: UInt16, find: [UInt8], replace: [UInt8]) throws {
        precondition(find.count == replace.count && !find.isEmpty)
        var p: UInt16 = 0
        var sock: Int32 = -1
        for _ in 0..<3 where sock < 0 {
            p = try freePort()
            let s = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
            guard s >= 0 else { throw SocketError.system("socket", errno) }
            if SocketAddress.loopbackV4(port: p).withSockaddr({ bind(s, $0, $1) }) == 0 { sock = s } else { close(s) }
        }
        guard sock >= 0 else { throw SocketError.noFreePort }
        port = p
        fd = sock
        let listen = sock
        Thread.detachNewThread { [self] in
            var buf = [UInt8](repeating: 0, count: 65535)
            var answer = [UInt8](repeating: 0, count: 65535)
            while running.load(ordering: .relaxed) {
                var pfd = pollfd(fd: listen, events: Int16(POLLIN), revents: 0)
                guard poll(&pfd, 1, 100) > 0 else { continue }
                var from = sockaddr_storage()
                var fromLen = socklen_t(MemoryLayout<sockaddr_storage>.size)
                let n = withUnsafeMutablePointer(to: &from) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { recvfrom(listen, &buf, buf.count, 0, $0, &fromLen) }
                }
                guard n > 0 else { continue }
                let up = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
                guard up >= 0 else { continue }
                setTimeout(up, SO_RCVTIMEO, milliseconds: 1000)
                _ = SocketAddress.loopbackV4(port: upstream).withSockaddr { sendto(up, buf, n, 0, $0, $1) }
                let m = recv(up, &answer, answer.count, 0)
                close(up)
                guard m > 0 else { continue }
                var changed = false
                var i = 12
                while i + find.count <= m {
                    if answer[i..<(i + find.count)].elementsEqual(find) {
                        for k in 0..<replace.count { answer[i + k] = replace[k] }
                        changed = true
                        i += find.count
                    } else {
                        i += 1
                    }
                }
                if changed { tampered.add(1, ordering: .relaxed) }
                _ = withUnsafePointer(to: &from) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(listen, answer, m, 0, $0, fromLen) }
                }
            }
            close(listen)
            done.store(true, ordering: .releasing)
        }
    }

    /// Ends the thread and closes the socket (waits at most a second).
    public func stop() {
        running.store(false, ordering: .relaxed)
        for _ in 0..<100 where !done.load(ordering: .acquiring) { usleep(10_000) }
    }
}
