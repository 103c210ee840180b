import CMamba2Kernels

/// float32 → 16-bit patterns, rounded to nearest even: bfloat16 when `bfloat`, else IEEE half.
public func roundedTo16Bits(_ v: [Float], bfloat: Bool) -> [UInt16] {
    var out = [UInt16](repeating: 0, count: v.count)
    if bfloat { mk_f32_to_bf16(v.count, v, &out) } else { mk_f32_to_f16(v.count, v, &out) }
    return out
}

/// 16-bit patterns → float32, exact: bfloat16 when `bfloat`, else IEEE half.
public func floatsFrom16Bits(_ h: [UInt16], bfloat: Bool) -> [Float] {
    bfloat ? h.map { Float(bitPattern: UInt32($0) << 16) } : h.map(halfToFloat)
}

/// IEEE half → float, exact (subnormals, infinities and NaN included).
@inline(__always)
public func halfToFloat(_ h: UInt16) -> Float {
    let sign = UInt32(h & 0x8000) << 16
    let exp = Int((h >> 10) & 0x1F)
    let man = UInt32(h & 0x3FF)
    if exp == 0 {
        if man == 0 { return Float(bitPattern: sign) }
        let v = Float(man) * 5.9604644775390625e-8  // man · 2^−24
        return sign != 0 ? -v : v
    }
    if exp == 31 { return Float(bitPattern: sign | 0x7F80_0000 | (man << 13)) }
    return Float(bitPattern: sign | UInt32(exp - 15 + 127) << 23 | (man << 13))
}
