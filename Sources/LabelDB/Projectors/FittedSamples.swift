import Foundation

/// Which samples a projector version was fitted on (format 7, storage.md §11.7): per 4,096 slots,
/// a bitmap, so the version reads `regenerated`/`corrected` for exactly those samples
/// whether or not its source label set still exists.
enum FittedBlock {
    /// Slots per record, as label blocks.
    static let slots = LabelBlock.slots
    static let bitmapBytes = Int(slots / 8)

    static func key(projector: UInt32, version: Int, block: UInt64) -> [UInt8] {
        var key: [UInt8] = []
        BigEndianKey.append(projector, to: &key)
        BigEndianKey.append(UInt32(version), to: &key)
        BigEndianKey.append(block, to: &key)
        return key
    }

    /// The sealed value: checksum (xxh3-64 of the bitmap, seed xxh3-64 of the key), then the bitmap.
    static func encode(key: [UInt8], bitmap: [UInt8]) -> [UInt8] {
        precondition(bitmap.count == bitmapBytes)
        return SealedRecord.seal(bitmap, seed: SealedRecord.seed(key: key))
    }

    /// The bitmap of a stored value (bit i of byte j: slot offset 8j + i), checked.
    static func decode(key: UnsafeRawBufferPointer, _ bytes: UnsafeRawBufferPointer) throws -> [UInt8] {
        guard key.count == 16 else { throw RecordDecodingError(detail: "a key of \(key.count) bytes, expected 16") }
        guard BigEndianKey.u64(key, at: 8) <= UInt64.max / slots else { throw RecordDecodingError(detail: "a block number beyond any slot") }
        let body = try SealedRecord.open(bytes, seed: SealedRecord.seed(key: key))
        guard body.count == bitmapBytes else { throw RecordDecodingError(detail: "a bitmap of \(body.count) bytes, expected \(bitmapBytes)") }
        return Array(body)
    }
}

extension Transaction {
    /// True when projector version `version` (of projector `projector`) was fitted on the sample
    /// in `slot`; `cache` keeps the bitmaps read, by block.
    func wasFitted(projector: UInt32, version: Int, slot: UInt64, cache: inout [UInt64: [UInt8]]) throws -> Bool {
        let block = slot / FittedBlock.slots
        if cache[block] == nil { cache[block] = try fittedBitmap(projector: projector, version: version, block: block) ?? [] }
        let bitmap = cache[block]!
        let offset = Int(slot % FittedBlock.slots)
        return !bitmap.isEmpty && bitmap[offset / 8] & (1 << (offset % 8)) != 0
    }

    /// The stored bitmap of one block of a version's fitted samples, checked, or nil.
    func fittedBitmap(projector: UInt32, version: Int, block: UInt64) throws -> [UInt8]? {
        let key = FittedBlock.key(projector: projector, version: version, block: block)
        return try withValue(.projectorFitted, key: key) { bytes in
            try bytes.map { bytes in
                do { return try key.withUnsafeBytes { try FittedBlock.decode(key: $0, bytes) } } catch {
                    throw contextualize(error, table: .projectorFitted, key: "projector \(projector)@\(version) block \(block)")
                }
            }
        }
    }

    /// True when the store records fitted samples (format 7, once migrated); older stores read
    /// fitted status from the source label set.
    var recordsFittedSamples: Bool {
        get throws { try store.formatVersion >= 7 && withValue(.meta, name: MetaKey.recordFitted) { $0 == nil } }
    }
}

extension WriteTransaction {
    /// Records that projector version `version` was fitted on the samples in `slots`.
    func putFitted(projector: UInt32, version: Int, slots: [UInt64]) throws {
        for (block, inBlock) in Dictionary(grouping: slots, by: { $0 / FittedBlock.slots }) {
            var bitmap = [UInt8](repeating: 0, count: FittedBlock.bitmapBytes)
            for slot in inBlock { let o = Int(slot % FittedBlock.slots); bitmap[o / 8] |= 1 << (o % 8) }
            let key = FittedBlock.key(projector: projector, version: version, block: block)
            try put(.projectorFitted, key: key, bytes: FittedBlock.encode(key: key, bitmap: bitmap))
        }
    }

    /// Clears the bits of freed slots (deleted samples) in every projector version's fitted
    /// samples, so a sample that later takes a slot is not taken for one a fit used: it reads
    /// `unfitted`, and relabelling it restricts no projector.
    func clearFitted(slots: [UInt64]) throws {
        guard !slots.isEmpty, try recordsFittedSamples else { return }
        let byBlock = Dictionary(grouping: slots, by: { $0 / FittedBlock.slots })
        for name in try names(in: .projectors) {
            guard let record = try projectorRecord(key: Array(name.utf8)), record.latest >= 1 else { continue }
            for version in 1...record.latest {
                for (block, freed) in byBlock {
                    guard var bitmap = try fittedBitmap(projector: record.id, version: version, block: block) else { continue }
                    let key = FittedBlock.key(projector: record.id, version: version, block: block)
                    for slot in freed { let o = Int(slot % FittedBlock.slots); bitmap[o / 8] &= ~(1 << (o % 8)) }
                    if bitmap.allSatisfy({ $0 == 0 }) {
                        try delete(.projectorFitted, key: key)
                    } else {
                        try put(.projectorFitted, key: key, bytes: FittedBlock.encode(key: key, bitmap: bitmap))
                    }
                }
            }
        }
    }

    /// Records, for every projector version, the samples its fit used (migrating to format 7):
    /// those whose newest row at or before the source version with a label (sample ⊔ source)
    /// that flows to the version's label — the row the fit's clearance read — holds a soft label.
    /// A format-6 store cannot have dropped a set, so the source is found by name (clocks that
    /// went backwards must not leave a version without records, which relabels would then miss).
    func recordFittedSamples() throws {
        try clear(.projectorFitted)
        for name in try names(in: .projectors) {
            guard let record = try projectorRecord(key: Array(name.utf8)) else { continue }
            let versions = try versionRecords(ProjectorVersion.self, in: .projectorVersions, id: record.id, latest: record.latest, name: name)
            for version in versions {
                guard let source = try fittedSource(of: version, checkingRecreated: false) else { continue }
                var slots: [UInt64] = []
                try walk(.samples, from: nil) { key, value in
                    guard key.count == 8 else { throw damagedKey(key.count, expected: 8, in: .samples) }
                    let id = BigEndianKey.u64(key, at: 0)
                    let sample = try decodeSampleRecord(id: id, value)
                    let sampleTaint = try taintLabel(id: sample.taintLabel, sample: id)
                    try forEachRow(of: id, slot: sample.slot, set: source, atOrBefore: version.sourceVersion) { rowVersion, row in
                        guard sampleTaint.join(source.versions[rowVersion - 1].sourceLabel).flows(to: version.taintLabel) else { return true }
                        if row.soft != nil { slots.append(sample.slot) }
                        return false
                    }
                    return true
                }
                try putFitted(projector: record.id, version: version.version, slots: slots)
            }
        }
    }
}
