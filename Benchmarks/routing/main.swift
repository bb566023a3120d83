// Routing benchmark: Router.resolve without the decision cache, so policy evaluation
// (geo lookup, tree walk, health) is what is measured. Reports ns per resolve for each
// GSLB name, the median of `runs` runs over `clients` varied client addresses.
//
//   swift build -c release --scratch-path .build-routing --product RoutingBench
//   .build-routing/release/RoutingBench [repo] [clients] [runs]
//
// With Benchmarks/malloccount preloaded (MALLOCCOUNT_FILE and LD_PRELOAD set) it also
// reports the heap allocations made inside the timed loops (expected: 0).
import Config
import DNSWire
import Foundation
import Glibc
import Routing

let args = CommandLine.arguments
let repo = args.count > 1 ? args[1] : FileManager.default.currentDirectoryPath
let clientCount = args.count > 2 ? max(1, Int(args[2]) ?? 100_000) : 100_000
let runs = args.count > 3 ? max(1, min(Int(args[3]) ?? 5, 50)) : 5

func now() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// malloccount's shared counter file, opened once so reading it allocates nothing.
let countsFD: Int32 = ProcessInfo.processInfo.environment["MALLOCCOUNT_FILE"].map { open($0, O_RDONLY) } ?? -1

/// Allocations so far (nil without malloccount).
func allocations() -> UInt64? {
    guard countsFD >= 0 else { return nil }
    var n: UInt64 = 0
    return pread(countsFD, &n, 8, 0) == 8 ? UInt64(littleEndian: n) : nil
}

/// The other policy kinds, beside the example's geo and failover names.
let extra = """
datacenters:
  ams: { lat: 52.37, lon: 4.90, country: NL, continent: EU }
  fra: { lat: 50.11, lon: 8.68, country: DE, continent: EU }
  iad: { lat: 38.95, lon: -77.45, country: US, continent: NA }
  sin: { lat: 1.35, lon: 103.82, country: SG, continent: AS }
endpoints:
  ams-1: { v4: 192.0.2.1, v6: "2001:db8::1", dc: ams }
  ams-2: { v4: 192.0.2.2, v6: "2001:db8::2", dc: ams }
  fra-1: { v4: 192.0.2.50, dc: fra }
  iad-1: { v4: 198.51.100.1, v6: "2001:db8:1::1", dc: iad }
  iad-2: { v4: 198.51.100.2, dc: iad }
  sin-1: { v4: 192.0.2.100, dc: sin }
geo:
  database: \(repo)/../shared/geoip/GeoIP2-City-Test.mmdb
zones:
  example.com:
    names:
      weighted:
        policy: { weighted: { ams: 3, fra: 1, iad: 2, sin: 1 } }
      hashed:
        policy: { hashed: [ams-1, ams-2, iad-1, iad-2] }
      subnet:
        policy: { subnet: { 10.0.0.0/8: ams, 81.2.0.0/16: iad, default: sin } }
      nearest:
        policy: { nearest: [ams, fra, iad, sin] }
      geo-nested:
        policy: { geo: { EU: { failover: [ams, iad] }, US: { weighted: { iad: 1, sin: 1 } }, default: { nearest: [ams, fra, iad, sin] } } }
"""

func load() -> [(String, Router)] {
    do {
        let example = try Router(model: try ConfigLoader.load(path: repo + "/zones/meridian.yaml"))
        let other = try Router(model: try ConfigLoader.load(yaml: extra, file: "bench.yaml", baseDirectory: repo + "/zones"))
        return [example, other].flatMap { r in r.model.names.map { ("\($0.owner)", r) } }
    } catch {
        print("cannot load the configurations: \(error)")
        exit(1)
    }
}

/// Deterministic mix: networks the test database knows, random IPv4, random IPv6.
func clients(_ n: Int) -> [ClientInfo] {
    var rng = RoutingRandom(seed: 7)
    let known = ["81.2.69.", "2.125.160.", "89.160.20.", "216.160.83.", "175.16.199.", "10.1.2.", "203.0.113."]
    return (0..<n).map { i in
        let x = rng.next()
        let a: IPAddress
        switch i % 4 {
        case 0, 1: a = IPAddress(known[Int(x % UInt64(known.count))] + String((x >> 8) & 0xFF))!
        case 2: a = IPAddress(v4: UInt32(truncatingIfNeeded: x >> 16))
        default: a = IPAddress(family: .v6, hi: 0x2001_0218_0000_0000 | (x >> 40), lo: x)
        }
        return ClientInfo(source: a, subnet: nil)
    }
}

let routers = load()
let cs = clients(clientCount)
print("RoutingBench: \(cs.count) clients, median of \(runs) runs, ns per Router.resolve (no decision cache)")
for (owner, router) in routers {
    let index = router.model.nameIndex[try! DNSName(owner)]!
    // "last failing": the last endpoint is suspect (failing before fall), so the TTL choice
    // walks the name's endpoints (ttl_when_failing).
    let n = router.model.endpoints.count
    for (label, downNames, failing) in [("all up", [String](), -1), ("first down", [router.model.endpoints[0].name], -1),
                                        ("last failing", [], n - 1)] {
        var states = Array(repeating: HealthState.up, count: n)
        for d in downNames { states[router.model.endpointIndex(named: d)!] = .down }
        let health = HealthSnapshot(states: states, suspect: (0..<n).map { $0 == failing })
        var result = router.makeResult()
        var rng = RoutingRandom(seed: 1)
        var sink = 0
        var times: [Double] = []
        times.reserveCapacity(runs)
        for c in cs.prefix(1000) {   // warm-up: first-use set-up in the geo library is not per query
            router.resolve(nameIndex: index, qtype: .a, client: c, health: health, random: &rng, into: &result)
        }
        let before = allocations()
        for _ in 0..<runs {
            let t0 = now()
            for c in cs {
                router.resolve(nameIndex: index, qtype: .a, client: c, health: health, random: &rng, into: &result)
                sink &+= result.addresses.count &+ result.scopePrefix
            }
            times.append(Double(now() - t0) / Double(cs.count))
        }
        let after = allocations()
        times.sort()
        let allocs = before.flatMap { b in after.map { " allocations \($0 - b)" } } ?? ""
        func pad(_ s: String, _ n: Int) -> String { s + String(repeating: " ", count: max(0, n - s.count)) }
        let figures = String(format: "%8.1f ns  (min %.1f max %.1f)", times[times.count / 2], times[0], times[times.count - 1])
        print(pad(owner, 28) + pad(label, 13) + figures + allocs + (sink == -1 ? "!" : ""))
    }
}

// The decision cache on the uncached path: 100,000 clients, each in a different /24, so a
// per-worker cache of 8,192 entries nearly always misses. Router.resolve alone against the
// same calls through DecisionCache (lookup, miss, resolve, store), interleaved per run.
let spread: [ClientInfo] = {
    var rng = RoutingRandom(seed: 11)
    return (0..<100_000).map { i in ClientInfo(source: IPAddress(v4: UInt32(truncatingIfNeeded: rng.next()) & 0xFFFF_FF00 | UInt32(i & 0xFF)), subnet: nil) }
}()
print("RoutingBench: \(spread.count) clients in different /24s, median of \(runs) runs, ns per resolve: direct / through the decision cache")
for (owner, router) in routers {
    let index = router.model.nameIndex[try! DNSName(owner)]!
    let health = HealthSnapshot(states: Array(repeating: HealthState.up, count: router.model.endpoints.count))
    let cache = DecisionCache(router: router)
    var result = router.makeResult()
    var rng = RoutingRandom(seed: 1)
    var direct: [Double] = [], cached: [Double] = []
    for _ in 0..<runs {
        var t0 = now()
        for c in spread { router.resolve(nameIndex: index, qtype: .a, client: c, health: health, random: &rng, into: &result) }
        direct.append(Double(now() - t0) / Double(spread.count))
        t0 = now()
        for c in spread { cache.resolve(router: router, nameIndex: index, qtype: .a, client: c, health: health, random: &rng, into: &result) }
        cached.append(Double(now() - t0) / Double(spread.count))
    }
    direct.sort(); cached.sort()
    let hitRate = Double(cache.hits) / Double(max(cache.hits + cache.misses, 1))
    print(owner.padding(toLength: 28, withPad: " ", startingAt: 0)
          + String(format: "%8.1f ns  %8.1f ns  (cache hits %.1f%%)", direct[runs / 2], cached[runs / 2], hitRate * 100))
}
