/// The decoder of every table's records, in one place: ``Transaction/verify()`` walks every table
/// through it, so "verify checks everything" holds by construction — a table added to ``Table``
/// without a decoder here does not compile (the switch is exhaustive).
///
/// Each check decodes a key and its value the way reads do (checksum first, then every length and
/// field), and tells the verifier what the record says, for the cross-references.
enum RecordChecks {
    /// What one record says, for the cross-reference phase (only what some cross-check needs).
    enum Finding {
        case none
        case sample(id: UInt64, slot: UInt64, taint: UInt32)
        case block(UInt64)
        case freeSlot(UInt64)
        case labelSet(name: String, record: LabelSetRecord)
        case labelVersion(set: UInt32, version: UInt32, rows: Int, labelled: Int, dropped: Bool)
        /// A label row; `soft` is a copy of its encoded soft label.
        case labelRow(set: UInt32, sample: UInt64, version: UInt32, hard: Int?, soft: [UInt8]?)
        case indexEntry(key: [UInt8], until: UInt32)
        /// A label block's rows (checksums not yet checked: they are seeded with the sample id,
        /// which the cross-references know from the slot).
        case labelBlock(set: UInt32, version: UInt32, seed: UInt64, rows: [(slot: UInt64, bytes: [UInt8])], rowsChecksumMatches: Bool)
        /// A chunk of class postings: the slots it lists.
        case postings(set: UInt32, classIndex: UInt32, version: UInt32, slots: [UInt64])
        case head(name: String, taint: UInt32)
        case projector(name: String, record: ProjectorRecord)
        case projectorVersion(id: UInt32, version: UInt32, record: ProjectorVersion)
        case parameters(id: UInt32, version: UInt32)
        case correction(id: UInt32, version: UInt32, sample: UInt64)
        /// A block of a projector version's fitted samples.
        case fitted(id: UInt32, version: UInt32)
        case tagName(name: String, id: UInt32)
        case tagID(id: UInt32, name: String)
        case taintLabel(id: UInt32, secrecy: [UInt32], integrity: [UInt32])
        case partitionEntry(label: UInt32, sample: UInt64)
        case contentIndexEntry(key: [UInt8], label: UInt32)
    }

    /// Decodes the record at `key` in `table`.
    ///
    /// - Throws: ``RecordDecodingError`` or ``ChecksumMismatch`` describing the damage.
    static func check(_ table: Table, key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, schema: Schema, formatVersion: Int) throws -> Finding {
        switch table {
        case .meta: return try meta(key: key, value: value)
        case .samples:
            let id = try u64Key(key)
            let record = try SampleRecord.decode(id: id, value)
            guard (try? JSONValue.parse(record.metadata).objectValue) != nil else { throw RecordDecodingError(detail: "metadata is not a JSON object") }
            return .sample(id: id, slot: record.slot, taint: record.taintLabel)
        case .embeddings:
            let block = try u64Key(key)
            try EmbeddingBlockView(layout: EmbeddingBlockLayout(schema: schema), bytes: value).verifyHeader(block: block)
            return .block(block)
        case .freeSlots:
            guard value.isEmpty else { throw RecordDecodingError(detail: "value of \(value.count) bytes, expected none") }
            return .freeSlot(try u64Key(key))
        case .labelSets:
            let name = try nameKey(key)
            return .labelSet(name: name, record: try LabelRecord.decodeJSON(LabelSetRecord.self, key: key, value))
        case .labelVersions:
            try keySize(key, 8)
            let record = try LabelRecord.decodeJSON(LabelSetVersion.self, key: key, value)
            return .labelVersion(set: BigEndianKey.u32(key, at: 0), version: BigEndianKey.u32(key, at: 4), rows: record.rows, labelled: record.labelled, dropped: record.isDropped)
        case .labels:
            // Retired by format 6: packing the rows into blocks empties it.
            guard formatVersion < 6 else { throw RecordDecodingError(detail: "a label row in the one-entry-per-row table, which format 6 retired") }
            try keySize(key, 16)
            let row = try LabelRecord.decodeRow(key: key, value)
            let classes = schema.classes.count
            if let hard = row.hard, Int(hard) >= classes { throw RecordDecodingError(detail: "hard label \(hard) ≥ \(classes) classes") }
            if let multi = row.multi, multi.contains(where: { Int($0) >= classes }) { throw RecordDecodingError(detail: "multi-label class out of range") }
            return .labelRow(set: BigEndianKey.u32(key, at: 0), sample: BigEndianKey.u64(key, at: 4), version: BigEndianKey.u32(key, at: 12),
                             hard: row.hard.map(Int.init), soft: row.soft.map(Array.init))
        case .labelIndex:
            // Retired by format 6: a migration empties it, and nothing writes it again.
            guard formatVersion < 6 else { throw RecordDecodingError(detail: "an entry in the class index, which format 6 retired") }
            try keySize(key, 24)
            return .indexEntry(key: Array(key), until: try LabelRecord.decodeIndexValue(key: key, value))
        case .labelBlocks:
            try keySize(key, 16)
            let view = try LabelBlockView(key: key, bytes: value)
            let block = BigEndianKey.u64(key, at: 4)
            guard block <= UInt64.max / LabelBlock.slots else { throw RecordDecodingError(detail: "block \(block) beyond any slot") }
            var rows: [(slot: UInt64, bytes: [UInt8])] = []
            view.forEachSlot { offset, rank in rows.append((block * LabelBlock.slots + UInt64(offset), Array(view.rowBytes(rank: rank)))) }
            return .labelBlock(set: BigEndianKey.u32(key, at: 0), version: BigEndianKey.u32(key, at: 12), seed: view.seed, rows: rows, rowsChecksumMatches: view.rowsCheck)
        case .labelPostings:
            try keySize(key, ClassPostings.keySize)
            let fields = ClassPostings.fields(key)
            guard Int(fields.classIndex) < schema.classes.count else { throw RecordDecodingError(detail: "class \(fields.classIndex) ≥ \(schema.classes.count) classes") }
            let slots = ClassPostings.slots(chunk: fields.chunk, offsets: try ClassPostings.decode(key: key, value))
            return .postings(set: fields.set, classIndex: fields.classIndex, version: fields.version, slots: slots)
        case .heads:
            let name = try nameKey(key)
            return .head(name: name, taint: try BaseHead.decode(key: Array(key), value, schema: schema).taintID)
        case .projectors:
            let name = try nameKey(key)
            return .projector(name: name, record: try LabelRecord.decodeJSON(ProjectorRecord.self, key: key, value))
        case .projectorVersions:
            try keySize(key, 8)
            let record = try LabelRecord.decodeJSON(ProjectorVersion.self, key: key, value)
            return .projectorVersion(id: BigEndianKey.u32(key, at: 0), version: BigEndianKey.u32(key, at: 4), record: record)
        case .projectorParameters:
            try keySize(key, 8)
            _ = try ProjectorCodec.decodeParameters(key: Array(key), value, schema: schema)
            return .parameters(id: BigEndianKey.u32(key, at: 0), version: BigEndianKey.u32(key, at: 4))
        case .projectorCorrections:
            try keySize(key, 16)
            let (codec, encoded) = try ProjectorCodec.decodeCorrection(key: key, value)
            var out = [Float](repeating: 0, count: schema.classes.count)
            // The EPS of an adaptive correction does not change its layout: any valid one decodes.
            try out.withUnsafeMutableBufferPointer { try CorrectionCodec.codec(codec).decode(encoded, into: $0) }
            return .correction(id: BigEndianKey.u32(key, at: 0), version: BigEndianKey.u32(key, at: 4), sample: BigEndianKey.u64(key, at: 8))
        case .projectorFitted:
            _ = try FittedBlock.decode(key: key, value)
            return .fitted(id: BigEndianKey.u32(key, at: 0), version: BigEndianKey.u32(key, at: 4))
        case .provenance:
            _ = try u64Key(key)
            _ = try ProvenanceCodec.decode(value)
            return .none
        case .taintTags:
            let sealed = formatVersion >= 5
            if key.first == UInt8(ascii: "n") {
                let name = String(decoding: key.dropFirst(), as: UTF8.self)
                return .tagName(name: name, id: try TagEntry.decodeID(key: key, value: value, sealed: sealed))
            }
            let name = try TagEntry.decodeName(key: key, value: value, sealed: sealed)
            return .tagID(id: BigEndianKey.u32(key, at: 1), name: name)
        case .taintLabels:
            try keySize(key, 4)
            let id = BigEndianKey.u32(key, at: 0)
            guard id >= 1, id < 1 << 24 else { throw RecordDecodingError(detail: "label id \(id) out of range") }
            let (s, i) = try TaintLabelRecord.decode(id: id, value)
            return .taintLabel(id: id, secrecy: s, integrity: i)
        case .taintMembers:
            let entry = try PartitionEntry.decode(key: key, value: value, sealed: formatVersion >= 5)
            return .partitionEntry(label: entry.label, sample: entry.sample)
        case .taintLabelIndex:
            let contentKey = Array(key)
            guard key.count >= 4, (key.count - 4) % 4 == 0, Int(BigEndianKey.u32(key, at: 0)) <= (key.count - 4) / 4 else {
                throw RecordDecodingError(detail: "content key of \(key.count) bytes")
            }
            return .contentIndexEntry(key: contentKey, label: try TaintLabelRecord.decodeIndexValue(key: contentKey, value))
        }
    }

    private static func meta(key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) throws -> Finding {
        switch String(decoding: key, as: UTF8.self) {
        case MetaKey.schema: _ = try SchemaRecord.decode(value)
        case MetaKey.slots, MetaKey.sequence, MetaKey.taintedSamples, MetaKey.recountLabelled: _ = try CounterRecord.decode(value)
        case let other: throw RecordDecodingError(detail: "unknown meta record `\(other)`")
        }
        return .none
    }

    private static func keySize(_ key: UnsafeRawBufferPointer, _ size: Int) throws {
        guard key.count == size else { throw RecordDecodingError(detail: "key of \(key.count) bytes, expected \(size)") }
    }

    private static func u64Key(_ key: UnsafeRawBufferPointer) throws -> UInt64 {
        try keySize(key, 8)
        return BigEndianKey.u64(key, at: 0)
    }

    private static func nameKey(_ key: UnsafeRawBufferPointer) throws -> String {
        guard !key.isEmpty, let name = String(bytes: key, encoding: .utf8) else { throw RecordDecodingError(detail: "name key is not UTF-8") }
        return name
    }
}
