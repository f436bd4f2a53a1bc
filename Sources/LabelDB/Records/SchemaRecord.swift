/// The `schema` record of the `meta` table (format-spec/storage.md, "The schema record").
///
/// Layout (little-endian):
///
/// | Offset | Size | Description |
/// |---|---|---|
/// | 0 | 8 | xxh3-64 of bytes 8…end, seed 0 |
/// | 8 | 8 | magic `4C 61 62 65 6C 44 42 00` ("LabelDB\0") |
/// | 16 | 2 | write version |
/// | 18 | 2 | read version |
/// | 20 | 4 | embedding dimension d |
/// | 24 | 1 | element type: 1 = f32, 2 = f16 |
/// | 25 | 3 | reserved, zero |
/// | 28 | 4 | rows per embedding block B |
/// | 32 | 4 | class count C |
/// | 36 | … | C class names, each a u32 length and UTF-8 bytes |
struct SchemaRecord: Equatable {
    static let magic: [UInt8] = [0x4C, 0x61, 0x62, 0x65, 0x6C, 0x44, 0x42, 0x00]
    /// The format version this code writes. Version 2 added label sets; version 3 base heads,
    /// projectors and sample record version 2 (with the embedding sequence); version 4 taint
    /// labels (the tag registry, interned labels, taint partitions); version 5 the partition count
    /// (`meta` key `tainted`), so a missing partition entry hides rows instead of revealing them;
    /// version 6 the class postings (`label_postings`), which retire the class index; version 7
    /// dropped label-set versions and fitted samples; version 8 per-view label sets.
    static let currentWriteVersion: UInt16 = 8
    /// The read version this code records: a format-5 reader would answer top-1 filters from
    /// the class index, which a format-6 store lacks or holds empty, so a store written by this
    /// code needs a format-6 reader. A format-7 reader would report a per-view set's rows (row
    /// flag 8) as damage: format 8 needs a format-8 reader.
    static let currentReadVersion: UInt16 = 8

    var writeVersion: UInt16
    var readVersion: UInt16
    var schema: Schema

    func encoded() -> [UInt8] {
        var body = ByteBuffer()
        body.append(Self.magic)
        body.u16(writeVersion)
        body.u16(readVersion)
        body.u32(UInt32(schema.dimension))
        body.u8(schema.elementType.code)
        body.u8(0); body.u8(0); body.u8(0)
        body.u32(UInt32(schema.rowsPerBlock))
        body.u32(UInt32(schema.classes.count))
        for name in schema.classes { body.string(name) }
        return SealedRecord.seal(body.bytes, seed: 0)
    }

    /// Decodes and checks a schema record; every inconsistency throws.
    static func decode(_ bytes: UnsafeRawBufferPointer) throws -> SchemaRecord {
        var reader = ByteReader(try SealedRecord.open(bytes, seed: 0))
        let magic = try reader.slice(8, "magic")
        guard Array(magic) == Self.magic else {
            throw RecordDecodingError(detail: "bad magic bytes")
        }
        let writeVersion = try reader.u16("write version")
        let readVersion = try reader.u16("read version")
        let dimension = Int(try reader.u32("dimension"))
        let typeCode = try reader.u8("element type")
        try reader.skip(3, "reserved")
        let rowsPerBlock = Int(try reader.u32("rows per block"))
        let classCount = Int(try reader.u32("class count"))
        // A class name takes at least its 4-byte length, which bounds a corrupt count.
        guard classCount <= reader.remaining / 4 else {
            throw RecordDecodingError(detail: "class count \(classCount) exceeds the record")
        }
        var classes: [String] = []
        classes.reserveCapacity(classCount)
        for index in 0..<classCount { classes.append(try reader.string("class \(index)")) }
        guard let elementType = Schema.ElementType(code: typeCode) else {
            // A newer format may add types; only a reader that understands the read version gets here.
            throw RecordDecodingError(detail: "unknown element type code \(typeCode)")
        }
        guard dimension >= 1, rowsPerBlock >= 1 else {
            throw RecordDecodingError(detail: "dimension \(dimension) or rows per block \(rowsPerBlock) is zero")
        }
        return SchemaRecord(
            writeVersion: writeVersion, readVersion: readVersion,
            schema: Schema(dimension: dimension, elementType: elementType, classes: classes, rowsPerBlock: rowsPerBlock))
    }
}

/// A counter record of the `meta` table: `slots` (the next never-used embedding slot) and
/// `sequence` (the store's write sequence). Layout: xxh3-64 of bytes 8…15 (seed 0), then the u64.
enum CounterRecord {
    static func encoded(_ next: UInt64) -> [UInt8] {
        var body = ByteBuffer()
        body.u64(next)
        return SealedRecord.seal(body.bytes, seed: 0)
    }

    static func decode(_ bytes: UnsafeRawBufferPointer) throws -> UInt64 {
        guard bytes.count == 16 else { throw RecordDecodingError(detail: "counter is \(bytes.count) bytes, expected 16") }
        var reader = ByteReader(try SealedRecord.open(bytes, seed: 0))
        return try reader.u64("counter")
    }
}
