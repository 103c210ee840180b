/// A dense row-major float32 array with a shape. The library's one currency between rooms: inputs and
/// outputs of the SSD layer, weights after loading, logits. Plain value semantics (copy on write).
public struct Tensor: Sendable, Equatable {
    /// Sizes, outermost first. A scalar has shape [].
    public var shape: [Int]
    /// shape.reduce(1, *) elements, row-major.
    public var data: [Float]

    public init(shape: [Int], data: [Float]) {
        precondition(shape.reduce(1, *) == data.count, "Tensor: \(data.count) elements for shape \(shape)")
        self.shape = shape
        self.data = data
    }

    public init(zeros shape: [Int]) {
        self.shape = shape
        self.data = [Float](repeating: 0, count: shape.reduce(1, *))
    }

    public init(repeating value: Float, shape: [Int]) {
        self.shape = shape
        self.data = [Float](repeating: value, count: shape.reduce(1, *))
    }

    public var count: Int { data.count }
    public var rank: Int { shape.count }

    /// Same elements, another shape of the same size.
    public func reshaped(_ newShape: [Int]) -> Tensor {
        Tensor(shape: newShape, data: data)
    }

    /// Relative error ‖a − b‖ / ‖b‖ over the whole tensor, in double precision.
    public func relativeError(to reference: Tensor) -> Double {
        precondition(count == reference.count)
        var num = 0.0, den = 0.0
        for i in 0..<count {
            let d = Double(data[i]) - Double(reference.data[i])
            num += d * d
            den += Double(reference.data[i]) * Double(reference.data[i])
        }
        return den == 0 ? num.squareRoot() : (num / den).squareRoot()
    }

    /// True when any element is NaN or infinite.
    public var hasNonFinite: Bool { data.contains { !$0.isFinite } }
}
