import Foundation

/// What ``WriteTransaction/dropLabelSet(_:)`` removed.
public struct LabelSetDrop: Sendable, Equatable {
    /// The label set dropped.
    public var name: String
    /// Versions it had.
    public var versions: Int
    /// Label rows removed, over every version.
    public var rows: Int
    /// Label blocks and class-posting chunks removed.
    public var blocks: Int
    public var postingChunks: Int
    /// Projectors with a version fitted on the set: they still regenerate labels (their
    /// parameters and corrections are their own), but without the set they cannot tell which
    /// samples they were fitted on, so every label reads `unfitted` and no bound is claimed.
    public var dependentProjectors: [String]
}

extension Transaction {
    /// The projectors with a version fitted on label set `name`, by name (whatever the clearance:
    /// dropping the set changes them all).
    public func projectors(fittedOn name: String) throws -> [String] {
        var names: [String] = []
        for projectorName in try self.names(in: .projectors) {
            guard let record = try projectorRecord(key: Array(projectorName.utf8)) else { continue }
            let versions = try versionRecords(ProjectorVersion.self, in: .projectorVersions, id: record.id, latest: record.latest, name: projectorName)
            if versions.contains(where: { $0.sourceSet == name }) { names.append(projectorName) }
        }
        return names
    }
}

extension WriteTransaction {
    /// Drops label set `name`: every version's rows and class postings, its version records and
    /// the set itself; the name becomes free. The transaction's clearance must see every row
    /// (each row's label, sample ⊔ source, must flow to it): a drop must not remove what the
    /// caller cannot see. Dependent projectors are not changed (see ``LabelSetDrop``); callers
    /// decide whether to go ahead when there are any. The bytes stay in LMDB's free pages until
    /// reused; a backup (compacting copy) leaves them out.
    ///
    /// - Throws: ``LabelError/unknownLabelSet(_:)``, ``TaintError/clearanceTooNarrow(_:)``.
    @discardableResult
    public func dropLabelSet(_ name: String) throws -> LabelSetDrop {
        guard let set = try labelSet(named: name) else { throw LabelError.unknownLabelSet(name) }
        guard try packedLabels else { throw StoreError.readOnly(path: store.path) }
        var prefix: [UInt8] = []
        BigEndianKey.append(set.id, to: &prefix)
        let (blockKeys, rows) = try blocksOfDrop(set, prefix: prefix)
        var chunkKeys: [[UInt8]] = []
        try walk(.labelPostings, from: prefix) { key, _ in
            guard key.prefix(4).elementsEqual(prefix) else { return false }
            chunkKeys.append(Array(key))
            return true
        }
        for key in blockKeys { try delete(.labelBlocks, key: key) }
        for key in chunkKeys { try delete(.labelPostings, key: key) }
        for v in 1...max(set.latest, 1) where v <= set.latest {
            try delete(.labelVersions, key: LabelRecord.versionKey(set: set.id, version: UInt32(v)))
        }
        try delete(.labelSets, key: Array(name.utf8))
        noteChange("label_sets_dropped")
        return LabelSetDrop(name: name, versions: set.latest, rows: rows, blocks: blockKeys.count, postingChunks: chunkKeys.count,
                            dependentProjectors: try projectors(fittedOn: name))
    }

    /// The keys of `set`'s label blocks and the rows they hold, each row checked to be visible.
    private func blocksOfDrop(_ set: LabelSet, prefix: [UInt8]) throws -> (keys: [[UInt8]], rows: Int) {
        let tainted = try taintedSamples()
        var owners = SlotOwners()
        var keys: [[UInt8]] = [], rows = 0, hidden = false
        try walk(.labelBlocks, from: prefix) { key, value in
            guard key.prefix(4).elementsEqual(prefix) else { return false }
            guard key.count == 16 else { throw damagedKey(key.count, expected: 16, in: .labelBlocks) }
            let number = BigEndianKey.u64(key, at: 4), version = Int(BigEndianKey.u32(key, at: 12))
            guard number <= UInt64.max / LabelBlock.slots else { throw damagedKey(key.count, expected: 16, in: .labelBlocks) }
            try checkRowVersion(version, set: set, sample: number * LabelBlock.slots)
            let view: LabelBlockView
            do { view = try LabelBlockView(key: key, bytes: value) } catch {
                throw contextualize(error, table: .labelBlocks, key: "\(set.name)@\(version) block \(number)")
            }
            var slots: [Int] = []
            view.forEachSlot { offset, _ in slots.append(offset) }
            for offset in slots {
                let id = try owners.sample(at: number * LabelBlock.slots + UInt64(offset), in: self, naming: .labelBlocks, set: set)
                if try labelTaint(sampleTaint: tainted[id] ?? 0, sample: id, set: set, rowVersion: version) == nil { hidden = true; return false }
            }
            rows += slots.count
            keys.append(Array(key))
            return true
        }
        if hidden { throw TaintError.clearanceTooNarrow("dropping label set `\(set.name)` needs a clearance that sees every row of it") }
        return (keys, rows)
    }
}
