import Testing

@Test func placeholderRouting() { #expect(Bool(true)) }
