import COpenBLAS
import Foundation
import LabelDB

/// The projector benchmarks on the ImageNet-shaped corpus: held-out KL and top-1 agreement vs
/// rank, bytes (projector + corrections) ÷ dense f16 labels with the bound met on every sample,
/// fit time, and regeneration throughput against a bare `cblas_sgemm` of the same shapes.
struct ProjectorBenchmark {
    var count = 100_000
    var directory = "/tmp/labeldb-projector-bench"
    var ranks = [8, 16, 32, 64, 128]
    var epochs: Int? = 4
    var maxKL = 0.05
    /// The codec the teacher label set is stored in (the fit reads it decoded).
    var teacherCodec = "dense:f16"
    /// When set, each fit runs as `labeldb projector fit` in a child process (this `labeldb`),
    /// which reports its peak anonymous memory beside its peak RSS; no regeneration timing.
    var cli: String? = nil
    /// With `cli`: one fit with `--budget BYTES` over the ranks, instead of one fit per rank.
    var budget: Int? = nil
    /// With `cli`: keep a store the last run left in `directory` (same count and codec).
    var reuse = false

    func run() throws {
        if let cli { return try runChildren(cli) }
        try? FileManager.default.removeItem(atPath: directory)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        var corpus = ImageNetCorpus(count: count)
        let d = corpus.dimension, c = corpus.classes
        let store = try makeStore(&corpus)
        defer { store.close() }
        let denseF16 = Double(2 * c * count)
        var rows: [JSONValue] = []
        for rank in ranks {
            var options = ProjectorFitOptions(rank: rank)
            options.holdout = 0.1
            options.seed = 1
            options.epochs = epochs
            let start = now()
            let info = try store.fitProjector("r\(rank)", from: LabelSetReference(name: "teacher"), options: options, maxKL: maxKL, requireTop1: true, clearance: .all)
            let seconds = now() - start
            let r = info.report
            let bytes = info.parameterBytes + info.correctionBytes
            rows.append([
                "rank": rank.json, "train_mean_kl": r.trainMeanKL.json, "holdout_mean_kl": r.holdoutMeanKL.json, "holdout_max_kl": r.holdoutMaxKL.json,
                "holdout_top1": r.holdoutTop1.json, "closed_form_mean_kl": r.closedFormMeanKL.json,
                "corrections": info.corrections.json, "parameter_bytes": info.parameterBytes.json, "correction_bytes": info.correctionBytes.json,
                "bytes_ratio_to_dense_f16": (Double(bytes) / denseF16).json, "fit_s": r.seconds.json, "fit_and_corrections_s": seconds.json,
            ])
            FileHandle.standardError.write(Data("rank \(rank): \(JSONValue.array([rows.last!]).serialized())\n".utf8))
        }

        // Regeneration throughput (rank 64 when fitted, else the last rank; no head), batches of
        // 1,024: softmax and top-5 included.
        let regenRank = ranks.contains(64) ? 64 : ranks.last!
        let model = try store.read(clearance: .all) { tx in try tx.load(ProjectorReference(name: "r\(regenRank)")).model }
        let batch = 1024
        let batches = count / batch
        var out = [Float](repeating: 0, count: batch * c)
        var hidden = [Float](repeating: 0, count: batch * model.rank)
        var sink = 0
        var topClasses = [Int32](repeating: 0, count: batch * 5)
        var topProbabilities = [Float](repeating: 0, count: batch * 5)
        func ours() -> Double {
            time {
                corpus.embeddings.withUnsafeBufferPointer { x in
                    out.withUnsafeMutableBufferPointer { o in
                        topClasses.withUnsafeMutableBufferPointer { tc in
                            topProbabilities.withUnsafeMutableBufferPointer { tp in
                                for b in 0..<batches {
                                    model.regenerate(x.baseAddress! + b * batch * d, rows: batch, weights: nil, into: o.baseAddress!,
                                                     topK: 5, topClasses: tc.baseAddress!, topProbabilities: tp.baseAddress!)
                                    sink &+= Int(tc[0])
                                }
                            }
                        }
                    }
                }
            }
        }
        func bare() -> Double {
            time {
                corpus.embeddings.withUnsafeBufferPointer { x in
                    for b in 0..<batches {
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(batch), Int32(model.rank), Int32(d), 1,
                                    x.baseAddress! + b * batch * d, Int32(d), model.a, Int32(model.rank), 0, &hidden, Int32(model.rank))
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(batch), Int32(c), Int32(model.rank), 1,
                                    hidden, Int32(model.rank), model.b, Int32(c), 0, &out, Int32(c))
                    }
                }
            }
        }
        func softmaxOnly() -> Double {
            time {
                corpus.embeddings.withUnsafeBufferPointer { x in
                    out.withUnsafeMutableBufferPointer { o in
                        for b in 0..<batches {
                            model.regenerate(x.baseAddress! + b * batch * d, rows: batch, weights: nil, into: o.baseAddress!)
                        }
                    }
                }
            }
        }
        _ = ours(); _ = bare()
        var oursTimes: [Double] = [], bareTimes: [Double] = [], noTopK: [Double] = []
        for _ in 0..<3 { oursTimes.append(ours()); bareTimes.append(bare()); noTopK.append(softmaxOnly()) }
        let labels = Double(batches * batch)
        emit([
            "n": count.json, "classes": c.json, "dim": d.json, "max_kl": maxKL.json, "epochs": (epochs ?? 0).json,
            "teacher_codec": .string(teacherCodec), "peak_rss_mb": peakRSSMegabytes().json,
            "ranks": .array(rows),
            "regen_labels_s": (labels / median(oursTimes)).json, "sgemm_labels_s": (labels / median(bareTimes)).json,
            "regen_without_topk_labels_s": (labels / median(noTopK)).json,
            "regen_ratio": (median(bareTimes) / median(oursTimes)).json, "regen_rank": regenRank.json, "sink": .int(Int64(sink & 0xFF)),
        ])
    }
}

extension ProjectorBenchmark {
    /// Creates the store of `corpus` in `directory`: its embeddings, and its teacher as label set
    /// `teacher` (whose floats `corpus` then drops: at ImageNet scale they are 5 GB).
    func makeStore(_ corpus: inout ImageNetCorpus) throws -> Store {
        let ids = (1...UInt64(count)).map { $0 }
        let store = try Store.create(at: directory + "/store", schema: Schema(dimension: corpus.dimension, classes: (0..<corpus.classes).map { "class_\($0)" }))
        try store.write(clearance: .all) { tx in
            _ = try tx.put(SampleBatch(ids: ids, embeddings: corpus.embeddings), mode: .insert)
            try tx.importLabels(.soft(corpus.teacher), ids: ids, into: "teacher", codec: try SoftLabelCodec(parsing: teacherCodec),
                                agent: "bench-teacher", normalize: true)
        }
        corpus.teacher = []
        return store
    }

    /// The fits as `labeldb projector fit` children: what a user runs, measured from outside.
    func runChildren(_ cli: String) throws {
        let path = directory + "/store"
        if !(reuse && FileManager.default.fileExists(atPath: path + "/data.mdb")) {
            try? FileManager.default.removeItem(atPath: directory)
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            var corpus = ImageNetCorpus(count: count)
            try makeStore(&corpus).close()
        }
        let dense = Double(2 * 1000 * count)
        var common = ["--from", "teacher", "--holdout", "0.1", "--seed", "1", "--max-kl", "\(maxKL)", "--top1", "--clearance", "all", "--quiet", "--format", "json"]
        if let epochs { common += ["--epochs", "\(epochs)"] }
        let fits: [(name: String, arguments: [String])] = budget.map { bytes in
            [("budget", ["--rank", ranks.map(String.init).joined(separator: ","), "--budget", "\(bytes)"])]
        } ?? ranks.map { ("r\($0)", ["--rank", "\($0)"]) }
        var rows: [JSONValue] = []
        for fit in fits {
            let run = try ChildRun.measure(cli, ["projector", "fit", path, fit.name] + fit.arguments + common)
            guard run.status == 0, let json = try? JSONValue.parse(run.stdout.trimmingCharacters(in: .whitespacesAndNewlines)) else {
                FileHandle.standardError.write(Data("\(fit.name): exit \(run.status)\n".utf8))
                continue
            }
            let total = json["total_bytes"]?.doubleValue ?? 0
            var row: [String: JSONValue] = ["fit": .string(fit.name), "seconds": run.seconds.json, "peak_anon_mb": run.peakAnonMB.json,
                                            "peak_rss_mb": run.peakRSSMB.json, "ratio_to_dense_f16": (total / dense).json]
            for key in ["rank", "train_mean_kl", "holdout_mean_kl", "holdout_max_kl", "holdout_top1", "corrections", "parameter_bytes",
                        "correction_bytes", "total_bytes", "steps", "stop_reason", "rank_search"] {
                row[key] = json[key] ?? .null
            }
            rows.append(.object(row))
            FileHandle.standardError.write(Data("\(fit.name): \(JSONValue.object(row).serialized())\n".utf8))
        }
        emit(["n": count.json, "teacher_codec": .string(teacherCodec), "max_kl": maxKL.json, "epochs": epochs.map { $0.json } ?? .null, "fits": .array(rows)])
    }
}
