import Foundation

/// A label projector's parameters: p(x) = softmax((s·x·W0 + x·A·B + b) / T).
///
/// W0 (d × C) is an optional base head kept elsewhere in the store (it costs the projector no
/// bytes); A (d × r) and B (r × C) are the low-rank correction, b (C) the bias.
public struct ProjectorModel: Equatable, Sendable {
    /// The embedding dimension d.
    public let dimension: Int
    /// The class count C.
    public let classes: Int
    /// The rank r of the correction.
    public let rank: Int
    /// The head's scale s (0 without a head).
    public var scale: Float
    /// A, d × r, row-major.
    public var a: [Float]
    /// B, r × C, row-major.
    public var b: [Float]
    /// The bias, C values.
    public var bias: [Float]
    /// The softmax temperature T.
    public var temperature: Float

    /// A model from its parameters: A (d × r), B (r × C) and the bias (C), row-major; the arrays
    /// must have those sizes (regeneration reads them as such).
    public init(dimension: Int, classes: Int, rank: Int, scale: Float = 0, a: [Float], b: [Float], bias: [Float], temperature: Float = 1) {
        self.dimension = dimension
        self.classes = classes
        self.rank = rank
        self.a = a
        self.b = b
        self.bias = bias
        self.scale = scale
        self.temperature = temperature
    }

    /// The bytes the parameters take when stored as f32 (s, T, A, B, b).
    public var parameterBytes: Int { 4 * (2 + a.count + b.count + bias.count) }

    /// Regenerates the labels of `rows` embeddings (`rows × d`, row-major) into `out`
    /// (`rows × C`), in batches whose matrix products run in `cblas_sgemm`.
    ///
    /// With a head, W = s·W0 + A·B is formed once by the caller (`combinedWeights`) and passed as
    /// `weights`: one d × C product per row then costs less than x·W0 plus (x·A)·B. Without a
    /// head, the two thin products (x·A)·B are used and W is never formed.
    ///
    /// With `topK` > 0 it also writes each row's `topK` most probable classes and probabilities
    /// (descending) into `topClasses` and `topProbabilities` (`rows × topK` each), computed in
    /// the same parallel pass as the softmax. `kernel: false` runs the portable Swift softmax
    /// instead of the per-CPU C kernel (the two agree within 1e-6; benchmarks compare them).
    public func regenerate(
        _ x: UnsafePointer<Float>, rows: Int, weights: [Float]?, into out: UnsafeMutablePointer<Float>,
        topK: Int = 0, topClasses: UnsafeMutablePointer<Int32>? = nil, topProbabilities: UnsafeMutablePointer<Float>? = nil,
        kernel: Bool = true
    ) {
        let d = dimension, c = classes, r = rank
        let batch = 1024
        var hidden = [Float](repeating: 0, count: batch * r)
        var start = 0
        while start < rows {
            let count = min(batch, rows - start)
            let xs = x + start * d
            let os = out + start * c
            if let weights {
                weights.withUnsafeBufferPointer { w in LinearAlgebra.gemm(xs, w.baseAddress!, os, m: count, n: c, k: d) }
            } else {
                hidden.withUnsafeMutableBufferPointer { h in
                    a.withUnsafeBufferPointer { av in LinearAlgebra.gemm(xs, av.baseAddress!, h.baseAddress!, m: count, n: r, k: d) }
                    b.withUnsafeBufferPointer { bv in LinearAlgebra.gemm(h.baseAddress!, bv.baseAddress!, os, m: count, n: c, k: r) }
                }
            }
            bias.withUnsafeBufferPointer { bv in
                LinearAlgebra.softmaxRows(
                    os, rows: count, columns: c, bias: bv.baseAddress, scale: 1 / temperature, topK: topK,
                    topClasses: topClasses.map { $0 + start * topK }, topProbabilities: topProbabilities.map { $0 + start * topK },
                    kernel: kernel)
            }
            start += count
        }
    }

    /// W = s·W0 + A·B (d × C), for regenerating with a head.
    public func combinedWeights(head: [Float]) -> [Float] {
        var w = head.map { $0 * scale }
        w.withUnsafeMutableBufferPointer { out in
            a.withUnsafeBufferPointer { av in
                b.withUnsafeBufferPointer { bv in
                    LinearAlgebra.gemm(av.baseAddress!, bv.baseAddress!, out.baseAddress!, m: dimension, n: classes, k: rank, beta: 1)
                }
            }
        }
        return w
    }

    /// The regenerated labels of `rows` embeddings, as a new array.
    public func regenerate(_ x: [Float], rows: Int, head: [Float]?) -> [Float] {
        var out = [Float](repeating: 0, count: rows * classes)
        let weights = head.map { combinedWeights(head: $0) }
        x.withUnsafeBufferPointer { xv in out.withUnsafeMutableBufferPointer { regenerate(xv.baseAddress!, rows: rows, weights: weights, into: $0.baseAddress!) } }
        return out
    }
}
