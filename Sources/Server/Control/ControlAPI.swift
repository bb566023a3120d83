import Config
import DNSWire
import Foundation
import Health
import Logging
import Routing

/// Why the control API cannot start.
public struct ControlConfigError: Error, Sendable, CustomStringConvertible {
    public let message: String
    public init(message: String) { self.message = message }
    public var description: String { message }
}

/// The control and metrics API over `ControlHTTPServer`: routes, bearer-token check, and the
/// handlers for metrics, status, explain, overrides and liveness. Every override change is
/// logged with the caller's address.
///
///     let api = try ControlAPI(listen: "127.0.0.1:8053", token: nil, context: control, logger: log)
///     try api.start()
///     print(api.boundAddress)
///     api.stop()
///
/// Endpoints: `GET /healthz`, `GET /metrics`, `GET /status`, `GET /explain?name=&type=&client=&ecs=`,
/// `GET /overrides`, `POST /override` (JSON body), `DELETE /override?target=`.
public final class ControlAPI: Sendable {
    public let context: ControlContext
    private let token: String?
    private let logger: Logger
    private let http: ControlHTTPServer

    /// The address to bind for `listen`: a non-loopback address needs `token`, so the API is
    /// never open to a network by accident. The loader checks the same rule (`check` agrees).
    static func bindAddress(_ listen: String, token: String?) throws(ControlConfigError) -> ListenAddress {
        let address: ListenAddress
        do { address = try ListenAddress(listen) } catch {
            throw ControlConfigError(message: "server.control: \(error)")
        }
        if !isLoopback(address.address) && (token ?? "").isEmpty {
            throw ControlConfigError(message: "server.control \(address) is not a loopback address: set server.control_token so every request needs `Authorization: Bearer TOKEN`, or bind to 127.0.0.1")
        }
        return address
    }

    public init(listen: String, token: String?, context: ControlContext, logger: Logger) throws(ControlConfigError) {
        let address = try ControlAPI.bindAddress(listen, token: token)
        let t = token.flatMap { $0.isEmpty ? nil : $0 }
        self.context = context
        self.token = t
        self.logger = logger
        let box = HandlerBox()
        // The token is checked on the head, before the body is read (and again in `handle`,
        // which in-process callers use directly).
        self.http = ControlHTTPServer(address: address, logger: logger,
                                      authorize: { req in box.api?.authorizationFailure(req) },
                                      handler: { req in box.api?.handle(req) ?? .text(503, "starting\n") })
        box.api = self
    }

    public func start() throws(SystemError) {
        try http.start()
        context.decisions.startSampling(context)
    }
    public func stop() { http.stop(); context.decisions.stop() }
    public var boundAddress: ListenAddress { http.boundAddress }

    /// The 401 for a request without the right bearer token, nil when it may proceed.
    /// /healthz says only "ok", so orchestrators probe it without the token.
    func authorizationFailure(_ req: HTTPRequest) -> HTTPResponse? {
        guard let t = token, req.path != "/healthz" else { return nil }
        if let auth = req.headers["authorization"], constantTimeEqual(auth, "Bearer " + t) { return nil }
        return .text(401, "missing or wrong bearer token (Authorization: Bearer TOKEN)\n")
    }

    /// Routes one request (public so the CLI's tests and other tools can drive it in-process).
    public func handle(_ req: HTTPRequest) -> HTTPResponse {
        if let refusal = authorizationFailure(req) { return refusal }
        switch (req.method, req.path) {
        case ("GET", "/healthz"), ("HEAD", "/healthz"): return .text(200, "ok\n")
        case ("GET", "/"): return HTTPResponse(status: 200, contentType: "text/html; charset=utf-8", body: Array(StatusPage.render(context).utf8))
        case ("GET", "/metrics"):
            return HTTPResponse(status: 200, contentType: "text/plain; version=0.0.4; charset=utf-8",
                                body: Array(MetricsRenderer.render(context, http: http.stats).utf8))
        case ("GET", "/status"): return json(200, StatusReport.build(context))
        case ("GET", "/explain"): return explain(req)
        case ("GET", "/overrides"): return json(200, overrideViews())
        case ("POST", "/override"): return setOverride(req)
        case ("DELETE", "/override"): return clearOverride(req)
        case ("GET", "/drill/health"), ("POST", "/drill/health"), ("DELETE", "/drill/health"): return probeDrill(req)
        case (_, "/healthz"), (_, "/metrics"), (_, "/status"), (_, "/explain"), (_, "/overrides"), (_, "/override"), (_, "/drill/health"), (_, "/"):
            return .text(405, "method \(req.method) not allowed on \(req.path)\n")
        default:
            return .text(404, "no such endpoint \(req.path); try / /healthz /metrics /status /explain /overrides /override /drill/health\n")
        }
    }

    // MARK: health drill

    /// `POST /drill/health {"datacenter": "ams", "expires_in": 120}` starts a health drill
    /// (the datacenter's probes are answered as failed), `DELETE` ends it, `GET` reports it.
    private func probeDrill(_ req: HTTPRequest) -> HTTPResponse {
        guard context.snapshot.model != nil, let monitor = context.monitor else {
            return .text(400, "a health drill needs a configuration with health checks\n")
        }
        switch req.method {
        case "POST":
            guard let obj = (try? JSONSerialization.jsonObject(with: Data(req.body))) as? [String: Any],
                  let dc = obj["datacenter"] as? String else {
                return .text(400, "body must be a JSON object: {\"datacenter\": \"NAME\", \"expires_in\": 120}\n")
            }
            let expires = (obj["expires_in"] as? NSNumber)?.doubleValue ?? 600
            guard expires > 0 && expires <= 86400 else { return .text(400, "\"expires_in\" must be 1...86400 seconds\n") }
            do { return json(200, try monitor.startProbeDrill(datacenter: dc, expiresIn: expires)) } catch {
                return .text(409, "\(error)\n")
            }
        case "DELETE":
            guard monitor.stopProbeDrill(), let s = monitor.probeDrill() else { return .text(404, "no health drill is running\n") }
            return json(200, s)
        default:
            guard let s = monitor.probeDrill() else { return .text(404, "no health drill has run\n") }
            return json(200, s)
        }
    }

    // MARK: explain

    private func explain(_ req: HTTPRequest) -> HTTPResponse {
        let s = context.snapshot
        guard let router = s.router else { return .text(400, "explain needs a configuration with GSLB names\n") }
        guard let n = req.query["name"], !n.isEmpty, let qname = try? DNSName(n.hasSuffix(".") ? n : n + ".") else {
            return .text(400, "explain needs name=NAME\n")
        }
        let typeText = req.query["type"].flatMap { $0.isEmpty ? nil : $0 } ?? "A"
        guard let qtype = RRType(mnemonic: typeText.uppercased()) else { return .text(400, "unknown type \(typeText)\n") }
        let clientText = req.query["client"].flatMap { $0.isEmpty ? nil : $0 } ?? "127.0.0.1"
        guard let client = IPAddress(clientText) else { return .text(400, "bad client address \(clientText)\n") }
        var subnet: IPPrefix?
        if let e = req.query["ecs"], !e.isEmpty {
            guard let p = IPPrefix(e, strict: true) else { return .text(400, "bad ecs \(e): expected a CIDR such as 192.0.2.0/24 with no host bits set\n") }
            subnet = p
        }
        return .text(200, router.explain(name: qname, qtype: qtype, client: client, ecs: subnet, health: s.health))
    }

    // MARK: overrides

    private func overrideViews() -> [OverrideView] {
        guard let model = context.snapshot.model, let m = context.monitor else { return [] }
        return m.overrides().map { OverrideView($0, model: model) }
    }

    private func setOverride(_ req: HTTPRequest) -> HTTPResponse {
        guard let model = context.snapshot.model, let monitor = context.monitor else {
            return .text(400, "overrides need a configuration with endpoints\n")
        }
        guard let obj = (try? JSONSerialization.jsonObject(with: Data(req.body))) as? [String: Any] else {
            return .text(400, "body must be a JSON object: {\"target\": \"dc:NAME\", \"state\": \"down\", \"reason\": \"...\", \"expires_in\": 600}\n")
        }
        guard let targetText = obj["target"] as? String else { return .text(400, "missing \"target\" (endpoint:NAME or dc:NAME)\n") }
        let target: OverrideTarget
        do { target = try OverrideTargetName.resolve(targetText, in: model) } catch { return .text(400, error.message + "\n") }
        guard let stateArg = obj["state"] as? String, let state = parseHealthState(stateArg) else {
            return .text(400, "\"state\" must be up, down, degraded or degraded:FACTOR (0...1)\n")
        }
        guard let reason = obj["reason"] as? String else {
            return .text(400, "\"reason\" is required: say why, it shows in every status view and log\n")
        }
        if let problem = OverrideRules.reasonProblem(reason) { return .text(400, problem + "\n") }
        var author = "control API client \(req.remote)"
        if let a = obj["author"], !(a is NSNull) {
            guard let text = a as? String else { return .text(400, "\"author\" must be a string\n") }
            if let problem = OverrideRules.authorProblem(text) { return .text(400, problem + "\n") }
            author = text
        }
        var expiresIn: Double?
        if let e = obj["expires_in"], !(e is NSNull) {
            // JSON true/false arrive as NSNumber too (objCType "c"): not a number of seconds.
            guard let n = e as? NSNumber, String(cString: n.objCType) != "c" else {
                return .text(400, "\"expires_in\" must be a number of seconds > 0\n")
            }
            if let problem = OverrideRules.expiryProblem(n.doubleValue) { return .text(400, "\"expires_in\" \(problem)\n") }
            expiresIn = n.doubleValue
        }
        var force = false
        if let f = obj["force"], !(f is NSNull) {
            guard let n = f as? NSNumber, String(cString: n.objCType) == "c" else { return .text(400, "\"force\" must be true or false\n") }
            force = n.boolValue
        }
        let broken = SafetyRule.brokenNames(model: model, monitor: monitor, target: target, state: state)
        if !broken.isEmpty && !force { return .text(409, SafetyRule.refusal(broken, target: target.name(in: model), state: state)) }
        if let fleet = context.fleet {
            return setFleetOverride(fleet, req, model: model, target: target, state: state, reason: reason, author: author,
                                    expiresIn: expiresIn, forcedPast: broken)
        }
        do {
            try monitor.setOverride(target, state: state, reason: reason, expiresIn: expiresIn, author: author)
        } catch {
            return .text(400, "\(error.message)\n")
        }
        // expiryProblem bounds the expiry to 365 days, so the Int conversion cannot trap.
        let expiry = expiresIn.map { " expires in \(Int($0.rounded(.up))) s" } ?? " until cleared"
        let forced = broken.isEmpty ? "" : " (forced past the safety rule: \(broken.joined(separator: ", ")))"
        logger.notice("control: override set by \(req.remote) (author \(logQuoted(author))): \(target.name(in: model)) \(stateText(state))\(expiry)\(forced), reason \(logQuoted(reason))")
        if let failure = saveFailure() { return failure }
        guard let o = monitor.overrides().first(where: { $0.target == target }) else {
            return .text(500, "override set but not found afterwards\n")
        }
        return json(200, OverrideView(o, model: model))
    }

    private func clearOverride(_ req: HTTPRequest) -> HTTPResponse {
        guard let model = context.snapshot.model, let monitor = context.monitor else {
            return .text(404, "no overrides: the configuration has no endpoints\n")
        }
        guard let text = req.query["target"], !text.isEmpty else { return .text(400, "DELETE /override needs ?target=endpoint:NAME or dc:NAME\n") }
        let target: OverrideTarget
        do { target = try OverrideTargetName.resolve(text, in: model) } catch { return .text(400, error.message + "\n") }
        if let fleet = context.fleet {
            let name = target.name(in: model).description
            let rev: Int64?
            do { rev = try fleet.delete(target: name) } catch {
                return .text(503, "fleet: \(error.message); the override was not cleared\n")
            }
            guard let r = rev else { return .text(404, "no override on \(name) in the fleet\n") }
            logger.notice("control: fleet override cleared by \(req.remote): \(name) (etcd revision \(r))")
            let ack = fleet.waitForAcks(r)
            return json(200, FleetClearReply(cleared: name, fleet: ack))
        }
        let previous = monitor.overrides().first { $0.target == target }
        guard let old = previous, monitor.clearOverride(target) else {
            return .text(404, "no override on \(target.name(in: model))\n")
        }
        logger.notice("control: override cleared by \(req.remote): \(target.name(in: model)) (was \(stateText(old.state)), reason \(logQuoted(old.reason)))")
        if let failure = saveFailure() { return failure }
        return json(200, ["cleared": target.name(in: model).description])
    }

    /// Fleet mode: the override goes to etcd, every instance (this one included) applies it
    /// from its watch, and the answer waits for their acknowledgements (bounded).
    private func setFleetOverride(_ fleet: FleetAgent, _ req: HTTPRequest, model: ConfigModel, target: OverrideTarget,
                                  state: HealthState, reason: String, author: String, expiresIn: Double?,
                                  forcedPast broken: [String]) -> HTTPResponse {
        let now = Date().timeIntervalSince1970
        let name = target.name(in: model).description
        let saved = SavedOverride(target: name, state: stateText(state), reason: reason, author: author,
                                  created: now, expires: expiresIn.map { now + $0 })
        let rev: Int64
        do { rev = try fleet.put(saved) } catch {
            return .text(503, "fleet: \(error.message); the override was not set\n")
        }
        let forced = broken.isEmpty ? "" : " (forced past the safety rule: \(broken.joined(separator: ", ")))"
        logger.notice("control: fleet override set by \(req.remote) (author \(logQuoted(author))): \(name) \(stateText(state)), etcd revision \(rev)\(forced), reason \(logQuoted(reason))")
        var view = OverrideView(OverrideStatus(target: target, state: state, reason: reason, author: author, setAt: now,
                                               expiresAt: saved.expires), model: model)
        view.fleet = fleet.waitForAcks(rev)
        return json(200, view)
    }

    /// A 500 when the change could not be saved to the state folder: it is in force, but a
    /// restart would lose it, and the operator must know.
    private func saveFailure() -> HTTPResponse? {
        guard let e = context.saveOverrides() else { return nil }
        logger.error("control: overrides not saved to \(context.overrideFile?.path ?? "-"): \(e)")
        return .text(500, "the change is in force but was not saved (\(e)): a restart would lose it; fix the state folder and repeat the command\n")
    }

    private func json<T: Encodable>(_ status: Int, _ value: T) -> HTTPResponse {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        guard let data = try? enc.encode(value) else { return .text(500, "cannot encode JSON\n") }
        return HTTPResponse(status: status, contentType: "application/json", body: Array(data) + [10])
    }
}

private final class HandlerBox: @unchecked Sendable {
    // Written once in ControlAPI.init before the server starts; read-only afterwards.
    weak var api: ControlAPI?
}

/// 127.0.0.0/8 and ::1 (RFC 1122 3.2.1.3, RFC 4291 2.5.3).
func isLoopback(_ a: IPAddress) -> Bool {
    a.isV4 ? a.byte(0) == 127 : a.unmappingV4 != a ? a.unmappingV4.byte(0) == 127 : a.description == "::1"
}

func constantTimeEqual(_ a: String, _ b: String) -> Bool {
    let x = Array(a.utf8), y = Array(b.utf8)
    var diff = UInt8(x.count == y.count ? 0 : 1)
    for i in 0..<min(x.count, y.count) { diff |= x[i] ^ y[i] }
    return diff == 0
}

/// A health state as operators write it: `up`, `down`, `degraded:0.5`.
public func stateText(_ s: HealthState) -> String {
    switch s {
    case .up: return "up"
    case .down: return "down"
    case .degraded(let f): return "degraded:\(f)"
    }
}

/// An override as the API shows it.
public struct OverrideView: Codable, Sendable, Equatable {
    public var target: String
    public var state: String
    public var reason: String
    /// Who set it; nil from a server that does not record it.
    public var author: String?
    /// Seconds since the epoch.
    public var setAt: Double
    public var expiresAt: Double?
    public var endpoints: [String]
    /// Fleet mode: the etcd revision and which instances applied it.
    public var fleet: FleetAck?

    enum CodingKeys: String, CodingKey {
        case target, state, reason, author, endpoints, fleet
        case setAt = "set_at", expiresAt = "expires_at"
    }

    init(_ o: OverrideStatus, model: ConfigModel) {
        target = o.target.name(in: model).description
        state = stateText(o.state)
        reason = o.reason
        author = o.author.isEmpty ? nil : o.author
        setAt = o.setAt
        expiresAt = o.expiresAt
        switch o.target {
        case .endpoint(let i): endpoints = i < model.endpoints.count ? [model.endpoints[i].name] : []
        case .datacenter(let d):
            endpoints = model.endpoints.filter { $0.datacenter.map { model.datacenters[$0].name } == d }.map(\.name)
        }
    }
}

/// `DELETE /override` in fleet mode.
public struct FleetClearReply: Codable, Sendable {
    public var cleared: String
    public var fleet: FleetAck
}

/// The safety rule (after Route 53 ARC's assertion rules): an override that would leave a
/// GSLB name with no usable endpoint under it (its fallback aside), where it has one now, is
/// refused unless forced. Health is this instance's view; overrides already in force count.
///
///     let broken = SafetyRule.brokenNames(model: model, monitor: m, target: .datacenter("ams"), state: .down)
public enum SafetyRule {
    public static func brokenNames(model: ConfigModel, monitor: HealthMonitor, target: OverrideTarget, state: HealthState) -> [String] {
        guard !state.isUsable else { return [] }
        let eps = monitor.endpointStatus()
        let before = eps.map { $0.effective.isUsable }
        var after = before
        for (i, e) in eps.enumerated() {
            switch target {
            case .endpoint(let k) where k == i: after[i] = false
            case .datacenter(let d) where e.datacenter == d: after[i] = false
            default: break
            }
        }
        return model.names.filter { n in
            let under = model.endpointsUnder[n.root].filter { $0 < before.count }
            return under.contains { before[$0] } && !under.contains { after[$0] }
        }.map { $0.owner.description }
    }

    public static func refusal(_ broken: [String], target: OverrideTargetName, state: HealthState) -> String {
        "refused by the safety rule: \(target) \(stateText(state)) would leave \(broken.count) GSLB name(s) with no healthy endpoint: \(broken.joined(separator: ", ")); set it with --force (\"force\": true) if that is what you want\n"
    }
}
