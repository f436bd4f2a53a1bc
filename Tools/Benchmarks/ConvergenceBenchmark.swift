import Foundation
import LabelDB

/// Issue 12 §4: does a projector fit with the default options converge? For each corpus size, the
/// mean KL over all rows of a default fit (step budget, early stopping) against a 1,000-epoch fit
/// of the same corpus, rank and head. The corpus is shaped like a small real one (128-d
/// embeddings, 40 classes, a teacher that no rank-16 correction of the head reproduces exactly).
struct ConvergenceBenchmark {
    var counts = [1_000, 10_000]
    var epochs = 1_000

    func run() throws {
        var rows: [JSONValue] = []
        for n in counts {
            let (x, p, head) = Self.corpus(rows: n, dimension: 128, classes: 40, seed: UInt64(n))
            func fit(_ epochs: Int?) throws -> (ProjectorFitReport, Double) {
                var options = ProjectorFitOptions(rank: 16)
                options.epochs = epochs
                let start = Date()
                let (_, report, _) = try ProjectorFitter.fit(embeddings: x, teacher: p, rows: n, dimension: 128, classes: 40, head: head, options: options)
                return (report, Date().timeIntervalSince(start))
            }
            let (defaults, defaultSeconds) = try fit(nil)
            let (long, longSeconds) = try fit(epochs)
            rows.append(.object([
                "rows": n.json, "default_mean_kl": defaults.trainMeanKL.json, "default_top1": defaults.trainTop1.json,
                "default_steps": (defaults.steps ?? 0).json, "default_stop": .string(defaults.stopReason ?? ""), "default_seconds": defaultSeconds.json,
                "long_epochs": epochs.json, "long_mean_kl": long.trainMeanKL.json, "long_top1": long.trainTop1.json,
                "long_steps": (long.steps ?? 0).json, "long_seconds": longSeconds.json,
                "closed_form_mean_kl": defaults.closedFormMeanKL.json,
                "default_over_long": (defaults.trainMeanKL / long.trainMeanKL).json,
            ]))
        }
        emit(["benchmark": .string("convergence"), "fits": .array(rows)])
    }

    /// Embeddings from 40 Gaussian clusters; the teacher is softmax(x·W / 0.7) for a random full-rank
    /// W, with the head a noisy copy of W, so a rank-16 correction helps but cannot be exact.
    static func corpus(rows n: Int, dimension d: Int, classes c: Int, seed: UInt64) -> (x: [Float], p: [Float], head: [Float]) {
        var rng = SplitMix64(seed: seed)
        func gaussian() -> Float {
            let u1 = max(Double(rng.next() >> 11) / Double(1 << 53), 1e-300)
            let u2 = Double(rng.next() >> 11) / Double(1 << 53)
            return Float((-2 * log(u1)).squareRoot() * cos(2 * .pi * u2))
        }
        let centres = (0..<(c * d)).map { _ in gaussian() }
        var x = [Float](repeating: 0, count: n * d)
        for i in 0..<n {
            let k = i % c
            for j in 0..<d { x[i * d + j] = centres[k * d + j] + 0.8 * gaussian() }
        }
        let w = (0..<(d * c)).map { _ in gaussian() / Float(d).squareRoot() }
        let head = w.map { $0 + 0.5 * gaussian() / Float(d).squareRoot() }
        var p = [Float](repeating: 0, count: n * c)
        for i in 0..<n {
            var z = [Float](repeating: 0, count: c)
            for j in 0..<d { let xv = x[i * d + j]; for k in 0..<c { z[k] += xv * w[j * c + k] } }
            let m = z.max()!
            var total: Float = 0
            for k in 0..<c { z[k] = exp((z[k] - m) / 0.7); total += z[k] }
            for k in 0..<c { p[i * c + k] = z[k] / total }
        }
        return (x, p, head)
    }
}
