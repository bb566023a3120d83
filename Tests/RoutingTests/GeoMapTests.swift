import DNSWire
import Foundation
import Routing
import Testing

// Compiled geo maps (Sources/Routing/GeoMaps.swift) checked against libmaxminddb directly:
// for sampled clients, every database network inside the answer's ECS scope decides the
// same way (the scope is safe), and the sibling half of the next shorter prefix holds a
// network that decides differently (the scope is as short as the decision allows, so
// same-answer neighbours were merged). The reference decision is computed here from
// `GeoDatabase.lookup` and the map's rules, not from the router.

/// The full GeoLite2-City the benchmark uses, if the PyPI package maxminddb-geolite2 is
/// installed (`pip install maxminddb-geolite2`), or `MERIDIAN_GEOLITE2_CITY`.
let geoLite2City: String? = {
    if let p = ProcessInfo.processInfo.environment["MERIDIAN_GEOLITE2_CITY"], FileManager.default.fileExists(atPath: p) { return p }
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = ["python3", "-c", "import geolite2; print(geolite2.geolite2_database())"]
    let out = Pipe()
    p.standardOutput = out
    p.standardError = FileHandle.nullDevice
    guard (try? p.run()) != nil else { return nil }
    p.waitUntilExit()
    let path = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        .trimmingCharacters(in: .whitespacesAndNewlines)
    return p.terminationStatus == 0 && FileManager.default.fileExists(atPath: path) ? path : nil
}()

/// An address as an unsigned number of `bits` bits, and back.
func number(_ a: IPAddress) -> UInt128 { a.isV4 ? UInt128(a.v4Value) : UInt128(a.hi) << 64 | UInt128(a.lo) }
func address(_ n: UInt128, v4: Bool) -> IPAddress {
    v4 ? IPAddress(v4: UInt32(truncatingIfNeeded: n))
        : IPAddress(family: .v6, hi: UInt64(truncatingIfNeeded: n >> 64), lo: UInt64(truncatingIfNeeded: n))
}

struct MapCase: CustomTestStringConvertible, Sendable {
    var label: String
    var policy: String
    /// The decision for a database record, the way the map's rules read it.
    var reference: @Sendable (GeoRecord) -> String
    var testDescription: String { label }
}

let continentCase = MapCase(label: "continent map", policy: "{ geo: { EU: ams, NA: iad, AS: sin, default: web } }") { r in
    switch r.continentCode { case "EU": "ams"; case "NA": "iad"; case "AS": "sin"; default: "web" }
}
let countryCase = MapCase(label: "country map", policy: "{ geo: { GB: ams, DE: ams, US: iad, CA: iad, JP: sin, CN: sin, default: web } }") { r in
    switch r.countryCode { case "GB", "DE": "ams"; case "US", "CA": "iad"; case "JP", "CN": "sin"; default: "web" }
}
/// The whole order of a nearest node's choices: what its map decides (health can make the
/// second choice answer).
let nearestCase = MapCase(label: "nearest", policy: "{ nearest: [ams, iad, sin] }") { r in
    let dcs = [("ams", 52.37, 4.90), ("iad", 38.95, -77.45), ("sin", 1.35, 103.82)]
    guard r.hasCoordinates else { return "ams,iad,sin" }
    let d = dcs.map { greatCircleKm(r.latitude, r.longitude, $0.1, $0.2) }
    return dcs.indices.sorted { d[$0] < d[$1] || (d[$0] == d[$1] && $0 < $1) }.map { dcs[$0].0 }.joined(separator: ",")
}

/// Walks the database networks of `first...last` in order (at most `limit`), calling
/// `visit` with each decision until it returns false. Returns the number visited.
@discardableResult
func walkNetworks(_ db: GeoDatabase, _ c: MapCase, v4: Bool, from first: UInt128, to last: UInt128, limit: Int,
                  _ visit: (UInt128, String) -> Bool) -> Int {
    let bits = v4 ? 32 : 128
    var at = first, n = 0
    while n < limit {
        let r = db.lookup(address(at, v4: v4))
        n += 1
        if !visit(at, c.reference(r)) { return n }
        let host: UInt128 = r.prefixLength == 0 ? (v4 ? UInt128(UInt32.max) : .max) : (UInt128(1) << UInt128(bits - r.prefixLength)) - 1
        let end = at | host
        if end >= last { return n }
        at = end + 1
    }
    return n
}

func checkSamples(_ c: MapCase, database: String, samples: Int, seed: UInt64) throws {
    let geo = "geo:\n  database: \(database)\n"
    let r = try makeRouter(c.policy, geo: geo)
    let db = try GeoDatabase(path: database)
    var rng = RoutingRandom(seed: seed)
    // Records each answer carries, per decision, to tell an answer's decision apart.
    var byRecords: [String: String] = [:]
    var merged = 0, partial = 0
    // The IPv6 database's aliases of its IPv4 networks (6to4 and IPv4-compatible addresses
    // of London and Seattle), then random clients.
    let aliased = ["2002:5102:458e::1", "::5102:458e", "2002:d8a0:5338:1::", "::d8a0:5338"].map { IPAddress($0)! }
    for i in 0..<(samples + aliased.count) {
        let v4 = i >= aliased.count && i % 4 != 0
        let bits = v4 ? 32 : 128
        // IPv6: the allocated 2000::/4 ranges, where the databases have networks.
        let raw = UInt128(rng.next()) << 64 | UInt128(rng.next())
        let n: UInt128 = i < aliased.count ? number(aliased[i])
            : v4 ? raw & 0xFFFF_FFFF : (raw & (UInt128.max >> 7)) | (UInt128(0x2) << 124)
        let client = address(n, v4: v4)
        let a = answer(r, client: "\(client)")
        let want = c.reference(db.lookup(client))
        // The answer is the decision's first choice.
        let head = String(want.split(separator: ",")[0])
        if let known = byRecords[a.records] { #expect(known == head, "\(client): answer \(a.records) is \(known), want \(head)") }
        byRecords[a.records] = head
        #expect(a.scope >= 1 && a.scope <= bits)
        let host: UInt128 = a.scope == 0 ? .max >> UInt128(128 - bits) : (UInt128(1) << UInt128(bits - a.scope)) - 1
        let first = n & ~host, last = first | host
        // Every network inside the scope decides as the client's does.
        var bad: UInt128? = nil
        let visited = walkNetworks(db, c, v4: v4, from: first, to: last, limit: 20_000) { at, d in
            if d != want { bad = at; return false }
            return true
        }
        #expect(bad == nil, "\(client)/\(a.scope) (\(want)): \(bad.map { "\(address($0, v4: v4))" } ?? "") decides otherwise")
        if visited >= 20_000 { partial += 1 }
        // The sibling of that network, inside the next shorter prefix, holds another decision.
        if a.scope > 1 {
            let siblingFirst = first ^ (host + 1)
            var found = false
            let walked = walkNetworks(db, c, v4: v4, from: siblingFirst, to: siblingFirst | host, limit: 50_000) { _, d in
                if d != want { found = true; return false }
                return true
            }
            // (A walk that reached its bound without a difference proves nothing either way.)
            #expect(found || walked >= 50_000, "\(client)/\(a.scope) (\(want)): /\(a.scope - 1) would do")
            merged += 1
        }
    }
    #expect(merged > samples / 2)
    #expect(partial < samples / 4)
}

@Test(arguments: [continentCase, countryCase, nearestCase])
func compiledMapScopesOverTestDatabase(_ c: MapCase) throws {
    try checkSamples(c, database: Paths.city, samples: 400, seed: 13)
}

@Test(.enabled(if: geoLite2City != nil, "needs GeoLite2-City: pip install maxminddb-geolite2"),
      arguments: [continentCase, countryCase, nearestCase])
func compiledMapScopesOverGeoLite2City(_ c: MapCase) throws {
    try checkSamples(c, database: geoLite2City!, samples: 120, seed: 7)
}

/// The scope stays within what RFC 7871 allows: never longer than the address, and a
/// decision that looked at the client never gets scope 0.
@Test func compiledMapScopeWithECS() throws {
    let r = try makeRouter(continentCase.policy, geo: cityGeo)
    for ecs in ["81.2.69.142/32", "81.2.69.0/24", "2001:218::/32", "2a02:ffc0::/28", "10.0.0.0/8"] {
        let a = answer(r, client: "127.0.0.1", ecs: ecs)
        #expect(!a.records.isEmpty)
        #expect(a.scope >= 1 && a.scope <= IPPrefix(ecs)!.address.bitLength, "\(ecs): /\(a.scope)")
    }
}
