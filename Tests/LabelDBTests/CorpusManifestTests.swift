import Foundation
import Testing
@testable import LabelDB

/// The corpus manifest (issue 16, first part; format-spec/corpus.md): routing, checksum, atomic replacement.
@Suite("Corpus manifest")
struct CorpusManifestTests {
    func manifest(_ routing: CorpusManifest.Routing, shards: Int = 4) -> CorpusManifest {
        CorpusManifest(dimension: 8, elementType: .f16, classes: ["cat", "dog"], shards: (0..<shards).map { "shard-\($0)" }, routing: routing)
    }

    @Test("hash routing: xxh3-64 of the id's 8 big-endian bytes mod N, every id in exactly one shard, spread evenly")
    func hashRouting() {
        let m = manifest(.hash)
        var counts = [Int](repeating: 0, count: 4)
        for id in UInt64(0)..<40_000 { counts[m.shard(of: id)!] += 1 }
        #expect(counts.allSatisfy { abs($0 - 10_000) < 500 }, "\(counts)")
        // The rule, spelled out for one id: xxh3-64 of 00…00 2A (seed 0) mod 4.
        let bytes: [UInt8] = [0, 0, 0, 0, 0, 0, 0, 42]
        #expect(m.shard(of: 42) == Int(Checksum.xxh3(bytes, seed: 0) % 4))
    }

    @Test("range routing: half-open ranges, ids outside every range belong to no shard; overlaps refused")
    func rangeRouting() throws {
        let m = manifest(.range([0..<10, 10..<20, 30..<40, 40..<UInt64.max]))
        #expect([0, 9, 10, 19, 20, 29, 30, 39, 40, UInt64.max - 1, UInt64.max].map { m.shard(of: $0) } == [0, 0, 1, 1, nil, nil, 2, 2, 3, 3, nil])
        #expect(manifest(.range([0..<10, 5..<20, 30..<40, 40..<50])).problem()?.contains("overlapping") == true)
        #expect(manifest(.range([0..<10])).problem() == "1 ranges for 4 shards")
    }

    @Test("the manifest round-trips through its bytes and an atomic write; a damaged one is refused")
    func roundTripAndDamage() throws {
        let dir = TemporaryDirectory()
        for m in [manifest(.hash), manifest(.range([0..<10, 10..<20, 30..<40, 40..<UInt64.max]))] {
            try m.write(to: dir.path)
            #expect(try CorpusManifest.read(from: dir.path) == m)
            #expect(!FileManager.default.fileExists(atPath: dir.file("corpus.json.tmp")))
        }
        let good = try Data(contentsOf: URL(fileURLWithPath: dir.file("corpus.json")))
        // Any changed byte of the members fails the checksum (or the parse): every position tried.
        var refused = 0
        for i in good.indices where good[i] != 0x0A {
            var bad = [UInt8](good)
            bad[i] = bad[i] == UInt8(ascii: "1") ? UInt8(ascii: "2") : UInt8(ascii: "1")
            if (try? CorpusManifest(decoding: bad)) == nil { refused += 1 }
        }
        #expect(refused == good.count - 1)
        #expect(throws: CorpusError.self) { try CorpusManifest.read(from: TemporaryDirectory().path) }
        var bad = manifest(.hash)
        bad.shards = ["../elsewhere"]
        #expect(throws: CorpusError.invalid("shard path '../elsewhere' must be a relative path inside the corpus directory")) { try bad.write(to: dir.path) }
        #expect(try CorpusManifest.read(from: dir.path).routing != .hash, "a refused write leaves the manifest as it was")
    }
}
