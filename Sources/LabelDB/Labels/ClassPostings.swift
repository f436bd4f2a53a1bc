/// The class postings (format 6, `format-spec/storage.md` §10.5): for each label set, top-1 class
/// and version, the ids of the samples whose row written by that version has that top-1 class,
/// ascending, in chunks of at most 4,096. They replace format 2's class index (one 44-byte entry
/// per row, a key of its own each) with 8 bytes per row.
enum ClassPostings {
    /// The most ids a writer puts in one chunk, so that removing one rewrites at most 32 KiB.
    static let chunkCapacity = 4_096

    /// Key of a chunk: set id u32 BE, class u32 BE, version u32 BE, the chunk's first id u64 BE.
    static func key(set: UInt32, classIndex: UInt32, version: UInt32, first: UInt64) -> [UInt8] {
        var key: [UInt8] = []
        key.reserveCapacity(keySize)
        BigEndianKey.append(set, to: &key)
        BigEndianKey.append(classIndex, to: &key)
        BigEndianKey.append(version, to: &key)
        BigEndianKey.append(first, to: &key)
        return key
    }

    static let keySize = 20

    /// A chunk's value: checksum (xxh3-64 of the ids, seed = xxh3-64 of the key), then the ids,
    /// u64 LE, strictly ascending, at least one.
    static func encode(key: [UInt8], ids: ArraySlice<UInt64>) -> [UInt8] {
        var body: [UInt8] = []
        body.reserveCapacity(8 * ids.count)
        for id in ids { appendLE(id, to: &body) }
        return SealedRecord.seal(body, seed: SealedRecord.seed(key: key))
    }

    /// The ids of a chunk, checked: checksum, length a positive multiple of 8, strictly
    /// ascending, the first equal to the key's.
    static func decode(key: UnsafeRawBufferPointer, _ bytes: UnsafeRawBufferPointer) throws -> [UInt64] {
        let body = try SealedRecord.open(bytes, seed: SealedRecord.seed(key: key))
        guard body.count >= 8, body.count % 8 == 0 else {
            throw RecordDecodingError(detail: "postings of \(body.count) bytes, expected a positive multiple of 8")
        }
        var ids: [UInt64] = []
        ids.reserveCapacity(body.count / 8)
        for i in stride(from: 0, to: body.count, by: 8) {
            let id = UInt64(littleEndian: body.loadUnaligned(fromByteOffset: i, as: UInt64.self))
            if let last = ids.last, id <= last { throw RecordDecodingError(detail: "postings out of order: \(id) after \(last)") }
            ids.append(id)
        }
        guard key.count == keySize, ids[0] == BigEndianKey.u64(key, at: 12) else {
            throw RecordDecodingError(detail: "the chunk's first id \(ids[0]) is not its key's")
        }
        return ids
    }

    /// The fields of a chunk key (`keySize` bytes).
    static func fields(_ key: UnsafeRawBufferPointer) -> (set: UInt32, classIndex: UInt32, version: UInt32, first: UInt64) {
        (BigEndianKey.u32(key, at: 0), BigEndianKey.u32(key, at: 4), BigEndianKey.u32(key, at: 8), BigEndianKey.u64(key, at: 12))
    }
}

extension Transaction {
    /// True when this store answers top-1 filters from its class postings: a store of format 6
    /// whose migration has built them. Older stores opened read-only (and a migrated store whose
    /// rebuild has not committed yet) answer by scanning the rows instead.
    var hasClassPostings: Bool {
        get throws {
            guard store.formatVersion >= 6 else { return false }
            return try withValue(.meta, name: MetaKey.rebuildPostings) { $0 == nil }
        }
    }

    /// Samples whose top-1 class in the referenced version is `classIndex`, in ascending id, as
    /// the clearance sees them (R-36: the newest row ≤ the version it admits), from the class
    /// postings (no scan of the rows).
    public func samples(withTop1 classIndex: Int, in reference: LabelSetReference) throws -> [UInt64] {
        let (set, version) = try resolve(reference)
        guard classIndex >= 0, classIndex < store.schema.classes.count else { return [] }
        guard try hasClassPostings else {
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
        var out: [UInt64] = []
        try walk(.labelPostings, from: prefix) { key, value in
            guard key.prefix(8).elementsEqual(prefix) else { return false }
            guard key.count == ClassPostings.keySize else { throw damagedKey(key.count, expected: ClassPostings.keySize, in: .labelPostings) }
            let fields = ClassPostings.fields(key)
            let ids: [UInt64]
            do { ids = try ClassPostings.decode(key: key, value) } catch {
                throw contextualize(error, table: .labelPostings, key: "\(set.name)@\(fields.version) class \(classIndex)")
            }
            // A damaged version would otherwise skip the chunk or misread it, silently.
            guard fields.version >= 1, Int(fields.version) <= set.latest else {
                throw StoreError.corruptRecord(store: store.path, table: Table.labelPostings.rawValue, key: "\(set.name) class \(classIndex)",
                                               detail: "postings of version \(fields.version), the set has \(set.latest); run verify")
            }
            // Chunks ascend by version: the rest are of later versions.
            guard Int(fields.version) <= version else { return false }
            for id in ids {
                // Deleting a sample removes its postings: one whose sample a lookup cannot find
                // means a damaged key, here or in `samples`.
                guard try withValue(.samples, key: id, { $0 != nil }) else {
                    throw StoreError.corruptRecord(store: store.path, table: Table.labelPostings.rawValue, key: "\(set.name) class \(classIndex)",
                                                   detail: "a posting names sample \(id), which a lookup cannot find; run verify")
                }
                if try isEffective(sample: id, sampleTaint: tainted[id] ?? 0, rowVersion: Int(fields.version), set: set, version: version) {
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
    private func isEffective(sample id: UInt64, sampleTaint: UInt32, rowVersion: Int, set: LabelSet, version: Int) throws -> Bool {
        guard try labelTaint(sampleTaint: sampleTaint, sample: id, set: set, rowVersion: rowVersion) != nil else { return false }
        if rowVersion == version { return true }
        let visible = try withVisibleRow(of: id, sampleTaint: sampleTaint, set: set, version: version) { row in
            row.map { Int(BigEndianKey.u32($0.key, at: 12)) }
        }
        return visible == rowVersion
    }
}

extension WriteTransaction {
    /// Adds the postings of version `version` of `set`: one per (top-1 class, sample id). The
    /// version is new, so every chunk is written whole.
    func addPostings(_ entries: [(classIndex: UInt32, id: UInt64)], set: UInt32, version: UInt32) throws {
        let sorted = entries.sorted { ($0.classIndex, $0.id) < ($1.classIndex, $1.id) }
        var start = 0
        while start < sorted.count {
            let classIndex = sorted[start].classIndex
            var end = start
            while end < sorted.count, end - start < ClassPostings.chunkCapacity, sorted[end].classIndex == classIndex { end += 1 }
            let ids = sorted[start..<end].map(\.id)
            let key = ClassPostings.key(set: set, classIndex: classIndex, version: version, first: ids[0])
            try put(.labelPostings, key: key, bytes: ClassPostings.encode(key: key, ids: ids[...]))
            start = end
        }
    }

    /// Removes the posting of sample `id` from its chunk (the sample is being deleted): the chunk
    /// is rewritten, re-keyed when it loses its first id, and deleted when it empties.
    func removePosting(set: UInt32, classIndex: UInt32, version: UInt32, id: UInt64) throws {
        let target = ClassPostings.key(set: set, classIndex: classIndex, version: version, first: id)
        var chunk: (key: [UInt8], ids: [UInt64])? = nil
        try walkBackward(.labelPostings, atOrBefore: target) { key, value in
            guard key.count == ClassPostings.keySize, key.prefix(12).elementsEqual(target.prefix(12)) else { return false }
            do { chunk = (Array(key), try ClassPostings.decode(key: key, value)) } catch {
                throw contextualize(error, table: .labelPostings, key: "set \(set)@\(version) class \(classIndex) sample \(id)")
            }
            return false
        }
        guard let (key, ids) = chunk, ids.contains(id) else { return }
        let remaining = ids.filter { $0 != id }
        try delete(.labelPostings, key: key)
        guard let first = remaining.first else { return }
        let newKey = ClassPostings.key(set: set, classIndex: classIndex, version: version, first: first)
        try put(.labelPostings, key: newKey, bytes: ClassPostings.encode(key: newKey, ids: remaining[...]))
    }

    /// Builds every set's postings from its rows and empties the retired class index (migrating
    /// to format 6).
    func rebuildClassPostings() throws {
        try clear(.labelIndex)
        try clear(.labelPostings)
        for set in try labelSets() {
            var byVersion: [UInt32: [(classIndex: UInt32, id: UInt64)]] = [:]
            var prefix: [UInt8] = []
            BigEndianKey.append(set.id, to: &prefix)
            try walk(.labels, from: prefix) { key, value in
                guard key.prefix(4).elementsEqual(prefix) else { return false }
                guard key.count == 16 else { throw damagedKey(key.count, expected: 16, in: .labels) }
                if let top1 = try decodeLabel(key: key, value: value, set: set).top1 {
                    byVersion[BigEndianKey.u32(key, at: 12), default: []].append((UInt32(top1.classIndex), BigEndianKey.u64(key, at: 4)))
                }
                return true
            }
            for (version, entries) in byVersion { try addPostings(entries, set: set.id, version: version) }
        }
    }
}
