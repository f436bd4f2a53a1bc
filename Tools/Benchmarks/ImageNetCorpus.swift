import COpenBLAS
import LabelDB
import Foundation

/// An ImageNet-shaped synthetic corpus: 1000 classes, 512-d embeddings from a Gaussian mixture
/// (one centre per class), and a teacher that is *not* linear in the embeddings: a random
/// two-layer network, logits = tanh(x·W1 + b1)·W2, scaled so its distributions have the entropy of
/// a real ImageNet teacher (mean top-1 probability about 0.6, entropy about 1.5 nats).
struct ImageNetCorpus {
    let count: Int
    let dimension: Int
    let classes: Int
    /// `count × dimension`, row-major.
    var embeddings: [Float]
    /// `count × classes` teacher probabilities, row-major.
    var teacher: [Float]
    /// The mixture component each row was drawn from.
    var components: [Int]

    init(count: Int, dimension: Int = 512, classes: Int = 1000, hidden: Int = 256, seed: UInt64 = 20261125) {
        self.count = count
        self.dimension = dimension
        self.classes = classes
        var rng = SplitMix64(seed: seed)
        func gaussian() -> Float {
            let u1 = max(Double(rng.next() >> 11) / Double(1 << 53), 1e-300)
            let u2 = Double(rng.next() >> 11) / Double(1 << 53)
            return Float((-2 * log(u1)).squareRoot() * cos(2 * .pi * u2))
        }
        // Classes come in families of ten (like dog breeds): a family centre plus a class offset,
        // so the teacher's confusions concentrate on siblings as a real teacher's do.
        let families = (0..<(classes / 10 + 1) * dimension).map { _ in gaussian() }
        var centres = [Float](repeating: 0, count: classes * dimension)
        for c in 0..<classes { for j in 0..<dimension { centres[c * dimension + j] = families[(c / 10) * dimension + j] + 0.7 * gaussian() } }
        components = (0..<count).map { _ in Int(rng.next() % UInt64(classes)) }
        embeddings = [Float](repeating: 0, count: count * dimension)
        for row in 0..<count {
            let c = components[row]
            for j in 0..<dimension { embeddings[row * dimension + j] = centres[c * dimension + j] + 0.7 * gaussian() }
        }
        // Teacher: a random MLP. W2 is tied to the class centres through W1 so the teacher mostly
        // agrees with the mixture component, but non-linearly and with realistic confusion.
        let w1 = (0..<dimension * hidden).map { _ in gaussian() / Float(dimension).squareRoot() }
        let b1 = (0..<hidden).map { _ in 0.1 * gaussian() }
        var centreHidden = [Float](repeating: 0, count: classes * hidden)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(classes), Int32(hidden), Int32(dimension),
                    1, centres, Int32(dimension), w1, Int32(hidden), 0, &centreHidden, Int32(hidden))
        for i in 0..<centreHidden.count { centreHidden[i] = tanh(centreHidden[i] + b1[i % hidden]) }
        var w2 = [Float](repeating: 0, count: hidden * classes)   // hidden × classes = centreHidden transposed, plus noise
        for c in 0..<classes { for h in 0..<hidden { w2[h * classes + c] = centreHidden[c * hidden + h] + 0.3 * gaussian() } }
        var h = [Float](repeating: 0, count: count * hidden)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(count), Int32(hidden), Int32(dimension),
                    1, embeddings, Int32(dimension), w1, Int32(hidden), 0, &h, Int32(hidden))
        for i in 0..<h.count { h[i] = tanh(h[i] + b1[i % hidden]) }
        teacher = [Float](repeating: 0, count: count * classes)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(count), Int32(classes), Int32(hidden),
                    1, h, Int32(hidden), w2, Int32(classes), 0, &teacher, Int32(classes))
        // Temperature chosen for realistic entropy (measured and printed by the benchmark).
        let scale: Float = 0.11
        for row in 0..<count {
            let base = row * classes
            var m = -Float.infinity
            for j in 0..<classes { m = max(m, teacher[base + j] * scale) }
            var sum: Float = 0
            for j in 0..<classes { let e = exp(teacher[base + j] * scale - m); teacher[base + j] = e; sum += e }
            for j in 0..<classes { teacher[base + j] /= sum }
        }
    }

    /// Mean top-1 probability and mean entropy (nats) of the teacher.
    func teacherStatistics() -> (top1: Double, entropy: Double) {
        var top = 0.0, entropy = 0.0
        for row in 0..<count {
            var best: Float = 0, h = 0.0
            for j in 0..<classes {
                let p = teacher[row * classes + j]
                best = max(best, p)
                if p > 0 { h -= Double(p) * log(Double(p)) }
            }
            top += Double(best)
            entropy += h
        }
        return (top / Double(count), entropy / Double(count))
    }
}
