import Config
import DNSWire
import Foundation
import Routing
import Testing

/// Every network in the City test database's source JSON: looking up its first address
/// gives the JSON's country, continent, subdivisions and coordinates, and the network's
/// prefix length (IPv4 networks are written there as ::a.b.c.d/len, so len - 96).
@Test(arguments: ["GeoIP2-City-Test", "GeoLite2-City-Test"])
func databaseMatchesSourceJSON(_ name: String) throws {
    let db = try GeoDatabase(path: Paths.geoip + "/\(name).mmdb")
    let data = try Data(contentsOf: URL(fileURLWithPath: Paths.geoip + "/\(name).json"))
    let entries = try #require(try JSONSerialization.jsonObject(with: data) as? [[String: Any]])
    // Later entries and more specific networks override earlier ones, so only networks
    // that no other entry overlaps are compared.
    var networks: [(IPPrefix, [String: Any])] = []
    for e in entries {
        for (k, v) in e {
            guard var p = IPPrefix(k), let v = v as? [String: Any] else { continue }
            if p.address.isV6, p.address.hi == 0, p.address.lo >> 32 == 0, p.length >= 96 {
                p = IPPrefix(address: IPAddress(v4: UInt32(truncatingIfNeeded: p.address.lo)), length: p.length - 96)
            }
            networks.append((p, v))
        }
    }
    func overlaps(_ a: IPPrefix, _ b: IPPrefix) -> Bool { a.contains(b.address) || b.contains(a.address) }
    var checked = 0
    for (i, (p, v)) in networks.enumerated() {
        if networks.enumerated().contains(where: { $0.offset != i && $0.element.0 != p && overlaps($0.element.0, p) }) { continue }
        let r = db.lookup(p.address)
        #expect(r.found, "\(p)")
        #expect(r.prefixLength == p.length, "\(p): prefix \(r.prefixLength)")
        let country = (v["country"] as? [String: Any])?["iso_code"] as? String
            ?? (v["registered_country"] as? [String: Any])?["iso_code"] as? String
        #expect(r.countryCode == country, "\(p)")
        #expect(r.continentCode == (v["continent"] as? [String: Any])?["code"] as? String, "\(p)")
        let subs = (v["subdivisions"] as? [[String: Any]])?.compactMap { $0["iso_code"] as? String } ?? []
        #expect(r.subdivisionCodes == Array(subs.prefix(2)), "\(p)")
        if let loc = v["location"] as? [String: Any], let la = loc["latitude"] as? Double, let lo = loc["longitude"] as? Double {
            #expect(r.hasCoordinates && abs(r.latitude - la) < 1e-9 && abs(r.longitude - lo) < 1e-9, "\(p)")
        }
        checked += 1
    }
    #expect(checked > 100, "only \(checked) networks compared")
}

/// The hand-picked addresses of the issue, straight from GeoIP2-City-Test.json.
@Test(arguments: [
    ("2.125.160.216", "GB", "EU", ["ENG", "WBK"], 51.75, -1.25, 29),
    ("81.2.69.142", "GB", "EU", ["ENG"], 51.5142, -0.0931, 31),
    ("89.160.20.112", "SE", "EU", ["E"], 58.4167, 15.6167, 28),
    ("216.160.83.56", "US", "NA", ["WA"], 47.2513, -122.3149, 29),
    ("2001:218::1", "JP", "AS", [], 35.68536, 139.75309, 32),
] as [(String, String, String, [String], Double, Double, Int)])
func knownAddresses(_ a: String, _ country: String, _ continent: String, _ subs: [String], _ lat: Double, _ lon: Double, _ prefix: Int) throws {
    let db = try GeoDatabase(path: Paths.city)
    let r = db.lookup(IPAddress(a)!)
    #expect(r.countryCode == country && r.continentCode == continent && r.subdivisionCodes == subs)
    #expect(r.latitude == lat && r.longitude == lon && r.prefixLength == prefix)
}

@Test func asnDatabase() throws {
    let db = try GeoDatabase(path: Paths.asn)
    let r = db.lookup(IPAddress("1.128.0.1")!)
    #expect(r.asn == 1221 && r.prefixLength == 11)
    #expect(db.lookup(IPAddress("12.81.92.5")!).asn == 7018)
}

@Test func unreadableDatabaseIsAnError() {
    #expect(throws: GeoDatabase.OpenError.self) { try GeoDatabase(path: Paths.geoip + "/GeoIP2-City-Test.json") }
}

/// Geo policy over the City test database: continent, country, subdivision, default; the
/// scope is the shortest network around the client with the same decision (the database
/// network's, unless neighbours decide alike); ECS beats the source address.
@Test(arguments: [
    ("81.2.69.142", nil, "192.0.2.1,192.0.2.2", 31),            // GB -> EU -> ams
    ("89.160.20.112", nil, "192.0.2.100", 28),                  // SE country key -> sin
    ("216.160.83.56", nil, "198.51.100.2", 29),                 // US-WA subdivision -> iad-2
    ("2.125.160.216", nil, "192.0.2.1,192.0.2.2", 29),
    ("203.0.113.9", "216.160.83.56/29", "198.51.100.2", 29),    // ECS decides
    ("203.0.113.9", "81.2.69.160/27", "192.0.2.1,192.0.2.2", 27),
    ("2001:218::1", nil, "198.51.100.1,198.51.100.2", 23),      // JP, no key -> default iad; so do its neighbours: /23, not the database's /32
] as [(String, String?, String, Int)])
func geoPolicy(_ client: String, _ ecs: String?, _ want: String, _ scope: Int) throws {
    let r = try makeRouter("{ geo: { EU: ams, SE: sin, US-WA: iad-2, NA: iad-1, default: iad } }", geo: cityGeo)
    #expect(answer(r, client: client, ecs: ecs) == Answer(records: want, scope: scope))
}

/// A client the database does not know gets the default, for a network at least as wide as
/// the empty one around it: every non-European network of 128.0.0.0/1 answers the default too.
@Test func geoMissFallsToDefaultWithMergedScope() throws {
    let r = try makeRouter("{ geo: { EU: ams, default: sin } }", geo: cityGeo)
    let db = try GeoDatabase(path: Paths.city)
    let miss = db.lookup(IPAddress("203.0.113.9")!)
    #expect(!miss.found)
    #expect(answer(r, client: "203.0.113.9") == Answer(records: "192.0.2.100", scope: 1))
    #expect(1 <= miss.prefixLength)
}

@Test func geoChildDownFallsToDefault() throws {
    let r = try makeRouter("{ geo: { EU: ams, default: iad } }", geo: cityGeo)
    #expect(answer(r, client: "81.2.69.142", down: ["ams-1", "ams-2"]) == Answer(records: iadV4, scope: 31))
}

/// An operator CIDR map wins over the database (longest prefix), locating the network at a
/// datacenter (which brings its country and continent) or under a label.
@Test(arguments: [
    ("81.2.69.142", "198.51.100.1,198.51.100.2", 25),  // mapped to iad: NA
    ("81.2.69.5", "192.0.2.100", 25),                  // label office -> sin; /25 because 81.2.69.128/25 differs
    ("89.160.20.112", "192.0.2.1,192.0.2.2", 5),       // not mapped: database, EU -> ams, as the default: merged with its neighbours
] as [(String, String, Int)])
func cidrMapOverridesDatabase(_ client: String, _ want: String, _ scope: Int) throws {
    let geo = cityGeo + "  cidr:\n    81.2.69.128/25: iad\n    81.2.69.0/24: office\n"
    let r = try makeRouter("{ geo: { office: sin, EU: ams, NA: iad, default: ams } }", geo: geo)
    #expect(answer(r, client: client) == Answer(records: want, scope: scope))
}

@Test func asnKeyMatchesBeforeCountry() throws {
    let geo = cityGeo + "  asn_database: \(Paths.asn)\n"
    let r = try makeRouter("{ geo: { AS1221: sin, default: ams } }", geo: geo)
    let a = answer(r, client: "1.128.0.1")
    #expect(a.records == "192.0.2.100")
    let city = try GeoDatabase(path: Paths.city).lookup(IPAddress("1.128.0.1")!)
    #expect(a.scope == max(11, city.prefixLength))
    #expect(answer(r, client: "81.2.69.142").records == amsV4)
}

/// Nearest by great-circle distance from the client's database coordinates.
@Test(arguments: [
    ("{ nearest: [ams, iad, sin] }", "81.2.69.142", [String](), "192.0.2.1,192.0.2.2"),       // London -> ams
    ("{ nearest: [ams, iad, sin] }", "216.160.83.56", [], "198.51.100.1,198.51.100.2"),        // Seattle -> iad
    ("{ nearest: [ams, iad, sin] }", "2001:218::1", [], "192.0.2.100"),                        // Tokyo -> sin
    ("{ nearest: [ams, iad, sin] }", "81.2.69.142", ["ams-1", "ams-2"], "198.51.100.1,198.51.100.2"),
    ("{ nearest: [ams, iad, sin], n: 2 }", "81.2.69.142", [], "192.0.2.1,192.0.2.2,198.51.100.1,198.51.100.2"),
    ("{ nearest: [ams, iad, sin], bias: { sin: 15000 } }", "81.2.69.142", [], "192.0.2.100"),
    ("{ nearest: [ams, iad, sin] }", "203.0.113.9", [], "192.0.2.1,192.0.2.2"),                // unknown: listed order
    ("{ nearest: web }", "216.160.83.56", [], "198.51.100.1"),
] as [(String, String, [String], String)])
func nearestPolicy(_ policy: String, _ client: String, _ down: [String], _ want: String) throws {
    let r = try makeRouter(policy, geo: cityGeo)
    let a = answer(r, client: client, down: down)
    #expect(a.records == want)
    // The scope never splits a database network (GeoMapTests checks it holds and is merged).
    let network = try GeoDatabase(path: Paths.city).lookup(IPAddress(client)!).prefixLength
    #expect(a.scope >= 1 && a.scope <= network)
}

@Test func nestedGeoFailoverWeighted() throws {
    let r = try makeRouter("{ geo: { EU: { failover: [ams, { weighted: { iad-1: 1, sin-1: 1 } }] }, default: { failover: [iad, ams] } } }", geo: cityGeo)
    #expect(answer(r, client: "81.2.69.142") == Answer(records: amsV4, scope: 31))
    let other = answer(r, client: "81.2.69.142", down: ["ams-1", "ams-2"])
    #expect(["198.51.100.1", "192.0.2.100"].contains(other.records) && other.scope == 31)
    // US takes the default, as does all of 128.0.0.0/1 in the test database.
    #expect(answer(r, client: "216.160.83.56", down: ["iad-1", "iad-2"]) == Answer(records: amsV4, scope: 1))
    // Everything down: fail open at the top through the EU branch.
    let all = ["ams-1", "ams-2", "iad-1", "iad-2", "sin-1"]
    #expect(answer(r, client: "81.2.69.142", down: all) == Answer(records: amsV4, scope: 31))
}

/// A failover with no client-dependent node below it does not depend on the client.
@Test func failoverAboveNothingGeoHasScopeZero() throws {
    let r = try makeRouter("{ failover: [ams, { geo: { EU: iad, default: sin } }] }", geo: cityGeo)
    #expect(answer(r, client: "81.2.69.142") == Answer(records: amsV4, scope: 0))
    #expect(answer(r, client: "81.2.69.142", down: ["ams-1", "ams-2"]) == Answer(records: iadV4, scope: 31))
}

@Test func routerReportsUnopenableDatabaseAtItsLine() throws {
    // Passes the loader's marker check (a real mmdb's tail) but names a file libmaxminddb rejects.
    let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("meridian-bad-\(UUID().uuidString).mmdb")
    let real = try Data(contentsOf: URL(fileURLWithPath: Paths.city))
    try real.suffix(4096).write(to: tmp)
    defer { try? FileManager.default.removeItem(at: tmp) }
    let yaml = "geo:\n  database: \(tmp.path)\n"
    let model = try ConfigLoader.load(yaml: yaml, file: "t.yaml", baseDirectory: Paths.zoneFolder)
    do {
        _ = try Router(model: model)
        Issue.record("opened a truncated database")
    } catch {
        #expect(error.errors.count == 1)
        #expect(error.errors.first?.location.description == "t.yaml:2:13")
        #expect(error.errors.first?.message.hasPrefix("geo.database: cannot open MaxMind database") == true)
    }
}

@Test func explainGeoCase() throws {
    let r = try makeRouter("{ geo: { EU: { failover: [ams, iad] }, default: iad } }", geo: cityGeo)
    let text = r.explain(name: try DNSName("T.example.com."), qtype: .a, client: IPAddress("198.51.100.7")!,
                         ecs: IPPrefix("81.2.69.142/32"), down: ["ams-1"])
    let lines = text.split(separator: "\n").map(String.init)
    let expected = [
        "query:    T.example.com. A",
        "client:   81.2.69.142/32 from the query's EDNS Client Subnet option",
        "health:   down: ams-1; others up",
        "location: country GB, subdivision ENG, continent EU, at 51.5142,-0.0931, from GeoIP2-City-Test.mmdb network /31",
        "policy:",
        "  geo: client matches geo key continent EU -> failover at test.yaml:22:30",
        "    failover: trying choice 1 of 2, pool ams",
        "      pool ams: answering its usable members [ams-1 down, ams-2 up]",
        "answer:   192.0.2.2",
        "ttl:      30",
        "scope:    /31 (answer holds for the client's /31 network)",
    ]
    #expect(lines == expected, "\n\(text)")
}

@Test func explainNodataAndUnknown() throws {
    let r = try makeRouter("v4only")
    let text = r.explain(name: try DNSName("t.example.com."), qtype: .aaaa, client: IPAddress("192.0.2.9")!, ecs: nil)
    #expect(text.contains("no AAAA records: no endpoint under this name answers AAAA"))
    #expect(text.contains("answer:   NODATA"))
    #expect(text.contains("client:   192.0.2.9, the query's source address (no EDNS Client Subnet)"))
    let unknown = r.explain(name: try DNSName("nope.example.com."), qtype: .a, client: IPAddress("192.0.2.9")!, ecs: nil)
    #expect(unknown.contains("is not a GSLB name"))
}
