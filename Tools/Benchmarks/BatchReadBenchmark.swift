import CLMDB
import Foundation
import LabelDB

/// Issue 12 §1: the training read path against the peers' C read loop (`lmdb_c_reads.c`: one
/// `mdb_get` per row, the arrays copied out), on the same workload, in the same process.
///
/// The baseline store is the peers' `lmdb_raw` layout, written here from the workload files: key
/// = id as big-endian u64; value = 2048-byte f32 embedding, hard u16, 5 × u16 classes, 5 × f16
/// probabilities, f16 leftover, u8 source, u8 split, then the payload. LabelDB reads the same rows
/// with their hard label (set `hard`) and top-5 soft label (set `teacher`, compact form), metadata
/// bytes and payload.
struct BatchReadBenchmark {
    var data = "/tmp/peers-data"
    var directory = "/tmp/labeldb-batch"
    var reps = 5
    static let fixedBytes = 512 * 4 + 2 + 10 + 10 + 2 + 1 + 1

    func run() throws {
        let w = try PeersWorkload(data: data)
        precondition(w.dimension == 512, "the peers layout has 512-d embeddings")
        let rawPath = directory + "/raw", storePath = directory + "/labeldb"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        if !FileManager.default.fileExists(atPath: rawPath + "/data.mdb") { try writeRaw(w, at: rawPath) }
        if !FileManager.default.fileExists(atPath: storePath + "/data.mdb") { try w.importStore(at: storePath) }
        warm(rawPath)
        warm(storePath)
        var result: [String: JSONValue] = ["benchmark": "batch-read", "n": w.n.json, "reads": w.readIDs.count.json]
        let raw = try RawReader(path: rawPath)
        defer { raw.close() }
        let store = try Store(opening: storePath, options: .init(readOnly: true))
        defer { store.close() }
        var sink = 0
        let ids = w.readIDs
        var request = BatchRequest()
        request.metadata = true
        request.payloads = true
        request.labels = [LabelSetReference(name: "hard"), LabelSetReference(name: "teacher")]
        request.soft = .compact(k: 5)
        let columns = BatchColumns(rows: 256, dimension: 512, k: 5)
        let arena = BatchArena()
        var embedding = [Float](repeating: 0, count: 512), payload = [UInt8](repeating: 0, count: 1024)
        // The passes are interleaved, round after round, so drift in the machine's speed (page
        // cache, the other core) falls on every path alike; each figure is the median of its rounds.
        var times: [String: [Double]] = [:]
        try store.read(clearance: .all) { tx in
            func batches(_ size: Int) throws {
                for start in stride(from: 0, to: ids.count, by: size) {
                    let slice = Array(ids[start..<min(start + size, ids.count)])
                    sink &+= try slice.withUnsafeBufferPointer { try tx.readBatch($0, request, into: columns.buffers, arena: arena) }
                    sink &+= arena.payloads.count &+ arena.metadata.count
                }
            }
            // withSample borrows the row; the caller copies what it keeps.
            func withSample() throws {
                for id in ids {
                    _ = try tx.withSample(id) { view in
                        embedding.withUnsafeMutableBytes { $0.copyMemory(from: view.embeddingBytes) }
                        payload.withUnsafeMutableBytes { UnsafeMutableRawBufferPointer(rebasing: $0[..<view.payload.count]).copyMemory(from: view.payload) }
                        sink &+= view.payload.count
                    }
                }
            }
            let passes: [(String, () throws -> Void)] = [
                ("c", { sink &+= raw.readRows(ids) }),                                  // one mdb_get per row, header decoded, arrays copied
                ("c_copy_only", { sink &+= raw.readRows(ids, decodeHeader: false) }),   // the same gets, embedding and payload copied
                ("batch256", { try batches(256) }),
                ("single", { try batches(1) }),
                ("with_sample", { try withSample() }),
            ]
            for (_, pass) in passes { try pass() }  // warm-up
            for _ in 0..<reps {
                for (name, pass) in passes { times[name, default: []].append(try time(pass)) }
            }
        }
        for (name, values) in times { result["\(name)_us_per_row"] = (median(values) / Double(ids.count) * 1e6).json }
        result["raw_get_and_copy_us_per_row"] = result["c_copy_only_us_per_row"]
        func ratio(_ a: String, _ b: String) -> JSONValue { ((result[a]?.doubleValue ?? 0) / (result[b]?.doubleValue ?? 1)).json }
        result["batch256_vs_c"] = ratio("batch256_us_per_row", "c_us_per_row")
        result["single_vs_c"] = ratio("single_us_per_row", "c_us_per_row")
        result["with_sample_speed_vs_raw_copy"] = ratio("raw_get_and_copy_us_per_row", "with_sample_us_per_row")
        result["sink"] = .int(Int64(sink & 0xFFFF))
        emit(result)
    }

    /// Writes the peers' `lmdb_raw` layout (sorted keys, MDB_APPEND, one transaction).
    func writeRaw(_ w: PeersWorkload, at path: String) throws {
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        var env: OpaquePointer?
        mdb_env_create(&env)
        mdb_env_set_maxdbs(env, 2)
        mdb_env_set_mapsize(env, 1 << 34)
        guard mdb_env_open(env, path, UInt32(MDB_NOSYNC), 0o664) == 0 else { throw CocoaError(.fileWriteUnknown) }
        var txn: OpaquePointer?
        mdb_txn_begin(env, nil, 0, &txn)
        var dbi = MDB_dbi()
        mdb_dbi_open(txn, "rows", UInt32(MDB_CREATE), &dbi)
        let sources = ["web", "books", "news", "code", "forums"], splits = ["train", "val"]
        for row in (0..<w.n).sorted(by: { w.ids[$0] < w.ids[$1] }) {
            var value = [UInt8](repeating: 0, count: Self.fixedBytes)
            w.embeddings.withUnsafeBytes { source in
                value.withUnsafeMutableBytes { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: source[(row * 2048)..<((row + 1) * 2048)])) }
            }
            func put16(_ v: UInt16, _ at: Int) { value[at] = UInt8(v & 0xFF); value[at + 1] = UInt8(v >> 8) }
            put16(UInt16(w.hard[row]), 2048)
            for t in 0..<5 {
                put16(UInt16(w.softClasses[row * 5 + t]), 2050 + 2 * t)
                put16(Float16(w.softProbs[row * 5 + t]).bitPattern, 2060 + 2 * t)
            }
            put16(Float16(w.softRest[row]).bitPattern, 2070)
            value[2072] = UInt8(sources.firstIndex(of: w.metadata[row]["source"]?.stringValue ?? "") ?? 0)
            value[2073] = UInt8(splits.firstIndex(of: w.metadata[row]["split"]?.stringValue ?? "") ?? 0)
            value += w.payloads[row]
            var key = w.ids[row].bigEndian
            try withUnsafeMutableBytes(of: &key) { k in
                try value.withUnsafeMutableBytes { v in
                    var mk = MDB_val(mv_size: 8, mv_data: k.baseAddress), mv = MDB_val(mv_size: v.count, mv_data: v.baseAddress)
                    guard mdb_put(txn, dbi, &mk, &mv, UInt32(MDB_APPEND)) == 0 else { throw CocoaError(.fileWriteUnknown) }
                }
            }
        }
        // The peers' secondary index (label u16 BE + id u64 BE), so their Python reader opens it too.
        var byLabel = MDB_dbi()
        mdb_dbi_open(txn, "by_label", UInt32(MDB_CREATE), &byLabel)
        for row in (0..<w.n).sorted(by: { (w.hard[$0], w.ids[$0]) < (w.hard[$1], w.ids[$1]) }) {
            var key = [UInt8](repeating: 0, count: 10)
            key[0] = UInt8(w.hard[row] >> 8)
            key[1] = UInt8(w.hard[row] & 0xFF)
            for b in 0..<8 { key[2 + b] = UInt8((w.ids[row] >> (56 - 8 * UInt64(b))) & 0xFF) }
            try key.withUnsafeMutableBytes { k in
                var mk = MDB_val(mv_size: 10, mv_data: k.baseAddress), mv = MDB_val(mv_size: 0, mv_data: nil)
                guard mdb_put(txn, byLabel, &mk, &mv, UInt32(MDB_APPEND)) == 0 else { throw CocoaError(.fileWriteUnknown) }
            }
        }
        mdb_txn_commit(txn)
        mdb_env_sync(env, 1)
        mdb_env_close(env)
    }
}

/// Caller-owned column buffers for batches of up to `rows` rows (two label sets: hard, then teacher).
final class BatchColumns {
    var found: [UInt8], embeddings: [Float], metadataOffsets: [UInt64], payloadOffsets: [UInt64]
    var versions: [[Int32]], hard: [[Int32]], classes: [[Int32]], probabilities: [[Float]], leftover: [[Float]]

    init(rows: Int, dimension: Int, k: Int) {
        found = .init(repeating: 0, count: rows)
        embeddings = .init(repeating: 0, count: rows * dimension)
        metadataOffsets = .init(repeating: 0, count: rows + 1)
        payloadOffsets = .init(repeating: 0, count: rows + 1)
        versions = .init(repeating: .init(repeating: 0, count: rows), count: 2)
        hard = versions
        classes = .init(repeating: .init(repeating: 0, count: rows * k), count: 2)
        probabilities = .init(repeating: .init(repeating: 0, count: rows * k), count: 2)
        leftover = .init(repeating: .init(repeating: 0, count: rows), count: 2)
    }

    /// Pointers into the arrays; valid while this object lives and the arrays are not resized.
    var buffers: BatchBuffers {
        var b = BatchBuffers()
        b.found = found.withUnsafeMutableBufferPointer { $0.baseAddress }
        b.embeddings = embeddings.withUnsafeMutableBufferPointer { $0.baseAddress }
        b.metadataOffsets = metadataOffsets.withUnsafeMutableBufferPointer { $0.baseAddress }
        b.payloadOffsets = payloadOffsets.withUnsafeMutableBufferPointer { $0.baseAddress }
        b.labels = (0..<2).map { i in
            var l = LabelBuffers()
            l.version = versions[i].withUnsafeMutableBufferPointer { $0.baseAddress }
            l.hard = hard[i].withUnsafeMutableBufferPointer { $0.baseAddress }
            l.topClasses = classes[i].withUnsafeMutableBufferPointer { $0.baseAddress }
            l.topProbabilities = probabilities[i].withUnsafeMutableBufferPointer { $0.baseAddress }
            l.leftover = leftover[i].withUnsafeMutableBufferPointer { $0.baseAddress }
            return l
        }
        return b
    }
}

/// The peers' C reader, transliterated: one read transaction, one `mdb_get` per row.
final class RawReader {
    private var env: OpaquePointer?
    private var txn: OpaquePointer?
    private var dbi = MDB_dbi()
    private var embedding = [Float](repeating: 0, count: 512)
    private var payload = [UInt8](repeating: 0, count: 1024)
    private var header = [UInt8](repeating: 0, count: 26)

    init(path: String) throws {
        mdb_env_create(&env)
        mdb_env_set_maxdbs(env, 2)
        guard mdb_env_open(env, path, UInt32(MDB_RDONLY | MDB_NOLOCK | MDB_NORDAHEAD), 0o664) == 0 else { throw CocoaError(.fileReadUnknown) }
        mdb_txn_begin(env, nil, UInt32(MDB_RDONLY), &txn)
        mdb_dbi_open(txn, "rows", 0, &dbi)
    }

    func close() {
        mdb_txn_abort(txn)
        mdb_env_close(env)
    }

    /// Reads every id (a full row, as `decode()` in lmdb_c_reads.c does); returns a checksum.
    func readRows(_ ids: [UInt64], decodeHeader: Bool = true) -> Int {
        var sink = 0
        for id in ids {
            var key = id.bigEndian
            var k = MDB_val(mv_size: 8, mv_data: nil), v = MDB_val()
            withUnsafeMutableBytes(of: &key) { k.mv_data = $0.baseAddress; _ = mdb_get(txn, dbi, &k, &v) }
            let bytes = UnsafeRawBufferPointer(start: v.mv_data, count: v.mv_size)
            embedding.withUnsafeMutableBytes { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes[0..<2048])) }
            let length = v.mv_size - BatchReadBenchmark.fixedBytes
            payload.withUnsafeMutableBytes { UnsafeMutableRawBufferPointer(rebasing: $0[..<length]).copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes[BatchReadBenchmark.fixedBytes...])) }
            if decodeHeader {
                // The header: hard, 5 classes, 5 probabilities, leftover, source, split (26 bytes).
                header.withUnsafeMutableBytes { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes[2048..<2074])) }
                sink &+= Int(header.withUnsafeBytes { $0.loadUnaligned(as: UInt16.self) })
            }
            sink &+= length &+ Int(payload[0])
        }
        return sink
    }
}
