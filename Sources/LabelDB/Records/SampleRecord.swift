/// The value stored for one sample in the `samples` table (format-spec/storage.md, "Sample records").
///
/// Layout (little-endian), key = id as u64 big-endian. Record version 2 (format 3) adds the
/// embedding sequence; version 1 records (formats 1 and 2) stop at offset 40 and read as sequence 0.
///
/// | Offset | Size | Description |
/// |---|---|---|
/// | 0 | 8 | xxh3-64 of bytes 8…end, seed = the sample id |
/// | 8 | 1 | record version, 1 or 2 |
/// | 9 | 1 | flags, reserved, zero |
/// | 10 | 2 | reserved, zero |
/// | 12 | 4 | taint label id in `taint_labels` (0 = ``TaintLabel/public``: no secrecy, no integrity tags) |
/// | 16 | 8 | embedding slot |
/// | 24 | 8 | provenance record id (0 = none) |
/// | 32 | 4 | metadata length M |
/// | 36 | 4 | payload length P |
/// | 40 | 8 | (version 2) embedding sequence: the store's write sequence when the embedding was last written |
/// | H | M | metadata, a JSON object in UTF-8 (H = 40 for version 1, 48 for version 2) |
/// | H+M | P | payload |
enum SampleRecord {
    static let headerSize = 48
    static let version: UInt8 = 2

    /// The fixed-size fields of a decoded record, with borrowed metadata and payload.
    struct View {
        var taintLabel: UInt32
        var slot: UInt64
        var provenance: UInt64
        /// The write sequence of the embedding (0 for version-1 records).
        var embeddingSequence: UInt64
        /// Borrowed from the map: valid only while the transaction is open and unchanged.
        var metadata: UnsafeRawBufferPointer
        /// Borrowed from the map: valid only while the transaction is open and unchanged.
        var payload: UnsafeRawBufferPointer
    }

    static func size(metadataCount: Int, payloadCount: Int) -> Int {
        headerSize + metadataCount + payloadCount
    }

    /// Writes a record into `out`, which must be exactly `size(…)` bytes.
    static func encode(
        id: UInt64, slot: UInt64, taintLabel: UInt32, provenance: UInt64, embeddingSequence: UInt64,
        metadata: UnsafeRawBufferPointer, payload: UnsafeRawBufferPointer,
        into out: UnsafeMutableRawBufferPointer
    ) {
        var writer = ByteWriter(out, offset: 8)
        writer.u8(version)
        writer.u8(0)
        writer.u16(0)
        writer.u32(taintLabel)
        writer.u64(slot)
        writer.u64(provenance)
        writer.u32(UInt32(metadata.count))
        writer.u32(UInt32(payload.count))
        writer.u64(embeddingSequence)
        writer.write(metadata)
        writer.write(payload)
        precondition(writer.offset == out.count, "sample record size mismatch")
        let checksum = Checksum.xxh3(UnsafeRawBufferPointer(rebasing: out[8...]), seed: id)
        out.storeBytes(of: checksum.littleEndian, toByteOffset: 0, as: UInt64.self)
    }

    /// A copy of the (already checked) record `bytes` of sample `id` with another taint label id,
    /// and its checksum recomputed.
    ///
    /// With `sequence`, the record's embedding sequence becomes it (a version-1 record becomes a
    /// version-2 one): a label lowered after a projector's fit makes the sample `stale` for it.
    static func relabelled(_ bytes: [UInt8], id: UInt64, taintLabel: UInt32, sequence: UInt64? = nil) -> [UInt8] {
        var out = bytes
        withUnsafeBytes(of: taintLabel.littleEndian) { out.replaceSubrange(12..<16, with: $0) }
        if let sequence {
            // safe: `bytes` decoded as a record of version 1 or 2, so it holds at least 40 bytes.
            if out[8] == 1 {
                out.insert(contentsOf: [UInt8](repeating: 0, count: 8), at: 40)
                out[8] = 2
            }
            withUnsafeBytes(of: sequence.littleEndian) { out.replaceSubrange(40..<48, with: $0) }
        }
        let checksum = out.withUnsafeBytes { Checksum.xxh3(UnsafeRawBufferPointer(rebasing: $0[8...]), seed: id) }
        withUnsafeBytes(of: checksum.littleEndian) { out.replaceSubrange(0..<8, with: $0) }
        return out
    }

    /// Checks the checksum and every length, then returns borrowed views into `bytes`.
    static func decode(id: UInt64, _ bytes: UnsafeRawBufferPointer) throws -> View {
        var reader = ByteReader(try SealedRecord.open(bytes, seed: id))
        let recordVersion = try reader.u8("record version")
        guard recordVersion == 1 || recordVersion == 2 else {
            throw RecordDecodingError(detail: "unknown sample record version \(recordVersion)")
        }
        try reader.skip(3, "reserved")
        let taint = try reader.u32("taint label")
        let slot = try reader.u64("embedding slot")
        let provenance = try reader.u64("provenance")
        let metadataCount = Int(try reader.u32("metadata length"))
        let payloadCount = Int(try reader.u32("payload length"))
        let sequence = recordVersion == 2 ? try reader.u64("embedding sequence") : 0
        let metadata = try reader.slice(metadataCount, "metadata")
        let payload = try reader.slice(payloadCount, "payload")
        guard reader.remaining == 0 else {
            throw RecordDecodingError(detail: "\(reader.remaining) trailing bytes")
        }
        return View(taintLabel: taint, slot: slot, provenance: provenance, embeddingSequence: sequence, metadata: metadata, payload: payload)
    }
}
