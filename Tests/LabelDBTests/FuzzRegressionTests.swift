import Foundation
import Testing
@testable import LabelDB

/// Every input a fuzzer ever crashed on (`Tools/fuzz` copies them into
/// `Fixtures/fuzz/TARGET/`) is replayed through the same target, so a fixed crash stays fixed;
/// and each target runs on seeded random and mutated inputs, a few hundred per target.
@Suite("Fuzz targets")
struct FuzzRegressionTests {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/fuzz")

    @Test("every committed crasher runs through its target without a crash", arguments: DecoderFuzzTargets.names)
    func replay(target: String) throws {
        let folder = Self.fixtures.appendingPathComponent(target)
        let files = (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []
        for file in files.sorted() where !file.hasPrefix(".") {
            DecoderFuzzTargets.run(target, [UInt8](try Data(contentsOf: folder.appendingPathComponent(file))))
        }
    }

    @Test("seeded random and mutated inputs run through every target", arguments: DecoderFuzzTargets.names)
    func seeded(target: String) {
        var rng = SeededGenerator(seed: 77)
        let seeds: [String: [UInt8]] = [
            "npy": [0x93] + Array("NUMPY".utf8) + [1, 0, 118, 0] + Array("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 4), }".utf8) + [UInt8](repeating: 0x20, count: 57) + [0x0A] + [UInt8](repeating: 0, count: 32),
            "json": Array(#"{"a": [1, 2.5e3, "x\u00e9", null, true], "b": {"c": -0}}"#.utf8),
            "jsonl": Array("{\"text\": \"a\"}\n{\"base64\": \"QUJD\"}\n".utf8),
            "query": Array("label(t@2).top1 = 'cat' and not (id < 5 or tagged('pii')) and label(t).prob(1) >= 0.5".utf8),
            "clearance": Array("secrecy=a,b;integrity=c".utf8),
            "records": [6, 16, 0] + [UInt8](repeating: 0, count: 16) + [1, 5, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            "codecs": [2 | 8, 2, 0, 0, 1, 0, 0, 60, 2, 0, 0, 56],
            "recorded_ids": Array("3,7-11,20,18446744073709551615".utf8),
            "session": Array(#"{"generation":3,"label_set":"teacher","session":"0123456789abcdef0123456789abcdef","version":2}"#.utf8),
            // A sums request for rows 0 and 1 of shard 0 of the target's corpus (its ids' hash right).
            "fit_parts": [1, 2, 1, 0, 0, 0, 116, 1, 0, 0, 0, 223, 160, 156, 97, 108, 181, 235, 103, 2, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0],
        ]
        let seed = seeds[target] ?? []
        for round in 0..<300 {
            var input = seed
            if round % 3 == 0 || input.isEmpty {
                input = (0..<Int.random(in: 0...200, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            } else {
                for _ in 0..<Int.random(in: 1...4, using: &rng) where !input.isEmpty {
                    switch Int.random(in: 0..<3, using: &rng) {
                    case 0: input[Int.random(in: 0..<input.count, using: &rng)] ^= UInt8.random(in: 1...255, using: &rng)
                    case 1: input.remove(at: Int.random(in: 0..<input.count, using: &rng))
                    default: input.insert(UInt8.random(in: 0...255, using: &rng), at: Int.random(in: 0...input.count, using: &rng))
                    }
                }
            }
            DecoderFuzzTargets.run(target, input)
        }
    }

    /// With LABELDB_WRITE_FUZZ_SEEDS=DIR, writes seed inputs for `Tools/fuzz` into DIR/records: one
    /// per table, from a store that has a record in every table, in the layout the `records`
    /// target reads (the value's seal left off where the target seals it). Without it, checks that
    /// every such seed decodes cleanly through its target's check — the seeds start the fuzzer past
    /// the checksums.
    @Test("records of every table, in the records target's layout, decode cleanly")
    func recordSeeds() throws {
        let dir = TemporaryDirectory("fuzz-seeds")
        let store = try HardeningDamageTests.everyTable(dir)
        defer { store.close() }
        let outDir = ProcessInfo.processInfo.environment["LABELDB_WRITE_FUZZ_SEEDS"].map { $0 + "/records" }
        if let outDir { try FileManager.default.createDirectory(atPath: outDir, withIntermediateDirectories: true) }
        try store.read(clearance: .all) { tx in
            for (index, table) in Table.allCases.enumerated() {
                var seed: [UInt8]? = nil
                try tx.walk(table, from: nil) { key, value in
                    let unsealed: [UInt8] = [.embeddings, .provenance, .freeSlots].contains(table) ? Array(value) : Array(value.dropFirst(8))
                    seed = [UInt8(index), UInt8(key.count & 0xFF), UInt8(key.count >> 8)] + Array(key) + unsealed
                    return false
                }
                guard let seed else { continue }
                // The seed reproduces the stored record exactly: it decodes without an error.
                let key = Array(seed[3..<(3 + Int(seed[1]))])
                let stored = try tx.withValue(table, key: key) { Array($0!) }
                _ = try key.withUnsafeBytes { k in
                    try stored.withUnsafeBytes { v in try RecordChecks.check(table, key: k, value: v, schema: tx.store.schema, formatVersion: 5) }
                }
                DecoderFuzzTargets.run("records", seed)
                if let outDir { try Data(seed).write(to: URL(fileURLWithPath: "\(outDir)/\(table.rawValue)")) }
            }
        }
    }
}
