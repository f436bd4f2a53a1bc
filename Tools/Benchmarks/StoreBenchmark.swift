import CLMDB
import Foundation
import LabelDB

/// The store issue's benchmarks: bulk import vs raw `mdb_put(MDB_APPEND)` of the same bytes,
/// point gets vs raw `mdb_get` of the same keys, disk ÷ logical bytes, and the embedding scan vs
/// `memcpy` of the same bytes. Every ratio's baseline runs in the same process, on the same data.
struct StoreBenchmark {
    var count = 1_000_000
    var dimension = 512
    var payloadRange = 400...600
    var directory = "/tmp/labeldb-bench"
    var reads = 20_480
    var passes = 3

    func run() throws {
        try? FileManager.default.removeItem(atPath: directory)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let storePath = directory + "/store"
        let rawPath = directory + "/raw"

        // Data, generated in memory (not timed).
        var rng = SplitMix64(seed: 20261125)
        var ids = [UInt64](repeating: 0, count: count)
        var seen = Set<UInt64>(minimumCapacity: count)
        var i = 0
        while i < count { let id = rng.next(); if seen.insert(id).inserted { ids[i] = id; i += 1 } }
        seen = []
        var embeddings = [Float](repeating: 0, count: count * dimension)
        embeddings.withUnsafeMutableBufferPointer { buffer in
            for j in 0..<buffer.count { buffer[j] = Float(Int32(truncatingIfNeeded: rng.next())) * (1 / 2_147_483_648) }
        }
        let sources: [JSONValue] = ["web", "books", "news", "code", "forums"]
        var metadata: [[String: JSONValue]] = []
        var payloads: [[UInt8]] = []
        metadata.reserveCapacity(count)
        payloads.reserveCapacity(count)
        var logicalBytes = 0
        for row in 0..<count {
            let meta: [String: JSONValue] = ["source": sources[row % 5], "split": row % 10 == 0 ? "val" : "train"]
            metadata.append(meta)
            let length = Int.random(in: payloadRange, using: &rng)
            payloads.append((0..<length).map { _ in UInt8(truncatingIfNeeded: rng.next()) })
            logicalBytes += 8 + dimension * 4 + length + JSONValue.object(meta).serialized().utf8.count
        }
        let batch = SampleBatch(ids: ids, embeddings: embeddings, metadata: metadata, payloads: payloads)
        embeddings = []
        metadata = []
        payloads = []

        // LabelDB bulk import: one write transaction, committed with fsync.
        let schema = try Schema(dimension: dimension, classes: (0..<1000).map { "class_\($0)" })
        let created = try Store.create(at: storePath, schema: schema)
        let importSeconds = try time { try created.write(clearance: .all) { tx in _ = try tx.put(batch, mode: .insert) } }
        let diskBytes = created.bytesOnDisk
        // LMDB allows one environment per file per process: close before the raw reader opens it.
        created.close()

        // Raw baseline: the same keys and values, copied out of LabelDB's store, put with MDB_APPEND.
        let (readEnv, readDbis) = RawLMDB.open(storePath, readOnly: true)
        let sampleRows = RawLMDB.dump(readEnv, readDbis["samples"]!)
        let blockRows = RawLMDB.dump(readEnv, readDbis["embeddings"]!)
        mdb_env_close(readEnv)
        let (rawEnv, rawDbis) = RawLMDB.open(rawPath, readOnly: false)
        let rawImportSeconds = time {
            var txn: OpaquePointer?
            RawLMDB.check(mdb_txn_begin(rawEnv, nil, 0, &txn), "begin")
            for (table, rows) in [("samples", sampleRows), ("embeddings", blockRows)] {
                for row in rows {
                    var k = row.key, v = row.value
                    k.withUnsafeMutableBytes { kb in
                        v.withUnsafeMutableBytes { vb in
                            var key = MDB_val(mv_size: kb.count, mv_data: kb.baseAddress)
                            var value = MDB_val(mv_size: vb.count, mv_data: vb.baseAddress)
                            RawLMDB.check(mdb_put(txn, rawDbis[table]!, &key, &value, UInt32(MDB_APPEND)), "put")
                        }
                    }
                }
            }
            RawLMDB.check(mdb_txn_commit(txn), "commit")
        }
        mdb_env_close(rawEnv)

        // Point gets: the same random ids, one read transaction, as the peers benchmark does.
        // The raw reader reads the raw copy (same keys, same values, same append order), so the
        // two environments never share a file.
        let store = try Store(opening: storePath, options: .init(readOnly: true))
        warm(storePath)
        warm(rawPath)
        var pick = SplitMix64(seed: 7)
        let readIDs = (0..<reads).map { _ in batch.ids[Int(pick.next() % UInt64(count))] }
        let capacity = UInt64(schema.rowsPerBlock)
        let (env, dbis) = RawLMDB.open(rawPath, readOnly: true)
        var sink = 0
        func rawLookup(_ txn: OpaquePointer?, _ id: UInt64) -> (MDB_val, MDB_val, UInt64) {
            RawLMDB.sampleAndBlock(txn, dbis, id: id, rowsPerBlock: capacity)
        }
        func rawGets() -> Double {
            var txn: OpaquePointer?
            RawLMDB.check(mdb_txn_begin(env, nil, UInt32(MDB_RDONLY), &txn), "begin")
            defer { mdb_txn_abort(txn) }
            return time {
                for id in readIDs {
                    let (value, block, _) = rawLookup(txn, id)
                    sink &+= block.mv_size &+ value.mv_size
                }
            }
        }
        var embeddingBuffer = [Float](repeating: 0, count: dimension)
        // A second baseline: the same two mdb_get calls, then copying out the embedding row and
        // the payload, which any reader that uses the data does (no checksums, no decoding).
        func rawGetsCopied() -> Double {
            var txn: OpaquePointer?
            RawLMDB.check(mdb_txn_begin(env, nil, UInt32(MDB_RDONLY), &txn), "begin")
            defer { mdb_txn_abort(txn) }
            let matrixOffset = (32 + 16 * Int(capacity) + 8 * ((Int(capacity) + 63) / 64) + 63) / 64 * 64
            return time {
                for id in readIDs {
                    let (value, block, slot) = rawLookup(txn, id)
                    let row = block.mv_data + matrixOffset + Int(slot % capacity) * dimension * 4
                    embeddingBuffer.withUnsafeMutableBytes { $0.baseAddress!.copyMemory(from: row, byteCount: dimension * 4) }
                    let metadataCount = Int(value.mv_data.loadUnaligned(fromByteOffset: 32, as: UInt32.self))
                    let payloadCount = Int(value.mv_data.loadUnaligned(fromByteOffset: 36, as: UInt32.self))
                    let payload = Array(UnsafeRawBufferPointer(start: value.mv_data + 48 + metadataCount, count: payloadCount))  // record version 2: 48-byte header
                    sink &+= payload.count
                }
            }
        }
        func labelGetsBorrowed() throws -> Double {
            try store.read(clearance: .all) { tx in
                try time {
                    for id in readIDs {
                        _ = try tx.withSample(id) { view in sink &+= view.payload.count &+ view.embeddingBytes.count }
                    }
                }
            }
        }
        func labelGetsCopied() throws -> Double {
            try store.read(clearance: .all) { tx in
                try time {
                    for id in readIDs {
                        _ = try tx.withSample(id) { view in
                            embeddingBuffer.withUnsafeMutableBytes { $0.copyMemory(from: view.embeddingBytes) }
                            let payload = Array(view.payload)
                            sink &+= payload.count
                        }
                    }
                }
            }
        }
        func labelGetsFull() throws -> Double {
            try store.read(clearance: .all) { tx in
                try time {
                    for id in readIDs { sink &+= try tx.sample(id)!.payload.count }
                }
            }
        }
        _ = rawGets(); _ = try labelGetsBorrowed()
        var raw: [Double] = [], rawCopied: [Double] = [], borrowed: [Double] = [], copied: [Double] = [], full: [Double] = []
        for _ in 0..<passes {
            raw.append(rawGets())
            rawCopied.append(rawGetsCopied())
            borrowed.append(try labelGetsBorrowed())
            copied.append(try labelGetsCopied())
            full.append(try labelGetsFull())
        }

        // Embedding scan: LabelDB's checked scan vs memcpy of the same block bytes.
        var scratch = [UInt8](repeating: 0, count: schema.rowsPerBlock * dimension * 4)
        func memcpyScan() -> (Double, Int) {
            var txn: OpaquePointer?
            RawLMDB.check(mdb_txn_begin(env, nil, UInt32(MDB_RDONLY), &txn), "begin")
            defer { mdb_txn_abort(txn) }
            var cursor: OpaquePointer?
            RawLMDB.check(mdb_cursor_open(txn, dbis["embeddings"]!, &cursor), "cursor")
            defer { mdb_cursor_close(cursor) }
            var bytes = 0
            let seconds = time {
                var key = MDB_val(), value = MDB_val()
                var rc = mdb_cursor_get(cursor, &key, &value, MDB_FIRST)
                while rc == 0 {
                    let n = min(value.mv_size, scratch.count)
                    scratch.withUnsafeMutableBytes { $0.baseAddress!.copyMemory(from: value.mv_data, byteCount: n) }
                    bytes += n
                    rc = mdb_cursor_get(cursor, &key, &value, MDB_NEXT)
                }
            }
            return (seconds, bytes)
        }
        func labelScan() throws -> (Double, Int) {
            var bytes = 0
            let seconds = try store.read(clearance: .all) { tx in
                try time {
                    try tx.forEachEmbeddingBlock { rows in
                        bytes += rows.floats.count * 4
                        sink &+= Int(rows.floats[0].bitPattern)
                    }
                }
            }
            return (seconds, bytes)
        }
        _ = memcpyScan(); _ = try labelScan()
        var memcpyRates: [Double] = [], scanRates: [Double] = []
        for _ in 0..<passes {
            let (ms, mb) = memcpyScan()
            memcpyRates.append(Double(mb) / ms / 1e9)
            let (ls, lb) = try labelScan()
            scanRates.append(Double(lb) / ls / 1e9)
        }
        mdb_env_close(env)
        store.close()

        let rawGet = Double(reads) / median(raw)
        emit([
            "n": count.json, "dim": dimension.json, "sink": .int(Int64(sink & 0xFF)),
            "import_rows_s": (Double(count) / importSeconds).json,
            "raw_append_rows_s": (Double(count) / rawImportSeconds).json,
            "import_ratio": (rawImportSeconds / importSeconds).json,
            "disk_bytes": diskBytes.json, "logical_bytes": logicalBytes.json,
            "disk_ratio": (Double(diskBytes) / Double(logicalBytes)).json,
            "raw_get_rows_s": rawGet.json,
            "get_borrowed_rows_s": (Double(reads) / median(borrowed)).json,
            "get_copied_rows_s": (Double(reads) / median(copied)).json,
            "get_full_rows_s": (Double(reads) / median(full)).json,
            "get_borrowed_ratio": (median(raw) / median(borrowed)).json,
            "get_copied_ratio": (median(raw) / median(copied)).json,
            "get_full_ratio": (median(raw) / median(full)).json,
            "raw_get_copied_rows_s": (Double(reads) / median(rawCopied)).json,
            "get_copied_vs_raw_copied_ratio": (median(rawCopied) / median(copied)).json,
            "memcpy_scan_gb_s": median(memcpyRates).json,
            "scan_gb_s": median(scanRates).json,
            "scan_ratio": (median(scanRates) / median(memcpyRates)).json,
            "peak_rss_mb": peakRSSMegabytes().json,
        ])
    }
}
