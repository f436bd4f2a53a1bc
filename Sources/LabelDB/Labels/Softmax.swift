import Foundation

/// Row-wise softmax(z / T), numerically stable; rejects non-finite logits.
public func softmaxRows(_ z: inout [Float], columns: Int, temperature: Float, file: String) throws {
    let rows = z.count / max(columns, 1)
    for r in 0..<rows {
        let base = r * columns
        var m = -Float.infinity
        for j in 0..<columns {
            let v = z[base + j]
            guard v.isFinite else { throw InputError(file: file, location: "row \(r), column \(j)", reason: "logit is \(v)") }
            guard (v / temperature).isFinite else {
                throw InputError(file: file, location: "row \(r), column \(j)", reason: "logit \(v) / temperature \(temperature) overflows a float; use a larger temperature")
            }
            m = max(m, v / temperature)
        }
        var sum: Double = 0
        for j in 0..<columns {
            let e = exp(z[base + j] / temperature - m)
            z[base + j] = e
            sum += Double(e)
        }
        let scale = Float(1 / sum)
        for j in 0..<columns { z[base + j] *= scale }
    }
}

