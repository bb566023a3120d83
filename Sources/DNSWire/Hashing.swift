/// The splitmix64 finalizer (Steele, Lea and Flood, "Fast splittable pseudorandom number
/// generators", 2014): spreads every input bit over all 64 output bits. Zone name tables,
/// the decision cache, hashed routing and the per-worker random generator all use this one;
/// it is not cryptographic.
///
///     mix64(1) != mix64(2)          // neighbouring inputs land far apart
///     mix64(state &+ 0x9E37_79B9_7F4A_7C15)   // one step of the splitmix64 generator
@inlinable @inline(__always)
public func mix64(_ x: UInt64) -> UInt64 {
    var z = x
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
}

/// The splitmix64 generator's increment (the golden ratio in 64 bits). A computed,
/// inlinable constant: a global `let` would be read through an accessor across modules.
@inlinable public var splitmix64Gamma: UInt64 { 0x9E37_79B9_7F4A_7C15 }
