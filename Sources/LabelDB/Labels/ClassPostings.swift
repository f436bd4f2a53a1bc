/// The class postings (format 6, `format-spec/storage.md` §10.5): for each label set, top-1 class
/// and version, the embedding slots of the samples whose row written by that version has that
/// top-1 class. They replace format 2's class index (one 44-byte entry per row, a key of its own
/// each) with 2 bytes per row: a posting is a slot's offset within a chunk of 65,536 slots.
///
/// Postings name slots, not ids: slots are dense where ids may be any u64, so an offset takes 2
/// bytes where an id takes 8, and the small chunks share LMDB pages (a class of a few hundred ids
/// would fill most of a page of its own). A sample keeps its slot for its whole life, so a
/// posting stays right until the sample is deleted, which removes it. The embedding block of the
/// slot names the sample.
enum ClassPostings {
    /// Slots per chunk: offsets within a chunk fit a u16.
    static let chunkSlots: UInt64 = 65_536

    /// Key of a chunk: set id u32 BE, class u32 BE, version u32 BE, chunk (slot ÷ 65,536) u64 BE.
    static func key(set: UInt32, classIndex: UInt32, version: UInt32, chunk: UInt64) -> [UInt8] {
        var key: [UInt8] = []
        key.reserveCapacity(keySize)
        BigEndianKey.append(set, to: &key)
        BigEndianKey.append(classIndex, to: &key)
        BigEndianKey.append(version, to: &key)
        BigEndianKey.append(chunk, to: &key)
        return key
    }

    static let keySize = 20

    /// A chunk's value: checksum (xxh3-64 of the offsets, seed = xxh3-64 of the key), then the
    /// offsets, u16 LE, strictly ascending, at least one.
    static func encode(key: [UInt8], offsets: [UInt16]) -> [UInt8] {
        var body: [UInt8] = []
        body.reserveCapacity(2 * offsets.count)
        for offset in offsets { appendLE(offset, to: &body) }
        return SealedRecord.seal(body, seed: SealedRecord.seed(key: key))
    }

    /// The offsets of a chunk, checked: checksum, even length, at least one, strictly ascending,
    /// and a chunk number whose slots a u64 holds.
    static func decode(key: UnsafeRawBufferPointer, _ bytes: UnsafeRawBufferPointer) throws -> [UInt16] {
        let body = try SealedRecord.open(bytes, seed: SealedRecord.seed(key: key))
        guard key.count == keySize, BigEndianKey.u64(key, at: 12) <= UInt64.max / chunkSlots else {
            throw RecordDecodingError(detail: "a chunk key beyond any slot")
        }
        guard body.count >= 2, body.count % 2 == 0 else {
            throw RecordDecodingError(detail: "postings of \(body.count) bytes, expected a positive even count")
        }
        var offsets: [UInt16] = []
        offsets.reserveCapacity(body.count / 2)
        for i in stride(from: 0, to: body.count, by: 2) {
            let offset = UInt16(littleEndian: body.loadUnaligned(fromByteOffset: i, as: UInt16.self))
            if let last = offsets.last, offset <= last { throw RecordDecodingError(detail: "postings out of order: \(offset) after \(last)") }
            offsets.append(offset)
        }
        return offsets
    }

    /// The fields of a chunk key (`keySize` bytes).
    static func fields(_ key: UnsafeRawBufferPointer) -> (set: UInt32, classIndex: UInt32, version: UInt32, chunk: UInt64) {
        (BigEndianKey.u32(key, at: 0), BigEndianKey.u32(key, at: 4), BigEndianKey.u32(key, at: 8), BigEndianKey.u64(key, at: 12))
    }

    /// The slots a chunk lists.
    static func slots(chunk: UInt64, offsets: [UInt16]) -> [UInt64] {
        offsets.map { chunk * chunkSlots + UInt64($0) }
    }
}

extension Transaction {
    /// Samples whose top-1 class in the referenced version is `classIndex`, in ascending id, as
    /// the clearance sees them (R-36: the newest row ≤ the version it admits), from the class
    /// postings (no scan of the rows).
    public func samples(withTop1 classIndex: Int, in reference: LabelSetReference) throws -> [UInt64] {
        let (set, version) = try resolve(reference)
        try requirePerSample(set, for: "a top-1 filter")
        guard classIndex >= 0, classIndex < store.schema.classes.count else { return [] }
        guard try packedLabels else {
            var out: [UInt64] = []
            try forEachLabel(set: set, version: version) { id, label in
                if label.top1?.classIndex == classIndex { out.append(id) }
                return true
            }
            return out
        }
        var prefix: [UInt8] = []
        BigEndianKey.append(set.id, to: &prefix)
        BigEndianKey.append(UInt32(classIndex), to: &prefix)
        let tainted = try taintedSamples()
        var slots = SlotOwners()
        var out: [UInt64] = []
        try walk(.labelPostings, from: prefix) { key, value in
            guard key.prefix(8).elementsEqual(prefix) else { return false }
            guard key.count == ClassPostings.keySize else { throw damagedKey(key.count, expected: ClassPostings.keySize, in: .labelPostings) }
            let fields = ClassPostings.fields(key)
            let offsets: [UInt16]
            do { offsets = try ClassPostings.decode(key: key, value) } catch {
                throw contextualize(error, table: .labelPostings, key: "\(set.name)@\(fields.version) class \(classIndex)")
            }
            // A damaged version would otherwise skip the chunk or misread it, silently.
            guard fields.version >= 1, Int(fields.version) <= set.storedLatest else {
                throw StoreError.corruptRecord(store: store.path, table: Table.labelPostings.rawValue, key: "\(set.name) class \(classIndex)",
                                               detail: "postings of version \(fields.version), the set has \(set.storedLatest); run verify")
            }
            // Chunks ascend by version: the rest are of later versions.
            guard Int(fields.version) <= version else { return false }
            for slot in ClassPostings.slots(chunk: fields.chunk, offsets: offsets) {
                let id = try slots.sample(at: slot, in: self, naming: .labelPostings, set: set)
                if try isEffective(sample: id, slot: slot, sampleTaint: tainted[id] ?? 0, rowVersion: Int(fields.version), set: set, version: version) {
                    out.append(id)
                }
            }
            return true
        }
        out.sort()
        return out
    }

    /// True when the row of sample `id` written by `rowVersion` gives its label at `version` ≥
    /// `rowVersion` under the clearance: the row is admitted, and no admitted row
    /// of a later version ≤ `version` supersedes it. Only then are the rows consulted.
    private func isEffective(sample id: UInt64, slot: UInt64, sampleTaint: UInt32, rowVersion: Int, set: LabelSet, version: Int) throws -> Bool {
        guard try labelTaint(sampleTaint: sampleTaint, sample: id, set: set, rowVersion: rowVersion) != nil else { return false }
        if rowVersion == version { return true }
        let visible = try withVisibleRow(of: id, slot: slot, sampleTaint: sampleTaint, set: set, version: version) { $0?.version }
        return visible == rowVersion
    }
}

extension WriteTransaction {
    /// Adds the postings of version `version` of `set`: one per (top-1 class, slot). The version
    /// is new, so every chunk is written whole.
    func addPostings(_ entries: [(classIndex: UInt32, slot: UInt64)], set: UInt32, version: UInt32) throws {
        let sorted = entries.sorted { ($0.classIndex, $0.slot) < ($1.classIndex, $1.slot) }
        var start = 0
        while start < sorted.count {
            let (classIndex, chunk) = (sorted[start].classIndex, sorted[start].slot / ClassPostings.chunkSlots)
            var end = start
            var offsets: [UInt16] = []
            while end < sorted.count, sorted[end].classIndex == classIndex, sorted[end].slot / ClassPostings.chunkSlots == chunk {
                offsets.append(UInt16(sorted[end].slot % ClassPostings.chunkSlots))
                end += 1
            }
            let key = ClassPostings.key(set: set, classIndex: classIndex, version: version, chunk: chunk)
            try put(.labelPostings, key: key, bytes: ClassPostings.encode(key: key, offsets: offsets))
            start = end
        }
    }

    /// Removes the postings of `slots` (their samples are being deleted) from the chunks of
    /// (`set`, class, version), rewriting each chunk once and deleting it when it empties.
    func removePostings(set: UInt32, classIndex: UInt32, version: UInt32, slots: Set<UInt64>) throws {
        for (chunk, doomed) in Dictionary(grouping: slots, by: { $0 / ClassPostings.chunkSlots }) {
            let key = ClassPostings.key(set: set, classIndex: classIndex, version: version, chunk: chunk)
            let gone = Set(doomed.map { UInt16($0 % ClassPostings.chunkSlots) })
            let remaining: [UInt16]? = try withValue(.labelPostings, key: key) { bytes in
                guard let bytes else { return nil }
                do { return try key.withUnsafeBytes { try ClassPostings.decode(key: $0, bytes) }.filter { !gone.contains($0) } } catch {
                    throw contextualize(error, table: .labelPostings, key: "set \(set)@\(version) class \(classIndex) chunk \(chunk)")
                }
            }
            guard let remaining else { continue }
            if remaining.isEmpty {
                try delete(.labelPostings, key: key)
            } else {
                try put(.labelPostings, key: key, bytes: ClassPostings.encode(key: key, offsets: remaining))
            }
        }
    }
}
