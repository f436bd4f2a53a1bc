/// Label rows packed in blocks (format 6, `format-spec/storage.md` §10.3): the rows one import of
/// a label set wrote for 4,096 consecutive embedding slots share one LMDB value, as embeddings
/// share blocks. Format 2–5 gave each row its own entry, a 16-byte key, an 8-byte checksum and a
/// 16-byte header around 4–22 bytes of label; a packed row carries 5 bytes besides its label
/// (flags and a 4-byte checksum), plus 4 for its offset where rows differ in length.
///
/// A row is found by slot: the sample record gives the slot, the block's bitmap says whether the
/// block holds a row for it, and the bits before it give its rank. The row's checksum is seeded
/// with the sample id, so a row read for another sample (a reused slot, a damaged bitmap) fails.
enum LabelBlock {
    /// Slots per block.
    static let slots: UInt64 = 4_096
    /// Bytes before the bitmap: header checksum, record version, reserved, row count, row width,
    /// reserved, rows checksum.
    static let headerSize = 32
    /// The bitmap: one bit per slot.
    static let bitmapSize = Int(slots) / 8
    /// Where the offsets (variable layout) or the rows (fixed layout) start.
    static let prefixSize = headerSize + bitmapSize
    static let recordVersion: UInt8 = 1

    /// Key of a block: set id u32 BE, block number (slot ÷ 4,096) u64 BE, version u32 BE.
    static func key(set: UInt32, block: UInt64, version: UInt32) -> [UInt8] {
        var key: [UInt8] = []
        key.reserveCapacity(16)
        BigEndianKey.append(set, to: &key)
        BigEndianKey.append(block, to: &key)
        BigEndianKey.append(version, to: &key)
        return key
    }

    /// One row's bytes: flags, the hard label, the multi-label, the soft label, then the checksum
    /// (the low 32 bits of xxh3-64 of the bytes before it, seeded with the block's seed XOR the
    /// sample id).
    static func encodeRow(hard: UInt32?, multi: [UInt32]?, soft: [UInt8]?, views: (flags: UInt8, bytes: [UInt8])? = nil, seed: UInt64) -> [UInt8] {
        var row: [UInt8] = [0]
        if let views {
            // A per-view row: its flags name the per-view columns, its section holds them.
            row[0] = views.flags
            row.append(contentsOf: views.bytes)
            appendLE(UInt32(truncatingIfNeeded: Checksum.xxh3(row, seed: seed)), to: &row)
            return row
        }
        if let hard { row[0] |= LabelRecord.hasHard; appendLE(hard, to: &row) }
        if let multi {
            row[0] |= LabelRecord.hasMulti
            appendLE(UInt32(multi.count), to: &row)
            for c in multi { appendLE(c, to: &row) }
        }
        if let soft { row[0] |= LabelRecord.hasSoft; row.append(contentsOf: soft) }
        appendLE(UInt32(truncatingIfNeeded: Checksum.xxh3(row, seed: seed)), to: &row)
        return row
    }

    /// The fields of a row once its checksum checks (`seed` nil: the caller checked the block's
    /// rows checksum instead); `soft` and a per-view row's `views` borrow `bytes`.
    static func decodeRow(_ bytes: UnsafeRawBufferPointer, seed: UInt64?) throws -> LabelRecord.Row {
        guard bytes.count >= 5 else { throw RecordDecodingError(detail: "label row of \(bytes.count) bytes") }
        let body = UnsafeRawBufferPointer(rebasing: bytes[..<(bytes.count - 4)])
        if let seed {
            let stored = bytes.loadUnaligned(fromByteOffset: bytes.count - 4, as: UInt32.self).littleEndian
            let actual = UInt32(truncatingIfNeeded: Checksum.xxh3(body, seed: seed))
            guard stored == actual else { throw ChecksumMismatch(expected: UInt64(stored), found: UInt64(actual)) }
        }
        var reader = ByteReader(body)
        let flags = try reader.u8("flags")
        var row = LabelRecord.Row()
        if flags & LabelRecord.hasViews != 0 {
            guard flags & ~(LabelRecord.hasViews | LabelRecord.hasHard | LabelRecord.hasSoft | LabelRecord.hasExtras) == 0 else {
                throw RecordDecodingError(detail: "unknown per-view label row flags \(flags)")
            }
            row.views = ViewSection(flags: flags, bytes: try reader.slice(reader.remaining, "views"))
            return row
        }
        guard flags & ~(LabelRecord.hasHard | LabelRecord.hasMulti | LabelRecord.hasSoft) == 0 else {
            throw RecordDecodingError(detail: "unknown label row flags \(flags)")
        }
        if flags & LabelRecord.hasHard != 0 { row.hard = try reader.u32("hard label") }
        if flags & LabelRecord.hasMulti != 0 {
            let count = Int(try reader.u32("multi count"))
            guard count <= reader.remaining / 4 else { throw RecordDecodingError(detail: "multi count \(count) exceeds the row") }
            row.multi = try (0..<count).map { _ in try reader.u32("multi class") }
        }
        if flags & LabelRecord.hasSoft != 0 {
            row.soft = try reader.slice(reader.remaining, "soft label")
        } else if reader.remaining != 0 {
            throw RecordDecodingError(detail: "\(reader.remaining) trailing bytes in a label row")
        }
        return row
    }

    /// A block value holding `rows` (slot offsets within the block, ascending and distinct, with
    /// their encoded rows): the fixed layout when every row has one length, else with offsets.
    static func encode(key: [UInt8], rows: [(offset: Int, bytes: [UInt8])]) -> [UInt8] {
        let width = rows.first.map(\.bytes.count) ?? 0
        let fixed = rows.allSatisfy { $0.bytes.count == width }
        var value = [UInt8](repeating: 0, count: prefixSize)
        value[8] = recordVersion
        putLE(UInt32(rows.count), into: &value, at: 12)
        putLE(UInt32(fixed ? width : 0), into: &value, at: 16)
        for row in rows { value[headerSize + row.offset / 8] |= 1 << UInt8(row.offset % 8) }
        if !fixed {
            var end: UInt32 = 0
            appendLE(end, to: &value)
            for row in rows { end += UInt32(row.bytes.count); appendLE(end, to: &value) }
        }
        for row in rows { value.append(contentsOf: row.bytes) }
        // The rows checksum lets a scan check a block in one pass; the header's covers it too.
        let seed = SealedRecord.seed(key: key)
        putLE(Checksum.xxh3(Array(value[prefixSize...]), seed: seed), into: &value, at: 24)
        putLE(Checksum.xxh3(Array(value[8..<prefixSize]), seed: seed), into: &value, at: 0)
        return value
    }

    private static func putLE<T: FixedWidthInteger>(_ value: T, into bytes: inout [UInt8], at offset: Int) {
        withUnsafeBytes(of: value.littleEndian) { for (i, byte) in $0.enumerated() { bytes[offset + i] = byte } }
    }
}

/// A checked label block, borrowed from the map: header checksum, sizes and offsets verified on
/// init; each row's checksum when it is read (``row(rank:sample:)``).
///
/// Lifetime: valid only while the transaction that read it is open and the block unchanged.
struct LabelBlockView {
    let bytes: UnsafeRawBufferPointer
    /// xxh3-64 of the block's key: rows are seeded with it XOR their sample id.
    let seed: UInt64
    let count: Int
    private let width: Int
    private let rowsStart: Int

    init(key: UnsafeRawBufferPointer, bytes: UnsafeRawBufferPointer) throws {
        guard bytes.count >= LabelBlock.prefixSize else { throw RecordDecodingError(detail: "label block of \(bytes.count) bytes") }
        seed = SealedRecord.seed(key: key)
        let stored = bytes.loadUnaligned(as: UInt64.self).littleEndian
        let actual = Checksum.xxh3(UnsafeRawBufferPointer(rebasing: bytes[8..<LabelBlock.prefixSize]), seed: seed)
        guard stored == actual else { throw ChecksumMismatch(expected: stored, found: actual) }
        guard bytes[8] == LabelBlock.recordVersion else { throw RecordDecodingError(detail: "unknown label block version \(bytes[8])") }
        self.bytes = bytes
        count = Int(bytes.loadUnaligned(fromByteOffset: 12, as: UInt32.self).littleEndian)
        width = Int(bytes.loadUnaligned(fromByteOffset: 16, as: UInt32.self).littleEndian)
        var bits = 0
        for word in 0..<(LabelBlock.bitmapSize / 8) { bits += Self.word(bytes, word).nonzeroBitCount }
        guard count >= 1, bits == count else { throw RecordDecodingError(detail: "\(count) rows for \(bits) bitmap bits") }
        if width > 0 {
            rowsStart = LabelBlock.prefixSize
            guard width >= 5, bytes.count == rowsStart + count * width else {
                throw RecordDecodingError(detail: "label block of \(bytes.count) bytes does not hold \(count) rows of \(width)")
            }
        } else {
            rowsStart = LabelBlock.prefixSize + 4 * (count + 1)
            guard bytes.count >= rowsStart else { throw RecordDecodingError(detail: "label block too short for its offsets") }
            var previous = 0
            for i in 0...count {
                let end = offset(i)
                // Every row holds at least its flags and checksum.
                guard i == 0 ? end == 0 : end >= previous + 5 else { throw RecordDecodingError(detail: "label row offsets out of order") }
                previous = end
            }
            guard bytes.count == rowsStart + previous else { throw RecordDecodingError(detail: "label block of \(bytes.count) bytes, its rows end at \(rowsStart + previous)") }
        }
    }

    private static func word(_ bytes: UnsafeRawBufferPointer, _ index: Int) -> UInt64 {
        bytes.loadUnaligned(fromByteOffset: LabelBlock.headerSize + 8 * index, as: UInt64.self).littleEndian
    }

    private func offset(_ i: Int) -> Int {
        Int(bytes.loadUnaligned(fromByteOffset: LabelBlock.prefixSize + 4 * i, as: UInt32.self).littleEndian)
    }

    /// The rank of the row of slot offset `slot` (0…4,095) in the block, or nil when it holds none.
    func rank(of slot: Int) -> Int? {
        let word = Self.word(bytes, slot / 64)
        let bit = UInt64(1) << UInt64(slot % 64)
        guard word & bit != 0 else { return nil }
        var rank = (word & (bit - 1)).nonzeroBitCount
        for w in 0..<(slot / 64) { rank += Self.word(bytes, w).nonzeroBitCount }
        return rank
    }

    /// Every slot offset with a row, ascending, with its rank.
    func forEachSlot(_ body: (_ slot: Int, _ rank: Int) throws -> Void) rethrows {
        var rank = 0
        for w in 0..<(LabelBlock.bitmapSize / 8) {
            var word = Self.word(bytes, w)
            while word != 0 {
                try body(w * 64 + word.trailingZeroBitCount, rank)
                rank += 1
                word &= word - 1
            }
        }
    }

    /// Where the rows start and how long each is, when every row of the block has one length.
    var fixedRows: (start: Int, width: Int)? { width > 0 ? (rowsStart, width) : nil }

    /// The raw bytes of the row of rank `rank`, checksum included.
    func rowBytes(rank: Int) -> UnsafeRawBufferPointer {
        let start = width > 0 ? rowsStart + rank * width : rowsStart + offset(rank)
        let end = width > 0 ? start + width : rowsStart + offset(rank + 1)
        return UnsafeRawBufferPointer(rebasing: bytes[start..<end])
    }

    /// The checked row of rank `rank`, which must belong to `sample`; `soft` borrows the block.
    /// `rowsChecked`: the caller checked ``rowsCheck``, so the row's own checksum is skipped.
    func row(rank: Int, sample: UInt64, rowsChecked: Bool = false) throws -> LabelRecord.Row {
        try LabelBlock.decodeRow(rowBytes(rank: rank), seed: rowsChecked ? nil : seed ^ sample)
    }

    /// True when the bytes after the bitmap (offsets and rows) match the rows checksum: a scan
    /// checks a whole block in one pass this way, and checks rows one by one only when it fails,
    /// to name the damaged one.
    var rowsCheck: Bool {
        let stored = bytes.loadUnaligned(fromByteOffset: 24, as: UInt64.self).littleEndian
        return stored == Checksum.xxh3(UnsafeRawBufferPointer(rebasing: bytes[LabelBlock.prefixSize...]), seed: seed)
    }
}
