import Foundation

/// The fuzz targets: every decoder of untrusted bytes — files a user names, filters and
/// clearances typed on a command line, and every record read from disk — driven by arbitrary
/// input. `Tools/fuzz` links them into libFuzzer binaries; the test suite replays every input a
/// fuzzer ever crashed on (`Tests/LabelDBTests/Fixtures/fuzz/TARGET/`).
///
/// A target must return normally for every input: errors are the expected answer to garbage; a
/// trap, an out-of-bounds access or a hang is a bug.
enum DecoderFuzzTargets {
    /// The target names, one fuzz binary each.
    static let names = ["npy", "json", "jsonl", "query", "clearance", "records", "codecs", "recorded_ids", "views", "manifest", "session", "fit_parts"]

    /// The schema records are decoded against: the one the tests' small stores have, so records
    /// dumped from them (`Tools/Fuzz/seeds`) decode.
    static let schema = try! Schema(dimension: 4, classes: ["cat", "dog", "bird"])

    /// Runs target `name` on `bytes`.
    static func run(_ name: String, _ bytes: [UInt8]) {
        switch name {
        case "npy": npy(bytes)
        case "json": _ = try? JSONValue.parse(bytes)
        case "jsonl": jsonLines(bytes)
        case "query": _ = try? QueryExpression(parsing: String(decoding: bytes, as: UTF8.self))
        case "clearance": clearance(bytes)
        case "records": records(bytes)
        case "codecs": codecs(bytes)
        case "recorded_ids": recordedIDs(bytes)
        case "views": views(bytes)
        case "manifest": manifest(bytes)
        case "session": session(bytes)
        case "fit_parts": fitParts(bytes)
        default: preconditionFailure("unknown fuzz target \(name)")
        }
    }

    /// A whole `.npy` file, read through the same path `import` uses, then converted.
    static func npy(_ bytes: [UInt8]) {
        withTemporaryFile(bytes, suffix: ".npy") { path in
            guard let array = try? NumPyArray.read(path) else { return }
            _ = try? array.floats(file: path)
            _ = try? array.ids(file: path)
            _ = try? array.integers(file: path)
        }
    }

    /// A JSON Lines file read as metadata and as payloads (payload paths stay unread: the file
    /// sits alone in its folder).
    static func jsonLines(_ bytes: [UInt8]) {
        withTemporaryFile(bytes, suffix: ".jsonl") { path in
            _ = try? JSONLines.readObjects(path)
            _ = try? JSONLines.readPayloads(path)
        }
    }

    /// A clearance, a tag list, and a taint label as JSON.
    static func clearance(_ bytes: [UInt8]) {
        let text = String(decoding: bytes, as: UTF8.self)
        _ = try? Clearance(parsing: text)
        _ = try? TaintTags.parse(lists: [text])
        if let json = try? JSONValue.parse(bytes) { _ = try? TaintLabel(json: json) }
    }

    /// A record of any table: byte 0 picks the table, bytes 1…2 the key length, then the key and
    /// the value. Records sealed with a checksum are sealed here with the right seed, so the
    /// fuzzer reaches the parsing behind the checksum instead of stopping at it.
    /// The id lists of provenance records (`deleted_ids`, R-53): text from the log, untrusted.
    static func recordedIDs(_ bytes: [UInt8]) {
        let text = String(decoding: bytes, as: UTF8.self)
        for parameters in [["deleted_ids": text], ["deleted_ids_range": text, "deleted_ids_count": text]] {
            for id: UInt64 in [0, 1, 7, .max - 1, .max] { _ = RecordedIDs.membership(of: id, kind: "deleted", in: parameters) }
        }
    }

    static func records(_ bytes: [UInt8]) {
        guard bytes.count >= 3 else { return }
        let table = Table.allCases[Int(bytes[0]) % Table.allCases.count]
        let keyLength = min(Int(bytes[1]) | Int(bytes[2]) << 8, bytes.count - 3)
        let key = Array(bytes[3..<(3 + keyLength)])
        var value = Array(bytes[(3 + keyLength)...])
        let u64Key = key.count == 8 ? key.withUnsafeBytes { BigEndianKey.u64($0, at: 0) } : 0
        switch table {
        case .embeddings, .provenance, .freeSlots: break   // their own envelopes, or none
        case .labelBlocks where value.count >= LabelBlock.prefixSize:
            // The header checksum covers bytes 8 up to the bitmap's end, the rows checksum the rest.
            let seed = SealedRecord.seed(key: key)
            let rows = Checksum.xxh3(Array(value[LabelBlock.prefixSize...]), seed: seed)
            withUnsafeBytes(of: rows.littleEndian) { for (i, byte) in $0.enumerated() { value[24 + i] = byte } }
            let checksum = Checksum.xxh3(Array(value[8..<LabelBlock.prefixSize]), seed: seed)
            withUnsafeBytes(of: checksum.littleEndian) { for (i, byte) in $0.enumerated() { value[i] = byte } }
        case .samples: value = SealedRecord.seal(value, seed: u64Key)
        case .taintLabels: value = SealedRecord.seal(value, seed: key.count == 4 ? UInt64(key.withUnsafeBytes { BigEndianKey.u32($0, at: 0) }) : 0)
        case .meta: value = SealedRecord.seal(value, seed: 0)
        default: value = SealedRecord.seal(value, seed: SealedRecord.seed(key: key))
        }
        for formatVersion in [4, 5, 6, 7, 8] {
            key.withUnsafeBytes { k in
                value.withUnsafeBytes { v in
                    _ = try? RecordChecks.check(table, key: k, value: v, schema: schema, formatVersion: formatVersion)
                }
            }
        }
        if table == .embeddings {
            value.withUnsafeBytes { v in
                guard let view = try? EmbeddingBlockView(layout: EmbeddingBlockLayout(schema: schema), bytes: v) else { return }
                for index in 0..<view.rowsUsed {
                    _ = view.isLive(index)
                    _ = try? view.verifyRow(index, id: view.id(at: index))
                }
            }
        }
    }

    /// A soft label in any codec: byte 0 picks the codec, byte 1 the class count, the rest is the
    /// encoded label.
    static func codecs(_ bytes: [UInt8]) {
        guard bytes.count >= 2 else { return }
        let k = Int(bytes[0] >> 3) + 1
        let codec: SoftLabelCodec = switch bytes[0] & 7 {
        case 0: .denseF32
        case 1: .denseF16
        case 2, 3: .topKF16(k)
        case 4, 5: .topKU8(k)
        default: .adaptive(0.01)
        }
        let classes = Int(bytes[1]) + 1
        var out = [Float](repeating: 0, count: classes)
        Array(bytes[2...]).withUnsafeBytes { encoded in
            out.withUnsafeMutableBufferPointer { _ = try? codec.decode(encoded, into: $0) }
            // The compact form of batch reads: its own in-place path for top-K rows.
            var topClasses = [Int32](repeating: 0, count: k), topProbabilities = [Float](repeating: 0, count: k)
            _ = try? codec.decodeCompact(encoded, classCount: classes, k: min(k, classes), classes: &topClasses, probabilities: &topProbabilities)
        }
    }

    /// A per-view row's view section (format-spec §10.7): byte 0 holds the row's column flags
    /// (bits 0, 2, 4) and picks the codec (bits 5…7), byte 1 the class count, the rest is the
    /// section, decoded in full, and into both batch forms, every view and the one of an epoch.
    /// The same bytes as a views-file line, too.
    static func views(_ bytes: [UInt8]) {
        if let json = try? JSONValue.parse(bytes) { _ = try? AugmentedView(json: json) }
        guard bytes.count >= 2 else { return }
        let flags = LabelRecord.hasViews | (bytes[0] & (LabelRecord.hasHard | LabelRecord.hasSoft | LabelRecord.hasExtras))
        let codecs: [SoftLabelCodec?] = [nil, .denseF32, .denseF16, .topKF16(2), .topKU8(3), .adaptive(0.01), .topKF16(1), .denseF16]
        let codec = codecs[Int(bytes[0] >> 5)]
        let classes = Int(bytes[1]) % 16 + 1
        guard codec.map({ (try? $0.validate(classCount: classes)) != nil }) ?? true else { return }
        Array(bytes[2...]).withUnsafeBytes { raw in
            let section = ViewSection(flags: flags, bytes: raw)
            _ = try? section.decode(codec: codec, classCount: classes)
            for form in [SoftLabelForm.dense, .compact(k: nil), .none] {
                var batch = ViewBatch(classCount: classes, k: codec == nil ? 0 : 1)
                try? batch.append(section, codec: codec, form: form, epoch: nil)
                try? batch.append(section, codec: codec, form: form, epoch: 3)
            }
        }
    }

    /// A corpus manifest (`corpus.json`): as given, and with its checksum made right so the
    /// member checks run; one that decodes must route ids and survive its own encoding.
    static func manifest(_ bytes: [UInt8]) {
        _ = try? CorpusManifest(decoding: bytes)
        guard case .object(var members)? = try? JSONValue.parse(bytes) else { return }
        members.removeValue(forKey: "checksum")
        members["checksum"] = .string(CorpusManifest.checksum(of: members))
        guard let manifest = try? CorpusManifest(decoding: Array(JSONValue.object(members).serialized().utf8)) else { return }
        for id in [0, 1, UInt64(bytes.count), UInt64.max - 1, .max] {
            if let shard = manifest.shard(of: id) { precondition(manifest.shards.indices.contains(shard), "a route outside the shards") }
        }
        precondition((try? CorpusManifest(decoding: manifest.encoded())) == manifest, "a manifest must survive its own encoding")
    }

    /// A write session's file (`corpus.session`): one that decodes must survive its own encoding.
    static func session(_ bytes: [UInt8]) {
        guard let session = try? CorpusWriteSession(decoding: bytes) else { return }
        precondition((try? CorpusWriteSession(decoding: Array(session.document.serialized().utf8))) == session, "a session must survive its own encoding")
    }

    /// A fit pass's request and reply (corpus.md K-17): the first byte picks which. Even: the
    /// rest is every reply a shard could send to each pass (d = 3, C = 2, two rows); odd: the
    /// rest is a request to a server of a small corpus's shard. Either may fail, never crash.
    static func fitParts(_ bytes: [UInt8]) {
        guard let mode = bytes.first else { return }
        let rest = Array(bytes.dropFirst())
        if mode % 2 == 1 {
            _ = try? fitServer?.serve(rest)
            return
        }
        let rows = RemoteShardRows(shard: 0, ids: [1, 2], source: LabelSetReference(name: "t", version: 1), clearance: .all, snapshot: 0,
                                   dimension: 3, classes: 2, execute: { _, _ in rest })
        let model = ProjectorModel(dimension: 3, classes: 2, rank: 1, scale: 0, a: [0, 0, 0], b: [0, 0], bias: [0, 0], temperature: 1)
        var x = [Float](repeating: 0, count: 6), p = [Float](repeating: 0, count: 4)
        _ = try? x.withUnsafeMutableBufferPointer { xv in try p.withUnsafeMutableBufferPointer { try rows.load([0, 1], embeddings: xv.baseAddress!, teacher: $0.baseAddress!) } }
        _ = try? rows.partSums([0, 1])
        _ = try? rows.partCentredProducts([0, 1], meanX: [0, 0, 0], meanY: [0, 0])
        _ = try? rows.partEvaluation(model, rows: [0, 1], head: nil)
        if let found = try? rows.partCorrections(model, rows: [0, 1], head: nil, maxKL: 0.1, requireTop1: false) {
            precondition(found.allSatisfy { [0, 1].contains($0.row) }, "a correction of a row not asked for")
        }
    }

    /// A server of shard 0 of a two-shard corpus of eight samples with soft labels, made once.
    static let fitServer: FitPartServer? = {
        let folder = NSTemporaryDirectory() + "labeldb-fuzz-fit-\(getpid())"
        try? FileManager.default.removeItem(atPath: folder)
        guard let store = try? Store.create(at: folder + "/store", schema: Schema(dimension: 3, classes: ["a", "b"])) else { return nil }
        let ids: [UInt64] = Array(1...8)
        _ = try? store.write(clearance: .all) { tx in
            _ = try tx.put(SampleBatch(ids.map { Sample(id: $0, embedding: [Float($0), 1, -Float($0)]) }))
            try tx.importLabels(.soft(ids.flatMap { [Float($0) / 10, 1 - Float($0) / 10] }), ids: ids, into: "t", agent: "fuzz")
        }
        store.close()
        _ = try? CorpusManifest.split(store: folder + "/store", into: folder + "/corpus", shards: 2, rule: .hash, clearance: .all, agent: "fuzz")
        return try? FitPartServer(corpus: folder + "/corpus", shard: 0, clearance: .all)
    }()

    /// Writes `bytes` to a fresh temporary file, passes its path, and removes it.
    static func withTemporaryFile(_ bytes: [UInt8], suffix: String, _ body: (String) -> Void) {
        let folder = NSTemporaryDirectory() + "labeldb-fuzz-\(getpid())-\(UUID().uuidString)"
        guard (try? FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)) != nil else { return }
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let path = folder + "/input" + suffix
        guard FileManager.default.createFile(atPath: path, contents: Data(bytes)) else { return }
        body(path)
    }
}
