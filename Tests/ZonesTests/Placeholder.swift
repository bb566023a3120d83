import Testing

@Test func placeholderZones() { #expect(Bool(true)) }
