import DNSWire
import Diagnostics
import Foundation
import Yams

/// A TSIG algorithm (RFC 8945 6): HMAC with one of these digests.
public enum TSIGAlgorithm: String, Hashable, Sendable, CaseIterable {
    case hmacSHA256 = "hmac-sha256"
    case hmacSHA384 = "hmac-sha384"
    case hmacSHA512 = "hmac-sha512"

    /// The algorithm's name as it goes on the wire (`hmac-sha256.`).
    public var name: DNSName { DNSName(uncheckedWire: [UInt8(rawValue.utf8.count)] + Array(rawValue.utf8) + [0]) }
    /// Length of a full MAC.
    public var macLength: Int {
        switch self {
        case .hmacSHA256: return 32
        case .hmacSHA384: return 48
        case .hmacSHA512: return 64
        }
    }
}

/// A shared TSIG key: the key's name (which both sides must agree on), its algorithm and
/// its secret.
public struct TSIGKey: Hashable, Sendable {
    public var name: DNSName
    public var algorithm: TSIGAlgorithm
    public var secret: [UInt8]
    public var location: SourceLocation
    public init(name: DNSName, algorithm: TSIGAlgorithm, secret: [UInt8], location: SourceLocation) {
        self.name = name; self.algorithm = algorithm; self.secret = secret; self.location = location
    }
}

/// One entry of a transfer ACL: clients in `prefix`, and the key they must sign with
/// (an index into `TransferSettings.keys`), or nil for unsigned transfers.
public struct TransferClient: Hashable, Sendable, CustomStringConvertible {
    public var prefix: IPPrefix
    public var key: Int?
    public init(prefix: IPPrefix, key: Int? = nil) { self.prefix = prefix; self.key = key }
    public var description: String { "\(prefix)" + (key.map { " key #\($0)" } ?? "") }
}

/// A secondary told of zone changes (RFC 1996 NOTIFY): `ADDR` (port 53) or `ADDR:PORT`
/// (`[v6]:PORT`), checked by the server's address parser at load; signed with `key` (an
/// index into `TransferSettings.keys`) when set.
public struct NotifyTarget: Hashable, Sendable {
    public var address: String
    public var key: Int?
    public var location: SourceLocation
    public init(address: String, key: Int? = nil, location: SourceLocation) {
        self.address = address; self.key = key; self.location = location
    }
}

/// Which SOA serial a zone is served with (`transfers.serial`).
public enum SerialPolicy: String, Hashable, Sendable, CaseIterable {
    /// The zone file's serial.
    case keep
    /// Seconds since the epoch when the content changed (at least the previous serial + 1,
    /// and never below the file's).
    case unixtime
    /// The previous serial + 1 when the content changed (never below the file's).
    case increment
}

/// What a GSLB name looks like in a zone transfer: secondaries cannot run policies, so it
/// is written as the answer of one fixed situation.
public enum TransferView: String, Hashable, Sendable, CaseIterable {
    /// Every endpoint up, and a client with no known location (source 0.0.0.0).
    case allUp = "all_up"
    /// Every endpoint down: the name's `when_all_down` / `fallback` answer where one is
    /// configured; a name without one answers as with `all_up`.
    case fallback
    /// The policy's answer with the current health and no client location (falling back as
    /// the policy does when endpoints are down). When it changes, the zone's serial moves
    /// and its secondaries are told (NOTIFY), at most once per `health_notify_interval`.
    case healthy
}

/// `transfers:`: who may transfer which zone (AXFR, IXFR), with which TSIG key, and how
/// GSLB names are written for secondaries.
public struct TransferSettings: Hashable, Sendable {
    public var keys: [TSIGKey] = []
    /// Clients allowed to transfer every zone.
    public var allow: [TransferClient] = []
    /// Further clients per zone (lowercase origin), on top of `allow`.
    public var zoneAllow: [DNSName: [TransferClient]] = [:]
    public var view: TransferView = .allUp
    public var zoneView: [DNSName: TransferView] = [:]
    /// Per GSLB owner (lowercase); wins over the zone's and the default.
    public var nameView: [DNSName: TransferView] = [:]
    public var serial: SerialPolicy = .keep
    /// The name of a generated catalog zone (RFC 9432) listing every served zone; nil: none.
    public var catalog: DNSName?
    public var zoneSerial: [DNSName: SerialPolicy] = [:]
    /// The least time between two serial bumps of a zone caused by health changes (a
    /// `healthy` view that changed), so a flapping endpoint cannot storm the secondaries;
    /// the last change always goes out once the interval has passed.
    public var healthNotifyInterval: Double = 10
    /// Where `serial` (and each zone's) was written; nil when left to the default.
    public var serialLocation: SourceLocation?
    public var zoneSerialLocation: [DNSName: SourceLocation] = [:]
    /// Secondaries sent a NOTIFY for every zone after a reload that changed it.
    public var notify: [NotifyTarget] = []
    /// More NOTIFY targets per zone (lowercase origin).
    public var zoneNotify: [DNSName: [NotifyTarget]] = [:]
    public init() {}

    /// Every NOTIFY target of zone `origin` (lowercase).
    public func notifyTargets(zone origin: DNSName) -> [NotifyTarget] { notify + (zoneNotify[origin] ?? []) }

    /// True when no client at all may transfer (every transfer is refused).
    public var isClosed: Bool { allow.isEmpty && zoneAllow.values.allSatisfy(\.isEmpty) }

    /// The ACL entries for zone `origin` (lowercase) that contain `client`.
    public func entries(zone origin: DNSName, client: IPAddress) -> [TransferClient] {
        let a = client.unmappingV4
        return (allow + (zoneAllow[origin] ?? [])).filter { $0.prefix.contains(a) }
    }

    /// The view for the GSLB name `owner` (lowercase) in zone `origin` (lowercase).
    public func view(name owner: DNSName, zone origin: DNSName) -> TransferView {
        nameView[owner] ?? zoneView[origin] ?? view
    }

    /// True when some GSLB name of zone `origin` (lowercase) may be written with the
    /// `healthy` view, so the zone's transferred content follows health.
    public func followsHealth(zone origin: DNSName) -> Bool {
        if (zoneView[origin] ?? view) == .healthy { return true }
        return nameView.contains { $0.value == .healthy && $0.key.isSubdomain(of: origin) }
    }

    /// The key named `name` (case-insensitive), if configured.
    public func key(named name: DNSName) -> Int? {
        keys.firstIndex { $0.name == name }
    }
}

/// Reads the `key "name" { algorithm hmac-sha256; secret "..."; };` blocks that BIND's
/// `tsig-keygen` prints (and NSD and Knot accept in their own syntax with the same three
/// values).
///
///     let keys = try TSIGKeyFile.parse(text, file: "xfr.key")
public enum TSIGKeyFile {
    public static func parse(_ text: String, file: String) throws(ConfigErrors) -> [TSIGKey] {
        var keys: [TSIGKey] = []
        var errors: [ConfigError] = []
        // Tokens: words, quoted strings, `{`, `}`, `;`; comments (#, //) to end of line.
        var tokens: [(text: String, quoted: Bool, line: Int, column: Int)] = []
        var line = 1, column = 1
        var chars = Array(text.unicodeScalars)[...]
        while let c = chars.first {
            if c == "\n" { line += 1; column = 1; chars = chars.dropFirst(); continue }
            if c == " " || c == "\t" || c == "\r" { column += 1; chars = chars.dropFirst(); continue }
            if c == "#" || (c == "/" && chars.dropFirst().first == "/") {
                while let d = chars.first, d != "\n" { chars = chars.dropFirst() }
                continue
            }
            let startColumn = column
            if c == "{" || c == "}" || c == ";" {
                tokens.append((String(c), false, line, startColumn)); chars = chars.dropFirst(); column += 1; continue
            }
            if c == "\"" {
                chars = chars.dropFirst(); column += 1
                var s = ""
                while let d = chars.first, d != "\"", d != "\n" { s.unicodeScalars.append(d); chars = chars.dropFirst(); column += 1 }
                guard chars.first == "\"" else {
                    throw ConfigErrors([ConfigError(SourceLocation(file: file, line: line, column: startColumn), "unterminated quoted string")])
                }
                chars = chars.dropFirst(); column += 1
                tokens.append((s, true, line, startColumn))
                continue
            }
            var s = ""
            while let d = chars.first, !" \t\r\n{};\"".unicodeScalars.contains(d) { s.unicodeScalars.append(d); chars = chars.dropFirst(); column += 1 }
            tokens.append((s, false, line, startColumn))
        }
        var i = 0
        func at(_ k: Int) -> SourceLocation {
            let t = k < tokens.count ? tokens[k] : (text: "", quoted: false, line: line, column: column)
            return SourceLocation(file: file, line: t.line, column: t.column)
        }
        func expect(_ s: String) -> Bool {
            guard i < tokens.count, tokens[i].text == s, !tokens[i].quoted else {
                errors.append(ConfigError(at(i), "expected \"\(s)\"")); return false
            }
            i += 1; return true
        }
        while i < tokens.count && errors.isEmpty {
            let start = i
            guard tokens[i].text == "key", !tokens[i].quoted, i + 1 < tokens.count else {
                errors.append(ConfigError(at(i), "expected key \"NAME\" { algorithm ...; secret \"...\"; };")); break
            }
            let nameText = tokens[i + 1].text
            let name: DNSName
            do { name = try DNSName(nameText.hasSuffix(".") ? nameText : nameText + ".").lowercased() } catch {
                errors.append(ConfigError(at(i + 1), "bad key name \"\(nameText)\": \(error)")); break
            }
            i += 2
            guard expect("{") else { break }
            var algorithm: TSIGAlgorithm?
            var secret: [UInt8]?
            while i < tokens.count, tokens[i].text != "}" || tokens[i].quoted {
                let k = tokens[i].text
                guard i + 2 < tokens.count else { errors.append(ConfigError(at(i), "unexpected end of file")); break }
                let v = tokens[i + 1].text
                switch k {
                case "algorithm":
                    guard let a = TSIGAlgorithm(rawValue: v.lowercased()) else {
                        errors.append(ConfigError(at(i + 1), "unsupported TSIG algorithm \"\(v)\" (use \(TSIGAlgorithm.allCases.map(\.rawValue).joined(separator: ", ")))"))
                        i += 2; continue
                    }
                    algorithm = a
                case "secret":
                    guard let s = TextBytes.unbase64(Array(v.utf8)), !s.isEmpty else {
                        errors.append(ConfigError(at(i + 1), "secret is not base64")); i += 2; continue
                    }
                    secret = s
                default:
                    errors.append(ConfigError(at(i), "unknown statement \"\(k)\" in key \(name) (expected algorithm, secret)"))
                }
                i += 2
                guard expect(";") else { break }
            }
            guard errors.isEmpty, expect("}") else { break }
            if i < tokens.count, tokens[i].text == ";" { i += 1 }
            guard let algorithm, let secret else {
                errors.append(ConfigError(at(start), "key \(name) needs both algorithm and secret")); continue
            }
            keys.append(TSIGKey(name: name, algorithm: algorithm, secret: secret, location: at(start)))
        }
        if errors.isEmpty && keys.isEmpty { errors.append(ConfigError(SourceLocation(file: file, line: 1, column: 1), "no key in the file")) }
        guard errors.isEmpty else { throw ConfigErrors(errors) }
        return keys
    }
}

extension Builder {
    /// `transfers:` (docs/transfers.md). Zones and GSLB names it refers to are checked
    /// against the served ones by `checkTransferReferences` once those are known.
    func parseTransfers(_ node: Node) {
        guard let m = r.mapping(node, "transfers") else { return }
        r.checkKeys(m, allowed: ["keys", "key_files", "allow", "notify", "serial", "catalog", "gslb_view", "health_notify_interval", "zones", "names"], "transfers")
        func entry(_ k: String) -> Node? { m.first { $0.key == k }?.value }
        if let n = entry("keys"), let km = r.mapping(n, "transfers.keys") {
            for k in km {
                let what = "transfers.keys.\(k.key)"
                guard let name = try? DNSName(k.key.hasSuffix(".") ? k.key : k.key + ".").lowercased() else {
                    r.error(k.keyNode, "\(what): bad key name"); continue
                }
                guard let f = r.mapping(k.value, what) else { continue }
                r.checkKeys(f, allowed: ["algorithm", "secret"], what)
                var algorithm: TSIGAlgorithm = .hmacSHA256
                var secret: [UInt8]?
                for x in f {
                    switch x.key {
                    case "algorithm":
                        guard let s = r.string(x.value, "\(what).algorithm") else { break }
                        if let a = TSIGAlgorithm(rawValue: s.lowercased()) { algorithm = a } else {
                            r.error(x.value, "\(what).algorithm: unsupported \"\(s)\" (use \(TSIGAlgorithm.allCases.map(\.rawValue).joined(separator: ", ")))")
                        }
                    case "secret":
                        guard let s = r.string(x.value, "\(what).secret") else { break }
                        if let b = TextBytes.unbase64(Array(s.utf8)), !b.isEmpty { secret = b } else {
                            r.error(x.value, "\(what).secret: not base64 (tsig-keygen prints one)")
                        }
                    default: break
                    }
                }
                guard let secret else {
                    if !f.contains(where: { $0.key == "secret" }) { r.error(k.keyNode, "\(what): needs a secret") }
                    continue
                }
                addKey(TSIGKey(name: name, algorithm: algorithm, secret: secret, location: r.loc(k.keyNode)), k.keyNode)
            }
        }
        if let n = entry("key_files"), let files = r.strings(n, "transfers.key_files") {
            for (p, fn) in files {
                let file = path(p)
                do {
                    let text = try InputFile.readText(file, limit: InputLimits.smallFileBytes)
                    for k in try TSIGKeyFile.parse(text, file: file) { addKey(k, fn) }
                } catch let e as InputFileError {
                    r.error(fn, "transfers.key_files: \(e)")
                } catch let e as ConfigErrors {
                    for x in e.errors { r.error(fn, "transfers.key_files: \(x)") }
                } catch {
                    r.error(fn, "transfers.key_files: \(error)")
                }
            }
        }
        // ACLs after keys, so `key:` can name a key from either source.
        if let n = entry("allow") { transfers.allow = transferClients(n, "transfers.allow") }
        if let n = entry("notify") { transfers.notify = notifyTargets(n, "transfers.notify") }
        if let n = entry("gslb_view"), let v = transferView(n, "transfers.gslb_view") { transfers.view = v }
        if let n = entry("serial"), let v = serialPolicy(n, "transfers.serial") {
            transfers.serial = v
            transfers.serialLocation = r.loc(n)
        }
        if let n = entry("health_notify_interval"), let v = r.duration(n, "transfers.health_notify_interval") {
            if v >= 1 && v <= 3600 {
                transfers.healthNotifyInterval = v
            } else {
                r.error(n, "transfers.health_notify_interval: must be between 1s and 1h, found \(r.describe(n))")
            }
        }
        if let n = entry("catalog"), let c = r.string(n, "transfers.catalog") {
            if let name = try? DNSName(c.hasSuffix(".") ? c : c + ".").lowercased(), !name.isRoot {
                transfers.catalog = name
                catalogRef = n
            } else {
                r.error(n, "transfers.catalog: \"\(c)\" is not a domain name")
            }
        }
        if let n = entry("zones"), let zm = r.mapping(n, "transfers.zones") {
            for z in zm {
                let what = "transfers.zones.\(z.key)"
                guard let origin = try? DNSName(z.key.hasSuffix(".") ? z.key : z.key + ".").lowercased() else {
                    r.error(z.keyNode, "\(what): bad zone name"); continue
                }
                guard let f = r.mapping(z.value, what) else { continue }
                r.checkKeys(f, allowed: ["allow", "notify", "serial", "gslb_view"], what)
                for x in f {
                    switch x.key {
                    case "serial":
                        if let v = serialPolicy(x.value, "\(what).serial") {
                            transfers.zoneSerial[origin] = v
                            transfers.zoneSerialLocation[origin] = r.loc(x.value)
                        }
                    case "notify": transfers.zoneNotify[origin, default: []] += notifyTargets(x.value, "\(what).notify")
                    case "allow": transfers.zoneAllow[origin, default: []] += transferClients(x.value, "\(what).allow")
                    case "gslb_view": if let v = transferView(x.value, "\(what).gslb_view") { transfers.zoneView[origin] = v }
                    default: break
                    }
                }
                transferZoneRefs.append((origin, z.keyNode))
            }
        }
        if let n = entry("names"), let nm = r.mapping(n, "transfers.names") {
            for x in nm {
                let what = "transfers.names.\(x.key)"
                guard let owner = try? DNSName(x.key.hasSuffix(".") ? x.key : x.key + ".").lowercased() else {
                    r.error(x.keyNode, "\(what): bad name (write it absolute, e.g. www.example.com)"); continue
                }
                if let v = transferView(x.value, what) { transfers.nameView[owner] = v }
                transferNameRefs.append((owner, x.keyNode))
            }
        }
    }

    private func addKey(_ k: TSIGKey, _ node: Node) {
        if let prev = transfers.keys.first(where: { $0.name == k.name }) {
            r.error(node, "TSIG key \(k.name) is defined twice (first at \(prev.location))")
            return
        }
        transfers.keys.append(k)
    }

    private func serialPolicy(_ node: Node, _ what: String) -> SerialPolicy? {
        guard let s = r.string(node, what) else { return nil }
        guard let v = SerialPolicy(rawValue: s) else {
            r.error(node, "\(what): expected \(SerialPolicy.allCases.map(\.rawValue).joined(separator: ", ")), found \"\(s)\"")
            return nil
        }
        return v
    }

    private func transferView(_ node: Node, _ what: String) -> TransferView? {
        guard let s = r.string(node, what) else { return nil }
        guard let v = TransferView(rawValue: s) else {
            r.error(node, "\(what): expected \(TransferView.allCases.map(\.rawValue).joined(separator: ", ")), found \"\(s)\"")
            return nil
        }
        return v
    }

    /// A list of `ADDR[:PORT]` or `{ to: ADDR[:PORT], key: NAME }`.
    private func notifyTargets(_ node: Node, _ what: String) -> [NotifyTarget] {
        let items: [Node]
        if case .sequence = node { items = r.sequence(node, what) ?? [] } else { items = [node] }
        var out: [NotifyTarget] = []
        for item in items {
            var toNode = item
            var key: Int?
            if case .mapping = item {
                guard let f = r.mapping(item, what) else { continue }
                r.checkKeys(f, allowed: ["to", "key"], what)
                guard let to = f.first(where: { $0.key == "to" }) else { r.error(item, "\(what): an entry with key: needs to:"); continue }
                toNode = to.value
                if let k = f.first(where: { $0.key == "key" }), let s = r.string(k.value, "\(what): key") {
                    guard let name = try? DNSName(s.hasSuffix(".") ? s : s + ".").lowercased(), let i = transfers.key(named: name) else {
                        r.error(k.value, "\(what): no TSIG key \"\(s)\" in transfers.keys or transfers.key_files"); continue
                    }
                    key = i
                }
            }
            guard let text = r.string(toNode, what) else { continue }
            out.append(NotifyTarget(address: text, key: key, location: r.loc(toNode)))
        }
        return out
    }

    /// A list of `ADDRESS`, `CIDR` or `{ from: CIDR, key: NAME }`.
    private func transferClients(_ node: Node, _ what: String) -> [TransferClient] {
        let items: [Node]
        if case .sequence = node { items = r.sequence(node, what) ?? [] } else { items = [node] }
        var out: [TransferClient] = []
        for item in items {
            var fromNode = item
            var key: Int?
            if case .mapping = item {
                guard let f = r.mapping(item, what) else { continue }
                r.checkKeys(f, allowed: ["from", "key"], what)
                guard let from = f.first(where: { $0.key == "from" }) else { r.error(item, "\(what): an entry with key: needs from:"); continue }
                fromNode = from.value
                if let k = f.first(where: { $0.key == "key" }), let s = r.string(k.value, "\(what): key") {
                    guard let name = try? DNSName(s.hasSuffix(".") ? s : s + ".").lowercased(), let i = transfers.key(named: name) else {
                        r.error(k.value, "\(what): no TSIG key \"\(s)\" in transfers.keys or transfers.key_files"); continue
                    }
                    key = i
                }
            }
            guard let text = r.string(fromNode, what) else { continue }
            guard let p = TransferACL.prefix(text) else {
                r.error(fromNode, "\(what): \"\(text)\" is not an address or a CIDR prefix with no bits set past its length")
                continue
            }
            out.append(TransferClient(prefix: p, key: key))
        }
        return out
    }

    /// Zones and names under `transfers:` must be served ones; called once zones and names are read.
    func checkTransferReferences() {
        let served = Set(zones.map { $0.name.lowercased() })
        if let c = transfers.catalog, let node = catalogRef, served.contains(c) {
            r.error(node, "transfers.catalog: \(c) is a served zone; the catalog is generated, name it apart (e.g. catalog.invalid)")
        }
        for (z, node) in transferZoneRefs where !served.contains(z) {
            r.error(node, "transfers.zones: \(z) is not a served zone")
        }
        let gslb = Set(names.map { $0.owner.lowercased() })
        for (n, node) in transferNameRefs where !gslb.contains(n) {
            r.error(node, "transfers.names: \(n) is not a GSLB name")
        }
    }
}

/// The one parser of transfer ACL entries (YAML and `--allow-transfer`): an address (a
/// host prefix) or a CIDR prefix with no bits set past its length.
public enum TransferACL {
    public static func prefix(_ text: String) -> IPPrefix? {
        if let a = IPAddress(text) { return IPPrefix(address: a.unmappingV4, length: a.unmappingV4.bitLength) }
        return IPPrefix(text, strict: true)
    }
}
