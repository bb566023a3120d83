import Glibc
import Platform
import Testing

/// The one IP-address-to-sockaddr conversion: family, length, port and address bytes.
@Suite("socket address")
struct SocketAddressTests {
    struct Case: Sendable, CustomStringConvertible {
        var isV4: Bool, hi: UInt64, lo: UInt64, port: UInt16
        var family: Int32, bytes: [UInt8]
        var description: String { "\(bytes) port \(port)" }
    }

    static let cases: [Case] = [
        Case(isV4: true, hi: 0x7F00_0001 << 32, lo: 0, port: 53, family: AF_INET, bytes: [127, 0, 0, 1]),
        Case(isV4: true, hi: 0xC000_0201 << 32, lo: 0, port: 65535, family: AF_INET, bytes: [192, 0, 2, 1]),
        Case(isV4: false, hi: 0, lo: 1, port: 8053, family: AF_INET6, bytes: [UInt8](repeating: 0, count: 15) + [1]),
        Case(isV4: false, hi: 0x2001_0DB8_0000_0000, lo: 0x0000_0000_0000_0A0B, port: 0, family: AF_INET6,
             bytes: [0x20, 0x01, 0x0D, 0xB8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0A, 0x0B]),
    ]

    @Test(arguments: cases)
    func converts(_ c: Case) {
        let a = SocketAddress(isV4: c.isV4, hi: c.hi, lo: c.lo, port: c.port)
        #expect(a.family == c.family)
        #expect(a.port == c.port)
        a.withSockaddr { p, len in
            if c.isV4 {
                #expect(len == socklen_t(MemoryLayout<sockaddr_in>.size))
                let sin = UnsafeRawPointer(p).load(as: sockaddr_in.self)
                #expect(withUnsafeBytes(of: sin.sin_addr) { Array($0) } == c.bytes)
            } else {
                #expect(len == socklen_t(MemoryLayout<sockaddr_in6>.size))
                let sin6 = UnsafeRawPointer(p).load(as: sockaddr_in6.self)
                #expect(withUnsafeBytes(of: sin6.sin6_addr) { Array($0) } == c.bytes)
            }
        }
        // A copy reads back the same.
        let copy = a.withSockaddr { SocketAddress(copying: $0, length: $1) }
        #expect(copy?.port == c.port && copy?.family == c.family && copy?.length == a.length)
    }

    /// Binding to port 0 on loopback and reading the address back gives the kernel's port.
    @Test func localAddressOfABoundSocket() throws {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        try #require(fd >= 0)
        defer { close(fd) }
        let any = SocketAddress(isV4: true, hi: 0x7F00_0001 << 32, lo: 0, port: 0)
        try #require(any.withSockaddr { bind(fd, $0, $1) } == 0)
        let bound = try #require(SocketAddress.local(of: fd))
        #expect(bound.family == AF_INET && bound.port != 0)
        #expect(SocketAddress.local(of: -1) == nil)
    }
}

/// The one path-to-`sockaddr_un` conversion: a path with its NUL, an abstract name without,
/// and the limits of `sun_path`; a datagram goes through a socket bound with it.
@Suite("unix socket address")
struct UnixSocketAddressTests {
    @Test func pathAndAbstractNameAndLimits() throws {
        let capacity = MemoryLayout.size(ofValue: sockaddr_un().sun_path)
        let family = MemoryLayout<sa_family_t>.size
        let path = try #require(SocketAddress(unixPath: "/run/x.sock"))
        #expect(path.family == AF_UNIX)
        #expect(path.length == socklen_t(family + 11 + 1))
        path.withSockaddr { p, _ in
            let sun = UnsafeRawPointer(p).load(as: sockaddr_un.self)
            let bytes = withUnsafeBytes(of: sun.sun_path) { Array($0.prefix(12)) }
            #expect(bytes == Array("/run/x.sock".utf8) + [0])
        }
        let abstract = try #require(SocketAddress(unixPath: "@notify"))
        #expect(abstract.length == socklen_t(family + 7))
        abstract.withSockaddr { p, _ in
            let sun = UnsafeRawPointer(p).load(as: sockaddr_un.self)
            #expect(withUnsafeBytes(of: sun.sun_path) { Array($0.prefix(7)) } == [0] + Array("notify".utf8))
        }
        #expect(SocketAddress(unixPath: "") == nil)
        #expect(SocketAddress(unixPath: "/" + String(repeating: "a", count: capacity - 2)) != nil)
        #expect(SocketAddress(unixPath: "/" + String(repeating: "a", count: capacity - 1)) == nil)
    }

    @Test func boundAndSentTo() throws {
        let path = "/tmp/meridian-sun-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
        defer { unlink(path) }
        let address = try #require(SocketAddress(unixPath: path))
        let rx = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        try #require(rx >= 0)
        defer { close(rx) }
        try #require(address.withSockaddr { bind(rx, $0, $1) } == 0)
        let tx = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        try #require(tx >= 0)
        defer { close(tx) }
        let sent = address.withSockaddr { sa, len in "hello".withCString { sendto(tx, $0, 5, 0, sa, len) } }
        #expect(sent == 5)
        var buf = [UInt8](repeating: 0, count: 16)
        var p = pollfd(fd: rx, events: Int16(POLLIN), revents: 0)
        try #require(poll(&p, 1, 2000) == 1)
        let n = recv(rx, &buf, buf.count, 0)
        #expect(n == 5 && Array(buf.prefix(5)) == Array("hello".utf8))
    }
}
