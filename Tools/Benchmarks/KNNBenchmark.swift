import COpenBLAS
import Foundation
import LabelDB

/// Exact kNN throughput against a bare `cblas_sgemm` of the same shapes, in the same run: the
/// queries × dimension matrix against every stored row (by blocks of the same size).
struct KNNBenchmark {
    var count = 200_000
    var dimension = 512
    var queries = 256
    var k = 10
    var directory = "/tmp/labeldb-knn-bench"

    func run() throws {
        try? FileManager.default.removeItem(atPath: directory)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        var rng = SplitMix64(seed: 5)
        let embeddings = (0..<(count * dimension)).map { _ in Float(Int32(truncatingIfNeeded: rng.next())) * (1 / 2_147_483_648) }
        let schema = try Schema(dimension: dimension, classes: ["a"])
        let store = try Store.create(at: directory + "/store", schema: schema)
        defer { store.close() }
        try store.write(clearance: .all) { tx in _ = try tx.put(SampleBatch(ids: (1...UInt64(count)).map { $0 }, embeddings: embeddings), mode: .insert) }
        let q = (0..<(queries * dimension)).map { _ in Float(Int32(truncatingIfNeeded: rng.next())) * (1 / 2_147_483_648) }
        warm(directory + "/store")
        var sink = 0
        func ours() throws -> Double {
            try store.read(clearance: .all) { tx in try time { sink &+= Int(try tx.nearestNeighbors(of: q, queries: queries, k: k, metric: .cosine)[0][0].id) } }
        }
        let block = schema.rowsPerBlock
        var out = [Float](repeating: 0, count: queries * block)
        func bare() -> Double {
            time {
                embeddings.withUnsafeBufferPointer { e in
                    for start in stride(from: 0, to: count, by: block) {
                        let n = min(block, count - start)
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(queries), Int32(n), Int32(dimension), 1,
                                    q, Int32(dimension), e.baseAddress! + start * dimension, Int32(dimension), 0, &out, Int32(n))
                    }
                }
            }
        }
        _ = try ours(); _ = bare()
        var a: [Double] = [], b: [Double] = []
        for _ in 0..<3 { a.append(try ours()); b.append(bare()) }
        // The same search under a clearance that hides every 10th sample: partition lookups, and
        // blocks with hidden rows copied and zeroed before the GEMM.
        let hidden = stride(from: 10, through: count, by: 10).map { UInt64($0) }
        try store.write(clearance: .all) { tx in try tx.relabel(hidden, TaintChange(addSecrecy: ["secret"]), agent: "bench") }
        func masked() throws -> Double {
            try store.read(clearance: .public) { tx in try time { sink &+= Int(try tx.nearestNeighbors(of: q, queries: queries, k: k, metric: .cosine)[0][0].id) } }
        }
        _ = try masked()
        var m: [Double] = []
        for _ in 0..<3 { m.append(try masked()) }
        emit(["n": count.json, "dim": dimension.json, "queries": queries.json, "k": k.json,
              "knn_s": median(a).json, "sgemm_s": median(b).json, "ratio": (median(b) / median(a)).json,
              "queries_per_s": (Double(queries) / median(a)).json,
              "knn_public_clearance_s": median(m).json, "ratio_public_clearance": (median(b) / median(m)).json,
              "sink": .int(Int64(sink & 0xFF))])
    }
}
