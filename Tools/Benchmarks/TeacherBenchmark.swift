import Foundation
import LabelDB

/// Issue 13's benchmarks. Agreement of three 1,000-class soft label sets (`topk:5:f16`) in rows/s,
/// against a plain scan of the same three sets through the same read path (every row decoded) in
/// the same run; and Dawid–Skene at N samples × 3 hard sources × 100 classes: iterations per
/// second, its time beyond a `mean` consensus of the same sources (which reads and writes the
/// same rows), and how well it recovers the planted accuracies. Plus `labels issues` rows/s on
/// the first corpus (given = the first set's top-1, probabilities = the second set).
struct TeacherBenchmark {
    var count = 1_000_000
    var directory = "/tmp/labeldb-teacher-bench"

    func run() throws {
        try? FileManager.default.removeItem(atPath: directory)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        var results: [String: JSONValue] = ["samples": count.json]
        results["agreement"] = try agreement()
        results["dawid_skene"] = try dawidSkene()
        emit(results)
    }

    /// A store of `count` samples (8-dimensional embeddings: the labels are what is measured).
    func makeStore(_ name: String, classes: Int) throws -> Store {
        let store = try Store.create(at: directory + "/" + name, schema: Schema(dimension: 8, classes: (0..<classes).map { "class_\($0)" }))
        var rng = SplitMix64(seed: 1)
        let embeddings = (0..<(count * 8)).map { _ in Float(rng.next() % 1000) / 1000 }
        try store.write(clearance: .all) { tx in _ = try tx.put(SampleBatch(ids: ids, embeddings: embeddings), mode: .insert) }
        return store
    }

    var ids: [UInt64] { (1...UInt64(count)).map { $0 } }

    /// Three teachers over 1,000 classes, right with probability 0.9, 0.8, 0.7 about a hidden
    /// truth; each row's top 5 and the leftover mass, as a compact import.
    func agreement() throws -> JSONValue {
        let c = 1000
        let store = try makeStore("agree", classes: c)
        defer { store.close() }
        var rng = SplitMix64(seed: 2)
        let truth = (0..<count).map { _ in Int(rng.next() % UInt64(c)) }
        var importSeconds = 0.0
        for (s, accuracy) in [0.9, 0.8, 0.7].enumerated() {
            var classes: [Int] = [], probabilities: [Float] = [], leftover: [Float] = []
            for t in truth {
                let top = Double(rng.next() % 1_000_000) / 1e6 < accuracy ? t : Int(rng.next() % UInt64(c))
                let shift = Int(rng.next() % 100)
                let others = (0..<4).map { j -> Int in var k = (top + 1 + shift + 7 * j) % c; if k == top { k = (k + 500) % c }; return k }
                let p1 = 0.4 + Float(rng.next() % 500) / 1000, m = 1 - p1
                classes += [top] + others
                probabilities += [p1, 0.4 * m, 0.2 * m, 0.1 * m, 0.05 * m]
                leftover.append(0.25 * m)
            }
            let rows = TopKRows(k: 5, classes: classes, probabilities: probabilities, leftover: leftover)
            importSeconds += try time {
                try store.write(clearance: .all) { tx in _ = try tx.importLabels(.topK(rows), ids: ids, into: "T\(s)", codec: .topKF16(5), agent: "teacher\(s)") }
            }
        }
        let references = (0..<3).map { LabelSetReference(name: "T\($0)") }
        // The plain scan: the same query path agreement uses, every row of the three sets decoded.
        var sink = 0.0
        let scanSeconds = try time {
            try store.read(clearance: .all) { tx in
                _ = try tx.query(nil, labels: references) { _, labels in
                    for label in labels { sink += Double(label!.distribution(classCount: c)[0]) }
                }
            }
        }
        var kappa = 0.0
        let agreeSeconds = try time {
            let result = try store.read(clearance: .all) { try $0.agreement(of: references) }
            kappa = result.fleissKappa ?? .nan
        }
        // `labels issues` needs a hard given set: the first teacher's top-1 (written untimed).
        try store.write(clearance: .all) { tx in
            var hard: [Int] = []
            _ = try tx.query(nil, labels: [references[0]]) { _, labels in hard.append(labels[0]!.top1!.classIndex) }
            _ = try tx.importLabels(.hard(hard), ids: ids, into: "H", agent: "bench")
        }
        var flagged = 0
        let issuesSeconds = try time {
            flagged = try store.read(clearance: .all) { try $0.labelIssues(given: LabelSetReference(name: "H"), probs: references[1]) }.issues.count
        }
        return ["classes": c.json, "codec": .string("topk:5:f16"), "import_rows_per_s": (Double(3 * count) / importSeconds).json,
                "scan_rows_per_s": (Double(count) / scanSeconds).json, "agreement_rows_per_s": (Double(count) / agreeSeconds).json,
                "agreement_vs_scan": (scanSeconds / agreeSeconds).json, "fleiss_kappa": kappa.json,
                "issues_rows_per_s": (Double(count) / issuesSeconds).json, "issues_flagged": flagged.json, "sink": sink.json]
    }

    /// Three hard labellers over 100 classes, right with probability 0.9, 0.75, 0.6, else a
    /// uniformly random other class.
    func dawidSkene() throws -> JSONValue {
        let c = 100, planted = [0.9, 0.75, 0.6]
        let store = try makeStore("ds", classes: c)
        defer { store.close() }
        var rng = SplitMix64(seed: 3)
        let truth = (0..<count).map { _ in Int(rng.next() % UInt64(c)) }
        for (s, accuracy) in planted.enumerated() {
            let votes = truth.map { t in Double(rng.next() % 1_000_000) / 1e6 < accuracy ? t : (t + 1 + Int(rng.next() % UInt64(c - 1))) % c }
            try store.write(clearance: .all) { tx in _ = try tx.importLabels(.hard(votes), ids: ids, into: "L\(s)", agent: "labeller\(s)") }
        }
        let sources = (0..<3).map { LabelSetReference(name: "L\($0)") }
        let meanSeconds = try time {
            try store.write(clearance: .all) { tx in _ = try tx.consensus(into: "M", from: sources, method: .mean, agent: "bench") }
        }
        var report: ConsensusReport?
        let dsSeconds = try time {
            report = try store.write(clearance: .all) { tx in try tx.consensus(into: "D", from: sources, method: .dawidSkene, agent: "bench") }
        }
        let iterations = report!.iterations!
        return ["classes": c.json, "sources": 3.json, "mean_consensus_s": meanSeconds.json, "dawid_skene_s": dsSeconds.json,
                "iterations": iterations.json, "iterations_per_s": (Double(iterations) / max(dsSeconds - meanSeconds, 1e-9)).json,
                "planted_accuracy": .array(planted.map(\.json)), "estimated_accuracy": .array(report!.sourceAccuracy!.map(\.json))]
    }
}
