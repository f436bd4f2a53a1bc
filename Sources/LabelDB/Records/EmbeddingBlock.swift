/// Where the parts of an embedding block sit (format-spec/storage.md, "Embedding blocks").
///
/// A block holds up to B consecutive slots. Embeddings live here rather than in the sample
/// records because a 2 KiB value (512 × f32) would take a 4 KiB LMDB overflow page of its own;
/// blocks of many rows fill their overflow pages, and a scan hands a block's matrix straight to
/// BLAS.
///
/// Layout (little-endian), key = block number (slot / B) as u64 big-endian:
///
/// | Offset | Size | Description |
/// |---|---|---|
/// | 0 | 8 | xxh3-64 of bytes 8…matrixOffset, seed = block number |
/// | 8 | 1 | record version, 1 |
/// | 9 | 1 | element type: 1 = f32, 2 = f16 (equals the schema's) |
/// | 10 | 2 | reserved, zero |
/// | 12 | 4 | rows used n (slots 0…n−1 of the block have been written) |
/// | 16 | 4 | capacity B (equals the schema's rows per block) |
/// | 20 | 4 | dimension d |
/// | 24 | 8 | reserved, zero |
/// | 32 | 8·B | sample id of each slot (0 when free) |
/// | 32+8B | 8·B | xxh3-64 of each row's bytes, seed = its sample id (0 when free) |
/// | 32+16B | 8·⌈B/64⌉ | live bitmap: bit i%64 of u64 word i/64 is set when slot i holds a sample |
/// | matrixOffset | n·d·w | rows, w = 4 (f32) or 2 (f16); matrixOffset = the previous end rounded up to 64 |
struct EmbeddingBlockLayout: Sendable {
    static let version: UInt8 = 1
    let capacity: Int
    let dimension: Int
    let elementType: Schema.ElementType

    var rowBytes: Int { dimension * elementType.byteWidth }
    var idsOffset: Int { 32 }
    var checksumsOffset: Int { 32 + 8 * capacity }
    var bitmapOffset: Int { 32 + 16 * capacity }
    var bitmapBytes: Int { 8 * ((capacity + 63) / 64) }
    /// Rounded to 64 so rows start cache-line aligned relative to the value (LMDB's overflow data is 16-aligned).
    var matrixOffset: Int { (bitmapOffset + bitmapBytes + 63) / 64 * 64 }

    init(schema: Schema) {
        capacity = schema.rowsPerBlock
        dimension = schema.dimension
        elementType = schema.elementType
    }

    func size(rows: Int) -> Int { matrixOffset + rows * rowBytes }
}

/// A decoded, size-checked embedding block, borrowed from the map.
///
/// Lifetime: valid only while the transaction that read it is open and the block unchanged.
struct EmbeddingBlockView {
    let layout: EmbeddingBlockLayout
    let bytes: UnsafeRawBufferPointer
    let rowsUsed: Int

    /// Checks every size field against the schema (cheap); the header checksum is checked by
    /// ``verifyHeader(block:)`` and each row's by ``verifyRow(_:id:)``.
    init(layout: EmbeddingBlockLayout, bytes: UnsafeRawBufferPointer) throws {
        var reader = ByteReader(bytes)
        try reader.skip(8, "checksum")
        let version = try reader.u8("record version")
        guard version == EmbeddingBlockLayout.version else {
            throw RecordDecodingError(detail: "unknown block record version \(version)")
        }
        let typeCode = try reader.u8("element type")
        try reader.skip(2, "reserved")
        let rows = Int(try reader.u32("rows used"))
        let capacity = Int(try reader.u32("capacity"))
        let dimension = Int(try reader.u32("dimension"))
        guard typeCode == layout.elementType.code, capacity == layout.capacity, dimension == layout.dimension else {
            throw RecordDecodingError(detail: "block shape (type \(typeCode), capacity \(capacity), dimension \(dimension)) does not match the schema")
        }
        guard rows <= capacity, bytes.count == layout.size(rows: rows) else {
            throw RecordDecodingError(detail: "block of \(bytes.count) bytes does not hold \(rows) rows of \(layout.rowBytes) bytes")
        }
        self.layout = layout
        self.bytes = bytes
        self.rowsUsed = rows
    }

    func verifyHeader(block: UInt64) throws {
        let stored = UInt64(littleEndian: bytes.loadUnaligned(as: UInt64.self))
        let actual = Checksum.xxh3(UnsafeRawBufferPointer(rebasing: bytes[8..<layout.matrixOffset]), seed: block)
        if stored != actual { throw ChecksumMismatch(expected: stored, found: actual) }
    }

    func id(at index: Int) -> UInt64 {
        UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: layout.idsOffset + 8 * index, as: UInt64.self))
    }

    func checksum(at index: Int) -> UInt64 {
        UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: layout.checksumsOffset + 8 * index, as: UInt64.self))
    }

    func isLive(_ index: Int) -> Bool {
        let word = UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: layout.bitmapOffset + 8 * (index / 64), as: UInt64.self))
        return word & (1 << UInt64(index % 64)) != 0
    }

    /// The stored bytes of row `index` (index < rowsUsed).
    func row(_ index: Int) -> UnsafeRawBufferPointer {
        let start = layout.matrixOffset + index * layout.rowBytes
        return UnsafeRawBufferPointer(rebasing: bytes[start..<start + layout.rowBytes])
    }

    /// The rows 0…rowsUsed−1 as one row-major matrix, ready for BLAS (f32 stores).
    var matrix: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: bytes[layout.matrixOffset...])
    }

    /// Checks that slot `index` is live, belongs to `id` and that its bytes match their checksum.
    func verifyRow(_ index: Int, id expectedID: UInt64) throws {
        guard index < rowsUsed, isLive(index) else {
            throw RecordDecodingError(detail: "slot \(index) of the block is not in use")
        }
        let storedID = id(at: index)
        guard storedID == expectedID else {
            throw RecordDecodingError(detail: "slot \(index) belongs to id \(storedID), expected \(expectedID)")
        }
        let stored = checksum(at: index)
        let actual = Checksum.xxh3(row(index), seed: expectedID)
        if stored != actual { throw ChecksumMismatch(expected: stored, found: actual) }
    }
}

/// One change to a slot of a block, applied by ``EmbeddingBlockWriter``.
enum SlotChange {
    /// Store `vector` (d floats, borrowed from the caller for the duration of the write) for `id`.
    case put(index: Int, id: UInt64, vector: UnsafePointer<Float>)
    /// Free the slot: clear its bit, id, checksum and bytes (deleted data does not linger in the block).
    case clear(index: Int)

    var index: Int {
        switch self {
        case .put(let index, _, _), .clear(let index): index
        }
    }
}

/// Builds a block value: the old block's contents (if any) with `changes` applied.
enum EmbeddingBlockWriter {
    /// The number of rows the block will have after `changes`.
    static func rowsAfter(oldRows: Int, changes: [SlotChange]) -> Int {
        changes.reduce(oldRows) { max($0, $1.index + 1) }
    }

    /// Writes the new block into `out` (exactly `layout.size(rows: rows)` bytes).
    /// `old` is a copy of the previous value (it must not alias `out`).
    static func write(
        block: UInt64, layout: EmbeddingBlockLayout, old: [UInt8]?, oldRows: Int, rows: Int,
        changes: [SlotChange], into out: UnsafeMutableRawBufferPointer
    ) {
        precondition(out.count == layout.size(rows: rows))
        if let old {
            old.withUnsafeBytes { oldBytes in
                // Header and per-slot arrays have a fixed size; rows copy for the old row count.
                out.baseAddress!.copyMemory(from: oldBytes.baseAddress!, byteCount: layout.size(rows: oldRows))
            }
            let tail = out.count - layout.size(rows: oldRows)
            if tail > 0 { (out.baseAddress! + layout.size(rows: oldRows)).initializeMemory(as: UInt8.self, repeating: 0, count: tail) }
        } else {
            out.baseAddress!.initializeMemory(as: UInt8.self, repeating: 0, count: out.count)
        }
        var header = ByteWriter(out, offset: 8)
        header.u8(EmbeddingBlockLayout.version)
        header.u8(layout.elementType.code)
        header.u16(0)
        header.u32(UInt32(rows))
        header.u32(UInt32(layout.capacity))
        header.u32(UInt32(layout.dimension))
        header.u64(0)

        for change in changes {
            let index = change.index
            let rowStart = layout.matrixOffset + index * layout.rowBytes
            let row = UnsafeMutableRawBufferPointer(rebasing: out[rowStart..<rowStart + layout.rowBytes])
            let wordOffset = layout.bitmapOffset + 8 * (index / 64)
            var word = UInt64(littleEndian: out.loadUnaligned(fromByteOffset: wordOffset, as: UInt64.self))
            switch change {
            case .put(_, let id, let vector):
                ElementEncoding.store(vector, count: layout.dimension, as: layout.elementType, into: row)
                let checksum = Checksum.xxh3(UnsafeRawBufferPointer(row), seed: id)
                out.storeBytes(of: id.littleEndian, toByteOffset: layout.idsOffset + 8 * index, as: UInt64.self)
                out.storeBytes(of: checksum.littleEndian, toByteOffset: layout.checksumsOffset + 8 * index, as: UInt64.self)
                word |= 1 << UInt64(index % 64)
            case .clear:
                row.initializeMemory(as: UInt8.self, repeating: 0)
                out.storeBytes(of: UInt64(0), toByteOffset: layout.idsOffset + 8 * index, as: UInt64.self)
                out.storeBytes(of: UInt64(0), toByteOffset: layout.checksumsOffset + 8 * index, as: UInt64.self)
                word &= ~(1 << UInt64(index % 64))
            }
            out.storeBytes(of: word.littleEndian, toByteOffset: wordOffset, as: UInt64.self)
        }
        let checksum = Checksum.xxh3(UnsafeRawBufferPointer(rebasing: out[8..<layout.matrixOffset]), seed: block)
        out.storeBytes(of: checksum.littleEndian, toByteOffset: 0, as: UInt64.self)
    }
}

/// Conversions between the caller's `Float` vectors and the stored element type.
enum ElementEncoding {
    /// Stores `count` floats as little-endian `type` elements into `out`.
    static func store(_ vector: UnsafePointer<Float>, count: Int, as type: Schema.ElementType, into out: UnsafeMutableRawBufferPointer) {
        switch type {
        case .f32:
            // x86_64 and arm64 are little-endian, the format's byte order, so f32 rows copy as is.
            out.baseAddress!.copyMemory(from: vector, byteCount: count * 4)
        case .f16:
            for i in 0..<count {
                out.storeBytes(of: Float16(vector[i]).bitPattern.littleEndian, toByteOffset: 2 * i, as: UInt16.self)
            }
        }
    }

    /// Appends the `count` elements in `bytes` to `out` as floats.
    static func load(_ bytes: UnsafeRawBufferPointer, count: Int, as type: Schema.ElementType, into out: UnsafeMutablePointer<Float>) {
        switch type {
        case .f32:
            UnsafeMutableRawPointer(out).copyMemory(from: bytes.baseAddress!, byteCount: count * 4)
        case .f16:
            halfToFloat(bytes, count: count, into: out)
        }
    }

    /// Every f16 bit pattern's `Float` value. Converting through this table is several times faster
    /// than `Float(Float16)` on x86-64 builds without F16C, where the conversion is a library call.
    static let halfTable: [Float] = (0...UInt16.max).map { Float(Float16(bitPattern: $0)) }

    /// Converts `count` little-endian f16 values in `bytes` to floats.
    static func halfToFloat(_ bytes: UnsafeRawBufferPointer, count: Int, into out: UnsafeMutablePointer<Float>) {
        halfTable.withUnsafeBufferPointer { table in
            for i in 0..<count {
                out[i] = table[Int(UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)))]
            }
        }
    }
}
