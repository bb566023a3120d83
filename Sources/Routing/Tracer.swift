import DNSWire

/// Why evaluation took a child of a node: the payload of `RoutingTracer.chose`.
/// Plain values only (indices, numbers), so reporting one costs nothing when unobserved.
enum Choice {
    /// `failover`: choice `index` (0-based) of `count`, in listed order.
    case failover(index: Int, count: Int)
    /// `weighted`: the drawn child, its weight times its health factor, over the total of those.
    case weighted(index: Int, effective: Double, total: Double)
    /// `geo`: the best-ranked key that matches the client (index into the node's keys).
    case geoKey(index: Int)
    /// `subnet`: the longest rule holding the client; the answer holds for its `/prefix`.
    case subnet(prefix: Int)
    /// `geo` or `subnet`: the default, after no match or a matched choice with nothing healthy.
    case byDefault
    /// `nearest`: the closest choice not tried yet at `distance` km less its bias, or nil
    /// when the client's location is unknown and choices go in listed order.
    case nearest(index: Int, distance: Double?)
    /// `hashed`: the highest-scoring choice for the client's `/prefix` network.
    case hashed(prefix: Int)
}

/// Observes one evaluation of a policy tree, in order. The evaluator reports what it does;
/// the tracer decides what, if anything, to make of it. `NoTracer` (the query path) has
/// empty inlined methods, so the calls and their arguments compile away; `ExplainTracer`
/// (`meridian explain`, control `/explain`) turns them into the explain text.
///
/// Node arguments index `ConfigModel.nodes`. `descend`/`ascend` bracket the evaluation of
/// a chosen child (or a node re-evaluated by `when_all_down: open`).
protocol RoutingTracer {
    /// No endpoint under the name answers the asked type; `typeExcluded`: its `types:` leave it out.
    func noRecords(typeExcluded: Bool)
    /// Evaluation of the name's tree begins.
    func policyStarted()
    /// The whole tree had nothing healthy and `parent` at the top: evaluating again, health ignored.
    func topFailedOpen()
    /// Whether the tracer wants the client's location looked up (`located`); the query
    /// path's decisions come from compiled maps and never look it up.
    var reportsLocation: Bool { get }
    /// The client's location, on its first lookup.
    func located(_ location: ClientLocation)
    /// `node` looked at the client; its answer holds for the client's `/prefix` network.
    func consulted(node: Int, prefix: Int)
    /// A `pool` or `multivalue` node answered with its usable members; `shuffled` is the
    /// number taken out of the usable ones (multivalue), nil for a pool (all of them).
    func answered(node: Int, shuffled: (taken: Int, usable: Int)?)
    /// `node` takes `child` for reason `choice`.
    func chose(_ choice: Choice, child: Int, of node: Int)
    /// `geo` found no key, `subnet` no prefix, `nearest` no location for the client.
    func noMatch(node: Int)
    /// `nearest` passes over its choice `index`: nothing healthy there.
    func skipped(node: Int, index: Int)
    /// `failover` or `nearest` passes over `child` for now: it is only degraded, so fully-up
    /// choices come first.
    func passedDegraded(node: Int, child: Int)
    /// `node` has fewer healthy endpoints than its `min_healthy`: it counts as down, and its
    /// `when_all_down` decides next.
    func belowMinimum(node: Int)
    /// Nothing under `node` answered; its `when_all_down` decides next.
    func exhausted(node: Int)
    /// `node`'s `when_all_down` mode is applied.
    func whenAllDown(node: Int)
    func descend()
    func ascend()
    /// The decision is complete.
    func finished(_ result: RoutingResult)
}

/// The query path's tracer: every method is empty and inlined, so a `resolve` specialised
/// for it contains no tracing code at all.
struct NoTracer: RoutingTracer {
    @inline(__always) func noRecords(typeExcluded: Bool) {}
    @inline(__always) func policyStarted() {}
    @inline(__always) func topFailedOpen() {}
    @inline(__always) var reportsLocation: Bool { false }
    @inline(__always) func located(_ location: ClientLocation) {}
    @inline(__always) func consulted(node: Int, prefix: Int) {}
    @inline(__always) func answered(node: Int, shuffled: (taken: Int, usable: Int)?) {}
    @inline(__always) func chose(_ choice: Choice, child: Int, of node: Int) {}
    @inline(__always) func noMatch(node: Int) {}
    @inline(__always) func skipped(node: Int, index: Int) {}
    @inline(__always) func passedDegraded(node: Int, child: Int) {}
    @inline(__always) func belowMinimum(node: Int) {}
    @inline(__always) func exhausted(node: Int) {}
    @inline(__always) func whenAllDown(node: Int) {}
    @inline(__always) func descend() {}
    @inline(__always) func ascend() {}
    @inline(__always) func finished(_ result: RoutingResult) {}
}
