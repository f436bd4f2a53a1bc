import Foundation
import Testing
@testable import LabelDB

/// Bytes from disk are untrusted: every decoder must throw (or succeed) on garbage, never trap.
/// Seeded random and mutated inputs, many of each.
@Suite("Garbage input")
struct GarbageInputTests {
    /// Random byte strings, plus valid records with random bytes changed, truncated or extended.
    func inputs(from valid: [[UInt8]], seed: UInt64, count: Int = 400) -> [[UInt8]] {
        var rng = SplitMix64(seed: seed)
        var out: [[UInt8]] = []
        for i in 0..<count {
            if i % 4 == 0 || valid.isEmpty {
                out.append((0..<Int.random(in: 0...300, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) })
                continue
            }
            var bytes = valid[i % valid.count]
            switch i % 4 {
            case 1:
                for _ in 0..<Int.random(in: 1...8, using: &rng) where !bytes.isEmpty {
                    bytes[Int.random(in: 0..<bytes.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
                }
            case 2: bytes = Array(bytes.prefix(Int.random(in: 0...bytes.count, using: &rng)))
            default: bytes += (0..<Int.random(in: 1...40, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            }
            out.append(bytes)
        }
        return out
    }

    @Test("record decoders throw on garbage instead of trapping")
    func recordDecoders() throws {
        let schema = try Schema(dimension: 4, classes: ["a", "b", "c"], rowsPerBlock: 16)
        let layout = EmbeddingBlockLayout(schema: schema)
        // A valid sample record: metadata "{}", payload "abc".
        let metadata = Array("{}".utf8), payload = Array("abc".utf8)
        var sample = [UInt8](repeating: 0, count: SampleRecord.size(metadataCount: metadata.count, payloadCount: payload.count))
        metadata.withUnsafeBytes { m in
            payload.withUnsafeBytes { p in
                sample.withUnsafeMutableBytes { out in
                    SampleRecord.encode(id: 7, slot: 1, taintLabel: 0, provenance: 0, embeddingSequence: 1, metadata: m, payload: p, into: out)
                }
            }
        }
        #expect(try sample.withUnsafeBytes { try SampleRecord.decode(id: 7, $0) }.payload.count == 3)
        let schemaBytes = SchemaRecord(writeVersion: 3, readVersion: 3, schema: schema).encoded()
        let key = LabelRecord.rowKey(set: 1, sample: 7, version: 1)
        let labelRow = LabelRecord.encodeRow(key: key, hard: 2, multi: [0, 1], soft: [1, 2, 3, 4])
        let provenance = try ProvenanceCodec.encode(ProvenanceRecord(activity: "x", agent: "y"), previous: [UInt8](repeating: 0, count: 16))
        var out = [Float](repeating: 0, count: 3)
        for bytes in inputs(from: [sample, schemaBytes, labelRow, provenance], seed: 1) {
            bytes.withUnsafeBytes { raw in
                _ = try? SampleRecord.decode(id: 7, raw)
                _ = try? SchemaRecord.decode(raw)
                _ = try? CounterRecord.decode(raw)
                if let view = try? EmbeddingBlockView(layout: layout, bytes: raw) {
                    _ = try? view.verifyHeader(block: 0)
                    for i in 0..<view.rowsUsed { _ = try? view.verifyRow(i, id: 1) }
                }
                key.withUnsafeBytes { k in
                    _ = try? LabelRecord.decodeRow(key: k, raw)
                    _ = try? LabelRecord.decodeIndexValue(key: k, raw)
                    _ = try? ClassPostings.decode(key: k, raw)
                    _ = try? ProjectorCodec.decodeFloats(key: k, raw, headerCount: 3)
                    _ = try? ProjectorCodec.decodeCorrection(key: k, raw)
                }
                _ = try? ProvenanceCodec.decode(raw)
                for codec in [SoftLabelCodec.denseF32, .denseF16, .topKF16(2), .topKU8(2), .adaptive(0.1)] {
                    out.withUnsafeMutableBufferPointer { _ = try? codec.decode(raw, into: $0) }
                }
            }
        }
    }

    @Test("the JSON parser and the .npy header parser throw on garbage instead of trapping")
    func textDecoders() throws {
        let json = [Array(#"{"a":[1,2.5,-3e4,"x\u00e9\n",true,null,{"b":{}}]}"#.utf8), Array("[[[[[]]]]]".utf8)]
        for bytes in inputs(from: json, seed: 2, count: 800) {
            _ = try? JSONValue.parse(bytes)
        }
        #expect(throws: JSONParseError.self) { _ = try JSONValue.parse(String(repeating: "[", count: 10_000)) }
        let dir = TemporaryDirectory()
        try NumPyArray.write([Float](repeating: 1, count: 6), shape: [2, 3], to: dir.file("ok.npy"))
        let valid = [UInt8](fileBytes(dir.file("ok.npy")))
        for (i, bytes) in inputs(from: [valid], seed: 3, count: 300).enumerated() {
            let path = dir.file("g\(i).npy")
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            if let array = try? NumPyArray.read(path) {
                _ = try? array.floats()
                _ = try? array.ids()
            }
        }
    }
}

extension LabelRecord {
    /// A label row in the one-entry-per-row layout of formats 2–5 (storage.md R-52), which the
    /// library only reads now: seeds for its decoder.
    static func encodeRow(key: [UInt8], hard: UInt32?, multi: [UInt32]?, soft: [UInt8]?) -> [UInt8] {
        var body: [UInt8] = [version]
        var flags: UInt8 = 0
        if hard != nil { flags |= hasHard }
        if multi != nil { flags |= hasMulti }
        if soft != nil { flags |= hasSoft }
        body.append(flags)
        body.append(contentsOf: [0, 0])
        appendLE(hard ?? 0, to: &body)
        appendLE(UInt32(multi?.count ?? 0), to: &body)
        appendLE(UInt32(soft?.count ?? 0), to: &body)
        for c in multi ?? [] { appendLE(c, to: &body) }
        body.append(contentsOf: soft ?? [])
        return SealedRecord.seal(body, seed: SealedRecord.seed(key: key))
    }
}
