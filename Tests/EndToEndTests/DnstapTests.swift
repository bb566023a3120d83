import DNSWire
import Foundation
import Glibc
import Platform
import Testing
import TestSupport

/// Issue 17: query logging through dnstap, read back with real tools: `fstrm_capture`
/// (Debian fstrm-bin) as the collector on a Unix socket, `dnstap-ldns` (Debian dnstap-ldns)
/// to print what was captured or written to a file.
enum DnstapTools {
    static var capture: String? { findExecutable("fstrm_capture") }
    static var reader: String? { findExecutable("dnstap-ldns") }
    static var present: Bool { capture != nil && reader != nil }

    /// `dnstap-ldns -y -r FILE`: every message as YAML, field by field.
    static func read(_ file: String) async throws -> String {
        let out = try await runCommand(try #require(reader), ["-y", "-r", file], timeout: .seconds(20))
        return out.stdout + out.stderr
    }

    /// `fstrm_capture -t protobuf:dnstap.Dnstap -u SOCK -w FILE`, ready once the socket exists.
    static func startCapture(socket: String, file: String) async throws -> ChildProcess {
        let child = try ChildProcess(path: try #require(capture), arguments: ["-t", "protobuf:dnstap.Dnstap", "-u", socket, "-w", file])
        let ready = await secondsUntil(limit: 10, every: .milliseconds(50)) { FileManager.default.fileExists(atPath: socket) }
        if ready == nil {
            await child.stop(grace: .seconds(2))
            throw ProcessError.notFound("fstrm_capture did not create \(socket): \(child.stderrText)")
        }
        return child
    }
}

/// The dnstap messages `dnstap-ldns -y` printed, each as its `key: value` lines.
struct DnstapDump {
    var messages: [[String: String]] = []

    init(_ yaml: String) {
        var current: [String: String]?
        for raw in yaml.split(separator: "\n", omittingEmptySubsequences: false) {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line == "---" {
                if let c = current { messages.append(c) }
                current = [:]
                continue
            }
            guard let colon = line.firstIndex(of: ":") else { continue }
            let key = String(line[..<colon])
            var value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            if value.count >= 2 && value.hasPrefix("\"") && value.hasSuffix("\"") { value = String(value.dropFirst().dropLast()) }
            if current == nil { current = [:] }
            // The first value wins (`type` appears for the frame and for the message).
            if key == "type", current?["type"] != nil { current?["message_type"] = value } else if current?[key] == nil { current?[key] = value }
        }
        if let c = current, !c.isEmpty { messages.append(c) }
    }

    func of(type: String) -> [[String: String]] { messages.filter { $0["message_type"] == type } }
}

/// A copy of the GSLB fixture with `extra` lines added to its `server:` block; the geo
/// database path is made absolute, since the copy lives elsewhere.
func gslbFixtureCopy(server extra: String) throws -> TemporaryZoneFolder {
    let fixture = Fixtures.root.appendingPathComponent("gslb")
    let dir = try TemporaryZoneFolder(copying: fixture.path)
    let relative = "../../../../../shared/geoip/GeoIP2-City-Test.mmdb"
    let absolute = fixture.appendingPathComponent(relative).standardizedFileURL.path
    let yaml = try String(contentsOfFile: dir.path + "/meridian.yaml", encoding: .utf8)
        .replacingOccurrences(of: relative, with: absolute)
        .replacingOccurrences(of: "  nsid: e2e\n", with: "  nsid: e2e\n" + extra)
    try dir.write("meridian.yaml", contents: yaml)
    return dir
}

@Suite("dnstap query logging", .serialized, .enabled(if: DnstapTools.present, "needs fstrm_capture and dnstap-ldns (scripts/setup installs fstrm-bin and dnstap-ldns)"))
struct DnstapTests {
    func folder(dnstap: String) throws -> TemporaryZoneFolder { try gslbFixtureCopy(server: dnstap) }

    /// Sends one A query for `name` from a socket whose port we know; returns that port.
    func query(_ name: String, port: UInt16, id: UInt16) throws -> (sourcePort: UInt16, answered: Bool) {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw POSIXError(.EIO) }
        defer { close(fd) }
        _ = SocketAddress.loopbackV4(port: 0).withSockaddr { bind(fd, $0, $1) }
        let sourcePort = SocketAddress.local(of: fd)?.port ?? 0
        let server = SocketAddress.loopbackV4(port: port)
        var tv = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        let q = DNSWire.QueryBuilder.query(id: id, name: try DNSName(name), type: .a)
        _ = q.withUnsafeBytes { b in
            server.withSockaddr { sendto(fd, b.baseAddress, b.count, 0, $0, $1) }
        }
        var buf = [UInt8](repeating: 0, count: 4096)
        let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        return (sourcePort, n > 12)
    }

    /// Checks the AUTH_QUERY and AUTH_RESPONSE of one query from `sourcePort`.
    func expectLogged(_ dump: DnstapDump, sourcePort: UInt16, serverPort: UInt16, name: String, answer: String,
                      identity: String, _ text: String) {
        let queries = dump.of(type: "AUTH_QUERY").filter { $0["query_port"] == "\(sourcePort)" }
        let responses = dump.of(type: "AUTH_RESPONSE").filter { $0["query_port"] == "\(sourcePort)" }
        #expect(queries.count == 1, "one AUTH_QUERY from port \(sourcePort):\n\(text)")
        #expect(responses.count == 1, "one AUTH_RESPONSE to port \(sourcePort):\n\(text)")
        for m in queries + responses {
            #expect(m["identity"] == identity, "\(m)")
            #expect(m["query_address"] == "127.0.0.1", "\(m)")
            #expect(m["response_address"] == "127.0.0.1", "\(m)")
            #expect(m["response_port"] == "\(serverPort)", "\(m)")
            #expect(m["socket_family"] == "INET" && m["socket_protocol"] == "UDP", "\(m)")
            #expect(m["query_time"] != nil, "\(m)")
        }
        // The wire messages, as dnstap-ldns decodes them.
        #expect(text.contains(name), "the query name is in the decoded messages:\n\(text)")
        #expect(text.contains(answer), "the answer address is in the decoded response:\n\(text)")
        #expect(responses.first?["response_time"] != nil)
    }

    /// Serves the folder's config, sends three queries for fo.gslb.test (each from its own
    /// port), stops the server (SIGTERM: the writer drains and sends STOP) and returns the
    /// stopped server and the ports the queries came from.
    func serveAndQueryThree(_ dir: TemporaryZoneFolder) async throws -> (MeridianProcess, [UInt16]) {
        let s = try await startGSLB(config: dir.path + "/meridian.yaml")
        var sent: [UInt16] = []
        do {
            for i in 0..<3 {
                let r = try query("fo.gslb.test.", port: s.port, id: UInt16(100 + i))
                #expect(r.answered)
                sent.append(r.sourcePort)
            }
        } catch { await s.stop(); throw error }
        #expect(await s.stop() == 0, "stops cleanly: \(s.logText)")
        return (s, sent)
    }

    @Test func fileOutputHoldsQueriesAndResponsesWithTheClientAddress() async throws {
        let dir = try folder(dnstap: "  dnstap: { file: tap.fstrm, identity: e2e-tap, version: test-1 }\n")
        defer { dir.remove() }
        let file = dir.path + "/tap.fstrm"
        let (s, sent) = try await serveAndQueryThree(dir)
        let text = try await DnstapTools.read(file)
        let dump = DnstapDump(text)
        for p in sent {
            expectLogged(dump, sourcePort: p, serverPort: s.port, name: "fo.gslb.test.", answer: "192.0.2.1", identity: "e2e-tap", text)
        }
        #expect(dump.messages.allSatisfy { $0["version"] == "test-1" }, "\(text)")
        // The Meridian `extra` field (dnstap field 3, which dnstap-ldns does not print) names
        // the decision: one per message of the three GSLB queries, none for the readiness probe.
        let raw = try Data(contentsOf: URL(fileURLWithPath: file))
        let extra = Data("gslb=fo.gslb.test. node=failover:0/pool:lon-1 endpoint=lon-1 dc=lon scope=0".utf8)
        var found = 0, from = raw.startIndex
        while found < 100, let r = raw.range(of: extra, in: from..<raw.endIndex) { found += 1; from = r.upperBound }
        #expect(found == 6, "extra fields found: \(found)")
    }

    @Test func socketToFstrmCaptureWithHandshake() async throws {
        let dir = try folder(dnstap: "  dnstap: { socket: tap.sock, identity: e2e-sock }\n")
        defer { dir.remove() }
        let sock = dir.path + "/tap.sock", file = dir.path + "/captured.fstrm"
        let capture = try await DnstapTools.startCapture(socket: sock, file: file)
        var stopped = false
        do {
            let (s, sent) = try await serveAndQueryThree(dir)
            await capture.stop(grace: .seconds(5))
            stopped = true
            let text = try await DnstapTools.read(file)
            let dump = DnstapDump(text)
            for p in sent {
                expectLogged(dump, sourcePort: p, serverPort: s.port, name: "fo.gslb.test.", answer: "192.0.2.1", identity: "e2e-sock", text)
            }
        } catch {
            if !stopped { await capture.stop(grace: .seconds(2)) }
            throw error
        }
        if !stopped { await capture.stop(grace: .seconds(2)) }
    }

    /// A collector that is absent at start, then appears, then dies: every query is answered
    /// throughout, and the server connects once the collector is there.
    @Test func missingOrDeadCollectorNeverStopsAnswering() async throws {
        let dir = try folder(dnstap: "  dnstap: { socket: late.sock }\n")
        defer { dir.remove() }
        let sock = dir.path + "/late.sock", file = dir.path + "/late.fstrm"
        let s = try await startGSLB(config: dir.path + "/meridian.yaml")
        var capture: ChildProcess?
        do {
            for i in 0..<50 { #expect(try query("fo.gslb.test.", port: s.port, id: UInt16(i)).answered, "answered without a collector") }
            capture = try await DnstapTools.startCapture(socket: sock, file: file)
            // The writer retries with backoff (at most 5 s apart): within 15 s a query is logged.
            var loggedPort: UInt16 = 0
            let connected = await secondsUntil(limit: 15, every: .milliseconds(200)) {
                s.logText.contains("dnstap: writing to socket")
            }
            #expect(connected != nil, "connected to the late collector: \(s.logText)")
            loggedPort = try query("fo.gslb.test.", port: s.port, id: 999).sourcePort
            try await Task.sleep(for: .milliseconds(300))
            await capture?.stop(grace: .seconds(5))
            capture = nil
            // The collector is gone: queries are still answered, at once.
            let t0 = Date()
            for i in 0..<50 { #expect(try query("fo.gslb.test.", port: s.port, id: UInt16(1000 + i)).answered, "answered after the collector died") }
            #expect(Date().timeIntervalSince(t0) < 10)
            let dump = DnstapDump(try await DnstapTools.read(file))
            #expect(dump.of(type: "AUTH_QUERY").contains { $0["query_port"] == "\(loggedPort)" }, "the query sent while connected was captured")
        } catch {
            await capture?.stop(grace: .seconds(2))
            await s.stop()
            throw error
        }
        #expect(s.isRunning, "meridian died: \(s.logText)")
        #expect(await s.stop() == 0)
    }

    /// A reload that changes `server.dnstap` stops the old writer (its file ends with STOP)
    /// and starts the new one; queries before and after land in the right file.
    @Test func reloadMovesTheLogToTheNewOutput() async throws {
        let dir = try folder(dnstap: "  dnstap: { file: first.fstrm }\n")
        defer { dir.remove() }
        let s = try await startGSLB(config: dir.path + "/meridian.yaml")
        var ports: [UInt16] = []
        do {
            ports.append(try query("fo.gslb.test.", port: s.port, id: 1).sourcePort)
            let yaml = try String(contentsOfFile: dir.path + "/meridian.yaml", encoding: .utf8)
            try dir.write("meridian.yaml", contents: yaml.replacingOccurrences(of: "first.fstrm", with: "second.fstrm"))
            s.signal(SIGHUP)
            #expect(await eventually(10) { s.logText.contains("reload ok") && s.logText.contains("dnstap: writing to file \(dir.path)/second.fstrm") },
                    "\(s.logText)")
            ports.append(try query("fo.gslb.test.", port: s.port, id: 2).sourcePort)
        } catch { await s.stop(); throw error }
        #expect(await s.stop() == 0)
        let first = DnstapDump(try await DnstapTools.read(dir.path + "/first.fstrm"))
        let second = DnstapDump(try await DnstapTools.read(dir.path + "/second.fstrm"))
        #expect(first.of(type: "AUTH_QUERY").contains { $0["query_port"] == "\(ports[0])" })
        #expect(!first.of(type: "AUTH_QUERY").contains { $0["query_port"] == "\(ports[1])" })
        #expect(second.of(type: "AUTH_QUERY").contains { $0["query_port"] == "\(ports[1])" })
    }

    /// `max_per_second` caps what one worker logs each second; every query is still answered.
    @Test func perSecondCapLimitsTheLogNotTheAnswers() async throws {
        let dir = try folder(dnstap: "  workers: 1\n  dnstap: { file: capped.fstrm, max_per_second: 3, log_responses: false }\n")
        defer { dir.remove() }
        let s = try await startGSLB(config: dir.path + "/meridian.yaml")
        let t0 = Date()
        do {
            for i in 0..<40 { #expect(try query("fo.gslb.test.", port: s.port, id: UInt16(i)).answered) }
        } catch { await s.stop(); throw error }
        let seconds = Int(Date().timeIntervalSince(t0).rounded(.up)) + 1
        #expect(await s.stop() == 0)
        let dump = DnstapDump(try await DnstapTools.read(dir.path + "/capped.fstrm"))
        let logged = dump.of(type: "AUTH_QUERY").count
        // UDP: one worker, 3 a second, over the seconds the queries spanned; the readiness
        // probe's queries count too (they share the budget).
        #expect(logged >= 1 && logged <= 3 * (seconds + 1), "\(logged) logged in about \(seconds) s")
        #expect(dump.of(type: "AUTH_RESPONSE").isEmpty, "log_responses: false")
    }

    /// `meridian report` counts the GSLB answers of a dnstap file per minute and resolver
    /// network by datacenter, and with --datacenter only what went there.
    @Test func reportCountsAnswersPerDatacenter() async throws {
        let dir = try folder(dnstap: "  dnstap: { file: report.fstrm }\n")
        defer { dir.remove() }
        let s = try await startGSLB(config: dir.path + "/meridian.yaml")
        do {
            for _ in 0..<3 { _ = try await Dig.query("geo.gslb.test", "A", port: s.port, options: ["+subnet=81.2.69.142/32"]) }
            for _ in 0..<2 { _ = try await Dig.query("geo.gslb.test", "A", port: s.port, options: ["+subnet=89.160.20.112/32"]) }
        } catch { await s.stop(); throw error }
        #expect(await s.stop() == 0)
        let file = dir.path + "/report.fstrm"
        let r = try await MeridianProcess.run(["report", "--dnstap", file])
        print(r.stdout)
        #expect(r.status == 0, "\(r.combined)")
        #expect(r.stdout.contains(": 5\n"), "five GSLB answers: \(r.stdout)")
        let network = r.stdout.split(separator: "\n").first { $0.hasPrefix("127.0.0.0/24") }.map(String.init) ?? ""
        #expect(network.split(separator: " ").map(String.init) == ["127.0.0.0/24", "3", "2"], "lon 3, sto 2: \(r.stdout)")
        let only = try await MeridianProcess.run(["report", "--dnstap", file, "--datacenter", "sto"])
        #expect(only.status == 0 && only.stdout.contains(": 2\n") && !only.stdout.contains("lon"), "\(only.stdout)")
        let none = try await MeridianProcess.run(["report", "--dnstap", file, "--from", "2000-01-01T00:00:00Z", "--to", "2000-01-01T00:01:00Z"])
        #expect(none.status == 0 && none.stdout.contains(": 0\n"), "\(none.stdout)")
        let bad = try await MeridianProcess.run(["report", "--dnstap", dir.path + "/meridian.yaml"])
        #expect(bad.status == 1 && bad.stderr.contains("meridian report:"), "\(bad.combined)")
    }
}
