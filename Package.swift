// swift-tools-version:6.0
import PackageDescription

// Module layout (see README "Architecture"): each module imports only the ones above it.
//   DNSWire  -> wire codec, no I/O
//   Zones    -> master files, zone tree, authoritative lookup
//   Config   -> YAML model of datacenters, endpoints, pools, policies, checks
//   Routing  -> client identification, geo, policy tree
//   Health   -> checkers and the health loop
//   Server   -> sockets, workers, snapshots, signals, control API
//   meridian -> thin CLI
// Fuzz targets (Tests/Fuzz/README.md) are declared only when MERIDIAN_FUZZ=1, so the normal
// `swift build` / `swift test` and CI never need `-sanitize=fuzzer`.
let fuzzing = Context.environment["MERIDIAN_FUZZ"] == "1"

/// The modules on the query path are built for release without dynamic exclusivity checks:
/// `@exclusivity(unchecked)` on a stored property is not honoured when another module
/// accesses it directly, and the checks cost about 250 of the 5,000 user-space instructions
/// of a GSLB query (callgrind). Debug builds, which run the tests, keep the checks.
let queryPath: [SwiftSetting] = [.unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))]

let package = Package(
    name: "Meridian",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "meridian", targets: ["meridian"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
    ],
    targets: [
        .target(name: "CShim"),
        .systemLibrary(name: "COpenSSL", pkgConfig: "openssl", providers: [.apt(["libssl-dev"])]),
        .systemLibrary(name: "CMaxMindDB", providers: [.apt(["libmaxminddb-dev"])]),
        .target(name: "DNSWire", swiftSettings: queryPath),
        .target(name: "Zones", dependencies: ["DNSWire"], swiftSettings: queryPath),
        .target(name: "Config", dependencies: ["DNSWire", "Zones", "Yams"]),
        .target(name: "Routing", dependencies: ["Config", "CMaxMindDB", "CShim"], swiftSettings: queryPath),
        .target(name: "Health", dependencies: ["Config", "DNSWire", "COpenSSL", "CShim", .product(name: "Logging", package: "swift-log")]),
        .target(name: "Server", dependencies: [
            "DNSWire", "Zones", "Config", "Routing", "Health", "CShim",
            .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: queryPath),
        .executableTarget(name: "meridian", dependencies: [
            "Server",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .executableTarget(name: "HealthLoopBench", dependencies: [
            "Health", "Config", .product(name: "Logging", package: "swift-log"),
        ], path: "Benchmarks/health-loop", exclude: ["README.md"]),
        .target(name: "TestSupport", dependencies: ["DNSWire"]),
        .testTarget(name: "DNSWireTests", dependencies: ["DNSWire", "TestSupport", "COpenSSL"]),
        .testTarget(name: "ZonesTests", dependencies: ["Zones", "TestSupport"], resources: [.copy("Fixtures")]),
        .testTarget(name: "ConfigTests", dependencies: ["Config", "TestSupport", "Yams"]),
        .testTarget(name: "RoutingTests", dependencies: ["Routing", "TestSupport"]),
        .testTarget(name: "HealthTests", dependencies: ["Health", "TestSupport", .product(name: "Logging", package: "swift-log")]),
        .testTarget(name: "ServerTests", dependencies: ["Server", "Config", "TestSupport"]),
        .testTarget(name: "EndToEndTests", dependencies: ["TestSupport", "DNSWire"], exclude: ["Fixtures"]),
    ]
)

if fuzzing {
    let fuzzTargets: [(name: String, deps: [Target.Dependency])] = [
        ("FuzzQuery", ["DNSWire", "Zones", "CLibFuzzer"]),
        ("FuzzZoneFile", ["DNSWire", "Zones", "CLibFuzzer"]),
        ("FuzzRData", ["DNSWire", "CLibFuzzer"]),
        ("FuzzConfig", ["Config", "CLibFuzzer"]),
    ]
    package.targets.append(.target(name: "CLibFuzzer", path: "Tests/Fuzz/CLibFuzzer"))
    for t in fuzzTargets {
        package.products.append(.executable(name: t.name, targets: [t.name]))
        package.targets.append(.executableTarget(name: t.name, dependencies: t.deps, path: "Tests/Fuzz/\(t.name)"))
    }
}
