/// The type bitmap of an NSEC record (RFC 4034 4.1.2): per window of 256 types, the window
/// number, the length of its bitmap in octets, then the bits (type 0 is the first bit). One
/// encoder for the signer's online NSECs and the NSEC chain of a signed zone transfer.
///
///     let n = NSECBitmap.write(sorted, count: k, into: rdata)   // types sorted ascending
public enum NSECBitmap {
    /// Writes the bitmap of `types[0..<count]`, sorted ascending (repeats are skipped), at
    /// the start of `out` and returns its length. `out` needs 34 bytes per window used.
    /// Allocates nothing.
    @inlinable
    public static func write(_ types: UnsafePointer<UInt16>, count n: Int, into out: UnsafeMutableRawBufferPointer) -> Int {
        var at = 0
        var k = 0
        while k < n {
            let window = types[k] >> 8
            let winAt = at
            out[winAt] = UInt8(window)
            for z in 0..<32 { out[winAt + 2 + z] = 0 }
            var maxOctet = 0
            while k < n && types[k] >> 8 == window {
                let low = Int(types[k] & 0xFF)
                out[winAt + 2 + low / 8] |= UInt8(0x80 >> (low % 8))
                maxOctet = max(maxOctet, low / 8)
                k += 1
                while k < n && types[k] == types[k - 1] { k += 1 }
            }
            out[winAt + 1] = UInt8(maxOctet + 1)
            at = winAt + 2 + maxOctet + 1
        }
        return at
    }

    /// The bitmap of `types`, in any order, as bytes (allocates; not for the query path).
    public static func encode(_ types: [RRType]) -> [UInt8] {
        let sorted = types.map(\.rawValue).sorted()
        var out = [UInt8](repeating: 0, count: 34 * 256)
        let n = sorted.withUnsafeBufferPointer { t in
            out.withUnsafeMutableBytes { write(t.baseAddress!, count: t.count, into: $0) }
        }
        return Array(out[0..<n])
    }
}
