import CLMDB
import Foundation
import LabelDB

/// Issue 14's benchmarks: labels per augmented view at ImageNet shape (N samples × 10 views ×
/// `topk:5:f16`, 1,000 classes, generated compact). Measures the store's growth from the views
/// against views × (24-byte record + 22-byte label); writing them and reading every view of a
/// random batch of 256 samples, against raw LMDB holding one value per (sample, view) (key id u64
/// BE + view u32 BE, value the same 46 bytes) in the same run; and reading every view of one
/// sample against reading the one view an epoch replays.
struct ViewBenchmark {
    var count = 1_280_000
    var views = 10
    var directory = "/tmp/labeldb-view-bench"
    let k = 5, classes = 1000, dimension = 8
    let batch = 256
    var batches = 400
    /// Keep the LabelDB store (the Python FKD comparison reads it).
    var keep = false

    /// The generated labels: row r is view r % views of sample r / views.
    struct Input {
        var ids: [UInt64] = []
        var views: [AugmentedView] = []
        var rows = TopKRows(k: 5, classes: [], probabilities: [], leftover: [])
    }

    func generate() -> Input {
        var rng = SplitMix64(seed: 14)
        var input = Input()
        let total = count * views
        input.ids.reserveCapacity(total)
        input.views.reserveCapacity(total)
        input.rows.classes.reserveCapacity(total * k)
        input.rows.probabilities.reserveCapacity(total * k)
        input.rows.leftover = []
        input.rows.leftover!.reserveCapacity(total)
        for sample in 0..<count {
            let truth = Int(rng.next() % UInt64(classes))
            for v in 0..<views {
                let x0 = Float(rng.next() % 500) / 1000, y0 = Float(rng.next() % 500) / 1000
                let side = 0.3 + Float(rng.next() % 200) / 1000
                input.ids.append(UInt64(sample + 1))
                input.views.append(AugmentedView(view: v, crop: SIMD4(x0, y0, x0 + side, y0 + side), flip: rng.next() % 2 == 0,
                                                 epoch: v, seed: Int(rng.next() % (1 << 32))))
                // A crop's teacher: the true class most of the time, its family otherwise.
                let top = rng.next() % 4 == 0 ? (truth / 10) * 10 + Int(rng.next() % 10) : truth
                let p1 = 0.3 + Float(rng.next() % 600) / 1000, rest = 1 - p1
                var chosen = [top]
                while chosen.count < k {
                    let c = (top / 10) * 10 + Int(rng.next() % 10) == top ? Int(rng.next() % UInt64(classes)) : (top / 10) * 10 + Int(rng.next() % 10)
                    if !chosen.contains(c) { chosen.append(c) }
                }
                input.rows.classes += chosen
                input.rows.probabilities += [p1, 0.4 * rest, 0.2 * rest, 0.1 * rest, 0.05 * rest]
                input.rows.leftover!.append(0.25 * rest)
            }
        }
        return input
    }

    func run() throws {
        try? FileManager.default.removeItem(atPath: directory)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        var input: Input? = generate()
        var results: [String: JSONValue] = ["samples": count.json, "views_per_sample": views.json, "codec": .string("topk:5:f16"), "classes": classes.json]
        let storePath = directory + "/labeldb"
        let store = try Store.create(at: storePath, schema: Schema(dimension: dimension, elementType: .f16, classes: (0..<classes).map { "class_\($0)" }))
        let sampleIDs = (1...UInt64(count)).map { $0 }
        try store.write(clearance: .all) { tx in
            _ = try tx.put(SampleBatch(ids: sampleIDs, embeddings: [Float](repeating: 0.5, count: count * dimension)), mode: .insert)
        }
        let before = try fileSize(storePath + "/data.mdb")
        let writeSeconds = try time {
            try store.write(clearance: .all) { tx in
                _ = try tx.importLabels(.topK(input!.rows), ids: input!.ids, into: "fkd", codec: .topKF16(k), views: input!.views, agent: "teacher")
            }
        }
        store.close()
        let after = try fileSize(storePath + "/data.mdb")
        let ideal = Double(count * views * (AugmentedView.recordSize + 2 + 4 * k))
        let blockBytes = tableBytes(storePath, "label_blocks")
        results["labeldb_write_rows_per_second"] = (Double(count * views) / writeSeconds).json
        results["labeldb_write_seconds"] = writeSeconds.json
        results["growth_bytes"] = (after - before).json
        results["label_blocks_bytes"] = blockBytes.json
        results["ideal_bytes"] = ideal.json
        results["growth_ratio"] = (Double(after - before) / ideal).json
        results["label_blocks_ratio"] = (Double(blockBytes) / ideal).json

        let rawPath = directory + "/raw"
        let rawWrite = writeRaw(input!, path: rawPath)
        input = nil
        results["raw_write_rows_per_second"] = (Double(count * views) / rawWrite).json
        results["raw_bytes"] = tableBytes(rawPath, "views").json
        results["write_ratio_labeldb_to_raw"] = (rawWrite / writeSeconds).json

        warm(storePath)
        warm(rawPath)
        results.merge(try reads(storePath: storePath, rawPath: rawPath)) { $1 }
        emit(results)
        if !keep { try? FileManager.default.removeItem(atPath: directory) }
    }

    /// Raw LMDB: one value per (sample, view), sorted keys, MDB_APPEND, one transaction.
    func writeRaw(_ input: Input, path: String) -> Double {
        let (env, dbis) = RawLMDB.open(path, readOnly: false, tables: ["views"])
        defer { mdb_env_close(env) }
        return time {
            var txn: OpaquePointer?
            RawLMDB.check(mdb_txn_begin(env, nil, 0, &txn), "begin")
            var value = [UInt8](), key = [UInt8](repeating: 0, count: 12)
            value.reserveCapacity(46)
            for r in 0..<input.ids.count {
                withUnsafeBytes(of: input.ids[r].bigEndian) { for i in 0..<8 { key[i] = $0[i] } }
                withUnsafeBytes(of: UInt32(input.views[r].view).bigEndian) { for i in 0..<4 { key[8 + i] = $0[i] } }
                value.removeAll(keepingCapacity: true)
                Self.appendRecord(input.views[r], to: &value)
                Self.appendTopK(input.rows, row: r, k: k, to: &value)
                key.withUnsafeMutableBytes { kb in
                    value.withUnsafeMutableBytes { vb in
                        var mk = MDB_val(mv_size: 12, mv_data: kb.baseAddress), mv = MDB_val(mv_size: vb.count, mv_data: vb.baseAddress)
                        RawLMDB.check(mdb_put(txn, dbis["views"]!, &mk, &mv, UInt32(MDB_APPEND)), "put")
                    }
                }
            }
            RawLMDB.check(mdb_txn_commit(txn), "commit")
        }
    }

    /// The 24-byte view record of format-spec §10.7.
    static func appendRecord(_ view: AugmentedView, to out: inout [UInt8]) {
        for lane in 0..<4 { withUnsafeBytes(of: view.crop[lane].bitPattern.littleEndian) { out.append(contentsOf: $0) } }
        out.append(view.flip ? 1 : 0)
        withUnsafeBytes(of: UInt16(view.epoch).littleEndian) { out.append(contentsOf: $0) }
        withUnsafeBytes(of: UInt32(view.seed).littleEndian) { out.append(contentsOf: $0) }
        out.append(0)
    }

    /// The 22-byte `topk:5:f16` layout: leftover, then (class u16, probability f16) × K.
    static func appendTopK(_ rows: TopKRows, row r: Int, k: Int, to out: inout [UInt8]) {
        func f16(_ v: Float) { withUnsafeBytes(of: Float16(v).bitPattern.littleEndian) { out.append(contentsOf: $0) } }
        f16(rows.leftover![r])
        for j in 0..<k {
            withUnsafeBytes(of: UInt16(rows.classes[r * k + j]).littleEndian) { out.append(contentsOf: $0) }
            f16(rows.probabilities[r * k + j])
        }
    }

    func reads(storePath: String, rawPath: String) throws -> [String: JSONValue] {
        var pick = SplitMix64(seed: 5)
        let batchesOfIDs = (0..<batches).map { _ in (0..<batch).map { _ in UInt64(pick.next() % UInt64(count)) + 1 } }
        let store = try Store(opening: storePath, options: .init(readOnly: true))
        defer { store.close() }
        let reference = LabelSetReference(name: "fkd")
        var sink = 0
        // Every view of each batch (compact soft labels, every parameter), one read transaction a batch.
        func labeldbBatches(epoch: Int?) throws -> Double {
            try time {
                for (b, ids) in batchesOfIDs.enumerated() {
                    try store.read(clearance: .all) { tx in
                        sink &+= try tx.readViews(ids, from: reference, epoch: epoch.map { $0 + b }).viewCount
                    }
                }
            }
        }
        let (env, dbis) = RawLMDB.open(rawPath, readOnly: true, tables: ["views"])
        defer { mdb_env_close(env) }
        // The same with raw LMDB: a cursor positioned at (id, 0), every value of the id copied out.
        func rawBatches(oneView: Bool) -> Double {
            var out = [UInt8](repeating: 0, count: 46 * views * batch)
            return time {
                for (b, ids) in batchesOfIDs.enumerated() {
                    var txn: OpaquePointer?, cursor: OpaquePointer?
                    RawLMDB.check(mdb_txn_begin(env, nil, UInt32(MDB_RDONLY), &txn), "begin")
                    RawLMDB.check(mdb_cursor_open(txn, dbis["views"]!, &cursor), "cursor")
                    var used = 0
                    for id in ids {
                        var keyBytes = [UInt8](repeating: 0, count: 12)
                        withUnsafeBytes(of: id.bigEndian) { for i in 0..<8 { keyBytes[i] = $0[i] } }
                        if oneView { withUnsafeBytes(of: UInt32(b % views).bigEndian) { for i in 0..<4 { keyBytes[8 + i] = $0[i] } } }
                        keyBytes.withUnsafeMutableBytes { kb in
                            var key = MDB_val(mv_size: 12, mv_data: kb.baseAddress), value = MDB_val()
                            var rc = mdb_cursor_get(cursor, &key, &value, oneView ? MDB_SET_KEY : MDB_SET_RANGE)
                            while rc == 0, key.mv_size == 12, memcmp(key.mv_data, kb.baseAddress!, 8) == 0 {
                                out.withUnsafeMutableBytes { ob in
                                    if used + value.mv_size <= ob.count { memcpy(ob.baseAddress! + used, value.mv_data, value.mv_size) }
                                }
                                used += value.mv_size
                                if oneView { break }
                                rc = mdb_cursor_get(cursor, &key, &value, MDB_NEXT)
                            }
                        }
                    }
                    sink &+= used
                    mdb_cursor_close(cursor)
                    mdb_txn_abort(txn)
                }
            }
        }
        // One sample per call: every view, and the view an epoch replays.
        let singles = Array(batchesOfIDs.joined().prefix(20_000))
        func labeldbSingles(epoch: Bool) throws -> Double {
            try store.read(clearance: .all) { tx in
                try time {
                    for (i, id) in singles.enumerated() { sink &+= try tx.readViews([id], from: reference, epoch: epoch ? i : nil).viewCount }
                }
            }
        }
        _ = try labeldbBatches(epoch: nil); _ = rawBatches(oneView: false); _ = try labeldbSingles(epoch: false)
        var ours: [Double] = [], raw: [Double] = [], oursOne: [Double] = [], rawOne: [Double] = [], allSingle: [Double] = [], oneSingle: [Double] = []
        for _ in 0..<3 {
            ours.append(try labeldbBatches(epoch: nil))
            raw.append(rawBatches(oneView: false))
            oursOne.append(try labeldbBatches(epoch: 0))
            rawOne.append(rawBatches(oneView: true))
            allSingle.append(try labeldbSingles(epoch: false))
            oneSingle.append(try labeldbSingles(epoch: true))
        }
        let viewsRead = Double(batches * batch * views), samplesRead = Double(batches * batch)
        let perSampleAll = median(allSingle) / Double(singles.count), perSampleOne = median(oneSingle) / Double(singles.count)
        return [
            "labeldb_read_all_views_rows_per_second": (viewsRead / median(ours)).json,
            "raw_read_all_views_rows_per_second": (viewsRead / median(raw)).json,
            "read_ratio_labeldb_to_raw": (median(raw) / median(ours)).json,
            "labeldb_read_one_view_samples_per_second": (samplesRead / median(oursOne)).json,
            "raw_read_one_view_samples_per_second": (samplesRead / median(rawOne)).json,
            "labeldb_one_sample_all_views_microseconds": (perSampleAll * 1e6).json,
            "labeldb_one_sample_one_view_microseconds": (perSampleOne * 1e6).json,
            "all_views_over_one_view": (perSampleAll / perSampleOne).json,
            "sink": sink.json,
        ]
    }

    func fileSize(_ path: String) throws -> Int {
        (try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
    }

    /// Bytes of a table's pages (branch, leaf, overflow) by `mdb_stat`.
    func tableBytes(_ path: String, _ name: String) -> Int {
        let (env, dbis) = RawLMDB.open(path, readOnly: true, tables: [name])
        defer { mdb_env_close(env) }
        var txn: OpaquePointer?
        RawLMDB.check(mdb_txn_begin(env, nil, UInt32(MDB_RDONLY), &txn), "begin")
        defer { mdb_txn_abort(txn) }
        var stat = MDB_stat()
        RawLMDB.check(mdb_stat(txn, dbis[name]!, &stat), "stat")
        return Int(stat.ms_psize) * (stat.ms_branch_pages + stat.ms_leaf_pages + stat.ms_overflow_pages)
    }
}
