import Mamba2
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The loss curve of a training run as a self-contained SVG: training loss per step (faint) and its
/// moving average, validation loss as points joined by a line, axes with ticks.
public enum LossCurve {
    public static func svg(train: [(step: Int, loss: Double)], validation: [(step: Int, loss: Double)],
                           title: String) -> String {
        let (W, H) = (760.0, 440.0)
        let (left, right, top, bottom) = (64.0, 20.0, 36.0, 48.0)
        let all = (train.map(\.loss) + validation.map(\.loss)).filter(\.isFinite)
        let maxStep = Double(max(train.last?.step ?? 1, validation.last?.step ?? 1, 1))
        var lo = all.min() ?? 0, hi = all.max() ?? 1
        if hi - lo < 1e-9 { hi = lo + 1 }
        lo = max(0, lo - 0.05 * (hi - lo))
        func x(_ s: Double) -> Double { left + s / maxStep * (W - left - right) }
        func y(_ v: Double) -> Double { top + (hi - v) / (hi - lo) * (H - top - bottom) }
        func f(_ v: Double) -> String { fixed(v, 1) }
        func path(_ pts: [(Double, Double)]) -> String {
            pts.enumerated().map { i, p in (i == 0 ? "M" : "L") + f(x(p.0)) + "," + f(y(p.1)) }.joined(separator: " ")
        }
        var s = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(W))\" height=\"\(Int(H))\" font-family=\"sans-serif\" font-size=\"12\">\n"
        s += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        s += "<text x=\"\(f(W / 2))\" y=\"22\" text-anchor=\"middle\" font-size=\"14\">\(escape(title))</text>\n"
        // axes and ticks
        s += "<line x1=\"\(f(left))\" y1=\"\(f(H - bottom))\" x2=\"\(f(W - right))\" y2=\"\(f(H - bottom))\" stroke=\"black\"/>\n"
        s += "<line x1=\"\(f(left))\" y1=\"\(f(top))\" x2=\"\(f(left))\" y2=\"\(f(H - bottom))\" stroke=\"black\"/>\n"
        for i in 0...5 {
            let v = lo + (hi - lo) * Double(i) / 5
            s += "<line x1=\"\(f(left - 4))\" y1=\"\(f(y(v)))\" x2=\"\(f(W - right))\" y2=\"\(f(y(v)))\" stroke=\"#ddd\"/>\n"
            s += "<text x=\"\(f(left - 8))\" y=\"\(f(y(v) + 4))\" text-anchor=\"end\">\(fixed(v, 2))</text>\n"
            let st = maxStep * Double(i) / 5
            s += "<text x=\"\(f(x(st)))\" y=\"\(f(H - bottom + 18))\" text-anchor=\"middle\">\(Int(st.rounded()))</text>\n"
        }
        s += "<text x=\"\(f(W / 2))\" y=\"\(f(H - 10))\" text-anchor=\"middle\">step</text>\n"
        s += "<text x=\"16\" y=\"\(f(H / 2))\" transform=\"rotate(-90 16 \(f(H / 2)))\" text-anchor=\"middle\">loss (nats/token)</text>\n"
        // training loss: raw and a moving average
        let raw = train.filter { $0.loss.isFinite }.map { (Double($0.step), $0.loss) }
        if !raw.isEmpty {
            s += "<path d=\"\(path(raw))\" fill=\"none\" stroke=\"#9ecae1\" stroke-width=\"1\"/>\n"
            let k = max(1, raw.count / 50)
            var smooth: [(Double, Double)] = []
            for i in 0..<raw.count {
                let w = raw[max(0, i - k + 1)...i]
                smooth.append((raw[i].0, w.reduce(0) { $0 + $1.1 } / Double(w.count)))
            }
            s += "<path d=\"\(path(smooth))\" fill=\"none\" stroke=\"#08519c\" stroke-width=\"2\"/>\n"
        }
        let val = validation.filter { $0.loss.isFinite }.map { (Double($0.step), $0.loss) }
        if !val.isEmpty {
            s += "<path d=\"\(path(val))\" fill=\"none\" stroke=\"#e6550d\" stroke-width=\"2\"/>\n"
            for p in val { s += "<circle cx=\"\(f(x(p.0)))\" cy=\"\(f(y(p.1)))\" r=\"3\" fill=\"#e6550d\"/>\n" }
        }
        // legend
        s += "<rect x=\"\(f(W - right - 190))\" y=\"\(f(top + 6))\" width=\"180\" height=\"42\" fill=\"white\" stroke=\"#999\"/>\n"
        s += "<line x1=\"\(f(W - right - 180))\" y1=\"\(f(top + 20))\" x2=\"\(f(W - right - 156))\" y2=\"\(f(top + 20))\" stroke=\"#08519c\" stroke-width=\"2\"/>"
        s += "<text x=\"\(f(W - right - 150))\" y=\"\(f(top + 24))\">training (moving average)</text>\n"
        s += "<line x1=\"\(f(W - right - 180))\" y1=\"\(f(top + 38))\" x2=\"\(f(W - right - 156))\" y2=\"\(f(top + 38))\" stroke=\"#e6550d\" stroke-width=\"2\"/>"
        s += "<text x=\"\(f(W - right - 150))\" y=\"\(f(top + 42))\">validation</text>\n"
        s += "</svg>\n"
        return s
    }

    static func escape(_ t: String) -> String {
        t.replacingAll("&", with: "&amp;").replacingAll("<", with: "&lt;").replacingAll(">", with: "&gt;")
    }
}
