import Foundation
import LabelDB

/// Permissive against conservative kNN labelling on a synthetic mixed-provenance corpus, and the
/// fraction of queries whose permissive label is strictly lower while the output stays λ-similar.
///
/// The corpus: C classes, each a Gaussian cluster. Sources: `public` (no tags) covers every class;
/// `licensed:a` and `licensed:b` are drawn from the same clusters (redundant with public data);
/// `customer:x` and `pii` each own clusters of their own that no public sample covers (unique).
/// Every source labels its samples with a noisy teacher distribution peaked on the true class.
/// Queries are drawn near samples of every source, in proportion.
struct FlowBenchmark {
    var count = 100_000
    var dimension = 64
    var classes = 20
    var queries = 256
    var k = 10
    var directory = "/tmp/labeldb-flow-bench"

    func run() throws {
        try? FileManager.default.removeItem(atPath: directory)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        var rng = SplitMix64(seed: 9)
        func gaussian() -> Float {
            let u1 = max(Double.random(in: 0..<1, using: &rng), 1e-300), u2 = Double.random(in: 0..<1, using: &rng)
            return Float((-2 * log(u1)).squareRoot() * cos(2 * .pi * u2))
        }
        // Shared clusters (classes) and unique clusters owned by customer:x and pii.
        let shared = (0..<classes).map { _ in (0..<dimension).map { _ in gaussian() } }
        let unique = (0..<6).map { _ in (0..<dimension).map { _ in gaussian() } }
        let sources: [(name: String, taint: TaintLabel, share: Double, ownClusters: [Int]?)] = [
            ("public", .public, 0.5, nil),
            ("licensed:a", TaintLabel(secrecy: ["licensed:a"], integrity: []), 0.2, nil),
            ("licensed:b", TaintLabel(secrecy: ["licensed:b"], integrity: []), 0.15, nil),
            ("customer:x", TaintLabel(secrecy: ["customer:x"], integrity: []), 0.1, [0, 1, 2]),
            ("pii", TaintLabel(secrecy: ["pii"], integrity: []), 0.05, [3, 4, 5]),
        ]
        var embeddings: [Float] = [], taints: [TaintLabel] = [], soft: [Float] = []
        embeddings.reserveCapacity(count * dimension)
        var rowSource: [Int] = []
        for i in 0..<count {
            var pick = Double(i) / Double(count), s = 0
            while s < sources.count - 1 && pick >= sources[s].share { pick -= sources[s].share; s += 1 }
            let source = sources[s]
            let cls = Int.random(in: 0..<classes, using: &rng)
            let centre: [Float]
            if let own = source.ownClusters {
                let u = own[Int.random(in: 0..<own.count, using: &rng)]
                centre = unique[u]
            } else {
                centre = shared[cls]
            }
            // Unique clusters are labelled by the cluster (a class of their own mapping).
            let label = source.ownClusters == nil ? cls : (centre == unique[0] || centre == unique[3] ? 0 : cls % classes)
            for j in 0..<dimension { embeddings.append(centre[j] + 0.6 * gaussian()) }
            var p = (0..<classes).map { _ in Float.random(in: 0...0.3, using: &rng) }
            p[label] += 3
            let total = p.reduce(0, +)
            soft += p.map { $0 / total }
            taints.append(source.taint)
            rowSource.append(s)
        }
        let ids = (1...UInt64(count)).map { $0 }
        let store = try Store.create(at: directory + "/store", schema: try Schema(dimension: dimension, classes: (0..<classes).map { "c\($0)" }))
        defer { store.close() }
        try store.write(clearance: .all) { tx in
            try tx.put(SampleBatch(ids: ids, embeddings: embeddings, taints: taints), mode: .insert)
            try tx.importLabels(.soft(soft), ids: ids, into: "teacher", codec: .denseF16, agent: "bench")
        }
        // Queries near random samples (so in proportion to the sources).
        var q: [Float] = []
        var querySource: [Int] = []
        for _ in 0..<queries {
            let row = Int.random(in: 0..<count, using: &rng)
            for j in 0..<dimension { q.append(embeddings[row * dimension + j] + 0.3 * gaussian()) }
            querySource.append(rowSource[row])
        }
        warm(directory + "/store")
        let reference = LabelSetReference(name: "teacher")
        func label(_ mode: KNNFlowMode, lambda: Float) throws -> (seconds: Double, results: [KNNLabelResult]) {
            try store.read(clearance: .all) { tx in
                var results: [KNNLabelResult] = []
                let seconds = try time { results = try tx.knnLabels(of: q, queries: queries, k: k, from: reference, mode: mode, lambda: lambda) }
                return (seconds, results)
            }
        }
        func plain() throws -> Double {
            try store.read(clearance: .all) { tx in try time { _ = try tx.nearestNeighbors(of: q, queries: queries, k: k, metric: .cosine) } }
        }
        _ = try label(.conservative, lambda: 0.1)
        var out: [String: JSONValue] = ["n": count.json, "dim": dimension.json, "classes": classes.json, "queries": queries.json, "k": k.json]
        var timesPlain: [Double] = [], timesConservative: [Double] = [], timesPermissive: [Double] = []
        for _ in 0..<3 {
            timesPlain.append(try plain())
            timesConservative.append(try label(.conservative, lambda: 0.1).seconds)
            timesPermissive.append(try label(.permissive, lambda: 0.1).seconds)
        }
        out["knn_s"] = median(timesPlain).json
        out["conservative_s"] = median(timesConservative).json
        out["permissive_s"] = median(timesPermissive).json
        out["permissive_over_conservative"] = (median(timesPermissive) / median(timesConservative)).json
        for lambda: Float in [0.05, 0.1] {
            let results = try label(.permissive, lambda: lambda).results
            let lower = results.filter { $0.label != $0.conservativeLabel }
            let similar = results.allSatisfy { r in
                argmaxIndex(r.probabilities) == argmaxIndex(r.fullProbabilities) && totalVariationDistance(r.probabilities, r.fullProbabilities) <= lambda
            }
            let key = "lambda_\(lambda)"
            out[key + "_strictly_lower"] = (Double(lower.count) / Double(queries)).json
            out[key + "_public_label"] = (Double(results.filter { $0.label.secrecy == .none }.count) / Double(queries)).json
            out[key + "_conservative_public"] = (Double(results.filter { $0.conservativeLabel.secrecy == .none }.count) / Double(queries)).json
            out[key + "_all_lambda_similar"] = .bool(similar)
            out[key + "_mean_contexts_tried"] = (Double(results.map(\.contextsTried).reduce(0, +)) / Double(queries)).json
            // By the source of the query's seed sample: redundant sources should lower, unique ones not.
            for (s, source) in sources.enumerated() {
                let mine = results.indices.filter { querySource[$0] == s }
                guard !mine.isEmpty else { continue }
                out[key + "_strictly_lower_\(source.name)"] = (Double(mine.filter { results[$0].label != results[$0].conservativeLabel }.count) / Double(mine.count)).json
            }
        }
        emit(out)
    }

    func argmaxIndex(_ p: [Float]) -> Int { p.indices.max { p[$0] < p[$1] || (p[$0] == p[$1] && $0 > $1) } ?? 0 }
    func totalVariationDistance(_ p: [Float], _ q: [Float]) -> Float { zip(p, q).reduce(0) { $0 + abs($1.0 - $1.1) } / 2 }
}

/// A filtered query over a large store answered from the class index against the same filter
/// forced to scan (wrapped so its top-1 condition is no longer a top-level conjunct).
struct FilterBenchmark {
    var count = 1_000_000
    var classes = 100
    var directory = "/tmp/labeldb-filter-bench"

    func run() throws {
        try? FileManager.default.removeItem(atPath: directory)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        var rng = SplitMix64(seed: 4)
        let dimension = 8
        let ids = (1...UInt64(count)).map { $0 }
        let store = try Store.create(at: directory + "/store", schema: try Schema(dimension: dimension, classes: (0..<classes).map { "c\($0)" }))
        defer { store.close() }
        var soft: [Float] = []
        soft.reserveCapacity(count * classes)
        for _ in 0..<count {
            var p = (0..<classes).map { _ in Float.random(in: 0...1, using: &rng) }
            p[Int.random(in: 0..<classes, using: &rng)] += Float.random(in: 0...20, using: &rng)
            let total = p.reduce(0, +)
            soft += p.map { $0 / total }
        }
        let embeddings = (0..<(count * dimension)).map { _ in Float.random(in: -1...1, using: &rng) }
        try store.write(clearance: .all) { tx in
            try tx.put(SampleBatch(ids: ids, embeddings: embeddings), mode: .insert)
            try tx.importLabels(.soft(soft), ids: ids, into: "teacher", codec: .topKF16(5), agent: "bench")
        }
        warm(directory + "/store")
        let indexed = try QueryExpression(parsing: "label(teacher).top1 = 'c7' and label(teacher).confidence < 0.3")
        let scanned = try QueryExpression(parsing: "(label(teacher).top1 = 'c7' or id < 0) and label(teacher).confidence < 0.3")
        func run(_ filter: QueryExpression) throws -> (Double, Int, QueryPlan) {
            try store.read(clearance: .all) { tx in
                var n = 0
                var plan = QueryPlan()
                let seconds = try time { plan = try tx.query(filter) { _ in n += 1 } }
                return (seconds, n, plan)
            }
        }
        _ = try run(indexed)
        var a: [Double] = [], b: [Double] = []
        var rows = (0, 0)
        var plans = (QueryPlan(), QueryPlan())
        for _ in 0..<3 {
            let (ta, na, pa) = try run(indexed)
            let (tb, nb, pb) = try run(scanned)
            a.append(ta); b.append(tb); rows = (na, nb); plans = (pa, pb)
        }
        emit(["n": count.json, "classes": classes.json, "rows": rows.0.json, "rows_scan": rows.1.json,
              "index_s": median(a).json, "scan_s": median(b).json, "speedup": (median(b) / median(a)).json,
              "index_examined": plans.0.examined.json, "scan_examined": plans.1.examined.json])
    }
}
