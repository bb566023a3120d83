import Config

/// An override target as operators write it, on the command line and in the control API:
/// `dc:NAME` (or `datacenter:NAME`) and `endpoint:NAME` (or `ep:NAME`). The one parser of
/// that text; `resolve(in:)` turns it into the monitor's `OverrideTarget` (endpoints by
/// index), and `OverrideTarget.name(in:)` goes back.
///
///     let t = OverrideTargetName(parsing: "datacenter:ams")   // dc:ams
///     let target = try t?.resolve(in: model)                  // .datacenter("ams")
///     target?.name(in: model).description                     // "dc:ams"
public struct OverrideTargetName: Hashable, Sendable, CustomStringConvertible {
    public enum Kind: Hashable, Sendable { case endpoint, datacenter }
    public var kind: Kind
    public var name: String

    public init(kind: Kind, name: String) { self.kind = kind; self.name = name }

    /// nil unless `text` is KIND:NAME with a known kind (any case) and a non-empty name.
    public init?(parsing text: String) {
        guard let colon = text.firstIndex(of: ":") else { return nil }
        let name = String(text[text.index(after: colon)...])
        guard !name.isEmpty else { return nil }
        switch text[..<colon].lowercased() {
        case "endpoint", "ep": self.init(kind: .endpoint, name: name)
        case "datacenter", "dc": self.init(kind: .datacenter, name: name)
        default: return nil
        }
    }

    /// The canonical form: `endpoint:NAME` or `dc:NAME`.
    public var description: String { (kind == .endpoint ? "endpoint:" : "dc:") + name }

    /// The monitor's target, or why `model` has no such endpoint or datacenter.
    public func resolve(in model: ConfigModel) throws(OverrideTargetError) -> OverrideTarget {
        switch kind {
        case .endpoint:
            guard let i = model.endpointIndex(named: name) else {
                throw OverrideTargetError("no endpoint named \"\(name)\" (known: \(model.endpoints.map(\.name).joined(separator: ", ")))")
            }
            return .endpoint(i)
        case .datacenter:
            guard model.datacenters.contains(where: { $0.name == name }) else {
                throw OverrideTargetError("no datacenter named \"\(name)\" (known: \(model.datacenters.map(\.name).joined(separator: ", ")))")
            }
            return .datacenter(name)
        }
    }

    /// Parses and resolves `text`; errors quote it: `target "x": expected endpoint:NAME or dc:NAME`.
    public static func resolve(_ text: String, in model: ConfigModel) throws(OverrideTargetError) -> OverrideTarget {
        guard let t = OverrideTargetName(parsing: text) else { throw OverrideTargetError("target \"\(text)\": \(expected)") }
        do { return try t.resolve(in: model) } catch { throw OverrideTargetError("target \"\(text)\": \(error.message)") }
    }

    /// What a target looks like, for messages.
    public static let expected = "expected endpoint:NAME or dc:NAME"
}

/// Why an override target was refused.
public struct OverrideTargetError: Error, Sendable, Equatable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

extension OverrideTarget {
    /// The target as operators write it (`endpoint:ams-1`, `dc:ams`).
    public func name(in model: ConfigModel) -> OverrideTargetName {
        switch self {
        case .endpoint(let i): return OverrideTargetName(kind: .endpoint, name: i < model.endpoints.count ? model.endpoints[i].name : String(i))
        case .datacenter(let d): return OverrideTargetName(kind: .datacenter, name: d)
        }
    }
}
