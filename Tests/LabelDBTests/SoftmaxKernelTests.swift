import Foundation
import Testing
@testable import LabelDB

/// Issue 12 §3: the C softmax/top-K kernel (built per CPU, chosen at load time) gives the Swift
/// scalar path's results within 1e-6, for widths that are and are not multiples of its lanes.
@Suite struct SoftmaxKernelTests {
    @Test("kernel and Swift path agree within 1e-6, top-K included", arguments: [1000, 37, 16, 3])
    func agree(columns: Int) {
        var rng = SplitMix64(seed: UInt64(columns))
        let rows = 50
        let z = (0..<(rows * columns)).map { _ in Float.random(in: -30...30, using: &rng) }
        let bias = (0..<columns).map { _ in Float.random(in: -2...2, using: &rng) }
        let k = min(5, columns)
        func run(_ kernel: Bool) -> ([Float], [Int32], [Float]) {
            var out = z, classes = [Int32](repeating: 0, count: rows * k), probs = [Float](repeating: 0, count: rows * k)
            out.withUnsafeMutableBufferPointer { o in
                bias.withUnsafeBufferPointer { b in
                    classes.withUnsafeMutableBufferPointer { c in
                        probs.withUnsafeMutableBufferPointer { p in
                            LinearAlgebra.softmaxRows(o.baseAddress!, rows: rows, columns: columns, bias: b.baseAddress, scale: 0.7,
                                                      topK: k, topClasses: c.baseAddress, topProbabilities: p.baseAddress, kernel: kernel)
                        }
                    }
                }
            }
            return (out, classes, probs)
        }
        let (fast, fastClasses, fastProbs) = run(true)
        let (reference, referenceClasses, referenceProbs) = run(false)
        var worst: Float = 0
        for i in fast.indices { worst = max(worst, abs(fast[i] - reference[i])) }
        #expect(worst <= 1e-6, "largest difference \(worst)")
        for r in 0..<rows {
            let sum = fast[(r * columns)..<((r + 1) * columns)].reduce(0, +)
            #expect(abs(sum - 1) < 1e-5)
        }
        #expect(fastClasses == referenceClasses)
        for i in fastProbs.indices { #expect(abs(fastProbs[i] - referenceProbs[i]) <= 1e-6) }
    }

    @Test("very negative logits give exact zeros, not denormal garbage, and no NaN")
    func extremes() {
        var z: [Float] = [0, -200, -90, -86, 50, 49] + [Float](repeating: -1000, count: 26)
        z.withUnsafeMutableBufferPointer { LinearAlgebra.softmaxRows($0.baseAddress!, rows: 1, columns: 32) }
        #expect(z.allSatisfy { $0.isFinite && $0 >= 0 })
        #expect(z[1] == 0 && z[6] == 0)
        #expect(abs(z.reduce(0, +) - 1) < 1e-6)
    }
}
