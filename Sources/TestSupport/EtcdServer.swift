import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A real etcd (Debian's `etcd-server`) on loopback ports with a temporary data folder, for
/// the fleet tests: one member, or one member of a cluster started together.
///
///     let etcd = try await EtcdServer.start()
///     defer { Task { await etcd.stop(removeData: true) } }
///     print(etcd.endpoint)                    // http://127.0.0.1:PORT, for fleet.etcd
///     await etcd.stop(); try await etcd.restart()   // same ports, same data
public final class EtcdServer: Sendable {
    public static var binary: String? { findExecutable("etcd") }
    public static var isInstalled: Bool { binary != nil }

    public let name: String
    private let port: Mutex<UInt16>
    /// The client port it listens on now (`restart(onClientPort:)` moves it).
    public var clientPort: UInt16 { port.withLock { $0 } }
    public let peerPort: UInt16
    public let dataDirectory: URL
    let initialCluster: String
    let clusterState: String
    /// With it, the client port serves https only and wants a client certificate.
    public let tls: EtcdTLSFiles?
    private let current = Mutex<ChildProcess?>(nil)

    public var endpoint: String { "\(tls == nil ? "http" : "https")://127.0.0.1:\(clientPort)" }
    public var peerURL: String { "http://127.0.0.1:\(peerPort)" }
    public var logText: String { current.withLock { $0.map { $0.stderrText + $0.stdoutText } ?? "" } }
    public var isRunning: Bool { current.withLock { $0?.isRunning ?? false } }
    public var pid: Int32? { current.withLock { $0?.pid } }

    init(name: String, clientPort: UInt16, peerPort: UInt16, dataDirectory: URL, initialCluster: String, clusterState: String,
         tls: EtcdTLSFiles? = nil) {
        self.name = name; self.port = Mutex(clientPort); self.peerPort = peerPort; self.tls = tls
        self.dataDirectory = dataDirectory; self.initialCluster = initialCluster; self.clusterState = clusterState
    }

    /// One member on fresh loopback ports, ready (it answers a range request, or with `tls`
    /// says it serves clients); with `tls`, clients need https and a certificate of its CA
    /// (`--client-cert-auth`).
    public static func start(tls: EtcdTLSFiles? = nil) async throws -> EtcdServer {
        let c = try freePort(), p = try freePort()
        let e = EtcdServer(name: "m0", clientPort: c, peerPort: p,
                           dataDirectory: try makeTemporaryDirectory(prefix: "meridian-etcd"),
                           initialCluster: "m0=http://127.0.0.1:\(p)", clusterState: "new", tls: tls)
        try await e.restart()
        return e
    }

    /// `count` members forming one cluster, each ready.
    public static func startCluster(_ count: Int) async throws -> [EtcdServer] {
        var ports: [(UInt16, UInt16)] = []
        for _ in 0..<count { ports.append((try freePort(), try freePort())) }
        let cluster = ports.enumerated().map { "m\($0.offset)=http://127.0.0.1:\($0.element.1)" }.joined(separator: ",")
        var members: [EtcdServer] = []
        for (i, (c, p)) in ports.enumerated() {
            members.append(EtcdServer(name: "m\(i)", clientPort: c, peerPort: p,
                                      dataDirectory: try makeTemporaryDirectory(prefix: "meridian-etcd"),
                                      initialCluster: cluster, clusterState: "new"))
        }
        // Members wait for each other: launch all, then wait for each.
        for m in members { try m.launch() }
        for m in members {
            do { try await m.waitReady() } catch {
                for x in members { await x.stop(removeData: true) }
                throw error
            }
        }
        return members
    }

    func launch() throws {
        guard let bin = EtcdServer.binary else { throw ProcessError.notFound("etcd (apt-get install etcd-server)") }
        let security = tls.map { ["--cert-file", $0.serverCert, "--key-file", $0.serverKey, "--trusted-ca-file", $0.caFile, "--client-cert-auth"] } ?? []
        let child = try ChildProcess(path: bin, arguments: security + [
            "--name", name, "--data-dir", dataDirectory.path,
            "--listen-client-urls", endpoint, "--advertise-client-urls", endpoint,
            "--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
            "--initial-cluster", initialCluster, "--initial-cluster-state", clusterState,
            "--initial-cluster-token", "meridian-test", "--heartbeat-interval", "50", "--election-timeout", "500",
        ])
        current.withLock { $0 = child }
    }

    func waitReady(timeout: Double = 15) async throws {
        let end = Date().addingTimeInterval(timeout)
        while Date() < end {
            if tls != nil && logText.contains("ready to serve client requests") { return }
            if tls == nil, let r = try? HTTP.request("POST", port: clientPort, path: "/v3/kv/range", body: Array(#"{"key":"AA=="}"#.utf8)),
               r.status == 200 { return }
            if !isRunning { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw ProcessError.notReady("etcd \(name)", seconds: Int(timeout), log: logText)
    }

    /// Starts (again) with the same data, on the same client port or on `port` (so that
    /// clients configured with the old one stay cut off while a test writes through the new).
    public func restart(onClientPort newPort: UInt16? = nil) async throws {
        if let p = newPort { port.withLock { $0 = p } }
        try launch()
        try await waitReady()
    }

    /// SIGKILL (a crash, or a member lost), bounded wait.
    public func kill() async {
        guard let c = current.withLock({ $0 }) else { return }
        c.signal(SIGKILL)
        _ = await c.waitForExit(timeout: .seconds(5))
    }

    /// SIGTERM, bounded; with `removeData`, the data folder goes too.
    public func stop(removeData: Bool = false) async {
        if let c = current.withLock({ $0 }) { await c.stop(grace: .seconds(5)) }
        if removeData { try? FileManager.default.removeItem(at: dataDirectory) }
    }
}

/// Certificates for an etcd with TLS on its client port, made with the openssl CLI in a
/// temporary folder: a CA, a server certificate (for 127.0.0.1 and localhost), a client
/// certificate (both signed by the CA), and a second, unrelated CA with its own client pair.
///
///     let files = try await EtcdTLSFiles.make()
///     defer { files.remove() }
public struct EtcdTLSFiles: Sendable {
    public let directory: URL
    public var caFile: String { directory.appendingPathComponent("ca.pem").path }
    public var serverCert: String { directory.appendingPathComponent("server.pem").path }
    public var serverKey: String { directory.appendingPathComponent("server.key").path }
    public var clientCert: String { directory.appendingPathComponent("client.pem").path }
    public var clientKey: String { directory.appendingPathComponent("client.key").path }
    /// A CA that signed neither the server's nor the client's certificate.
    public var otherCAFile: String { directory.appendingPathComponent("other-ca.pem").path }
    /// A key that does not belong to `clientCert`.
    public var otherKey: String { directory.appendingPathComponent("other-ca.key").path }

    /// `serverNames`: the subjectAltName of etcd's certificate (a test of name checking gives
    /// one that does not name 127.0.0.1).
    public static func make(serverNames: String = "DNS:localhost,IP:127.0.0.1") async throws -> EtcdTLSFiles {
        let dir = try makeTemporaryDirectory(prefix: "meridian-etcd-tls")
        let files = EtcdTLSFiles(directory: dir)
        func openssl(_ args: [String]) async throws {
            let out = try await runCommand("/usr/bin/openssl", args)
            guard out.status == 0 else { throw ProcessError.launchFailed("openssl \(args.prefix(2).joined(separator: " "))", out.combined) }
        }
        func path(_ name: String) -> String { dir.appendingPathComponent(name).path }
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
        for ca in ["ca", "other-ca"] {
            try await openssl(["req", "-x509"] + ec + ["-subj", "/CN=meridian test \(ca)", "-days", "1",
                                                      "-keyout", path("\(ca).key"), "-out", path("\(ca).pem")])
        }
        let usages = [("server", "subjectAltName=\(serverNames)\nextendedKeyUsage=serverAuth,clientAuth\n"),
                      ("client", "extendedKeyUsage=clientAuth\n")]
        for (leaf, ext) in usages {
            try ext.write(toFile: path("\(leaf).ext"), atomically: true, encoding: .utf8)
            try await openssl(["req"] + ec + ["-subj", "/CN=\(leaf == "server" ? "localhost" : "meridian")",
                                              "-keyout", path("\(leaf).key"), "-out", path("\(leaf).csr")])
            try await openssl(["x509", "-req", "-in", path("\(leaf).csr"), "-CA", path("ca.pem"), "-CAkey", path("ca.key"),
                               "-CAcreateserial", "-days", "1", "-extfile", path("\(leaf).ext"), "-out", path("\(leaf).pem")])
        }
        return files
    }

    public func remove() { try? FileManager.default.removeItem(at: directory) }
}
