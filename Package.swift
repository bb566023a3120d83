// swift-tools-version:6.0
import PackageDescription

// Module layout (see docs/architecture.md): each module imports only the ones above it.
//   Platform -> socket addresses and the monotonic clock (standard library + Glibc only)
//   DNSWire  -> wire codec, no I/O
//   Diagnostics -> source locations and load errors (file:line:column) for every loader
//   Zones    -> master files, zone tree, authoritative lookup
//   Config   -> YAML model of datacenters, endpoints, pools, policies, checks
//   Routing  -> client identification, geo, policy tree
//   Health   -> checkers and the health loop
//   Answering -> one pipeline per query: lookup, route, encode; the result RRL and metrics read
//   Server   -> sockets, workers, snapshots, signals, reload, the control HTTP server; Runtime.load/serve
//   Admin    -> the library behind the CLI: check, explain, status, override, drill, runbook, control client
//   meridian -> argument parsing only (swift-argument-parser); every command body is in Admin or Server
// Fuzz targets (Tests/Fuzz/README.md) are declared only when MERIDIAN_FUZZ=1, so the normal
// `swift build` / `swift test` and CI never need `-sanitize=fuzzer`.
let fuzzing = Context.environment["MERIDIAN_FUZZ"] == "1"

/// The modules on the query path are built for release without dynamic exclusivity checks:
/// `@exclusivity(unchecked)` on a stored property is not honoured when another module
/// accesses it directly, and the checks cost about 250 of the 5,000 user-space instructions
/// of a GSLB query (callgrind). Debug builds, which run the tests, keep the checks.
/// Small callees these modules share across module boundaries (MessageWriter's writers, the
/// decision cache's hit accessors) are `@inlinable` instead of building with
/// `-cross-module-optimization`: on top of them that flag took 0.1-0.7% more instructions
/// off a query (static 1,896 -> 1,892, geo 2,515 -> 2,496) for a 70 KB larger binary.
let queryPath: [SwiftSetting] = [.unsafeFlags(["-enforce-exclusivity=unchecked", "-Xfrontend", "-function-sections"], .when(configuration: .release))]

/// Every function in its own section in release builds, so the link can order them
/// (`releaseLink`, deploy/link/meridian.order); the query-path modules get it from `queryPath`.
let sections: [SwiftSetting] = [.unsafeFlags(["-Xfrontend", "-function-sections"], .when(configuration: .release))]

/// How the release `meridian` is linked (deploy/link/README.md): with lld and packed relative
/// relocations (DT_RELR, glibc 2.36), no symbol table for dlsym (`--no-export-dynamic`), and
/// libstdc++ (which only ICU inside Foundation needs) from its static archive. The dynamic
/// loader then has 2 MB less relocation table to read and libstdc++ is not mapped and relocated
/// at start: the static workload's peak RSS fell from 20.7-21.2 to 16.6-17.0 MiB (deploy/link/README.md).
let releaseLink: [LinkerSetting] = [.unsafeFlags([
    "-use-ld=lld", "-Xlinker", "-z", "-Xlinker", "pack-relative-relocs", "-Xlinker", "--no-export-dynamic",
    "-L", Context.packageDirectory + "/deploy/link",
    // The functions a server runs first, packed together (deploy/link/make-order writes the list).
    "-Xlinker", "--symbol-ordering-file=" + Context.packageDirectory + "/deploy/link/meridian.order",
    "-Xlinker", "--no-warn-symbol-ordering",
], .when(configuration: .release))]

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
        // dnstap messages (Sources/Server/Dnstap/dnstap.pb.swift, generated once from Protos/dnstap).
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
    ],
    targets: [
        .target(name: "CShim", cSettings: [.unsafeFlags(["-ffunction-sections"], .when(configuration: .release))]),
        // Blocks the handled signals from a C constructor; linked into `meridian` only.
        .target(name: "CEarlySignals"),
        .systemLibrary(name: "COpenSSL", pkgConfig: "openssl", providers: [.apt(["libssl-dev"])]),
        .systemLibrary(name: "CMaxMindDB", providers: [.apt(["libmaxminddb-dev"])]),
        .target(name: "Platform", swiftSettings: sections),
        .target(name: "DNSWire", swiftSettings: queryPath),
        .target(name: "Diagnostics", swiftSettings: sections),
        .target(name: "Zones", dependencies: ["DNSWire", "Diagnostics", "CShim"], swiftSettings: queryPath),
        .target(name: "Config", dependencies: ["DNSWire", "Diagnostics", "Platform", "Yams"], swiftSettings: sections),
        .target(name: "Routing", dependencies: ["Config", "Diagnostics", "Platform", "CMaxMindDB", "CShim"], swiftSettings: queryPath),
        .target(name: "Health", dependencies: ["Config", "Diagnostics", "DNSWire", "Platform", "COpenSSL", "CShim", .product(name: "Logging", package: "swift-log")], swiftSettings: sections),
        // Online DNSSEC signing: key files, the signature cache and the per-worker signer.
        .target(name: "DNSSEC", dependencies: ["DNSWire", "Diagnostics", "Zones", "COpenSSL"], swiftSettings: queryPath),
        .target(name: "Answering", dependencies: ["DNSWire", "Zones", "Config", "Routing", "DNSSEC"], swiftSettings: queryPath),
        // etcd's v3 JSON gateway over http or TLS: the store client fleet mode uses.
        .target(name: "Etcd", dependencies: ["Config", "Health", "Platform"], swiftSettings: sections),
        .target(name: "Server", dependencies: [
            "DNSWire", "Diagnostics", "Zones", "Config", "Routing", "Health", "Answering", "DNSSEC", "CShim", "Platform", "COpenSSL", "Etcd",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "SwiftProtobuf", package: "swift-protobuf"),
        ], swiftSettings: queryPath),
        .target(name: "Admin", dependencies: ["Server", "Config", "Routing", "Health", "DNSWire", "DNSSEC", "Platform"], swiftSettings: sections),
        .executableTarget(name: "meridian", dependencies: [
            "Admin", "Server", "Config", "Health", "DNSWire", "CEarlySignals",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: sections, linkerSettings: releaseLink),
        .executableTarget(name: "HealthLoopBench", dependencies: [
            "Health", "Config", .product(name: "Logging", package: "swift-log"),
        ], path: "Benchmarks/health-loop", exclude: ["README.md"]),
        .executableTarget(name: "RoutingBench", dependencies: ["Routing", "Config", "DNSWire"], path: "Benchmarks/routing",
                          exclude: ["README.md"]),
        .target(name: "TestSupport", dependencies: ["DNSWire", "Platform"]),
        .testTarget(name: "PlatformTests", dependencies: ["Platform"]),
        .testTarget(name: "DNSWireTests", dependencies: ["DNSWire", "TestSupport", "COpenSSL"]),
        .testTarget(name: "ZonesTests", dependencies: ["Zones", "Diagnostics", "TestSupport"], resources: [.copy("Fixtures")]),
        .testTarget(name: "ConfigTests", dependencies: ["Config", "Diagnostics", "TestSupport", "Yams", "Zones"]),
        .testTarget(name: "DNSSECTests", dependencies: ["DNSSEC", "DNSWire"]),
        .testTarget(name: "RoutingTests", dependencies: ["Routing", "TestSupport"]),
        .testTarget(name: "HealthTests", dependencies: ["Health", "Platform", "TestSupport", .product(name: "Logging", package: "swift-log")]),
        .testTarget(name: "ServerTests", dependencies: ["Server", "Answering", "Config", "Health", "Zones", "Platform", "TestSupport"]),
        .testTarget(name: "AdminTests", dependencies: ["Admin", "Server", "Config", "Routing", "Health", "DNSWire"]),
        // Black-box: the tests start the real binary; Platform (socket addresses) and Config
        // (its list of top-level sections, which the docs test checks blocks against) are the
        // only production modules they read.
        .testTarget(name: "EndToEndTests", dependencies: ["TestSupport", "DNSWire", "Platform", "Config", "Yams"], exclude: ["Fixtures"]),
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
