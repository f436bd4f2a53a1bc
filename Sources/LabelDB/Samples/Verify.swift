/// What ``Transaction/verify()`` found.
public struct VerificationReport: Sendable {
    /// One damaged or inconsistent record.
    public struct Problem: Sendable, CustomStringConvertible {
        /// The table holding the record.
        public let table: String
        /// The record's key, as text (an id, "block 3", "schema").
        public let key: String
        /// What is wrong with it.
        public let detail: String
        public var description: String { "table `\(table)`, key \(key): \(detail)" }
    }

    /// Every problem found, in the order the walk met them.
    public var problems: [Problem] = []
    /// Sample records read.
    public var samplesChecked = 0
    /// Embedding blocks read.
    public var blocksChecked = 0

    /// True when nothing was wrong.
    public var isClean: Bool { problems.isEmpty }
}

extension Transaction {
    /// Walks the whole store and reports every record that fails its checksum or disagrees with
    /// another record. Damaged bytes become entries in the report, never a crash or a throw;
    /// only LMDB failures throw.
    ///
    /// Verification reads every record, hidden ones included, and its counts would reveal them,
    /// so it needs a clearance that sees the whole store (as ``Store/backup(to:clearance:)`` does).
    ///
    /// - Throws: ``TaintError/clearanceTooNarrow(_:)``; ``LMDBError``.
    public func verify() throws -> VerificationReport {
        guard clearance == .all || (try? seesEverything) == true else {
            throw TaintError.clearanceTooNarrow("verify reads every record; it needs a clearance that sees the whole store (--clearance all)")
        }
        var report = VerificationReport()
        func problem(_ table: Table, _ key: String, _ detail: String) {
            report.problems.append(.init(table: table.rawValue, key: key, detail: detail))
        }
        func detail(_ error: any Error) -> String {
            switch error {
            case let mismatch as ChecksumMismatch: mismatch.detail
            case let decoding as RecordDecodingError: decoding.detail
            default: "\(error)"
            }
        }
        let layout = store.blockLayout
        let capacity = UInt64(layout.capacity)

        try withValue(.meta, name: MetaKey.schema) { bytes in
            guard let bytes else { return problem(.meta, MetaKey.schema, "missing") }
            do { _ = try SchemaRecord.decode(bytes) } catch { problem(.meta, MetaKey.schema, detail(error)) }
        }
        var next: UInt64 = .max
        try withValue(.meta, name: MetaKey.slots) { bytes in
            guard let bytes else { return problem(.meta, MetaKey.slots, "missing") }
            do { next = try CounterRecord.decode(bytes) } catch { problem(.meta, MetaKey.slots, detail(error)) }
        }

        // The taint catalog (tags and interned labels): the whole of it, whatever the clearance.
        var interned: TaintCatalog? = nil
        do { interned = try catalog() } catch {
            problem(.taintLabels, "catalog", detail(error))
        }

        // Samples, and the embedding row each points to.
        var owner: [UInt64: UInt64] = [:]   // slot → id
        var damaged = Set<UInt64>()          // ids whose record is already reported
        var tainted: [UInt64: UInt32] = [:]  // id → label id, for labels other than 0
        try forEach(.samples) { id, bytes in
            report.samplesChecked += 1
            let record: SampleRecord.View
            do { record = try SampleRecord.decode(id: id, bytes) } catch {
                problem(.samples, "\(id)", detail(error))
                damaged.insert(id)
                return true
            }
            if next != .max && record.slot >= next {
                problem(.samples, "\(id)", "embedding slot \(record.slot) was never allocated (next slot \(next))")
                return true
            }
            if let other = owner.updateValue(id, forKey: record.slot) {
                problem(.samples, "\(id)", "shares embedding slot \(record.slot) with sample \(other)")
            }
            if let interned, interned.label(record.taintLabel) == nil {
                problem(.samples, "\(id)", "taint label id \(record.taintLabel) is not interned")
            }
            if record.taintLabel != 0 { tainted[id] = record.taintLabel }
            if (try? JSONValue.parse(record.metadata).objectValue) == nil {
                problem(.samples, "\(id)", "metadata is not a JSON object")
            }
            let block = record.slot / capacity
            let index = Int(record.slot % capacity)
            try withValue(.embeddings, key: block) { blockBytes in
                guard let blockBytes else {
                    return problem(.embeddings, "block \(block)", "missing; sample \(id) has its embedding there")
                }
                do {
                    try EmbeddingBlockView(layout: layout, bytes: blockBytes).verifyRow(index, id: id)
                } catch {
                    problem(.embeddings, "block \(block) slot \(index) (sample \(id))", detail(error))
                }
            }
            return true
        }

        // Blocks: headers, and live slots that no sample claims.
        try forEach(.embeddings) { block, bytes in
            report.blocksChecked += 1
            do {
                let view = try EmbeddingBlockView(layout: layout, bytes: bytes)
                try view.verifyHeader(block: block)
                for index in 0..<view.rowsUsed where view.isLive(index) {
                    let slot = block * capacity + UInt64(index)
                    // A slot whose sample record is damaged was reported with that record.
                    if owner[slot] != view.id(at: index) && !damaged.contains(view.id(at: index)) {
                        problem(.embeddings, "block \(block) slot \(index)", "live slot for id \(view.id(at: index)) that no sample record points to")
                    }
                }
            } catch {
                problem(.embeddings, "block \(block)", detail(error))
            }
            return true
        }

        try forEach(.freeSlots) { slot, _ in
            if owner[slot] != nil { problem(.freeSlots, "\(slot)", "free slot is in use by sample \(owner[slot]!)") }
            if next != .max && slot >= next { problem(.freeSlots, "\(slot)", "free slot was never allocated (next slot \(next))") }
            return true
        }

        // Taint partitions: exactly one entry per sample whose label is not 0, naming that label.
        var listed = 0
        try walk(.taintMembers, from: nil) { key, _ in
            guard key.count == 12 else {
                problem(.taintMembers, "?", "key of \(key.count) bytes, expected 12")
                return true
            }
            let label = BigEndianKey.u32(key, at: 0), id = BigEndianKey.u64(key, at: 4)
            if tainted[id] == label { listed += 1 } else if !damaged.contains(id) {
                problem(.taintMembers, "label \(label) sample \(id)", tainted[id].map { "the sample carries label \($0)" } ?? "no such sample, or it carries label 0")
            }
            return true
        }
        if listed != tainted.count {
            problem(.taintMembers, "*", "\(tainted.count - listed) tainted samples are missing from their partitions")
        }
        // The recorded partition count (format 5) must match both the entries and the samples.
        do {
            let entries = try entries(.taintMembers)
            if let recorded = try recordedPartitionCount(), recorded != entries || recorded != tainted.count {
                problem(.meta, MetaKey.taintedSamples, "records \(recorded) partition entries; the table holds \(entries), \(tainted.count) samples are tainted")
            }
        } catch {
            problem(.meta, MetaKey.taintedSamples, detail(error))
        }

        // The content index: one entry per interned label, naming a record of that content.
        var indexed = 0
        try walk(.taintLabelIndex, from: nil) { key, value in
            let contentKey = Array(key)
            do {
                let id = try TaintLabelRecord.decodeIndexValue(key: contentKey, value)
                var labelKey: [UInt8] = []
                BigEndianKey.append(id, to: &labelKey)
                let matches = try withValue(.taintLabels, key: labelKey) { record -> Bool in
                    guard let record, let (s, i) = try? TaintLabelRecord.decode(id: id, record) else { return false }
                    return TaintLabelRecord.contentKey(secrecy: s, integrity: i) == contentKey
                }
                if matches { indexed += 1 } else { problem(.taintLabelIndex, "label \(id)", "names a label record of other content, or none") }
            } catch {
                problem(.taintLabelIndex, "?", detail(error))
            }
            return true
        }
        if let interned, indexed != interned.labels.count(where: { $0 != nil }) - 1 {
            problem(.taintLabelIndex, "*", "\(interned.labels.count(where: { $0 != nil }) - 1) interned labels, \(indexed) good index entries")
        }

        // The provenance log's hash chain.
        let log = try verifyProvenanceLog()
        if let bad = log.firstBad { problem(.provenance, "\(bad.id)", bad.reason) }
        return report
    }
}
