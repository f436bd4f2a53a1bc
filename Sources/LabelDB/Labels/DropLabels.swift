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
    /// Projectors with a version fitted on what was dropped. They keep working, bound included:
    /// their parameters, corrections and fitted samples are their own (format 7); only
    /// ``Transaction/checkProjector(_:)``, which compares with the stored labels, needs the set.
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
    /// caller cannot see. Dependent projectors are not changed (see ``LabelSetDrop``). The bytes stay in LMDB's free pages until
    /// reused; a backup (compacting copy) leaves them out.
    ///
    /// - Throws: ``LabelError/unknownLabelSet(_:)``, ``TaintError/clearanceTooNarrow(_:)``.
    @discardableResult
    public func dropLabelSet(_ name: String) throws -> LabelSetDrop {
        guard let set = try labelSet(named: name) else { throw LabelError.unknownLabelSet(name) }
        guard try packedLabels else { throw StoreError.readOnly(path: store.path) }
        var prefix: [UInt8] = []
        BigEndianKey.append(set.id, to: &prefix)
        let (blockKeys, rows) = try blocksOfDrop(set)
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

    /// Drops version `version` of label set `name` (format 7, R-54): the version reads as gone
    /// from now on, and every row of it — or of an earlier dropped version — that no remaining
    /// version reads is removed with its class posting. A row stays while some version after it
    /// that is not dropped still reads it: one with no newer row in between that every clearance
    /// admitting this row also admits. Counts of the remaining versions do not change. The
    /// clearance must see every row of the version; the latest version cannot be dropped (it is
    /// the set's current state: drop the set, or import a new version first).
    ///
    /// - Returns: the rows removed, and the projectors fitted on that version.
    /// - Throws: ``LabelError``, ``TaintError/clearanceTooNarrow(_:)``.
    @discardableResult
    public func dropLabelVersion(_ name: String, version: Int) throws -> LabelSetDrop {
        let (set, _) = try resolve(LabelSetReference(name: name, version: version))
        guard version < set.latest else {
            throw LabelError.latestVersionKept(set: name, version: version)
        }
        _ = try blocksOfDrop(set, version: version)   // the clearance check
        var record = try labelSetVersion(set: set.id, version: UInt32(version), name: name)
        record.dropped = true
        let key = LabelRecord.versionKey(set: set.id, version: UInt32(version))
        try put(.labelVersions, key: key, bytes: LabelRecord.encodeJSON(record, key: key))
        var versions = set.versions
        versions[version - 1].dropped = true
        let removed = try removeUnreadRows(of: LabelSet(name: set.name, id: set.id, codec: set.codec, versions: versions, perView: set.perView), counting: version)
        noteChange("label_versions_dropped")
        let dependents = try projectors(fittedOn: name).filter { projector in
            try self.projector(named: projector)?.versions.contains { $0.sourceSet == name && $0.sourceVersion == version } ?? false
        }
        return LabelSetDrop(name: name, versions: 1, rows: removed.rows, blocks: removed.blocks, postingChunks: removed.chunks, dependentProjectors: dependents)
    }

    /// Removes the rows of dropped versions that no remaining version reads (see
    /// ``dropLabelVersion(_:version:)``), and their postings. Returns what it removed of version
    /// `counted` only: rows of earlier dropped versions it removes may be hidden from the caller,
    /// whose clearance was checked against this version's rows alone.
    private func removeUnreadRows(of set: LabelSet, counting counted: Int) throws -> (rows: Int, blocks: Int, chunks: Int) {
        let dropped = set.versions.map(\.isDropped)
        // droppedBefore[v] = dropped versions among 1…v, to ask "is every version in (y, w) dropped?".
        var droppedBefore = [0]
        for d in dropped { droppedBefore.append(droppedBefore.last! + (d ? 1 : 0)) }
        func allDropped(after y: Int, before w: Int) -> Bool { droppedBefore[w - 1] - droppedBefore[y] == w - 1 - y }
        var removals: [(block: UInt64, version: Int, offsets: Set<Int>)] = []
        var postings: [UInt64: (classIndex: UInt32?, version: UInt32, slots: Set<UInt64>)] = [:]
        var rows = 0
        var owners = SlotOwners()
        let tainted = try taintedSamples()
        try forEachBlockGroup(of: set) { number, views in
            var byVersion: [Int: Set<Int>] = [:]
            for offset in 0..<Int(LabelBlock.slots) {
                let present = views.filter { $0.view.rank(of: offset) != nil }
                guard present.contains(where: { dropped[$0.version - 1] }) else { continue }
                let slot = number * LabelBlock.slots + UInt64(offset)
                let id = try owners.sample(at: slot, in: self, naming: .labelBlocks, set: set)
                // A row's label is its sample's joined with its source's: a clearance reads
                // row w instead of row y exactly when it admits w, and every clearance admitting y
                // admits w exactly when w's label flows to y's.
                let sampleTaint = try taintLabel(id: tainted[id] ?? 0, sample: id)
                func rowLabel(_ version: Int) -> TaintLabel { sampleTaint.join(set.versions[version - 1].sourceLabel) }
                for (i, row) in present.enumerated() where dropped[row.version - 1] {
                    // The first newer row every reader of this one also sees, with only dropped versions between.
                    let readers = rowLabel(row.version)
                    guard let newer = present[(i + 1)...].first(where: { rowLabel($0.version).flows(to: readers) }),
                          allDropped(after: row.version, before: newer.version) else { continue }
                    byVersion[row.version, default: []].insert(offset)
                    if row.version == counted { rows += 1 }
                    // A row that does not decode has an unknown class (nil): its posting is looked for in
                    // every class; a row without a top-1 class (multi only) has none.
                    let label = try? decodeLabel(try row.view.row(rank: row.view.rank(of: offset)!, sample: id), version: row.version, sample: id, set: set)
                    if label == nil || label?.top1 != nil {
                        let classIndex = label?.top1.map { UInt32($0.classIndex) }
                        postings[UInt64(row.version) << 32 | UInt64(classIndex ?? UInt32.max), default: (classIndex, UInt32(row.version), [])].slots.insert(slot)
                    }
                }
            }
            for (version, offsets) in byVersion { removals.append((number, version, offsets)) }
        }
        for removal in removals { try deleteRows(set: set, version: removal.version, block: removal.block, offsets: removal.offsets) }
        for (_, entry) in postings {
            // A row that does not decode has an unknown class: its posting is looked for in every class.
            let classes = entry.classIndex.map { [$0] } ?? Array(0..<UInt32(store.schema.classes.count))
            for c in classes { try removePostings(set: set.id, classIndex: c, version: entry.version, slots: entry.slots) }
        }
        return (rows, removals.filter { $0.version == counted }.count, postings.values.filter { $0.version == UInt32(counted) }.count)
    }

    /// Passes each block number of `set` with its versions' views, oldest first. The views
    /// borrow the map: `body` must not write (callers collect, then write after the walk).
    private func forEachBlockGroup(of set: LabelSet, _ body: (UInt64, [(version: Int, view: LabelBlockView)]) throws -> Void) throws {
        var current: UInt64? = nil
        var views: [(version: Int, view: LabelBlockView)] = []
        try walkLabelBlocks(of: set) { number, version, key, value in
            if let current, current != number { try body(current, views); views = [] }
            current = number
            do { views.append((version, try LabelBlockView(key: key, bytes: value))) } catch {
                throw contextualize(error, table: .labelBlocks, key: "\(set.name)@\(version) block \(number)")
            }
            return true
        }
        if let current { try body(current, views) }
    }

    /// The keys of `set`'s label blocks (of `version` only, when given) and the rows they hold,
    /// each row checked to be visible.
    private func blocksOfDrop(_ set: LabelSet, version only: Int? = nil) throws -> (keys: [[UInt8]], rows: Int) {
        let tainted = try taintedSamples()
        var owners = SlotOwners()
        var keys: [[UInt8]] = [], rows = 0, hidden = false
        try walkLabelBlocks(of: set) { number, version, key, value in
            if let only, version != only { return true }
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
