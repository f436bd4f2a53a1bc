import Foundation

// Reading samples. Every read checks the sample record's checksum and its embedding row's.
extension Transaction {
    /// The number of samples visible under the transaction's clearance. When it sees everything,
    /// LMDB's own count (no scan); otherwise from the taint partitions.
    public func count() throws -> Int {
        switch try sampleVisibility() {
        case .all: try entries(.samples)
        case .hiding(let hidden): try entries(.samples) - hidden.count
        case .only(let visible): visible.count
        }
    }

    /// True when a sample with `id` is stored and visible under the transaction's clearance.
    public func contains(_ id: UInt64) throws -> Bool {
        try visibleSample(id) != nil
    }

    /// The sample `id`, copied out of the store, or nil when there is none.
    ///
    /// - Throws: ``StoreError/checksumMismatch(store:table:key:expected:found:)`` or
    ///   ``StoreError/corruptRecord(store:table:key:detail:)`` when its bytes are damaged.
    public func sample(_ id: UInt64) throws -> Sample? {
        try withSample(id) { try $0.copy() }
    }

    /// Passes the checked sample `id` to `body` without copying it, or returns nil when there is none.
    ///
    /// Lifetime: the view borrows LMDB's map; it is valid only inside `body`.
    @inlinable
    public func withSample<T>(_ id: UInt64, _ body: (SampleView) throws -> T) throws -> T? {
        guard let view = try checkedSample(id) else { return nil }
        return try body(view)
    }

    /// The checked sample `id`, borrowed from the map. Not generic, so callers in other modules
    /// run specialised code (the generic `withSample` is inlined into them).
    ///
    /// Lifetime: valid until the transaction ends or, in a write transaction, the next change.
    @usableFromInline
    func checkedSample(_ id: UInt64) throws -> SampleView? {
        try withValue(.samples, key: id) { bytes -> SampleView? in
            guard let bytes else { return nil }
            let record = try decodeSampleRecord(id: id, bytes)
            guard try admits(labelID: record.taintLabel) else { return nil }
            return try withCheckedSample(id: id, record: record) { $0 }
        }
    }

    /// Walks the samples visible under the clearance in ascending id order from the first id ≥
    /// `start`, until `body` returns false.
    ///
    /// Lifetime: each view is valid only during its call to `body`.
    public func forEachSample(from start: UInt64 = 0, _ body: (SampleView) throws -> Bool) throws {
        try forEach(.samples, from: start) { id, bytes in
            let record = try decodeSampleRecord(id: id, bytes)
            guard try admits(labelID: record.taintLabel) else { return true }
            return try withCheckedSample(id: id, record: record, body)
        }
    }

    /// Up to `limit` samples in ascending id order, starting at the first id ≥ `start`.
    public func samples(from start: UInt64 = 0, limit: Int = .max) throws -> [Sample] {
        var out: [Sample] = []
        guard limit > 0 else { return out }
        try forEachSample(from: start) { view in
            out.append(try view.copy())
            return out.count < limit
        }
        return out
    }

    /// The ids of every visible sample, ascending.
    public func ids() throws -> [UInt64] {
        var out: [UInt64] = []
        let visibility = try sampleVisibility()
        out.reserveCapacity(try count())
        try forEach(.samples) { id, _ in
            if visibility.admits(id) { out.append(id) }
            return true
        }
        return out
    }

    /// The largest visible id, or nil when no sample is visible.
    public func maxID() throws -> UInt64? {
        let visibility = try sampleVisibility()
        var found: UInt64? = nil
        try walkSampleIDs(descending: true) { id in
            if visibility.admits(id) { found = id }
            return found == nil
        }
        return found
    }

    /// The taint label of sample `id`, or nil when it is absent or invisible.
    public func taintLabel(of id: UInt64) throws -> TaintLabel? {
        try withValue(.samples, key: id) { bytes in
            guard let bytes else { return nil }
            let label = try decodeSampleRecord(id: id, bytes).taintLabel
            guard try admits(labelID: label) else { return nil }
            return try taintLabel(id: label, sample: id)
        }
    }

    // MARK: Internals shared with writes and verify

    /// Walks every stored sample id (visible or not) ascending, or descending, until `body` returns false.
    func walkSampleIDs(descending: Bool, _ body: (UInt64) throws -> Bool) throws {
        guard descending else { return try forEach(.samples) { id, _ in try body(id) } }
        var next = try lastKey(.samples)
        while let id = next {
            guard try body(id) else { return }
            guard id > 0 else { return }
            // The greatest key below id: one cursor positioning per step, no id list in memory.
            next = try withLastEntry(.samples, atOrBefore: BigEndianKey.u64(id - 1)) { entry in
                entry.map { BigEndianKey.u64($0.key, at: 0) }
            }
        }
    }


    func withCheckedSample<T>(id: UInt64, record: SampleRecord.View, _ body: (SampleView) throws -> T) throws -> T {
        let taint = try taintLabel(id: record.taintLabel, sample: id)
        return try withEmbeddingRow(id: id, slot: record.slot) { row in
            try body(SampleView(
                id: id, embeddingBytes: row, elementType: store.schema.elementType,
                metadataJSON: record.metadata, payload: record.payload, embeddingSequence: record.embeddingSequence,
                provenance: record.provenance, taint: taint, slot: record.slot))
        }
    }

    func decodeSampleRecord(id: UInt64, _ bytes: UnsafeRawBufferPointer) throws -> SampleRecord.View {
        do {
            return try SampleRecord.decode(id: id, bytes)
        } catch {
            throw contextualize(error, table: .samples, key: "\(id)")
        }
    }

    /// Passes the checked embedding bytes of sample `id` (stored in `slot`) to `body`.
    func withEmbeddingRow<T>(id: UInt64, slot: UInt64, _ body: (UnsafeRawBufferPointer) throws -> T) throws -> T {
        let layout = store.blockLayout
        let block = slot / UInt64(layout.capacity)
        let index = Int(slot % UInt64(layout.capacity))
        // Built only on failure: formatting it on every read would cost more than the read.
        func key() -> String { "block \(block) slot \(index) (sample \(id))" }
        return try withValue(.embeddings, key: block) { bytes in
            guard let bytes else {
                throw StoreError.corruptRecord(store: store.path, table: Table.embeddings.rawValue, key: key(), detail: "the embedding block is missing")
            }
            let row: UnsafeRawBufferPointer
            do {
                let view = try EmbeddingBlockView(layout: layout, bytes: bytes)
                try view.verifyRow(index, id: id)
                row = view.row(index)
            } catch {
                throw contextualize(error, table: .embeddings, key: key())
            }
            return try body(row)
        }
    }

    /// Adds the store, table and key to a record-level error.
    func contextualize(_ error: any Error, table: Table, key: String) -> any Error {
        switch error {
        case let mismatch as ChecksumMismatch:
            StoreError.checksumMismatch(store: store.path, table: table.rawValue, key: key, expected: mismatch.expected, found: mismatch.found)
        case let decoding as RecordDecodingError:
            StoreError.corruptRecord(store: store.path, table: table.rawValue, key: key, detail: decoding.detail)
        default:
            error
        }
    }

    func nextSlot() throws -> UInt64 {
        try withValue(.meta, name: MetaKey.slots) { bytes in
            guard let bytes else {
                throw StoreError.corruptRecord(store: store.path, table: Table.meta.rawValue, key: MetaKey.slots, detail: "missing")
            }
            do { return try CounterRecord.decode(bytes) } catch { throw contextualize(error, table: .meta, key: MetaKey.slots) }
        }
    }
}

extension Transaction {
    /// The store's write sequence as committed (0 before any embedding was written). A damaged
    /// counter is reported, never read as 0: a projector fitted at "0" would call every sample stale.
    func storedSequence() throws -> UInt64 {
        try withValue(.meta, name: MetaKey.sequence) { bytes -> UInt64 in
            guard let bytes else { return 0 }
            do { return try CounterRecord.decode(bytes) } catch { throw contextualize(error, table: .meta, key: MetaKey.sequence) }
        }
    }
}

// Writing samples.
extension WriteTransaction {
    /// Inserts `sample`, or replaces the stored sample with the same id.
    ///
    /// - Parameter privileges: the integrity tags the writer may vouch for; every integrity tag
    ///   of the sample's taint label must be among them (endorsing takes a privilege, as in
    ///   ``relabel(_:_:privileges:agent:)``).
    /// - Throws: ``StoreError/invalidSample(id:reason:)`` when the embedding has the wrong
    ///   dimension or a non-finite value; ``TaintError/missingPrivilege(tag:action:)``.
    public func put(_ sample: Sample, privileges: Set<String> = []) throws {
        _ = try put(SampleBatch([sample]), mode: .replace, privileges: privileges)
    }

    /// Writes every row of `batch`, in ascending id order so pages fill even when ids are random.
    /// A replaced sample's taint label becomes the join of its old one and the row's (never lower:
    /// see ``relabel(_:_:privileges:agent:)``).
    ///
    /// Every row is checked before anything is written; a failure throws and, since the enclosing
    /// ``Store/write(_:)`` then aborts, leaves the store as it was.
    ///
    /// - Parameters:
    ///   - mode: ``PutMode/insert`` fails on an id already stored; ``PutMode/replace`` overwrites it.
    ///   - privileges: the integrity tags the writer may vouch for: every integrity tag a row
    ///     carries must be among them.
    ///   - progress: called now and then with the number of rows written so far.
    /// - Throws: ``StoreError/invalidSample(id:reason:)``, ``StoreError/duplicateID(_:)``,
    ///   ``StoreError/idExists(_:)``, ``StoreError/idHeldByHiddenSample(_:)``,
    ///   ``TaintError/missingPrivilege(tag:action:)``.
    @discardableResult
    public func put(_ batch: SampleBatch, mode: PutMode = .replace, privileges: Set<String> = [], progress: ((Int) -> Void)? = nil) throws -> PutSummary {
        let schema = store.schema
        let dimension = schema.dimension
        let n = batch.count
        try SampleValidation.check(batch, schema: schema)
        if let taints = batch.taints { try TaintChange.checkEndorsement(Set(taints), privileges: privileges) }
        let metadataBytes: [[UInt8]] = (batch.metadata ?? []).map { members in
            var out: [UInt8] = []
            JSONValue.object(members).write(into: &out)
            return out
        }
        let emptyObject: [UInt8] = Array("{}".utf8)
        let order = SampleValidation.ascendingOrder(batch.ids)
        for k in 1..<max(n, 1) where batch.ids[order[k]] == batch.ids[order[k - 1]] {
            throw StoreError.duplicateID(batch.ids[order[k]])
        }

        // Taint labels interned once per distinct label, not once per row.
        var taintIDs: [UInt32]? = nil
        if let taints = batch.taints {
            var known: [TaintLabel: UInt32] = [:]
            taintIDs = try taints.map { label in
                if let id = known[label] { return id }
                let id = try intern(label)
                known[label] = id
                return id
            }
        }

        var summary = PutSummary()
        // Replaced samples whose label became more restrictive, by the change: projectors fitted
        // on them must follow, as after a relabel.
        var restricted: [TaintChange: [UInt64]] = [:]
        let sequence = try writeSequence()
        let provenance = try provenanceID()
        let lastID = try lastKey(.samples)
        var next = try nextSlot()
        let startingNext = next
        var freeSlots = try entries(.freeSlots)
        let capacity = UInt64(store.blockLayout.capacity)
        var changes: [(block: UInt64, change: SlotChange)] = []
        changes.reserveCapacity(n)

        try batch.embeddings.withUnsafeBufferPointer { vectors in
            for (done, row) in order.enumerated() {
                let id = batch.ids[row]
                // Ids above the largest stored one are new: no lookup, and MDB_APPEND fills pages.
                let isAppend = lastID.map { id > $0 } ?? true
                var slot: UInt64? = nil
                var oldTaint: UInt32? = nil
                if !isAppend {
                    (slot, oldTaint) = try withValue(.samples, key: id) { bytes in
                        guard let bytes else { return (nil, nil) }
                        let record = try decodeSampleRecord(id: id, bytes)
                        return (record.slot, record.taintLabel)
                    }
                }
                if let oldTaint {
                    // Ids are one namespace: an id held by a sample this clearance cannot see is
                    // refused like any taken id, never overwritten (a side channel the spec lists).
                    if mode == .insert { throw StoreError.idExists(id) }
                    if try !admits(labelID: oldTaint) { throw StoreError.idHeldByHiddenSample(id) }
                    summary.replaced += 1
                } else {
                    summary.inserted += 1
                    if freeSlots > 0, let reused = try popFirstKey(.freeSlots) {
                        freeSlots -= 1
                        slot = reused
                    } else {
                        slot = next
                        next += 1
                    }
                }
                var taint = taintIDs?[row] ?? 0
                if let oldTaint, oldTaint != taint {
                    // A replaced sample keeps the join of its old label and the new one: labels
                    // and projectors derived from the old content still sit in the store, and
                    // lowering a label takes `relabel` with the privilege.
                    let old = try taintLabel(id: oldTaint, sample: id)
                    let joined = old.join(try taintLabel(id: taint, sample: id))
                    taint = try intern(joined)
                    if case .tags(let oldSecrecy) = old.secrecy, case .tags(let newSecrecy) = joined.secrecy,
                       case .tags(let oldIntegrity) = old.integrity, case .tags(let newIntegrity) = joined.integrity, joined != old {
                        restricted[TaintChange(addSecrecy: newSecrecy.subtracting(oldSecrecy), removeIntegrity: oldIntegrity.subtracting(newIntegrity)), default: []].append(id)
                    }
                }
                try movePartition(sample: id, from: oldTaint, to: taint)
                let metadata = metadataBytes.isEmpty ? emptyObject : metadataBytes[row]
                let payload = batch.payloads?[row] ?? []
                let size = SampleRecord.size(metadataCount: metadata.count, payloadCount: payload.count)
                try put(.samples, key: id, size: size, append: isAppend) { out in
                    metadata.withUnsafeBytes { m in
                        payload.withUnsafeBytes { p in
                            SampleRecord.encode(id: id, slot: slot!, taintLabel: taint, provenance: provenance, embeddingSequence: sequence, metadata: m, payload: p, into: out)
                        }
                    }
                }
                let vector = vectors.baseAddress! + row * dimension
                changes.append((slot! / capacity, .put(index: Int(slot! % capacity), id: id, vector: vector)))
                if let progress, done % 4096 == 4095 { progress(done + 1) }
            }
            try applySlotChanges(&changes)
        }
        for (change, ids) in restricted { try restrictProjectors(fittedOn: ids, change) }
        if next != startingNext {
            try put(.meta, name: MetaKey.slots, bytes: CounterRecord.encoded(next))
        }
        progress?(n)
        noteChange("samples_written", n)
        return summary
    }

    /// The largest id stored, visible or not: new ids must be allocated past it, since ids are
    /// one namespace (the id gaps this leaves are a side channel the format spec lists).
    public func largestIDInUse() throws -> UInt64? {
        try lastKey(.samples)
    }

    /// This transaction's write sequence: the store's counter, incremented once by the first
    /// transaction that writes embeddings and recorded in every sample it writes, so a projector
    /// can tell which embeddings changed after it was fitted.
    func writeSequence() throws -> UInt64 {
        if let cached = cachedWriteSequence { return cached }
        let next = try storedSequence() + 1
        try put(.meta, name: MetaKey.sequence, bytes: CounterRecord.encoded(next))
        cachedWriteSequence = next
        return next
    }

    /// Deletes sample `id`; returns false when it was not stored.
    @discardableResult
    public func delete(_ id: UInt64) throws -> Bool {
        try delete([id]) == 1
    }

    /// Deletes every listed sample that is stored and visible; returns how many were. Samples the
    /// clearance cannot see are skipped as if absent.
    /// Their embedding slots are zeroed and reused by later inserts, and their labels are removed
    /// from every label set and version.
    @discardableResult
    public func delete(_ ids: [UInt64]) throws -> Int {
        let capacity = UInt64(store.blockLayout.capacity)
        var changes: [(block: UInt64, change: SlotChange)] = []
        let sets = try labelSets()
        var doomed: [(id: UInt64, slot: UInt64)] = []
        for id in Set(ids).sorted() {
            let found: (slot: UInt64, taint: UInt32)? = try withValue(.samples, key: id) { bytes in
                guard let bytes else { return nil }
                let record = try decodeSampleRecord(id: id, bytes)
                return (record.slot, record.taintLabel)
            }
            guard let (slot, taint) = found, try admits(labelID: taint) else { continue }
            try movePartition(sample: id, from: taint, to: 0)
            try delete(.samples, key: id)
            doomed.append((id, slot))
            try put(.freeSlots, key: slot, size: 0) { _ in }
            changes.append((slot / capacity, .clear(index: Int(slot % capacity))))
        }
        try applySlotChanges(&changes)
        try lowerLabelledCounts(try purgeLabels(of: doomed, sets: sets))
        try clearFitted(slots: doomed.map(\.slot))
        if !changes.isEmpty { noteChange("samples_deleted", changes.count) }
        noteIDs("deleted", doomed.lazy.map(\.id))
        return changes.count
    }

    /// Rewrites each touched embedding block once, with all its changes applied.
    private func applySlotChanges(_ changes: inout [(block: UInt64, change: SlotChange)]) throws {
        guard !changes.isEmpty else { return }
        let isSorted = zip(changes, changes.dropFirst()).allSatisfy { ($0.block, $0.change.index) < ($1.block, $1.change.index) }
        if !isSorted { changes.sort { ($0.block, $0.change.index) < ($1.block, $1.change.index) } }
        let layout = store.blockLayout
        let lastBlock = try lastKey(.embeddings)
        var start = 0
        while start < changes.count {
            let block = changes[start].block
            var end = start
            while end < changes.count && changes[end].block == block { end += 1 }
            let group = changes[start..<end].map(\.change)
            var old: [UInt8]? = nil
            var oldRows = 0
            try withValue(.embeddings, key: block) { bytes in
                guard let bytes else { return }
                do {
                    let view = try EmbeddingBlockView(layout: layout, bytes: bytes)
                    // Rewriting a damaged header would give it a fresh checksum and hide the damage.
                    try view.verifyHeader(block: block)
                    oldRows = view.rowsUsed
                } catch {
                    throw contextualize(error, table: .embeddings, key: "block \(block)")
                }
                old = Array(bytes)
            }
            let rows = EmbeddingBlockWriter.rowsAfter(oldRows: oldRows, changes: group)
            let append = lastBlock.map { block > $0 } ?? true
            try put(.embeddings, key: block, size: layout.size(rows: rows), append: append) { out in
                EmbeddingBlockWriter.write(block: block, layout: layout, old: old, oldRows: oldRows, rows: rows, changes: group, into: out)
            }
            start = end
        }
    }
}

/// Checks on batches before anything is written.
enum SampleValidation {
    static func check(_ batch: SampleBatch, schema: Schema) throws {
        let n = batch.count
        let d = schema.dimension
        guard batch.embeddings.count == n * d else {
            if n > 0, batch.embeddings.count % n == 0 {
                throw StoreError.invalidSample(id: batch.ids[0], reason: "embedding has \(batch.embeddings.count / n) elements, the store's dimension is \(d)")
            }
            throw StoreError.invalidSample(id: nil, reason: "\(batch.embeddings.count) embedding elements for \(n) rows of dimension \(d)")
        }
        if let metadata = batch.metadata, metadata.count != n {
            throw StoreError.invalidSample(id: nil, reason: "\(metadata.count) metadata objects for \(n) rows")
        }
        if let payloads = batch.payloads {
            guard payloads.count == n else {
                throw StoreError.invalidSample(id: nil, reason: "\(payloads.count) payloads for \(n) rows")
            }
            for (row, payload) in payloads.enumerated() where payload.count > Int(UInt32.max) {
                throw StoreError.invalidSample(id: batch.ids[row], reason: "payload of \(payload.count) bytes exceeds 4 GiB − 1")
            }
        }
        // f16 stores reject values that would round to infinity, the same as infinities.
        let limit: Float = schema.elementType == .f16 ? 65504 : .greatestFiniteMagnitude
        try batch.embeddings.withUnsafeBufferPointer { values in
            for i in 0..<values.count where !(abs(values[i]) <= limit) {
                let what = values[i].isNaN ? "NaN" : values[i].isInfinite ? "\(values[i])" : "\(values[i]) (beyond the f16 range)"
                throw StoreError.invalidSample(id: batch.ids[i / d], reason: "embedding element \(i % d) is \(what)")
            }
        }
    }

    /// Row indices in ascending id order (O(n) when already sorted, the common case).
    static func ascendingOrder(_ ids: [UInt64]) -> [Int] {
        if zip(ids, ids.dropFirst()).allSatisfy({ $0 <= $1 }) { return Array(ids.indices) }
        var pairs = ids.enumerated().map { ($0.element, $0.offset) }
        pairs.sort { $0.0 < $1.0 || ($0.0 == $1.0 && $0.1 < $1.1) }
        return pairs.map(\.1)
    }
}
