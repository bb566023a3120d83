import Config
import DNSWire
import Foundation
import Glibc
import Platform
import Server

/// What one name answered for one vantage, over every query type asked.
///
///     let o = probe.observe(name: www, types: [.a, .aaaa], vantage: IPPrefix("10.1.0.0/16")!)
///     plan.pointsInto(addresses: o.addresses, cnames: o.cnames)
public struct Observation: Sendable, Equatable {
    public var addresses: [IPAddress] = []
    public var cnames: [DNSName] = []
    /// The largest TTL among the answer records: how long a resolver may keep this answer.
    public var ttl: UInt32 = 0
    /// Set when a query got no usable reply (timeout, bad packet, error rcode).
    public var error: String? = nil
    public init() {}
}

/// Asks a Meridian server over UDP as a client in a given subnet (EDNS Client Subnet,
/// RFC 7871 6), one connected socket per probe and a bounded wait per query.
///
///     let p = DNSProbe(server: try ListenAddress("127.0.0.1:5353"), timeout: 1)
///     let o = p.observe(name: try DNSName("www.example.com."), types: [.a], vantage: IPPrefix("203.0.113.0/24")!)
///     o.addresses   // [198.51.100.10, 198.51.100.11]
public struct DNSProbe: Sendable {
    public var server: ListenAddress
    public var timeout: Double

    public init(server: ListenAddress, timeout: Double = 1) {
        self.server = server; self.timeout = timeout
    }

    /// Queries every type in `types`, each tried twice (UDP may drop one), and merges the answers.
    public func observe(name: DNSName, types: [RRType], vantage: IPPrefix) -> Observation {
        var o = Observation()
        for t in types {
            var reply: Result<Message, DrillError> = .failure(DrillError(.failed, "no reply"))
            for _ in 0..<2 {
                reply = query(name: name, type: t, vantage: vantage)
                if case .success = reply { break }
            }
            switch reply {
            case .failure(let e): o.error = "\(t): \(e.message)"
            case .success(let m):
                guard m.rcode == .noError else { o.error = "\(t): rcode \(m.rcode)"; continue }
                for r in m.answers {
                    switch r.type {
                    case .a, .aaaa:
                        if let a = IPAddress(bytes: r.rdata), !o.addresses.contains(a) { o.addresses.append(a) }
                    case .cname:
                        if let n = try? DNSName(wire: r.rdata), !o.cnames.contains(n) { o.cnames.append(n) }
                    default: continue
                    }
                    o.ttl = max(o.ttl, r.ttl)
                }
            }
        }
        o.addresses.sort { $0.description < $1.description }
        return o
    }

    /// One query and its reply, matched by ID.
    public func query(name: DNSName, type: RRType, vantage: IPPrefix) -> Result<Message, DrillError> {
        let fd = socket(server.address.isV4 ? AF_INET : AF_INET6, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { return .failure(DrillError(.failed, "socket: \(String(cString: strerror(errno)))")) }
        defer { close(fd) }
        guard server.socketAddress.withSockaddr({ connect(fd, $0, $1) }) == 0 else {
            return .failure(DrillError(.failed, "connect \(server): \(String(cString: strerror(errno)))"))
        }
        let id = UInt16.random(in: 0...UInt16.max)
        let packet = QueryBuilder.query(id: id, name: name, type: type, edns: true, clientSubnet: vantage)
        let sent = packet.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
        guard sent == packet.count else { return .failure(DrillError(.failed, "send to \(server): \(String(cString: strerror(errno)))")) }
        var buf = [UInt8](repeating: 0, count: 65535)
        let deadline = Date().addingTimeInterval(timeout)
        // Bounded: each pass waits for the time left, and stray replies (wrong ID) are few.
        for _ in 0..<16 {
            let left = deadline.timeIntervalSinceNow
            guard left > 0 else { break }
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let r = poll(&pfd, 1, Int32(max(1, (left * 1000).rounded(.up))))
            if r < 0 && errno == EINTR { continue }
            guard r > 0 else { break }
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 {
                if errno == EINTR { continue }
                return .failure(DrillError(.failed, "\(server): \(String(cString: strerror(errno)))"))
            }
            guard let m = try? Message(decoding: Array(buf[0..<n])), m.id == id, m.has(HeaderFlags.qr) else { continue }
            return .success(m)
        }
        return .failure(DrillError(.failed, "no reply from \(server) within \(DurationText.format(timeout))"))
    }
}
