/// Packing embedding slots: giving the n stored samples the slots 0…n − 1, in the order of the
/// slots they had, and rewriting everything keyed by slot (embedding blocks, sample records, label
/// blocks, class postings, fitted-sample bitmaps) to match.
///
/// Why: deletes leave free slots that only later inserts reuse. A store that keeps a small part of
/// its samples (a shard split from a corpus, `labeldb shard`) would otherwise carry every
/// embedding block of the whole, zeroed where its samples were deleted. Nothing a reader can see
/// changes: ids, labels, versions, taint, provenance and projectors stay as they were; rows are
/// moved byte for byte, and only checksums seeded with a key that changed are computed again.
extension WriteTransaction {
    /// Packs the slots (see above); returns how many samples moved. Every slot-keyed table is
    /// held in memory while it is rewritten, so this suits a store of shard size.
    @discardableResult
    func packSlots() throws -> Int {
        let owners = try slotOwners()
        let moved = owners.enumerated().reduce(0) { $0 + (UInt64($1.offset) == $1.element.slot ? 0 : 1) }
        let packed = try nextSlot() == UInt64(owners.count) && entries(.freeSlots) == 0
        guard moved > 0 || !packed else { return 0 }
        var newSlot: [UInt64: UInt64] = [:]
        newSlot.reserveCapacity(owners.count)
        for (rank, owner) in owners.enumerated() { newSlot[owner.slot] = UInt64(rank) }
        let ownerOf = Dictionary(uniqueKeysWithValues: owners.map { ($0.slot, $0.id) })
        try moveEmbeddings(owners)
        try moveSampleRecords(owners)
        try moveLabelRows(newSlot: newSlot, ownerOf: ownerOf)
        try movePostings(newSlot: newSlot)
        try moveFittedBitmaps(newSlot: newSlot)
        try clear(.freeSlots)
        try put(.meta, name: MetaKey.slots, bytes: CounterRecord.encoded(UInt64(owners.count)))
        noteChange("slots_packed", moved)
        return moved
    }

    /// Every stored sample's (slot, id), ascending by slot; two samples in one slot are damage.
    private func slotOwners() throws -> [(slot: UInt64, id: UInt64)] {
        var owners: [(slot: UInt64, id: UInt64)] = []
        try walk(.samples, from: nil) { key, value in
            guard key.count == 8 else { throw damagedKey(key.count, expected: 8, in: .samples) }
            let id = BigEndianKey.u64(key, at: 0)
            owners.append((try decodeSampleRecord(id: id, value).slot, id))
            return true
        }
        owners.sort { $0.slot < $1.slot }
        for (a, b) in zip(owners, owners.dropFirst()) where a.slot == b.slot {
            throw StoreError.corruptRecord(store: store.path, table: Table.samples.rawValue, key: "\(b.id)",
                                           detail: "slot \(b.slot) is also sample \(a.id)'s; run verify")
        }
        return owners
    }

    /// Rewrites the embedding blocks with the rows in their new slots, each row's bytes and
    /// checksum (seeded with its id) copied as stored. A new slot is never above the old one, so
    /// new block k is written only once every row it overwrites has been copied out.
    private func moveEmbeddings(_ owners: [(slot: UInt64, id: UInt64)]) throws {
        let layout = store.blockLayout
        let capacity = layout.capacity
        var pending: [PackedRow] = []
        func flush(_ block: UInt64) throws {
            try put(.embeddings, key: block, size: layout.size(rows: pending.count)) { out in
                EmbeddingBlockWriter.writePacked(block: block, layout: layout, rows: pending, into: out)
            }
            pending.removeAll(keepingCapacity: true)
        }
        for (rank, owner) in owners.enumerated() {
            if rank > 0, rank % capacity == 0 { try flush(UInt64(rank / capacity - 1)) }
            pending.append(try withEmbeddingRow(id: owner.id, slot: owner.slot) { row in
                PackedRow(id: owner.id, checksum: Checksum.xxh3(row, seed: owner.id), bytes: Array(row))
            })
        }
        let blocks = UInt64((owners.count + capacity - 1) / capacity)
        if !pending.isEmpty { try flush(blocks - 1) }
        while let last = try lastKey(.embeddings), last >= blocks { try delete(.embeddings, key: last) }
    }

    /// Rewrites the sample records whose slot changed.
    private func moveSampleRecords(_ owners: [(slot: UInt64, id: UInt64)]) throws {
        for (rank, owner) in owners.enumerated() where owner.slot != UInt64(rank) {
            let bytes: [UInt8] = try withValue(.samples, key: owner.id) { Array($0!) }
            try put(.samples, key: BigEndianKey.u64(owner.id), bytes: SampleRecord.moved(bytes, id: owner.id, slot: UInt64(rank)))
        }
    }

    /// Rewrites every label block under its new block number: each row's bytes as stored, its
    /// checksum checked under the old block's seed and computed again under the new one.
    private func moveLabelRows(newSlot: [UInt64: UInt64], ownerOf: [UInt64: UInt64]) throws {
        var blocks: [[UInt8]: [(offset: Int, bytes: [UInt8])]] = [:]
        try walk(.labelBlocks, from: nil) { key, value in
            guard key.count == 16 else { throw damagedKey(key.count, expected: 16, in: .labelBlocks) }
            let (set, block, version) = (BigEndianKey.u32(key, at: 0), BigEndianKey.u64(key, at: 4), BigEndianKey.u32(key, at: 12))
            func damage(_ detail: String) -> StoreError {
                .corruptRecord(store: store.path, table: Table.labelBlocks.rawValue, key: "set \(set)@\(version) block \(block)", detail: detail)
            }
            let view: LabelBlockView
            do { view = try LabelBlockView(key: key, bytes: value) } catch {
                throw contextualize(error, table: .labelBlocks, key: "set \(set)@\(version) block \(block)")
            }
            try view.forEachSlot { offset, rank in
                let slot = block * LabelBlock.slots + UInt64(offset)
                guard let id = ownerOf[slot], let moved = newSlot[slot] else { throw damage("a row for slot \(slot), which no sample holds; run verify") }
                let newKey = LabelBlock.key(set: set, block: moved / LabelBlock.slots, version: version)
                guard let bytes = LabelBlock.reseeded(view.rowBytes(rank: rank), from: view.seed, to: newKey, id: id) else {
                    throw damage("the row of sample \(id) fails its checksum; run verify")
                }
                blocks[newKey, default: []].append((Int(moved % LabelBlock.slots), bytes))
            }
            return true
        }
        try clear(.labelBlocks)
        // Slots keep their order, so each new block's rows arrive in slot order from one or more
        // old blocks of the same version, themselves visited in block order.
        for key in blocks.keys.sorted(by: { $0.lexicographicallyPrecedes($1) }) {
            try put(.labelBlocks, key: key, bytes: LabelBlock.encode(key: key, rows: blocks[key]!), append: true)
        }
    }

    /// Rewrites the class postings with the new slots.
    private func movePostings(newSlot: [UInt64: UInt64]) throws {
        var groups: [PostingGroup: [(classIndex: UInt32, slot: UInt64)]] = [:]
        try walk(.labelPostings, from: nil) { key, value in
            guard key.count == ClassPostings.keySize else { throw damagedKey(key.count, expected: ClassPostings.keySize, in: .labelPostings) }
            let fields = ClassPostings.fields(key)
            let offsets: [UInt16]
            do { offsets = try ClassPostings.decode(key: key, value) } catch {
                throw contextualize(error, table: .labelPostings, key: "set \(fields.set)@\(fields.version) class \(fields.classIndex)")
            }
            for slot in ClassPostings.slots(chunk: fields.chunk, offsets: offsets) {
                guard let moved = newSlot[slot] else {
                    throw StoreError.corruptRecord(store: store.path, table: Table.labelPostings.rawValue, key: "set \(fields.set)@\(fields.version) class \(fields.classIndex)",
                                                   detail: "a posting of slot \(slot), which no sample holds; run verify")
                }
                groups[PostingGroup(set: fields.set, version: fields.version), default: []].append((fields.classIndex, moved))
            }
            return true
        }
        try clear(.labelPostings)
        for (group, entries) in groups { try addPostings(entries, set: group.set, version: group.version) }
    }

    /// Rewrites the bitmaps of the samples each projector version was fitted on.
    private func moveFittedBitmaps(newSlot: [UInt64: UInt64]) throws {
        var fitted: [PostingGroup: [UInt64]] = [:]
        try walk(.projectorFitted, from: nil) { key, value in
            let bitmap: [UInt8]
            do { bitmap = try FittedBlock.decode(key: key, value) } catch {
                throw contextualize(error, table: .projectorFitted, key: "\(Array(key))")
            }
            let (projector, version, block) = (BigEndianKey.u32(key, at: 0), BigEndianKey.u32(key, at: 4), BigEndianKey.u64(key, at: 8))
            for (byte, bits) in bitmap.enumerated() where bits != 0 {
                for bit in 0..<8 where bits & (1 << bit) != 0 {
                    let slot = block * FittedBlock.slots + UInt64(8 * byte + bit)
                    // A bit of a slot no sample holds is stale (deletes clear theirs); it is dropped.
                    if let moved = newSlot[slot] { fitted[PostingGroup(set: projector, version: version), default: []].append(moved) }
                }
            }
            return true
        }
        try clear(.projectorFitted)
        for (group, slots) in fitted { try putFitted(projector: group.set, version: Int(group.version), slots: slots) }
    }
}

/// A (label set or projector id, version) pair, to group what is rewritten.
private struct PostingGroup: Hashable {
    let set: UInt32
    let version: UInt32
}

/// One embedding row moved to a packed block: its id, its checksum (seeded with the id) and bytes.
struct PackedRow {
    let id: UInt64
    let checksum: UInt64
    let bytes: [UInt8]
}

extension EmbeddingBlockWriter {
    /// Writes block `block` holding `rows` in its slots 0…rows.count − 1, every slot live, into
    /// `out` (exactly `layout.size(rows: rows.count)` bytes).
    static func writePacked(block: UInt64, layout: EmbeddingBlockLayout, rows: [PackedRow], into out: UnsafeMutableRawBufferPointer) {
        precondition(out.count == layout.size(rows: rows.count) && rows.count <= layout.capacity)
        out.baseAddress!.initializeMemory(as: UInt8.self, repeating: 0, count: out.count)
        var header = ByteWriter(out, offset: 8)
        header.u8(EmbeddingBlockLayout.version)
        header.u8(layout.elementType.code)
        header.u16(0)
        header.u32(UInt32(rows.count))
        header.u32(UInt32(layout.capacity))
        header.u32(UInt32(layout.dimension))
        header.u64(0)
        for (index, row) in rows.enumerated() {
            out.storeBytes(of: row.id.littleEndian, toByteOffset: layout.idsOffset + 8 * index, as: UInt64.self)
            out.storeBytes(of: row.checksum.littleEndian, toByteOffset: layout.checksumsOffset + 8 * index, as: UInt64.self)
            let wordOffset = layout.bitmapOffset + 8 * (index / 64)
            let word = UInt64(littleEndian: out.loadUnaligned(fromByteOffset: wordOffset, as: UInt64.self)) | 1 << UInt64(index % 64)
            out.storeBytes(of: word.littleEndian, toByteOffset: wordOffset, as: UInt64.self)
            row.bytes.withUnsafeBytes { (out.baseAddress! + layout.matrixOffset + index * layout.rowBytes).copyMemory(from: $0.baseAddress!, byteCount: layout.rowBytes) }
        }
        let checksum = Checksum.xxh3(UnsafeRawBufferPointer(rebasing: out[8..<layout.matrixOffset]), seed: block)
        out.storeBytes(of: checksum.littleEndian, toByteOffset: 0, as: UInt64.self)
    }
}

extension SampleRecord {
    /// A copy of the (already checked) record `bytes` of sample `id` naming another slot, its
    /// checksum computed again.
    static func moved(_ bytes: [UInt8], id: UInt64, slot: UInt64) -> [UInt8] {
        var out = bytes
        withUnsafeBytes(of: slot.littleEndian) { out.replaceSubrange(16..<24, with: $0) }
        let checksum = out.withUnsafeBytes { Checksum.xxh3(UnsafeRawBufferPointer(rebasing: $0[8...]), seed: id) }
        withUnsafeBytes(of: checksum.littleEndian) { out.replaceSubrange(0..<8, with: $0) }
        return out
    }
}
