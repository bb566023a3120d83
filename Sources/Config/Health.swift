/// The health of one endpoint as the policies see it.
public enum HealthState: Hashable, Sendable, CustomStringConvertible {
    case up
    case down
    /// Serving but slow or partially impaired: weighted choices count it with `factor` (0...1) of its weight.
    case degraded(factor: Double)

    public var isUsable: Bool { if case .down = self { return false } else { return true } }
    public var weightFactor: Double {
        switch self {
        case .up: return 1
        case .down: return 0
        case .degraded(let f): return f
        }
    }
    public var description: String {
        switch self {
        case .up: return "up"
        case .down: return "down"
        case .degraded(let f): return "degraded(\(f))"
        }
    }
}

/// An immutable view of every endpoint's health, indexed like `ConfigModel.endpoints`.
/// The health loop publishes a new one on every state change; the query path reads it.
///
/// `suspect` marks endpoints whose check is failing (its last probe failed, `fall` not yet
/// reached) or flapping (changed state within the last `fall` x `interval`); the monitor
/// computes it when it publishes, and answers for a name with a suspect endpoint under it
/// carry the name's `ttl_when_failing` instead of its `ttl`.
public final class HealthSnapshot: Sendable {
    public let states: [HealthState]
    /// Indexed like `states`; empty means none is suspect.
    public let suspect: [Bool]
    /// True when any element of `suspect` is: the query path tests this one flag first.
    public let anySuspect: Bool
    public let generation: UInt64
    public init(states: [HealthState], suspect: [Bool] = [], generation: UInt64 = 0) {
        self.states = states; self.suspect = suspect; self.generation = generation
        anySuspect = suspect.contains(true)
    }
    /// Everything up: the state before the health loop exists or has run.
    public static func allUp(count: Int) -> HealthSnapshot {
        HealthSnapshot(states: Array(repeating: .up, count: count))
    }
    @inline(__always) public func state(_ endpoint: Int) -> HealthState {
        endpoint < states.count ? states[endpoint] : .up
    }
    @inline(__always) public func isSuspect(_ endpoint: Int) -> Bool {
        endpoint < suspect.count && suspect[endpoint]
    }
}

/// What a health check does, as validated from the config. Checkers live in `Health`.
public struct CheckSpec: Hashable, Sendable {
    public enum Kind: Hashable, Sendable {
        case tcp(host: String, port: UInt16)
        case http(HTTPCheck)
        case dns(server: String, port: UInt16, name: String, type: String, expectRcode: String, expectAnswer: String?)
        case exec(command: [String])
        case file(path: String)
        /// Healthy when at least `minimum` of the named checks are healthy (Route 53 calculated checks).
        case calculated(checks: [String], minimum: Int)
    }
    public struct HTTPCheck: Hashable, Sendable {
        public var tls: Bool
        public var host: String
        public var port: UInt16
        public var method: String = "GET"
        public var path: String = "/"
        public var hostHeader: String? = nil
        public var headers: [String: String] = [:]
        public var expectStatus: [Int] = [200]
        public var expectBody: String? = nil
        public var verifyCertificate: Bool = true
        public var caFile: String? = nil
        public var serverName: String? = nil
        public init(tls: Bool, host: String, port: UInt16) { self.tls = tls; self.host = host; self.port = port }
    }

    public var name: String
    public var kind: Kind
    /// Seconds between checks.
    public var interval: Double = 10
    /// Seconds before one check attempt counts as failed.
    public var timeout: Double = 3
    /// Successes in a row to become up.
    public var rise: Int = 2
    /// Failures in a row to become down.
    public var fall: Int = 3
    /// Slower than this (seconds) gives `degraded(factor: degradedFactor)`.
    public var degradedAbove: Double? = nil
    public var degradedFactor: Double = 0.5
    /// State before the first round settles it.
    public var initialState: HealthState = .up
    /// Keep one idle TCP connection open to the target between probes (tcp, http and https
    /// checks only) and probe at once when the peer closes it; see `WatchLimits`.
    public var watch: Bool = false
    /// Fleet mode: how many live vantages must see this check down for every instance to
    /// count it down (`Quorum`); alone, an instance is its only vantage.
    public var quorum: Quorum = .majority
    /// The address probes are sent from (tcp, http, https and dns checks); nil: the kernel's choice.
    public var source: String? = nil

    public init(name: String, kind: Kind) { self.name = name; self.kind = kind }
}

/// `quorum:` of a check: of the N live vantages (instances publishing an observation of the
/// check), how many must see it down before every instance counts it down.
///
///     Quorum.majority.required(of: 3)   // 2
///     Quorum.count(5).required(of: 3)   // 3: never more than the vantages there are
public enum Quorum: Hashable, Sendable, CustomStringConvertible {
    /// More than half: one vantage alone cannot move traffic, nor can a minority partition.
    case majority
    /// One vantage seeing it down is enough (the most sensitive: a single point of view again).
    case any
    /// Every live vantage must see it down.
    case all
    case count(Int)

    public func required(of vantages: Int) -> Int {
        guard vantages > 0 else { return 1 }
        switch self {
        case .majority: return vantages / 2 + 1
        case .any: return 1
        case .all: return vantages
        case .count(let n): return min(max(1, n), vantages)
        }
    }

    public init?(text: String) {
        switch text {
        case "majority": self = .majority
        case "any": self = .any
        case "all": self = .all
        default:
            guard let n = Int(text), (1...1000).contains(n) else { return nil }
            self = .count(n)
        }
    }

    public var description: String {
        switch self {
        case .majority: return "majority"
        case .any: return "any"
        case .all: return "all"
        case .count(let n): return String(n)
        }
    }
}
