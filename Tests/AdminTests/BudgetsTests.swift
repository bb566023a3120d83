import Config
import DNSWire
import Health
@testable import Admin
import Testing

/// Budgets read the endpoints under each name from `ConfigModel.endpointsUnder`, the one
/// walk the router, drills and status share.
@Suite("failover budgets")
struct BudgetsTests {
    @Test func endpointsUnderAreFirstSeenOrderAndBudgetsUseThem() throws {
        let model = try DrillPlanTests.model()
        let www = model.names[try #require(model.nameIndex[try DNSName("www.example.com.")])]
        // geo { office: iad, default: { failover: [ams, iad] } }: iad (with the edge CNAME) first, each endpoint once.
        #expect(model.endpointsUnder[www.root].map { model.endpoints[$0].name } == ["iad-1", "edge", "ams-1", "ams-2"])
        #expect(PolicyNode.endpoints(under: www.root, in: model.nodes) == model.endpointsUnder[www.root])
        #expect(model.nodes[www.root].children.count == 2)
        let budgets = Budgets.compute(model)
        #expect(budgets.map(\.name.description) == ["www.example.com.", "api.example.com.", "cdn.example.com.", "static.example.com."])
        #expect(budgets[0].unchecked == ["ams-2", "edge"] && budgets[0].worstEndpoint == "ams-1")
        #expect(budgets[1].unchecked.isEmpty && budgets[1].worstEndpoint == "ams-1")
        #expect(budgets[2].budget == nil && budgets[2].unchecked == ["edge"])
    }
}
