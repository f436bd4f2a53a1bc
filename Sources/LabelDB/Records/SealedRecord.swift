/// The checksum envelope most records share: the xxh3-64 of the body (8 bytes, little-endian),
/// then the body. The seed binds a record to where it is stored — the xxh3-64 of its key, or its
/// id — so a value copied under another key no longer checks.
///
/// Every decoder of a sealed record opens it here first: no field of the body is trusted before
/// its checksum is (format-spec/storage.md R-6).
enum SealedRecord {
    /// The seed of a record stored under `key`.
    static func seed(key: [UInt8]) -> UInt64 { Checksum.xxh3(key) }

    /// The seed of a record stored under `key`, borrowed.
    static func seed(key: UnsafeRawBufferPointer) -> UInt64 { Checksum.xxh3(key) }

    /// `body` with its checksum in front.
    static func seal(_ body: [UInt8], seed: UInt64) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(8 + body.count)
        withUnsafeBytes(of: Checksum.xxh3(body, seed: seed).littleEndian) { out.append(contentsOf: $0) }
        out.append(contentsOf: body)
        return out
    }

    /// The body of a sealed record once its checksum checks.
    ///
    /// Lifetime: the body borrows `bytes`.
    ///
    /// - Throws: ``RecordDecodingError`` when there is no room for a checksum; ``ChecksumMismatch``.
    static func open(_ bytes: UnsafeRawBufferPointer, seed: UInt64) throws -> UnsafeRawBufferPointer {
        guard bytes.count >= 8 else { throw RecordDecodingError(detail: "record of \(bytes.count) bytes, too short for its checksum") }
        let stored = UInt64(littleEndian: bytes.loadUnaligned(as: UInt64.self))
        let body = UnsafeRawBufferPointer(rebasing: bytes[8...])
        let actual = Checksum.xxh3(body, seed: seed)
        guard stored == actual else { throw ChecksumMismatch(expected: stored, found: actual) }
        return body
    }
}

/// A record's stored checksum differs from the one its bytes give.
struct ChecksumMismatch: Error {
    let expected: UInt64
    let found: UInt64
    var detail: String { "checksum mismatch, expected \(Checksum.hex(expected)), found \(Checksum.hex(found))" }
}
