/// Finding label rows, in either layout: packed in blocks by slot (format 6, §10.3) or one LMDB
/// entry per row keyed by set, sample and version (formats 2–5, still read from older stores
/// opened read-only). Every read of a row goes through ``Transaction/forEachRow(of:slot:set:atOrBefore:_:)``;
/// every walk of a version through ``Transaction/forEachVisibleRow(set:version:from:_:)``.
extension Transaction {
    /// True when label rows are packed in blocks and top-1 filters use the class postings: a
    /// store of format 6 whose migration has packed its rows. Older stores opened read-only, and
    /// a migrated store whose packing has not committed yet, keep one entry per row.
    var packedLabels: Bool {
        get throws {
            if let known = packedLabelsMemo { return known }
            let packed = try store.formatVersion >= 6 && withValue(.meta, name: MetaKey.packLabels) { $0 == nil }
            packedLabelsMemo = packed
            return packed
        }
    }

    /// The table label rows are read from.
    var labelRowsTable: Table {
        get throws { try packedLabels ? .labelBlocks : .labels }
    }

    /// Passes every row of sample `id` (held in `slot`) in `set` with version ≤ `version`,
    /// newest first, checked, to `body` until it returns false — whatever the clearance: callers
    /// decide which rows they may use. The row's `soft` borrows the map.
    func forEachRow(
        of id: UInt64, slot: UInt64, set: LabelSet, atOrBefore version: Int,
        _ body: (_ version: Int, _ row: LabelRecord.Row) throws -> Bool
    ) throws {
        guard version >= 1 else { return }
        let packed = try packedLabels
        if packed, let cache = snapshotCache {
            // A read transaction: the block's versions are found once, each header checked once,
            // then rows are read from the cached bytes (batch reads visit many rows of few blocks).
            let offset = Int(slot % LabelBlock.slots)
            let cacheKey = LabelBlockCacheKey(set: set.id, block: slot / LabelBlock.slots, version: version)
            var blocks = try cache.labelBlocks[cacheKey] ?? labelBlockVersions(set: set, block: cacheKey.block, atOrBefore: version, sample: id)
            defer { cache.labelBlocks[cacheKey] = blocks }
            for i in blocks.indices {
                let rowVersion = blocks[i].version
                // Checked as it is reached, as the uncached walk does: a damaged older key does
                // not fail a read that the newer row answers.
                try checkRowVersion(rowVersion, set: set, sample: id)
                let row: LabelRecord.Row
                do {
                    if blocks[i].view == nil { blocks[i].view = try blocks[i].key.withUnsafeBytes { try LabelBlockView(key: $0, bytes: blocks[i].bytes) } }
                    guard let rank = blocks[i].view!.rank(of: offset) else { continue }
                    row = try blocks[i].view!.row(rank: rank, sample: id)
                } catch {
                    throw contextualize(error, table: .labelBlocks, key: "\(set.name)@\(rowVersion) sample \(id)")
                }
                if try !body(rowVersion, row) { return }
            }
            return
        }
        let table: Table = packed ? .labelBlocks : .labels
        let target = packed
            ? LabelBlock.key(set: set.id, block: slot / LabelBlock.slots, version: UInt32(version))
            : LabelRecord.rowKey(set: set.id, sample: id, version: UInt32(version))
        // A later entry of the same sample (or block) must be of a version the set has: a
        // damaged version in a key would otherwise hide the row from this lookup, silently.
        let later: (UnsafeRawBufferPointer?) throws -> Void = { next in
            guard let next, next.count == 16, next.prefix(12).elementsEqual(target.prefix(12)) else { return }
            try self.checkRowVersion(Int(BigEndianKey.u32(next, at: 12)), set: set, sample: id)
        }
        let offset = Int(slot % LabelBlock.slots)
        try walkBackward(table, atOrBefore: target, after: later) { key, value in
            guard key.prefix(12).elementsEqual(target.prefix(12)) else { return false }
            guard key.count == 16 else { throw damagedKey(key.count, expected: 16, in: table) }
            let rowVersion = Int(BigEndianKey.u32(key, at: 12))
            try checkRowVersion(rowVersion, set: set, sample: id)
            let row: LabelRecord.Row
            do {
                if packed {
                    let view = try LabelBlockView(key: key, bytes: value)
                    guard let rank = view.rank(of: offset) else { return true }
                    row = try view.row(rank: rank, sample: id)
                } else {
                    row = try LabelRecord.decodeRow(key: key, value)
                }
            } catch {
                throw contextualize(error, table: table, key: "\(set.name)@\(rowVersion) sample \(id)")
            }
            return try body(rowVersion, row)
        }
    }

    /// Every version of label block `block` of `set` at or before `version`, newest first,
    /// borrowed (headers and key versions not yet checked), found with one backward walk.
    /// `sample` names the row being read in errors.
    func labelBlockVersions(set: LabelSet, block: UInt64, atOrBefore version: Int, sample id: UInt64) throws -> [CachedLabelBlock] {
        let target = LabelBlock.key(set: set.id, block: block, version: UInt32(version))
        // A later entry of the same block must be of a version the set has: a damaged version
        // in a key would otherwise hide the block from this lookup, silently.
        let later: (UnsafeRawBufferPointer?) throws -> Void = { next in
            guard let next, next.count == 16, next.prefix(12).elementsEqual(target.prefix(12)) else { return }
            try self.checkRowVersion(Int(BigEndianKey.u32(next, at: 12)), set: set, sample: id)
        }
        var found: [CachedLabelBlock] = []
        try walkBackward(.labelBlocks, atOrBefore: target, after: later) { key, value in
            guard key.prefix(12).elementsEqual(target.prefix(12)) else { return false }
            guard key.count == 16 else { throw damagedKey(key.count, expected: 16, in: .labelBlocks) }
            found.append(CachedLabelBlock(version: Int(BigEndianKey.u32(key, at: 12)), key: Array(key), bytes: value, view: nil))
            return true
        }
        return found
    }

    /// Passes the newest row of sample `id` (in `slot`) at or before `version` that the
    /// clearance admits, borrowed, with its version and taint label, to `body` (nil when there
    /// is none). A newer row the clearance cannot see neither shows nor hides it.
    func withVisibleRow<T>(
        of id: UInt64, slot: UInt64, sampleTaint: UInt32, set: LabelSet, version: Int,
        _ body: ((version: Int, row: LabelRecord.Row, taint: TaintLabel)?) throws -> T
    ) throws -> T {
        var result: T? = nil
        try forEachRow(of: id, slot: slot, set: set, atOrBefore: version) { rowVersion, row in
            guard let taint = try labelTaint(sampleTaint: sampleTaint, sample: id, set: set, rowVersion: rowVersion) else { return true }
            result = try body((rowVersion, row, taint))
            return false
        }
        if let result { return result }
        return try body(nil)
    }

    /// Walks the samples in ascending id from the first ≥ `start`, passing each visible
    /// sample's newest admitted row ≤ `version` (with its version and taint label) to `body`
    /// until it returns false. A complete walk also counts every sample with a row ≤ `version`,
    /// hidden ones too, and checks the count against the version's `labelled`: a damaged
    /// B-tree could otherwise make the walk skip rows silently.
    func forEachVisibleRow(
        set: LabelSet, version: Int, from start: UInt64 = 0,
        _ body: (_ id: UInt64, _ version: Int, _ row: LabelRecord.Row, _ taint: TaintLabel) throws -> Bool
    ) throws {
        var walked = 0, stopped = false
        try walk(.samples, from: BigEndianKey.u64(start)) { key, value in
            guard key.count == 8 else { throw damagedKey(key.count, expected: 8, in: .samples) }
            let id = BigEndianKey.u64(key, at: 0)
            let record = try decodeSampleRecord(id: id, value)
            let visible = try admits(labelID: record.taintLabel)
            var counted = false, more = true
            try forEachRow(of: id, slot: record.slot, set: set, atOrBefore: version) { rowVersion, row in
                if !counted { walked += 1; counted = true }
                guard visible else { return false }
                guard let taint = try labelTaint(sampleTaint: record.taintLabel, sample: id, set: set, rowVersion: rowVersion) else { return true }
                more = try body(id, rowVersion, row, taint)
                return false
            }
            stopped = !more
            return more
        }
        if !stopped && start == 0 { try checkLabelledCount(walked, set: set, version: version) }
    }

    /// Like ``forEachVisibleRow(set:version:from:_:)``, in the order rows are stored (by slot,
    /// which is not id order) and several times faster: one pass over the set's blocks, each
    /// slot's sample read from its embedding block. Stores that do not pack rows walk by id.
    func forEachVisibleRowInStorageOrder(
        set: LabelSet, version: Int,
        _ body: (_ id: UInt64, _ version: Int, _ row: LabelRecord.Row, _ taint: TaintLabel) throws -> Bool
    ) throws {
        guard try packedLabels else { return try forEachVisibleRow(set: set, version: version, body) }
        let tainted = try taintedSamples()
        var owners = SlotOwners()
        var walked = 0, stopped = false
        // The versions ≤ `version` of the block being read (adjacent keys, oldest first).
        var block: UInt64 = 0
        var views: [(version: Int, view: LabelBlockView, ranks: [Int32], checked: Bool)] = []
        func flush() throws -> Bool {
            defer { views.removeAll(keepingCapacity: true) }
            for offset in 0..<Int(LabelBlock.slots) {
                guard views.contains(where: { $0.ranks[offset] >= 0 }) else { continue }
                let slot = block * LabelBlock.slots + UInt64(offset)
                let id = try owners.sample(at: slot, in: self, naming: .labelBlocks, set: set)
                walked += 1
                // The newest admitted row wins; a hidden newer one leaves it in place.
                for entry in views.reversed() where entry.ranks[offset] >= 0 {
                    guard let taint = try labelTaint(sampleTaint: tainted[id] ?? 0, sample: id, set: set, rowVersion: entry.version) else { continue }
                    let row: LabelRecord.Row
                    do { row = try entry.view.row(rank: Int(entry.ranks[offset]), sample: id, rowsChecked: entry.checked) } catch {
                        throw contextualize(error, table: .labelBlocks, key: "\(set.name)@\(entry.version) sample \(id)")
                    }
                    if try !body(id, entry.version, row, taint) { return false }
                    break
                }
            }
            return true
        }
        try walkLabelBlocks(of: set) { number, rowVersion, key, value in
            if number != block, !views.isEmpty {
                guard try flush() else { stopped = true; return false }
            }
            block = number
            guard rowVersion <= version else { return true }
            do {
                let view = try LabelBlockView(key: key, bytes: value)
                var ranks = [Int32](repeating: -1, count: Int(LabelBlock.slots))
                view.forEachSlot { offset, rank in ranks[offset] = Int32(rank) }
                // A block whose rows checksum fails is read row by row: the damaged row is named.
                views.append((rowVersion, view, ranks, view.rowsCheck))
            } catch { throw contextualize(error, table: .labelBlocks, key: "\(set.name)@\(rowVersion) block \(number)") }
            return true
        }
        if !stopped, !views.isEmpty, try !flush() { stopped = true }
        if !stopped { try checkLabelledCount(walked, set: set, version: version) }
    }

    /// Walks the label blocks of `set` in key order (block number, then version), passing each
    /// block's number, version, key and value (borrowed) to `body` until it returns false. Keys
    /// carry no checksum: a malformed one, a block number beyond any slot or a version the set
    /// does not have is damage, thrown, not a trap.
    func walkLabelBlocks(of set: LabelSet, _ body: (_ block: UInt64, _ version: Int, _ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) throws -> Bool) throws {
        var prefix: [UInt8] = []
        BigEndianKey.append(set.id, to: &prefix)
        try walk(.labelBlocks, from: prefix) { key, value in
            guard key.prefix(4).elementsEqual(prefix) else { return false }
            guard key.count == 16 else { throw damagedKey(key.count, expected: 16, in: .labelBlocks) }
            let number = BigEndianKey.u64(key, at: 4), version = Int(BigEndianKey.u32(key, at: 12))
            guard number <= UInt64.max / LabelBlock.slots else { throw damagedKey(key.count, expected: 16, in: .labelBlocks) }
            try checkRowVersion(version, set: set, sample: number * LabelBlock.slots)
            return try body(number, version, key, value)
        }
    }

    /// True when sample `id` (in `slot`) has a row of `set` at a version below `version`, whatever
    /// the clearance: whether an import of `version` labels it for the first time.
    func hasRow(of id: UInt64, slot: UInt64, set: LabelSet, before version: Int) throws -> Bool {
        var found = false
        try forEachRow(of: id, slot: slot, set: set, atOrBefore: version - 1) { _, _ in found = true; return false }
        return found
    }

    /// The slot of stored sample `id` whatever the clearance, or nil when it is not stored.
    func storedSlot(of id: UInt64) throws -> UInt64? {
        try withValue(.samples, key: id) { bytes in try bytes.map { try decodeSampleRecord(id: id, $0).slot } }
    }
}

extension WriteTransaction {
    /// One row an import writes: the sample, its slot and what the row holds.
    struct NewRow {
        var id: UInt64
        var slot: UInt64
        var hard: UInt32?
        var multi: [UInt32]?
        var soft: [UInt8]?
        /// A per-view row's flags and view section (``ViewRowEncoding``); the other fields nil.
        var views: (flags: UInt8, bytes: [UInt8])? = nil
    }

    /// Writes the rows of version `version` of `set` (a new version: every block is new), one
    /// block per 4,096 slots, in key order; blocks beyond the table's last key are appended.
    func putRows(_ rows: [NewRow], set labelSet: LabelSet, version: UInt32) throws {
        let set = labelSet.id
        let sorted = rows.sorted { $0.slot < $1.slot }
        let lastKey = try lastRawKey(.labelBlocks)
        var start = 0
        while start < sorted.count {
            let block = sorted[start].slot / LabelBlock.slots
            var end = start
            while end < sorted.count, sorted[end].slot / LabelBlock.slots == block { end += 1 }
            let key = LabelBlock.key(set: set, block: block, version: version)
            let seed = SealedRecord.seed(key: key)
            let encoded = sorted[start..<end].map { row in
                (offset: Int(row.slot % LabelBlock.slots), bytes: LabelBlock.encodeRow(hard: row.hard, multi: row.multi, soft: row.soft, views: row.views, seed: seed ^ row.id))
            }
            // Offsets are u32: many views per sample of a wide codec could pass 4 GiB a block.
            let bytes = encoded.reduce(0) { $0 + $1.bytes.count }
            guard bytes <= Int(UInt32.max) - LabelBlock.prefixSize - 4 * (encoded.count + 1) else {
                throw LabelError.blockTooLarge(set: labelSet.name, block: block, bytes: bytes)
            }
            try put(.labelBlocks, key: key, bytes: LabelBlock.encode(key: key, rows: encoded), append: lastKey.map { $0.lexicographicallyPrecedes(key) } ?? true)
            start = end
        }
    }

    /// Removes the rows of slot offsets `offsets` from block `block` of `set@version`: the block
    /// is rewritten without them (its other rows' bytes unchanged: their checksums are seeded
    /// with the block's key, which stays), or deleted when nothing is left.
    func deleteRows(set: LabelSet, version: Int, block: UInt64, offsets: Set<Int>) throws {
        let key = LabelBlock.key(set: set.id, block: block, version: UInt32(version))
        let kept: [(offset: Int, bytes: [UInt8])]? = try withValue(.labelBlocks, key: key) { value in
            guard let value else { return nil }
            do {
                let view = try key.withUnsafeBytes { try LabelBlockView(key: $0, bytes: value) }
                var rows: [(offset: Int, bytes: [UInt8])] = []
                view.forEachSlot { slot, rank in if !offsets.contains(slot) { rows.append((slot, Array(view.rowBytes(rank: rank)))) } }
                return rows
            } catch { throw contextualize(error, table: .labelBlocks, key: "\(set.name)@\(version) block \(block)") }
        }
        guard let kept else { return }
        if kept.isEmpty {
            try delete(.labelBlocks, key: key)
        } else {
            try put(.labelBlocks, key: key, bytes: LabelBlock.encode(key: key, rows: kept))
        }
    }

    /// Packs every label row of the one-entry-per-row layout into blocks and builds the class
    /// postings, then empties the retired tables (migrating to format 6). One label set's rows
    /// are held in memory at a time.
    func packLabelRows() throws {
        for table in [Table.labelBlocks, .labelPostings, .labelIndex] { try clear(table) }
        for set in try labelSets() {
            var rows: [(version: UInt32, row: NewRow)] = []
            var postings: [UInt32: [(classIndex: UInt32, slot: UInt64)]] = [:]
            var prefix: [UInt8] = []
            BigEndianKey.append(set.id, to: &prefix)
            try walk(.labels, from: prefix) { key, value in
                guard key.prefix(4).elementsEqual(prefix) else { return false }
                guard key.count == 16 else { throw damagedKey(key.count, expected: 16, in: .labels) }
                let id = BigEndianKey.u64(key, at: 4), version = BigEndianKey.u32(key, at: 12)
                guard let slot = try storedSlot(of: id) else {
                    throw StoreError.corruptRecord(store: store.path, table: Table.labels.rawValue, key: "\(set.name) sample \(id)",
                                                   detail: "a label row of a sample that is not stored; run verify")
                }
                let row: LabelRecord.Row
                do { row = try LabelRecord.decodeRow(key: key, value) } catch {
                    throw contextualize(error, table: .labels, key: "\(set.name)@\(version) sample \(id)")
                }
                if let top1 = try decodeLabel(row, version: Int(version), sample: id, set: set).top1 {
                    postings[version, default: []].append((UInt32(top1.classIndex), slot))
                }
                rows.append((version, NewRow(id: id, slot: slot, hard: row.hard, multi: row.multi, soft: row.soft.map(Array.init))))
                return true
            }
            for (version, entries) in Dictionary(grouping: rows, by: \.version) {
                try putRows(entries.map(\.row), set: set, version: version)
            }
            for (version, entries) in postings { try addPostings(entries, set: set.id, version: version) }
        }
        try clear(.labels)
    }
}

/// Which sample holds a slot, from the slot's embedding block: its live row's id, the block's
/// header checksum (which covers ids and live bits) checked once per block a query visits.
struct SlotOwners {
    private var block: UInt64? = nil
    private var ids: [UInt64?] = []

    /// The sample in `slot`. A label row or posting (of `table`) in a slot that holds none is
    /// damage: deleting a sample removes its rows and postings.
    mutating func sample(at slot: UInt64, in tx: Transaction, naming table: Table, set: LabelSet) throws -> UInt64 {
        let layout = tx.store.blockLayout
        let number = slot / UInt64(layout.capacity), index = Int(slot % UInt64(layout.capacity))
        if block != number {
            ids = try tx.withValue(.embeddings, key: number) { bytes in
                guard let bytes else { return [] }
                do {
                    let view = try EmbeddingBlockView(layout: layout, bytes: bytes)
                    try view.verifyHeader(block: number)
                    return (0..<view.rowsUsed).map { view.isLive($0) ? view.id(at: $0) : nil }
                } catch { throw tx.contextualize(error, table: .embeddings, key: "block \(number)") }
            }
            block = number
        }
        guard index < ids.count, let id = ids[index] else {
            throw StoreError.corruptRecord(store: tx.store.path, table: table.rawValue, key: "\(set.name) slot \(slot)",
                                           detail: "an entry names a slot that holds no sample; run verify")
        }
        return id
    }
}
