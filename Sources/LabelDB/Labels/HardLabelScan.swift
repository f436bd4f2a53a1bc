import Foundation

extension Transaction {
    /// Walks the hard labels of the referenced version in the order they are stored, a block of
    /// up to 4,096 rows at a time, as two parallel columns: the samples' ids (only when `ids` is
    /// true: finding them reads the embedding blocks' headers) and their classes. The fastest way
    /// to count, histogram or export a hard label set; rows without a hard label are skipped.
    ///
    /// Rows are the ones ``forEachLabelInStorageOrder(in:_:)`` reads — the newest row at or
    /// before the version that the clearance admits — checked a block at a time (one xxh3 pass
    /// over each block's rows; a block that fails is read row by row, so the error names the
    /// damaged row). The buffers are valid only inside `body`; return false to stop.
    ///
    /// - Throws: ``LabelError/unknownLabelSet(_:)`` and the like; a checksum or decoding error
    ///   for damaged bytes.
    public func forEachHardLabelBlock(
        in reference: LabelSetReference, ids wantIDs: Bool = false,
        _ body: (_ ids: UnsafeBufferPointer<UInt64>?, _ classes: UnsafeBufferPointer<Int32>) throws -> Bool
    ) throws {
        let (set, version) = try resolve(reference)
        try requirePerSample(set, for: "the hard-label scan")
        var columns = HardLabelColumns()
        guard try packedLabels else {
            // Stores before format 6 keep a row per entry: collected into columns by id.
            try forEachVisibleRow(set: set, version: version) { id, rowVersion, row, _ in
                do { try row.checkLayout(perView: false) } catch { throw contextualize(error, table: try labelRowsTable, key: "\(set.name)@\(rowVersion) sample \(id)") }
                guard let hard = row.hard else { return true }
                try columns.append(id: id, class: hard, classCount: store.schema.classes.count, naming: "\(set.name)@\(rowVersion) sample \(id)")
                if columns.count < Int(LabelBlock.slots) { return true }
                return try columns.flush(wantIDs: wantIDs, body)
            }
            _ = try columns.flush(wantIDs: wantIDs, body)
            return
        }
        var scan = HardLabelBlockScan(set: set, version: version, wantIDs: wantIDs, tainted: try taintedSamples())
        var block: UInt64 = 0, stopped = false
        try walkLabelBlocks(of: set) { number, rowVersion, key, value in
            if number != block, !scan.views.isEmpty {
                try scan.collect(block: block, in: self, into: &columns)
                guard try columns.flush(wantIDs: wantIDs, body) else { stopped = true; return false }
            }
            block = number
            guard rowVersion <= version else { return true }
            do {
                let view = try LabelBlockView(key: key, bytes: value)
                scan.views.append((rowVersion, view, view.rowsCheck))
            } catch { throw contextualize(error, table: .labelBlocks, key: "\(set.name)@\(rowVersion) block \(number)") }
            return true
        }
        if !stopped, !scan.views.isEmpty {
            try scan.collect(block: block, in: self, into: &columns)
            stopped = try !columns.flush(wantIDs: wantIDs, body)
        }
        if !stopped { try checkLabelledCount(scan.walked, set: set, version: version) }
    }
}

/// The columns one call of a hard-label block scan hands out, reused from block to block.
struct HardLabelColumns {
    var ids = [UInt64](repeating: 0, count: Int(LabelBlock.slots))
    var classes = [Int32](repeating: 0, count: Int(LabelBlock.slots))
    var count = 0

    /// Makes room for `count` rows.
    mutating func reserve(_ count: Int) {
        if ids.count < count { ids += [UInt64](repeating: 0, count: count - ids.count); classes += [Int32](repeating: 0, count: count - classes.count) }
    }

    /// Adds a row; a class beyond the schema's is damage, named by `naming`.
    mutating func append(id: UInt64, class hard: UInt32, classCount: Int, naming: @autoclosure () -> String) throws {
        guard Int(hard) < classCount else { throw RecordDecodingError(detail: "hard label \(hard) ≥ \(classCount) classes (\(naming()))") }
        if count == ids.count { ids.append(0); classes.append(0) }
        ids[count] = id
        classes[count] = Int32(hard)
        count += 1
    }

    /// Hands the rows collected to `body` (when there are any) and empties the columns.
    mutating func flush(wantIDs: Bool, _ body: (UnsafeBufferPointer<UInt64>?, UnsafeBufferPointer<Int32>) throws -> Bool) throws -> Bool {
        defer { count = 0 }
        guard count > 0 else { return true }
        let n = count
        return try classes.withUnsafeBufferPointer { c in
            try ids.withUnsafeBufferPointer { i in
                try body(wantIDs ? UnsafeBufferPointer(rebasing: i[0..<n]) : nil, UnsafeBufferPointer(rebasing: c[0..<n]))
            }
        }
    }
}

/// The state of a hard-label block scan: the versions of the block being read, and the rows walked.
struct HardLabelBlockScan {
    let set: LabelSet
    let version: Int
    let wantIDs: Bool
    let tainted: [UInt64: UInt32]
    /// The versions ≤ `version` of the block being read (adjacent keys, oldest first), each with
    /// whether its rows checksum held.
    var views: [(version: Int, view: LabelBlockView, checked: Bool)] = []
    /// Slots with a row at or before the version, visible or not (the labelled count checks them).
    var walked = 0
    private var owners = SlotOwners()

    init(set: LabelSet, version: Int, wantIDs: Bool, tainted: [UInt64: UInt32]) {
        self.set = set
        self.version = version
        self.wantIDs = wantIDs
        self.tainted = tainted
    }

    /// Adds the block's visible hard labels to `columns`, and forgets the block.
    mutating func collect(block: UInt64, in tx: Transaction, into columns: inout HardLabelColumns) throws {
        defer { views.removeAll(keepingCapacity: true) }
        let classCount = tx.store.schema.classes.count
        // The common case: one version, no tainted sample, the block checked in one pass and its
        // rows public to this clearance: each row is read where it lies, no per-row taint.
        if views.count == 1, views[0].checked, tainted.isEmpty,
           try tx.labelTaint(sampleTaint: 0, sample: 0, set: set, rowVersion: views[0].version) != nil {
            let (rowVersion, view, _) = views[0]
            walked += view.count
            if try collectHardOnlyRows(view, block: block, in: tx, into: &columns) { return }
            try view.forEachSlot { offset, rank in
                let slot = block * LabelBlock.slots + UInt64(offset)
                let row = try LabelBlock.decodeRow(view.rowBytes(rank: rank), seed: nil)
                do { try row.checkLayout(perView: false) } catch { throw tx.contextualize(error, table: .labelBlocks, key: "\(set.name)@\(rowVersion) slot \(slot)") }
                guard let hard = row.hard else { return }
                let id = wantIDs || Int(hard) >= classCount ? try owners.sample(at: slot, in: tx, naming: .labelBlocks, set: set) : 0
                try columns.append(id: id, class: hard, classCount: classCount, naming: "\(set.name)@\(rowVersion) sample \(id)")
            }
            return
        }
        try collectRowByRow(block: block, in: tx, into: &columns)
    }

    /// The tightest case: every row of the block is 9 bytes of flags `hard`, class and checksum
    /// (a hard label set): the classes are read in one pass, in rank order, which is slot order.
    /// False (with nothing added) when a row is anything else or a class is out of range, for the
    /// row-by-row reading to handle, and name.
    private mutating func collectHardOnlyRows(_ view: LabelBlockView, block: UInt64, in tx: Transaction, into columns: inout HardLabelColumns) throws -> Bool {
        guard let (start, width) = view.fixedRows, width == 9 else { return false }
        let n = view.count, first = columns.count
        columns.reserve(first + n)
        var largest: UInt32 = 0, allHard = true
        columns.classes.withUnsafeMutableBufferPointer { out in
            let rows = view.bytes.baseAddress! + start
            for rank in 0..<n {
                let row = rows + rank * 9
                allHard = allHard && row.load(as: UInt8.self) == LabelRecord.hasHard
                let hard = UInt32(littleEndian: row.loadUnaligned(fromByteOffset: 1, as: UInt32.self))
                largest = max(largest, hard)
                out[first + rank] = Int32(truncatingIfNeeded: hard)
            }
        }
        guard allHard, Int(largest) < tx.store.schema.classes.count else { return false }
        if wantIDs {
            var i = first
            try view.forEachSlot { offset, _ in
                columns.ids[i] = try owners.sample(at: block * LabelBlock.slots + UInt64(offset), in: tx, naming: .labelBlocks, set: set)
                i += 1
            }
        }
        columns.count = first + n
        return true
    }

    /// Per slot, the newest row the clearance admits (a hidden newer one leaves it in place, R-36).
    private mutating func collectRowByRow(block: UInt64, in tx: Transaction, into columns: inout HardLabelColumns) throws {
        let classCount = tx.store.schema.classes.count
        var ranks = [[Int32]](repeating: [Int32](repeating: -1, count: Int(LabelBlock.slots)), count: views.count)
        for (i, entry) in views.enumerated() { entry.view.forEachSlot { offset, rank in ranks[i][offset] = Int32(rank) } }
        for offset in 0..<Int(LabelBlock.slots) where ranks.contains(where: { $0[offset] >= 0 }) {
            let id = try owners.sample(at: block * LabelBlock.slots + UInt64(offset), in: tx, naming: .labelBlocks, set: set)
            walked += 1
            for (i, entry) in views.enumerated().reversed() where ranks[i][offset] >= 0 {
                guard try tx.labelTaint(sampleTaint: tainted[id] ?? 0, sample: id, set: set, rowVersion: entry.version) != nil else { continue }
                let row: LabelRecord.Row
                do {
                    row = try entry.view.row(rank: Int(ranks[i][offset]), sample: id, rowsChecked: entry.checked)
                    try row.checkLayout(perView: false)
                } catch {
                    throw tx.contextualize(error, table: .labelBlocks, key: "\(set.name)@\(entry.version) sample \(id)")
                }
                if let hard = row.hard {
                    try columns.append(id: id, class: hard, classCount: classCount, naming: "\(set.name)@\(entry.version) sample \(id)")
                }
                break
            }
        }
    }
}
