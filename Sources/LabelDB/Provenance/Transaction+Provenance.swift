import Foundation

extension Transaction {
    /// Provenance record `id`, checked against its own hash, or nil when there is none.
    ///
    /// - Throws: ``StoreError/corruptRecord(store:table:key:detail:)`` when the record was changed.
    public func provenanceRecord(_ id: UInt64) throws -> ProvenanceRecord? {
        try withValue(.provenance, key: id) { bytes in
            guard let bytes else { return nil }
            do { return try ProvenanceCodec.decode(bytes).record } catch { throw contextualize(error, table: .provenance, key: "\(id)") }
        }
    }

    /// Every provenance record in order, skipping none; a damaged record throws.
    public func provenanceRecords() throws -> [(id: UInt64, record: ProvenanceRecord)] {
        var out: [(id: UInt64, record: ProvenanceRecord)] = []
        try forEach(.provenance) { id, bytes in
            do { out.append((id, try ProvenanceCodec.decode(bytes).record)) } catch { throw contextualize(error, table: .provenance, key: "\(id)") }
            return true
        }
        return out
    }

    /// Checks the hash chain end to end: record numbers without gaps from 1, every record's own
    /// hash, and every record naming its predecessor's hash. Names the first bad record; damage,
    /// a malformed key included, is reported, never thrown.
    public func verifyProvenanceLog(expecting expectedHead: String? = nil) throws -> ProvenanceLogReport {
        var previous = [UInt8](repeating: 0, count: 16)
        let expectedBytes = expectedHead.flatMap(Checksum.bytes(hex:))
        // Record 0 stands for the empty log, whose head is 32 zeros.
        var expectedAt: UInt64? = expectedBytes == previous ? 0 : nil
        var expected: UInt64 = 1
        var count = 0
        var firstBad: (UInt64, String)? = nil
        try walk(.provenance, from: nil) { key, bytes in
            count += 1
            guard key.count == 8 else {
                firstBad = (expected, "a key of \(key.count) bytes where record \(expected) should be (keys are 8 bytes)")
                return false
            }
            let id = BigEndianKey.u64(key, at: 0)
            if id != expected {
                firstBad = (expected, id > expected ? "missing (the next record is \(id))" : "out of order")
                return false
            }
            do {
                let (_, own, named) = try ProvenanceCodec.decode(bytes)
                guard named == previous else {
                    firstBad = (id, "does not name the previous record's hash (a record before it was changed, removed or reordered)")
                    return false
                }
                previous = own
                if own == expectedBytes { expectedAt = id }
            } catch {
                firstBad = (id, (error as? RecordDecodingError)?.detail ?? "\(error)")
                return false
            }
            expected += 1
            return true
        }
        var report = ProvenanceLogReport(records: count, firstBad: firstBad, head: Checksum.hex(previous))
        report.expectedHeadRecord = expectedAt
        return report
    }
}

extension WriteTransaction {
    /// Describes this transaction for the provenance log: the record is appended when the
    /// transaction commits, and everything it wrote points to it. Calling it again merges the
    /// inputs, outputs and parameters into the same record.
    ///
    /// For example:
    ///
    /// ```swift
    /// try store.write(clearance: .all) { tx in
    ///     tx.describe(ProvenanceRecord(activity: "import", agent: "alice", used: [try .file("x.npy")]))
    ///     try tx.put(batch)
    /// }
    /// ```
    public func describe(_ record: ProvenanceRecord) {
        if var existing = describedProvenance {
            existing.used += record.used
            existing.generated += record.generated
            existing.parameters.merge(record.parameters) { _, new in new }
            describedProvenance = existing
        } else {
            describedProvenance = record
        }
    }

    /// The number of the provenance record this transaction appends (reserved on first use).
    func provenanceID() throws -> UInt64 {
        if let id = reservedProvenanceID { return id }
        let id = (try lastKey(.provenance) ?? 0) + 1
        reservedProvenanceID = id
        return id
    }

    /// Notes ids this transaction deleted or relabelled (`kind` "deleted" or "relabelled"): its
    /// record lists them, so `audit` can find the step.
    func noteIDs(_ kind: String, _ ids: some Sequence<UInt64>) {
        touchedIDs[kind, default: []].append(contentsOf: ids)
    }

    /// Notes a change for the record written when the caller described nothing.
    func noteChange(_ what: String, _ count: Int = 1) {
        changeSummary[what, default: 0] += count
    }

    /// Appends this transaction's record (the described one, or a generic `write` record listing
    /// what changed). Called by ``Store/write(_:)`` just before commit.
    func appendProvenance() throws {
        guard describedProvenance != nil || !changeSummary.isEmpty else { return }
        var record = describedProvenance ?? ProvenanceRecord(
            activity: "write", agent: "library",
            parameters: Dictionary(uniqueKeysWithValues: changeSummary.map { ($0.key, String($0.value)) }))
        for (kind, ids) in touchedIDs {
            record.parameters.merge(RecordedIDs.parameters(kind: kind, ids: ids)) { _, recorded in recorded }
        }
        let id = try provenanceID()
        let previous: [UInt8] = id == 1 ? [UInt8](repeating: 0, count: 16) : try withValue(.provenance, key: id - 1) { bytes in
            guard let bytes, bytes.count >= 16 else {
                throw StoreError.corruptRecord(store: store.path, table: Table.provenance.rawValue, key: "\(id - 1)", detail: "missing; cannot chain record \(id)")
            }
            return Array(bytes[0..<16])
        }
        try put(.provenance, key: BigEndianKey.u64(id), bytes: ProvenanceCodec.encode(record, previous: previous), append: true)
    }
}
