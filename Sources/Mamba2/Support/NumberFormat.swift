// Number formatting without Foundation, for tables, progress lines and the loss curve.

/// Fixed-point formatting without Foundation: fixed(3.14159, 2) == "3.14".
public func fixed(_ x: Double, _ decimals: Int) -> String {
    if x.isNaN { return "nan" }
    if x.isInfinite { return x > 0 ? "inf" : "-inf" }
    var scale = 1.0
    for _ in 0..<decimals { scale *= 10 }
    let r = (abs(x) * scale).rounded()
    let whole = Int(r / scale)
    var frac = String(Int(r - Double(whole) * scale))
    while frac.count < decimals { frac = "0" + frac }
    let sign = x < 0 && r != 0 ? "-" : ""
    return decimals == 0 ? "\(sign)\(whole)" : "\(sign)\(whole).\(frac)"
}

/// Scientific notation with 2 significant decimals: sci(0.000123) == "1.23e-04".
public func sci(_ x: Double) -> String {
    if x == 0 { return "0.00e+00" }
    if !x.isFinite { return fixed(x, 0) }
    var e = 0
    var m = abs(x)
    while m >= 10 { m /= 10; e += 1 }
    while m < 1 { m *= 10; e -= 1 }
    if (m * 100).rounded() >= 1000 { m /= 10; e += 1 }
    let es = (e < 0 ? "-" : "+") + (abs(e) < 10 ? "0" : "") + String(abs(e))
    return (x < 0 ? "-" : "") + fixed(m, 2) + "e" + es
}
