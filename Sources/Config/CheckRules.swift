import DNSWire
import Foundation
import Yams
import Diagnostics

// The rules a health check must meet to be run, enforced while the config loads so that
// `meridian check` and `meridian serve` agree: every rule the checkers and the monitor
// (Sources/Health) enforce when `serve` builds them is checked here first, with the
// file:line:column of the key at fault. The monitor keeps its own checks only as guards
// against programmer errors; a config that loaded never reaches them.

/// The RCODE a `dns` check expects, by mnemonic (`NOERROR`, `NXDOMAIN`, any case) or number
/// (0...4095, the 12 bits of an extended RCODE). One parser for the config and the checker.
public func dnsCheckRcode(named s: String) -> UInt16? {
    if let v = UInt16(s), v < 4096 { return v }
    let up = s.uppercased()
    for v in UInt16(0)..<24 where RCode(rawValue: v).description.uppercased() == up { return v }
    return nil
}

/// A CA file larger than this is not a certificate bundle (the system bundle is about 200 KiB).
let maxCAFileBytes = 16 << 20

/// Why `path` is not a readable PEM file (a client certificate or private key), or nil; the
/// server checks with OpenSSL that the certificate and key load and match.
func pemFileProblem(_ path: String, what: String) -> String? {
    guard let h = FileHandle(forReadingAtPath: path) else {
        return FileManager.default.fileExists(atPath: path) ? "cannot read \(what)" : "\(what) not found"
    }
    defer { try? h.close() }
    guard let data = try? h.read(upToCount: maxCAFileBytes + 1), data.count <= maxCAFileBytes else { return "cannot read \(what)" }
    return String(decoding: data, as: UTF8.self).contains("-----BEGIN ") ? nil : "\(what) is not PEM (no -----BEGIN line)"
}

/// Why OpenSSL would refuse `path` as a CA file, or nil. Config does not link OpenSSL, so this
/// is the PEM layer of what `SSL_CTX_load_verify_locations` reads: the file is readable, every
/// PEM block decodes, and at least one is a certificate or CRL.
func caFileProblem(_ path: String) -> String? {
    guard let h = FileHandle(forReadingAtPath: path) else {
        return FileManager.default.fileExists(atPath: path) ? "cannot read CA file" : "CA file not found"
    }
    defer { try? h.close() }
    guard let data = try? h.read(upToCount: maxCAFileBytes + 1) else { return "cannot read CA file" }
    guard data.count <= maxCAFileBytes else { return "CA file larger than \(maxCAFileBytes >> 20) MiB" }
    let text = String(decoding: data, as: UTF8.self)
    var usable = 0
    var rest = Substring(text)
    // Bounded: each round consumes one BEGIN line of a file of at most maxCAFileBytes.
    while let begin = rest.range(of: "-----BEGIN ") {
        let afterBegin = rest[begin.upperBound...]
        guard let dashes = afterBegin.range(of: "-----") else { return "CA file has a broken PEM header" }
        let label = afterBegin[..<dashes.lowerBound]
        let body = afterBegin[dashes.upperBound...]
        guard let end = body.range(of: "-----END \(label)-----") else { return "CA file: PEM block \"\(label)\" has no END line" }
        let base64 = body[..<end.lowerBound].filter { !$0.isWhitespace }
        guard let der = Data(base64Encoded: String(base64)), der.first == 0x30 else {
            return "CA file: PEM block \"\(label)\" is not valid base64 DER"
        }
        if ["CERTIFICATE", "TRUSTED CERTIFICATE", "X509 CRL"].contains(String(label)) { usable += 1 }
        rest = body[end.upperBound...]
    }
    return usable == 0 ? "CA file holds no PEM certificate" : nil
}

/// The bounds of watched connections (`watch: true` on a tcp, http or https check), in one
/// place: Config enforces the cap at load, the health loop (Sources/Health/Watcher.swift)
/// uses the delays. docs/configuration.md (`checks`) describes them for operators.
public enum WatchLimits {
    /// Watched sockets per server at most: one per distinct host:port of the watched checks
    /// after per-endpoint expansion, however many checks share it. 10,000 is far above the
    /// endpoints of one GSLB deployment (hundreds) and keeps the watcher's one `poll` over
    /// every socket cheap (a scan of 10,000 entries is a few microseconds per event); the
    /// server raises its soft descriptor limit for twice this many during a reload.
    public static let maxSockets = 10_000
    /// The first reconnect after a watched connection closed or could not be opened. It
    /// doubles for every further failure, up to the check's interval (so a dead target costs
    /// at most one connect attempt per interval, like its probe); a connection that stayed
    /// open for a whole interval starts the sequence again from here.
    public static let firstReconnectDelay = 0.5
    /// After a watched connection closed, the check runs at once; while it fails and `fall`
    /// is not yet reached, it runs again at this spacing (at most `fall` quick probes per
    /// event), so `fall: 3` decides within about 2 x 0.2 s plus the probes' own time. 200 ms
    /// leaves a restarting process (a quick crash-restart) a moment to listen again without
    /// stretching the decision past half a second.
    public static let quickProbeSpacing = 0.2
}

extension Builder {
    /// `watch:` of one check: a boolean, only on tcp, http and https checks (the only
    /// probes with a connection to keep). A `watch: true` is remembered for the cap.
    func parseWatch(_ node: Node, kind: CheckSpec.Kind, type: String, what: String, check: Int) -> Bool {
        guard let b = r.bool(node, "\(what): watch") else { return false }
        switch kind {
        case .tcp, .http:
            if b { watchNodes.append((check, node)) }
            return b
        default:
            r.error(node, "\(what): watch is only for tcp, http and https checks, not \(type)")
            return false
        }
    }

    /// The cap on watched sockets (`WatchLimits.maxSockets`), counted as the health loop
    /// opens them; reported at the first `watch: true`.
    func checkWatchedConnections(_ model: ConfigModel) {
        guard let first = watchNodes.first else { return }
        let n = model.watchedTargets().count
        if n > WatchLimits.maxSockets {
            r.error(first.node, "checks: \(n) watched connections (distinct host:port of checks with watch: true) exceed the limit of \(WatchLimits.maxSockets)")
        }
    }

    /// The rules of one parsed check: `defaults` are the `checks.defaults` entries, `entries`
    /// the check's own (`applyTiming` applied them in that order, so the last one won).
    func checkRules(_ spec: CheckSpec, defaults: [(key: String, keyNode: Node, value: Node)],
                    _ entries: [(key: String, keyNode: Node, value: Node)], keyNode: Node, what: String) {
        func node(_ k: String) -> Node { entries.last { $0.key == k }?.value ?? keyNode }
        // The scheduler divides time by the interval, and a zero timeout fails every attempt.
        for (key, value) in [("interval", spec.interval), ("timeout", spec.timeout)] where value <= 0 {
            if let own = entries.last(where: { $0.key == key }) {
                r.error(own.value, "\(what): \(key) must be more than 0")
            } else if let d = defaults.last(where: { $0.key == key }) {
                // Reported once, at the default, not once per check that inherits it.
                let e = ConfigError(r.loc(d.value), "checks.defaults: \(key) must be more than 0")
                if !r.errors.contains(e) { r.error(e.location, e.message) }
            }
        }
        switch spec.kind {
        case .http(let h):
            // The request is written as text: a line break would inject a header (or a request).
            func noBreaks(_ value: String, _ key: String) {
                if value.contains("\r") || value.contains("\n") { r.error(node(key), "\(what): \(key) must not contain a line break") }
            }
            noBreaks(h.method, "method"); noBreaks(h.path, "path"); noBreaks(h.host, "host")
            if let hh = h.hostHeader { noBreaks(hh, "host_header") }
            if let hn = entries.last(where: { $0.key == "headers" })?.value, case .mapping(let hm) = hn {
                for (k, v) in hm {
                    let name = k.string ?? "", value = v.string ?? ""
                    if name.contains("\r") || name.contains("\n") || value.contains("\r") || value.contains("\n") {
                        r.error(k, "\(what): header \"\(name)\" must not contain a line break")
                    }
                }
            }
            // The CA file is read only when certificates are verified.
            if h.tls, h.verifyCertificate, let ca = h.caFile, let problem = caFileProblem(ca) {
                r.error(node("ca_file"), "\(what): ca_file: \(problem): \(ca)")
            }
        case .dns(_, _, let name, _, let rcode, _):
            do { _ = try DNSName(name, origin: .root) } catch {
                r.error(node("name"), "\(what): bad name \"\(name)\": \(error)")
            }
            if dnsCheckRcode(named: rcode) == nil {
                r.error(node("rcode"), "\(what): unknown rcode \"\(rcode)\" (a name such as NOERROR, NXDOMAIN, SERVFAIL, REFUSED, or a number 0...4095)")
            }
        case .exec(let command):
            if command.first?.isEmpty ?? true { r.error(node("command"), "\(what): command needs a program to run") }
        case .calculated(let names, _):
            if names.isEmpty { r.error(node("checks"), "\(what): needs at least one check") }
        case .tcp, .file:
            break
        }
    }

    /// A calculated check may not depend on itself, directly or through others: its state
    /// would be defined by itself. Each cycle is reported once, at the reference that closes it.
    func checkCalculatedCycles(_ specs: [(CheckSpec, [(String, Node)], Node)]) {
        let index = Dictionary(specs.enumerated().map { ($0.element.0.name, $0.offset) }, uniquingKeysWith: { a, _ in a })
        var mark = [UInt8](repeating: 0, count: specs.count) // 0 new, 1 on the path, 2 done
        var path: [Int] = []
        // Depth is bounded by the number of checks: a node is on the path at most once.
        func visit(_ i: Int) {
            mark[i] = 1
            path.append(i)
            for (ref, n) in specs[i].1 {
                guard let j = index[ref] else { continue }
                if mark[j] == 1 {
                    let cycle = path[path.firstIndex(of: j)!...].map { specs[$0].0.name } + [ref]
                    r.error(n, "check \(specs[i].0.name): calculated checks depend on themselves: \(cycle.joined(separator: " -> "))")
                } else if mark[j] == 0 {
                    visit(j)
                }
            }
            path.removeLast()
            mark[i] = 2
        }
        for i in specs.indices where mark[i] == 0 { visit(i) }
    }
}

extension ConfigModel {
    /// Whether check `i` is a template run once per endpoint address: a tcp, http(s) or dns
    /// check without `host`, or a calculated check over at least one such template (directly
    /// or through other calculated checks). The loader rejects calculated cycles; the depth
    /// bound only keeps this total.
    public func isPerEndpointCheck(_ i: Int) -> Bool { perEndpoint(i, depth: 0) }

    private func perEndpoint(_ i: Int, depth: Int) -> Bool {
        guard i >= 0, i < checks.count, depth <= checks.count else { return false }
        switch checks[i].kind {
        case .tcp(let h, _): return h.isEmpty
        case .http(let h): return h.host.isEmpty
        case .dns(let s, _, _, _, _, _): return s.isEmpty
        case .exec, .file: return false
        case .calculated(let names, _):
            return names.contains { n in checks.firstIndex { $0.name == n }.map { perEndpoint($0, depth: depth + 1) } ?? false }
        }
    }

    /// The host:port pairs that watched checks keep a connection to, each once, as the
    /// health plan runs them: a watched check with its own host, and a watched template for
    /// every endpoint that uses it (directly or through calculated checks).
    public func watchedTargets() -> Set<WatchTarget> {
        var out = Set<WatchTarget>()
        for (i, c) in checks.enumerated() where c.watch && !isPerEndpointCheck(i) {
            if let t = c.watchTarget { out.insert(t) }
        }
        for (e, ep) in endpoints.enumerated() {
            guard let c = ep.check else { continue }
            collectWatched(c, host: checkHost(forEndpoint: e), into: &out, depth: 0)
        }
        return out
    }

    private func collectWatched(_ i: Int, host: String, into out: inout Set<WatchTarget>, depth: Int) {
        guard i >= 0, i < checks.count, depth <= checks.count, isPerEndpointCheck(i) else { return }
        if case .calculated(let names, _) = checks[i].kind {
            for n in names {
                if let m = checks.firstIndex(where: { $0.name == n }) { collectWatched(m, host: host, into: &out, depth: depth + 1) }
            }
        } else if let t = checkSpec(i, host: host).watchTarget {
            out.insert(t)
        }
    }

    /// Check `i` with an empty target host replaced by `host` (other kinds unchanged).
    public func checkSpec(_ i: Int, host: String) -> CheckSpec {
        var spec = checks[i]
        switch spec.kind {
        case .tcp(let h, let port) where h.isEmpty: spec.kind = .tcp(host: host, port: port)
        case .http(var http) where http.host.isEmpty:
            http.host = host
            spec.kind = .http(http)
        case .dns(let s, let port, let name, let type, let rcode, let answer) where s.isEmpty:
            spec.kind = .dns(server: host, port: port, name: name, type: type, expectRcode: rcode, expectAnswer: answer)
        default: break
        }
        return spec
    }

    /// The address a per-endpoint check probes for endpoint `i`: its first IPv4, else first
    /// IPv6 address, else its CNAME target.
    public func checkHost(forEndpoint i: Int) -> String {
        let ep = endpoints[i]
        return ep.v4.first?.description ?? ep.v6.first?.description ?? ep.cname?.description ?? ""
    }
}

/// Where a watched check keeps its idle connection: a bare TCP connection to the check's
/// host and port (for https too: no TLS session is kept, the probe makes its own).
public struct WatchTarget: Hashable, Sendable, CustomStringConvertible {
    public var host: String
    public var port: UInt16
    /// The check's `source:`: the watched connection leaves from the same address as its probes.
    public var source: String? = nil
    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

extension CheckSpec {
    /// The connection `watch: true` keeps, or nil when the check does not watch.
    public var watchTarget: WatchTarget? {
        guard watch else { return nil }
        switch kind {
        case .tcp(let h, let p): return WatchTarget(host: h, port: p, source: source)
        case .http(let h): return WatchTarget(host: h.host, port: h.port, source: source)
        default: return nil
        }
    }
}
