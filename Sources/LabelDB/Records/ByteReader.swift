/// A record's bytes did not decode: what was wrong, in words a user can act on.
/// The store wraps it into ``StoreError/corruptRecord(store:table:key:detail:)`` with the context;
/// public decoders of untrusted bytes (``SoftLabelCodec/decode(_:into:)``) throw it as is.
public struct RecordDecodingError: Error, Equatable, Sendable, CustomStringConvertible {
    /// What was wrong with the bytes.
    public let detail: String
    /// An error with this detail.
    public init(detail: String) { self.detail = detail }
    public var description: String { detail }
}

/// A bounds-checked little-endian reader over bytes that came from disk.
///
/// Bytes from disk are untrusted: every read checks the remaining length and throws
/// ``RecordDecodingError`` instead of trapping, and nothing is ever cast to a struct.
struct ByteReader {
    let bytes: UnsafeRawBufferPointer
    private(set) var offset: Int

    init(_ bytes: UnsafeRawBufferPointer, offset: Int = 0) {
        self.bytes = bytes
        self.offset = offset
    }

    var remaining: Int { bytes.count - offset }

    mutating func need(_ count: Int, _ what: @autoclosure () -> String) throws {
        guard count >= 0, count <= remaining else {
            throw RecordDecodingError(detail: "truncated: \(what()) needs \(count) bytes at offset \(offset), \(remaining) left")
        }
    }

    mutating func u8(_ what: @autoclosure () -> String = "u8") throws -> UInt8 {
        try need(1, what())
        defer { offset += 1 }
        return bytes[offset]
    }

    mutating func u16(_ what: @autoclosure () -> String = "u16") throws -> UInt16 {
        try need(2, what())
        defer { offset += 2 }
        return UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
    }

    mutating func u32(_ what: @autoclosure () -> String = "u32") throws -> UInt32 {
        try need(4, what())
        defer { offset += 4 }
        return UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
    }

    mutating func u64(_ what: @autoclosure () -> String = "u64") throws -> UInt64 {
        try need(8, what())
        defer { offset += 8 }
        return UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
    }

    /// A borrowed slice of `count` bytes; valid as long as `bytes` is.
    mutating func slice(_ count: Int, _ what: @autoclosure () -> String) throws -> UnsafeRawBufferPointer {
        try need(count, what())
        defer { offset += count }
        return UnsafeRawBufferPointer(rebasing: bytes[offset..<offset + count])
    }

    mutating func skip(_ count: Int, _ what: @autoclosure () -> String) throws {
        try need(count, what())
        offset += count
    }
}

/// A little-endian writer into memory the caller sized exactly (e.g. LMDB's `MDB_RESERVE` space).
/// Writing past the end is a programming error and traps.
struct ByteWriter {
    let bytes: UnsafeMutableRawBufferPointer
    private(set) var offset: Int

    init(_ bytes: UnsafeMutableRawBufferPointer, offset: Int = 0) {
        self.bytes = bytes
        self.offset = offset
    }

    mutating func u8(_ value: UInt8) {
        bytes[offset] = value
        offset += 1
    }

    mutating func u16(_ value: UInt16) { store(value.littleEndian) }
    mutating func u32(_ value: UInt32) { store(value.littleEndian) }
    mutating func u64(_ value: UInt64) { store(value.littleEndian) }

    private mutating func store<T: FixedWidthInteger>(_ value: T) {
        precondition(offset + MemoryLayout<T>.size <= bytes.count, "ByteWriter overflow")
        bytes.storeBytes(of: value, toByteOffset: offset, as: T.self)
        offset += MemoryLayout<T>.size
    }

    mutating func write(_ source: UnsafeRawBufferPointer) {
        precondition(offset + source.count <= bytes.count, "ByteWriter overflow")
        if source.count > 0 {
            (bytes.baseAddress! + offset).copyMemory(from: source.baseAddress!, byteCount: source.count)
        }
        offset += source.count
    }

    mutating func write(_ source: [UInt8]) {
        source.withUnsafeBytes { write($0) }
    }

    mutating func zeros(_ count: Int) {
        precondition(offset + count <= bytes.count, "ByteWriter overflow")
        if count > 0 { (bytes.baseAddress! + offset).initializeMemory(as: UInt8.self, repeating: 0, count: count) }
        offset += count
    }
}

/// A growable little-endian byte buffer, for small records built before they are stored.
struct ByteBuffer {
    var bytes: [UInt8] = []

    mutating func u8(_ value: UInt8) { bytes.append(value) }
    mutating func u16(_ value: UInt16) { withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) } }
    mutating func u32(_ value: UInt32) { withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) } }
    mutating func u64(_ value: UInt64) { withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) } }
    mutating func append(_ other: [UInt8]) { bytes.append(contentsOf: other) }
    /// A length-prefixed (u32) UTF-8 string.
    mutating func string(_ value: String) {
        let utf8 = Array(value.utf8)
        u32(UInt32(utf8.count))
        bytes.append(contentsOf: utf8)
    }
}

extension ByteReader {
    /// A length-prefixed (u32) UTF-8 string; invalid UTF-8 throws.
    mutating func string(_ what: @autoclosure () -> String) throws -> String {
        let count = Int(try u32(what()))
        let raw = try slice(count, what())
        guard let text = String(validating: raw, as: UTF8.self) else {
            throw RecordDecodingError(detail: "\(what()) is not valid UTF-8")
        }
        return text
    }
}
