import COpenBLAS
import Foundation
import LabelDB

/// Issue 12 §3: regeneration (rank 64, 1,000 classes, softmax + top-5, batches of 1,024) against
/// bare `cblas_sgemm` calls of the same shapes, with the per-CPU C kernel and with the portable
/// Swift softmax, interleaved in one run.
struct RegenerationBenchmark {
    var rows = 65_536
    var dimension = 512
    var classes = 1000
    var rank = 64
    var reps = 5

    func run() throws {
        var rng = SplitMix64(seed: 7)
        let d = dimension, c = classes, r = rank, batch = 1024
        func random(_ n: Int, _ scale: Float) -> [Float] { (0..<n).map { _ in Float.random(in: -scale...scale, using: &rng) } }
        let x = random(rows * d, 1)
        let model = ProjectorModel(dimension: d, classes: c, rank: r, a: random(d * r, 0.1), b: random(r * c, 0.5), bias: random(c, 0.1))
        var out = [Float](repeating: 0, count: batch * c), hidden = [Float](repeating: 0, count: batch * r)
        var topClasses = [Int32](repeating: 0, count: batch * 5), topProbabilities = [Float](repeating: 0, count: batch * 5)
        var sink = 0
        func regenerate(kernel: Bool) {
            x.withUnsafeBufferPointer { xv in
                out.withUnsafeMutableBufferPointer { o in
                    topClasses.withUnsafeMutableBufferPointer { tc in
                        topProbabilities.withUnsafeMutableBufferPointer { tp in
                            for start in stride(from: 0, to: rows, by: batch) {
                                model.regenerate(xv.baseAddress! + start * d, rows: batch, weights: nil, into: o.baseAddress!, topK: 5,
                                                 topClasses: tc.baseAddress!, topProbabilities: tp.baseAddress!, kernel: kernel)
                                sink &+= Int(tc[0])
                            }
                        }
                    }
                }
            }
        }
        func bare() {
            x.withUnsafeBufferPointer { xv in
                for start in stride(from: 0, to: rows, by: batch) {
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(batch), Int32(r), Int32(d), 1,
                                xv.baseAddress! + start * d, Int32(d), model.a, Int32(r), 0, &hidden, Int32(r))
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(batch), Int32(c), Int32(r), 1,
                                hidden, Int32(r), model.b, Int32(c), 0, &out, Int32(c))
                }
            }
        }
        let passes: [(String, () -> Void)] = [("sgemm", bare), ("kernel", { regenerate(kernel: true) }), ("swift", { regenerate(kernel: false) })]
        for (_, pass) in passes { pass() }
        var times: [String: [Double]] = [:]
        for _ in 0..<reps { for (name, pass) in passes { times[name, default: []].append(time(pass)) } }
        let labels = Double(rows)
        var result: [String: JSONValue] = ["benchmark": "regeneration", "rows": rows.json, "dim": d.json, "classes": c.json, "rank": r.json]
        for (name, values) in times { result["\(name)_labels_s"] = (labels / median(values)).json }
        result["kernel_vs_sgemm"] = (median(times["sgemm"]!) / median(times["kernel"]!)).json
        result["swift_vs_sgemm"] = (median(times["sgemm"]!) / median(times["swift"]!)).json
        result["sink"] = .int(Int64(sink & 0xFF))
        emit(result)
    }
}
