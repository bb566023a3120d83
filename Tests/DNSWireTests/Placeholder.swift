import Testing

@Test func placeholderDNSWire() { #expect(Bool(true)) }
