import Foundation
import LabelDB

/// LabelDB on the peer benchmark's workload (`../shared/peers/`): the same files, the same steps
/// (import + fsync three times, warm, 64-row correctness check, 20,480 single gets after a
/// 2,000-get warm-up, 80 batches of 256), and the same JSON keys as `bench_peers.py`'s `run_one`.
///
/// Hard and soft labels arrive with label sets; until then the filter and label-scan columns are
/// absent, and `disk_ratio_samples` divides by the logical bytes without the label columns.
struct PeersBenchmark {
    var data = "/tmp/peers-data"
    var directory = "/tmp/labeldb-peers"
    var reps = 3
    var importReps = 3

    func run() throws {
        let ids = try NumPyArray.read(data + "/ids.npy").ids()
        let n = ids.count
        let embeddings = try NumPyArray.read(data + "/emb.npy").floats()
        let offsets = try NumPyArray.read(data + "/payload_off.npy").integers()
        let blob = try NumPyArray.read(data + "/payload_blob.npy").data
        let payloads = (0..<n).map { Array(blob[Int(offsets[$0])..<Int(offsets[$0 + 1])]) }
        let metadata = try JSONLines.readObjects(data + "/meta.jsonl")
        let readIDs = try NumPyArray.read(data + "/read_ids.npy").ids()
        let manifest = try JSONValue.parse(Array(FileManager.default.contents(atPath: data + "/manifest.json")!))
        let logical = Int(manifest["logical_bytes"]?.doubleValue ?? 0)
        let labelBytes = n * (4 + 10 + 10 + 2)
        let dimension = embeddings.count / n
        let batch = SampleBatch(ids: ids, embeddings: embeddings, metadata: metadata, payloads: payloads)
        let schema = try Schema(dimension: dimension, classes: (0..<1000).map { "class_\($0)" })

        var importTimes: [Double] = []
        let path = directory + "/labeldb"
        for _ in 0..<importReps {
            try? FileManager.default.removeItem(atPath: path)
            try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            sync()
            let seconds = try time {
                let store = try Store.create(at: path, schema: schema)
                try store.write { tx in _ = try tx.put(batch, mode: .insert) }
                store.close()
                sync()
            }
            importTimes.append(seconds)
        }
        var result: [String: JSONValue] = [
            "system": "labeldb", "n": n.json,
            "import_s": median(importTimes).json, "import_rows_s": (Double(n) / median(importTimes)).json,
            "import_s_all": .array(importTimes.map(\.json)),
        ]
        warm(path)
        var start = now()
        let store = try Store(opening: path, options: .init(readOnly: true))
        result["open_s"] = (now() - start).json
        let disk = store.bytesOnDisk
        result["disk_bytes"] = disk.json
        result["logical_bytes"] = logical.json
        result["disk_ratio"] = (Double(disk) / Double(logical)).json
        result["disk_ratio_samples"] = (Double(disk) / Double(logical - labelBytes)).json

        // Correctness (not timed): 64 single reads and one batch against the workload.
        var position: [UInt64: Int] = [:]
        for (row, id) in ids.enumerated() { position[id] = row }
        try store.read { tx in
            for id in readIDs.prefix(64) {
                let row = position[id]!
                let sample = try tx.sample(id)!
                precondition(sample.embedding[...] == embeddings[(row * dimension)..<((row + 1) * dimension)], "embedding")
                precondition(sample.payload == payloads[row] && sample.metadata == metadata[row], "payload/meta")
            }
        }

        var sink = 0
        try store.read { tx in
            for id in readIDs.prefix(2000) { sink &+= try tx.sample(id)!.payload.count }
            // get 1: a full row per call: embedding, payload, metadata.
            var singles: [Double] = []
            for _ in 0..<reps {
                singles.append(try time { for id in readIDs { sink &+= try tx.sample(id)!.payload.count } })
            }
            result["get1_rows_s"] = (Double(readIDs.count) / median(singles)).json
            result["get1_us"] = (median(singles) / Double(readIDs.count) * 1e6).json
            result["get1_reps"] = reps.json
            // get 256: columnar, an emb[256, d] matrix plus payload and metadata lists.
            func batched() throws {
                var matrix = [Float](repeating: 0, count: 256 * dimension)
                for b in stride(from: 0, to: readIDs.count, by: 256) {
                    var batchPayloads: [[UInt8]] = []
                    var batchMeta: [[String: JSONValue]] = []
                    batchPayloads.reserveCapacity(256)
                    batchMeta.reserveCapacity(256)
                    try matrix.withUnsafeMutableBytes { out in
                        for (j, id) in readIDs[b..<min(b + 256, readIDs.count)].enumerated() {
                            _ = try tx.withSample(id) { view in
                                (out.baseAddress! + j * dimension * 4).copyMemory(from: view.embeddingBytes.baseAddress!, byteCount: view.embeddingBytes.count)
                                batchPayloads.append(Array(view.payload))
                                batchMeta.append(try view.metadata())
                            }
                        }
                    }
                    sink &+= batchPayloads.count &+ batchMeta.count
                }
            }
            try batched()
            var batches: [Double] = []
            for _ in 0..<reps { batches.append(try time { try batched() }) }
            result["get256_rows_s"] = (Double(readIDs.count) / median(batches)).json
            result["get256_ms_per_batch"] = (median(batches) / Double(readIDs.count / 256) * 1e3).json
            result["get256_reps"] = reps.json
        }
        start = now()
        store.close()
        result["peak_rss_mb"] = peakRSSMegabytes().json
        result["sink"] = .int(Int64(sink & 0xFFFF))
        emit(result)
    }
}
