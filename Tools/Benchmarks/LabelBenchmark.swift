import CLMDB
import COpenBLAS
import Foundation
import LabelDB

/// The label-set benchmarks on the ImageNet-shaped corpus: bytes per label and KL for each codec,
/// `adaptive` against the fixed top-K reaching the same max KL, decode throughput against a
/// `memcpy` of the dense fp16 row, and a point get of sample + soft label against raw `mdb_get`.
struct LabelBenchmark {
    var count = 100_000
    var directory = "/tmp/labeldb-labels-bench"
    var reads = 20_480

    func run() throws {
        try? FileManager.default.removeItem(atPath: directory)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        var start = now()
        let corpus = ImageNetCorpus(count: count)
        let generateSeconds = now() - start
        let stats = corpus.teacherStatistics()
        let c = corpus.classes
        let ids = (0..<UInt64(count)).map { $0 + 1 }
        let schema = try Schema(dimension: corpus.dimension, classes: (0..<c).map { "class_\($0)" })
        let storePath = directory + "/store"
        let store = try Store.create(at: storePath, schema: schema)
        try store.write(clearance: .all) { tx in _ = try tx.put(SampleBatch(ids: ids, embeddings: corpus.embeddings), mode: .insert) }

        // Every codec: import (which measures fidelity), bytes per label, import time.
        let codecs = ["dense:f32", "dense:f16", "topk:1:f16", "topk:5:f16", "topk:10:f16", "topk:20:f16", "topk:50:f16",
                      "topk:5:u8", "topk:10:u8", "topk:20:u8", "adaptive:0.01", "adaptive:0.001"]
        var rows: [JSONValue] = []
        for text in codecs {
            let codec = try SoftLabelCodec(parsing: text)
            start = now()
            let info = try store.write(clearance: .all) { tx in
                try tx.importLabels(.soft(corpus.teacher), ids: ids, into: text, codec: codec, agent: "bench-teacher")
            }
            let seconds = now() - start
            let f = info.fidelity!
            rows.append(["codec": .string(text), "bytes_per_label": f.bytesPerLabel.json, "mean_kl": f.meanKL.json, "max_kl": f.maxKL.json,
                         "top1_agreement": f.top1Agreement.json, "ratio_to_dense_f32": f.ratioToDenseF32.json,
                         "import_labels_s": (Double(count) / seconds).json])
        }

        // The fixed top-K (f16) that reaches adaptive's bound on every sample: the smallest K whose max KL ≤ EPS.
        var fixedForEps: [String: JSONValue] = [:]
        for eps in [0.01, 0.001] {
            var k = 1
            while k < c {
                let codec = SoftLabelCodec.topKF16(k)
                var worst = 0.0
                var decoded = [Float](repeating: 0, count: c)
                for row in stride(from: 0, to: count, by: 1) {
                    var bytes: [UInt8] = []
                    corpus.teacher.withUnsafeBufferPointer { all in
                        codec.encode(UnsafeBufferPointer(rebasing: all[(row * c)..<((row + 1) * c)]), into: &bytes)
                    }
                    try bytes.withUnsafeBytes { raw in try decoded.withUnsafeMutableBufferPointer { try codec.decode(raw, into: $0) } }
                    worst = max(worst, corpus.teacher.withUnsafeBufferPointer { all in
                        decoded.withUnsafeBufferPointer { klDivergence(UnsafeBufferPointer(rebasing: all[(row * c)..<((row + 1) * c)]), $0) }
                    })
                    if worst > eps { break }
                }
                if worst <= eps { break }
                k = k < 64 ? k + 1 : min(k * 2, c)
            }
            fixedForEps["\(eps)"] = ["k": k.json, "bytes_per_label": (2 + 4 * k).json]
        }

        // Decode throughput: topk:5:f16 and dense:f16 rows decoded into C floats, vs memcpy of the dense f16 row.
        var decodeRates: [String: JSONValue] = [:]
        let sample = min(count, 20_000)
        var memcpyBuffer = [UInt8](repeating: 0, count: 2 * c)
        var dense16 = [UInt8](repeating: 0, count: sample * 2 * c)
        for i in 0..<(sample * c) { dense16.withUnsafeMutableBytes { $0.storeBytes(of: Float16(corpus.teacher[i]).bitPattern, toByteOffset: 2 * i, as: UInt16.self) } }
        let memcpySeconds = time {
            dense16.withUnsafeBytes { src in
                memcpyBuffer.withUnsafeMutableBytes { dst in
                    for row in 0..<sample { dst.baseAddress!.copyMemory(from: src.baseAddress! + row * 2 * c, byteCount: 2 * c) }
                }
            }
        }
        decodeRates["memcpy_dense_f16_labels_s"] = (Double(sample) / memcpySeconds).json
        for text in ["dense:f16", "topk:5:f16", "topk:5:u8", "adaptive:0.01"] {
            let codec = try SoftLabelCodec(parsing: text)
            var encoded: [[UInt8]] = []
            corpus.teacher.withUnsafeBufferPointer { all in
                for row in 0..<sample {
                    var bytes: [UInt8] = []
                    codec.encode(UnsafeBufferPointer(rebasing: all[(row * c)..<((row + 1) * c)]), into: &bytes)
                    encoded.append(bytes)
                }
            }
            var out = [Float](repeating: 0, count: c)
            let seconds = try time {
                for bytes in encoded {
                    try bytes.withUnsafeBytes { raw in try out.withUnsafeMutableBufferPointer { try codec.decode(raw, into: $0) } }
                }
            }
            decodeRates[text] = (Double(sample) / seconds).json
        }

        // Point get: sample + its topk:5:f16 label, vs raw mdb_get of the same records.
        store.close()
        let rawPath = directory + "/raw"
        let (readEnv, readDbis) = RawLMDB.open(storePath, readOnly: true, tables: ["samples", "embeddings", "labels"])
        var copies: [String: [(key: [UInt8], value: [UInt8])]] = [:]
        for table in ["samples", "embeddings", "labels"] { copies[table] = RawLMDB.dump(readEnv, readDbis[table]!) }
        mdb_env_close(readEnv)
        let (rawEnv, rawDbis) = RawLMDB.open(rawPath, readOnly: false, tables: ["samples", "embeddings", "labels"])
        var txn: OpaquePointer?
        RawLMDB.check(mdb_txn_begin(rawEnv, nil, 0, &txn), "begin")
        for (table, entries) in copies {
            for entry in entries {
                var k = entry.key, v = entry.value
                k.withUnsafeMutableBytes { kb in v.withUnsafeMutableBytes { vb in
                    var key = MDB_val(mv_size: kb.count, mv_data: kb.baseAddress)
                    var value = MDB_val(mv_size: vb.count, mv_data: vb.baseAddress)
                    RawLMDB.check(mdb_put(txn, rawDbis[table]!, &key, &value, UInt32(MDB_APPEND)), "put")
                } }
            }
        }
        RawLMDB.check(mdb_txn_commit(txn), "commit")
        copies = [:]
        let reopened = try Store(opening: storePath, options: .init(readOnly: true))
        warm(storePath)
        warm(rawPath)
        var pick = SplitMix64(seed: 3)
        let readIDs = (0..<reads).map { _ in ids[Int(pick.next() % UInt64(count))] }
        let capacity = UInt64(schema.rowsPerBlock)
        let setID: UInt32 = try reopened.read(clearance: .all) { tx in try tx.labelSet(named: "topk:5:f16")!.id }
        var sink = 0
        func rawGets() -> Double {
            var t: OpaquePointer?
            RawLMDB.check(mdb_txn_begin(rawEnv, nil, UInt32(MDB_RDONLY), &t), "begin")
            defer { mdb_txn_abort(t) }
            var cursor: OpaquePointer?
            RawLMDB.check(mdb_cursor_open(t, rawDbis["labels"]!, &cursor), "cursor")
            defer { mdb_cursor_close(cursor) }
            return time {
                for id in readIDs {
                    let (value, block, _) = RawLMDB.sampleAndBlock(t, rawDbis, id: id, rowsPerBlock: capacity)
                    var label = MDB_val()
                    // The label row: the same positioned cursor read LabelDB does for the latest version.
                    var labelKey: [UInt8] = []
                    withUnsafeBytes(of: setID.bigEndian) { labelKey.append(contentsOf: $0) }
                    withUnsafeBytes(of: id.bigEndian) { labelKey.append(contentsOf: $0) }
                    withUnsafeBytes(of: UInt32(1).bigEndian) { labelKey.append(contentsOf: $0) }
                    labelKey.withUnsafeMutableBytes { kb in
                        var key = MDB_val(mv_size: 16, mv_data: kb.baseAddress)
                        RawLMDB.check(mdb_cursor_get(cursor, &key, &label, MDB_SET_RANGE), "cursor get")
                    }
                    sink &+= value.mv_size &+ block.mv_size &+ label.mv_size
                }
            }
        }
        let ref = LabelSetReference(name: "topk:5:f16")
        func labelGets() throws -> Double {
            try reopened.read(clearance: .all) { tx in
                let (set, version) = try tx.resolve(ref)
                return try time {
                    for id in readIDs {
                        _ = try tx.withSample(id) { sink &+= $0.payload.count }
                        sink &+= try tx.label(of: id, set: set, version: version)!.version
                    }
                }
            }
        }
        _ = rawGets(); _ = try labelGets()
        var raw: [Double] = [], ours: [Double] = []
        for _ in 0..<3 { raw.append(rawGets()); ours.append(try labelGets()) }
        reopened.close()
        mdb_env_close(rawEnv)

        emit([
            "n": count.json, "classes": c.json, "dim": corpus.dimension.json, "generate_s": generateSeconds.json,
            "teacher_mean_top1": stats.top1.json, "teacher_mean_entropy_nats": stats.entropy.json,
            "codecs": .array(rows), "fixed_topk_for_adaptive_eps": .object(fixedForEps),
            "decode_labels_s": .object(decodeRates),
            "raw_get_sample_label_rows_s": (Double(reads) / median(raw)).json,
            "get_sample_label_rows_s": (Double(reads) / median(ours)).json,
            "get_sample_label_ratio": (median(raw) / median(ours)).json,
            "sink": .int(Int64(sink & 0xFF)),
        ])
    }
}
