import Testing

@Test func placeholderHealth() { #expect(Bool(true)) }
