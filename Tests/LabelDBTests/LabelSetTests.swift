import Foundation
import Testing
@testable import LabelDB

/// A seeded random distribution over `c` classes whose sharpness varies (peaked to flat).
func randomDistribution(_ c: Int, _ rng: inout SeededGenerator) -> [Float] {
    let sharpness = Float.random(in: 0.5...8, using: &rng)
    let logits = (0..<c).map { _ in Float.random(in: -1...1, using: &rng) * sharpness }
    let m = logits.max()!
    let e = logits.map { exp($0 - m) }
    let s = e.reduce(0, +)
    return e.map { $0 / s }
}

/// KL(p ‖ q) for test arrays.
func kl(_ p: [Float], _ q: [Float]) -> Double {
    p.withUnsafeBufferPointer { pp in q.withUnsafeBufferPointer { qq in klDivergence(pp, qq) } }
}

/// Encodes and decodes one distribution.
func roundTrip(_ codec: SoftLabelCodec, _ p: [Float]) throws -> (decoded: [Float], bytes: Int) {
    var bytes: [UInt8] = []
    p.withUnsafeBufferPointer { codec.encode($0, into: &bytes) }
    var out = [Float](repeating: 0, count: p.count)
    try bytes.withUnsafeBytes { raw in try out.withUnsafeMutableBufferPointer { try codec.decode(raw, into: $0) } }
    return (out, bytes.count)
}

/// The ideal top-K marginal smoothing with exact values: the best any top-K codec can do.
func idealTopK(_ p: [Float], _ k: Int) -> [Float] {
    let order = p.indices.sorted { p[$0] > p[$1] || (p[$0] == p[$1] && $0 < $1) }
    let kept = Set(order.prefix(k))
    let rest = p.indices.filter { !kept.contains($0) }.reduce(Float(0)) { $0 + p[$1] }
    let share = p.count > k ? rest / Float(p.count - k) : 0
    return p.indices.map { kept.contains($0) ? p[$0] : share }
}

@Suite("Soft-label codecs")
struct CodecTests {
    @Test("codec strings parse, print back, and bad ones are refused")
    func parsing() throws {
        for text in ["dense:f32", "dense:f16", "topk:5:f16", "topk:10:u8", "adaptive:0.01"] {
            #expect(try SoftLabelCodec(parsing: text).description == text)
        }
        for bad in ["dense", "dense:f64", "topk:0:f16", "topk:-1:f16", "topk:x:f16", "topk:5:f32", "adaptive:0", "adaptive:nan", "zstd:3", ""] {
            #expect(throws: LabelError.self) { _ = try SoftLabelCodec(parsing: bad) }
        }
        #expect(throws: LabelError.self) { try SoftLabelCodec.topKF16(11).validate(classCount: 10) }
    }

    @Test("every codec decodes to a normalised distribution within its stated bound", arguments: [3, 10, 1000])
    func boundsHold(classes c: Int) throws {
        var rng = SeededGenerator(seed: UInt64(c))
        for _ in 0..<(c == 1000 ? 40 : 200) {
            let p = randomDistribution(c, &rng)
            let k = min(5, c)
            for codec in [SoftLabelCodec.denseF32, .denseF16, .topKF16(k), .topKU8(k), .adaptive(0.01)] {
                let (q, bytes) = try roundTrip(codec, p)
                #expect(abs(q.reduce(0, +) - 1) < 1e-4, "\(codec) does not sum to 1")
                if let size = codec.fixedSize(classCount: c) { #expect(bytes == size) }
                let divergence = kl(p, q)
                switch codec {
                case .denseF32: #expect(divergence < 1e-9)
                // f16 keeps 11 significant bits down to 6e-5; below that (subnormals) absolute
                // error 3e-8 per class, which at 1000 classes adds up to ~1e-4 nats.
                case .denseF16: #expect(divergence < 5e-4)
                case .topKF16(let k): #expect(divergence <= kl(p, idealTopK(p, k)) + 1e-4, "topk f16: \(divergence)")
                case .topKU8(let k): #expect(divergence <= kl(p, idealTopK(p, k)) + 2e-3, "topk u8: \(divergence)")
                case .adaptive(let eps): #expect(divergence <= eps, "adaptive: \(divergence) > \(eps)")
                }
                // The top class survives every codec, unless the runner-up is within the
                // codec's rounding (u8 steps are up to ~2% relative).
                let top = p.indices.max { p[$0] < p[$1] }!
                let runnerUp = p.indices.filter { $0 != top }.map { p[$0] }.max() ?? 0
                if p[top] > runnerUp * 1.05 {
                    #expect(q.indices.max { q[$0] < q[$1] }! == top, "\(codec) changed the top class")
                }
            }
        }
    }

    @Test("adaptive:EPS never exceeds EPS, and uses fewer bytes for peaked labels", arguments: [0.01, 0.001])
    func adaptiveBound(eps: Double) throws {
        var rng = SeededGenerator(seed: 99)
        var peakedBytes = 0, flatBytes = 0
        for i in 0..<300 {
            var p = randomDistribution(200, &rng)
            if i % 2 == 0 { p = p.map { pow($0, 4) }; let s = p.reduce(0, +); p = p.map { $0 / s } }
            let (q, bytes) = try roundTrip(.adaptive(eps), p)
            #expect(kl(p, q) <= eps)
            if i % 2 == 0 { peakedBytes += bytes } else { flatBytes += bytes }
        }
        #expect(peakedBytes < flatBytes)
    }

    @Test("decoding garbage throws instead of trapping")
    func garbage() {
        var out = [Float](repeating: 0, count: 10)
        for codec in [SoftLabelCodec.denseF32, .denseF16, .topKF16(3), .topKU8(3), .adaptive(0.1)] {
            for bytes in [[UInt8](), [1, 2, 3], [UInt8](repeating: 0xFF, count: 14), [UInt8](repeating: 0xFF, count: 40)] {
                let result = Result { try bytes.withUnsafeBytes { raw in try out.withUnsafeMutableBufferPointer { try codec.decode(raw, into: $0) } } }
                if case .success = result { #expect(out.allSatisfy { $0.isFinite && $0 >= 0 }) }
            }
        }
    }
}

@Suite("Label sets")
struct LabelSetTests {
    /// A store with `n` samples (ids 1…n) and 10 classes.
    func prepared(_ n: Int = 60) throws -> (TemporaryDirectory, Store) {
        let dir = TemporaryDirectory()
        let store = try Store.create(at: dir.file("store"), schema: Schema(dimension: 4, classes: (0..<10).map { "c\($0)" }))
        try store.write(clearance: .all) { tx in try tx.put(SampleBatch(randomSamples(count: n, dimension: 4, seed: 5, ids: (1...UInt64(n)).map { $0 }))) }
        return (dir, store)
    }

    func softRows(_ n: Int, seed: UInt64) -> [Float] {
        var rng = SeededGenerator(seed: seed)
        return (0..<n).flatMap { _ in randomDistribution(10, &rng) }
    }

    @Test("R-19: a class's postings split into chunks of 65,536 slots; a delete takes its sample's posting out, and an emptied chunk goes")
    func postingChunks() throws {
        let n = 65_600
        let (dir, store) = try prepared(n)
        _ = dir
        defer { store.close() }
        let ids = (1...UInt64(n)).map { $0 }
        try store.write(clearance: .all) { tx in try tx.importLabels(.hard(Array(repeating: 7, count: ids.count)), ids: ids, into: "h", agent: "a") }
        #expect(try store.read(clearance: .all) { try $0.entries(.labelPostings) } == 2)
        let secondChunk = try store.read(clearance: .all) { tx in try ids.filter { try tx.visibleSample($0)!.slot >= 65_536 } }
        #expect(secondChunk.count == n - 65_536)
        try store.write(clearance: .all) { tx in _ = try tx.delete([1, 2_000, secondChunk[0]]) }
        let hits = try store.read(clearance: .all) { try $0.samples(withTop1: 7, in: LabelSetReference(name: "h")) }
        #expect(hits == ids.filter { ![1, 2_000, secondChunk[0]].contains($0) })
        try store.write(clearance: .all) { tx in _ = try tx.delete(Array(secondChunk.dropFirst())) }
        #expect(try store.read(clearance: .all) { try $0.entries(.labelPostings) } == 1)
        #expect(try store.read(clearance: .all) { try $0.samples(withTop1: 7, in: LabelSetReference(name: "h")) }.count == 65_534)
        #expect(try store.read(clearance: .all) { try $0.verify() }.isClean)
    }

    @Test("R-18: one delete of many samples takes their rows out of every version's blocks and their postings, and nothing else")
    func bulkDeletePurgesBlocks() throws {
        let (dir, store) = try prepared(80)
        _ = dir
        defer { store.close() }
        let ids = (1...80).map { UInt64($0) }
        try store.write(clearance: .all) { tx in try tx.importLabels(.soft(softRows(80, seed: 3)), ids: ids, into: "t", codec: .topKF16(4), agent: "a") }
        try store.write(clearance: .all) { tx in try tx.importLabels(.multi((0..<30).map { Array(0...($0 % 3)) }), ids: Array(ids[20..<50]), into: "t", agent: "b") }
        let before = try store.read(clearance: .all) { tx in
            try (1...2).map { v in var all: [UInt64: Label] = [:]; try tx.forEachLabel(in: LabelSetReference(name: "t", version: v)) { all[$0] = $1; return true }; return all }
        }
        let doomed = Set(ids.filter { $0 % 3 == 0 })
        try store.write(clearance: .all) { tx in _ = try tx.delete(Array(doomed)) }
        try store.read(clearance: .all) { tx in
            for v in 1...2 {
                let reference = LabelSetReference(name: "t", version: v)
                var after: [UInt64: Label] = [:]
                try tx.forEachLabel(in: reference) { after[$0] = $1; return true }
                #expect(after == before[v - 1].filter { !doomed.contains($0.key) })
                for c in 0..<10 {
                    let expected = after.filter { $0.value.top1?.classIndex == c }.keys.sorted()
                    #expect(try tx.samples(withTop1: c, in: reference) == expected)
                }
            }
            #expect(try tx.verify().isClean)
        }
    }

    /// Flips a bit of the class in sample `id`'s version-1 row of hard-label set `set` (fixed
    /// layout: flags, u32 class, checksum — 9 bytes a row), in place, as a bad sector would.
    func damageHardRow(of id: UInt64, set: LabelSet, in tx: WriteTransaction) throws {
        let slot = try #require(try tx.storedSlot(of: id))
        let key = LabelBlock.key(set: set.id, block: slot / LabelBlock.slots, version: 1)
        var value = try #require(try tx.withValue(.labelBlocks, key: key) { $0.map(Array.init) })
        let rank = try key.withUnsafeBytes { k in
            try value.withUnsafeBytes { try #require(try LabelBlockView(key: k, bytes: $0).rank(of: Int(slot % LabelBlock.slots))) }
        }
        value[LabelBlock.prefixSize + rank * 9 + 1] ^= 0x01
        try tx.put(.labelBlocks, key: key, bytes: value)
    }

    @Test("R-16: a damaged row fails its block's rows checksum, and the scan, the point read and verify all name its sample")
    func damagedBlockRowIsNamed() throws {
        let (dir, store) = try prepared(20)
        _ = dir
        defer { store.close() }
        let ids = (1...20).map { UInt64($0) }
        try store.write(clearance: .all) { tx in try tx.importLabels(.hard(ids.map { Int($0 % 10) }), ids: ids, into: "h", agent: "a") }
        try store.write(clearance: .all) { tx in
            try damageHardRow(of: 7, set: try #require(try tx.labelSet(named: "h")), in: tx)
            tx.changeSummary = [:]
        }
        func namesSeven(_ error: any Error) -> Bool {
            guard case StoreError.checksumMismatch(_, let table, let key, _, _) = error else { return false }
            return table == "label_blocks" && key.hasSuffix("sample 7")
        }
        try store.read(clearance: .all) { tx in
            #expect(performing: { try tx.forEachLabelInStorageOrder(in: LabelSetReference(name: "h")) { _, _ in true } }, throws: namesSeven)
            #expect(performing: { _ = try tx.label(of: 7, in: LabelSetReference(name: "h")) }, throws: namesSeven)
            #expect(try tx.label(of: 8, in: LabelSetReference(name: "h"))?.hard == 8)
            let problems = try tx.verify().problems.filter { $0.table == "label_blocks" }
            #expect(problems.contains { $0.detail.contains("rows checksum") } && problems.contains { $0.key.contains("sample 7") })
        }
    }

    @Test("damage found by review: a block number beyond any slot in a key throws; deleting a sample whose row is damaged leaves no posting")
    func reviewRegressions() throws {
        let (dir, store) = try prepared(20)
        _ = dir
        defer { store.close() }
        let ids = (1...20).map { UInt64($0) }
        try store.write(clearance: .all) { tx in try tx.importLabels(.hard(ids.map { Int($0 % 10) }), ids: ids, into: "h", agent: "a") }
        let set = try #require(try store.read(clearance: .all) { try $0.labelSet(named: "h") })
        // Damage sample 7's row, then delete the sample: its posting (class 7) must go too.
        try store.write(clearance: .all) { tx in
            try damageHardRow(of: 7, set: set, in: tx)
            _ = try tx.delete([7])
        }
        #expect(try store.read(clearance: .all) { try $0.samples(withTop1: 7, in: LabelSetReference(name: "h")) } == [17])
        #expect(try store.read(clearance: .all) { try $0.verify() }.isClean)
        // A key whose block number would overflow a slot number.
        try store.write(clearance: .all) { tx in
            let key = LabelBlock.key(set: set.id, block: UInt64.max, version: 1)
            try tx.put(.labelBlocks, key: key, bytes: [UInt8](repeating: 0, count: LabelBlock.prefixSize + 9))
            tx.changeSummary = [:]
        }
        #expect(throws: StoreError.self) {
            try store.read(clearance: .all) { tx in try tx.forEachLabelInStorageOrder(in: LabelSetReference(name: "h")) { _, _ in true } }
        }
        #expect(try store.read(clearance: .all) { try $0.verify() }.isClean == false)
    }

    @Test("version N+1 does not change what SET@N returns; unlabelled samples keep older labels")
    func versionsAreImmutable() throws {
        let (dir, store) = try prepared()
        _ = dir
        defer { store.close() }
        let ids = (1...60).map { UInt64($0) }
        let first = softRows(60, seed: 1)
        try store.write(clearance: .all) { tx in try tx.importLabels(.soft(first), ids: ids, into: "teacher", codec: .topKF16(3), agent: "t@1") }
        let before = try store.read(clearance: .all) { tx -> [UInt64: Label] in
            var all: [UInt64: Label] = [:]
            try tx.forEachLabel(in: LabelSetReference(parsing: "teacher@1")) { all[$0] = $1; return true }
            return all
        }
        let second = softRows(20, seed: 2)
        try store.write(clearance: .all) { tx in try tx.importLabels(.soft(second), ids: Array(ids[10..<30]), into: "teacher", agent: "t@2") }
        try store.write(clearance: .all) { tx in try tx.importLabels(.hard(Array(repeating: 7, count: 5)), ids: Array(ids[0..<5]), into: "teacher", agent: "fix") }
        try store.read(clearance: .all) { tx in
            var after: [UInt64: Label] = [:]
            try tx.forEachLabel(in: LabelSetReference(parsing: "teacher@1")) { after[$0] = $1; return true }
            #expect(after == before)
            let v2 = try #require(try tx.label(of: 15, in: LabelSetReference(parsing: "teacher@2")))
            #expect(v2.version == 2)
            #expect(try tx.label(of: 45, in: LabelSetReference(parsing: "teacher@2"))?.version == 1)
            let v3 = try #require(try tx.label(of: 3, in: LabelSetReference(name: "teacher")))
            #expect(v3.hard == 7 && v3.soft != nil, "a hard import keeps the sample's soft label")
            let set = try #require(try tx.labelSet(named: "teacher"))
            #expect(set.latest == 3 && set.versions.map(\.labelled) == [60, 60, 60])
            #expect(set.versions[1].fidelity != nil && set.versions[2].fidelity == nil)
            #expect(throws: LabelError.unknownVersion(set: "teacher", version: 4, latest: 3)) {
                _ = try tx.label(of: 1, in: LabelSetReference(parsing: "teacher@4"))
            }
        }
    }

    @Test("the class postings agree with a full scan, in every version")
    func classIndexMatchesScan() throws {
        let (dir, store) = try prepared(80)
        _ = dir
        defer { store.close() }
        let ids = (1...80).map { UInt64($0) }
        try store.write(clearance: .all) { tx in try tx.importLabels(.soft(softRows(80, seed: 3)), ids: ids, into: "t", codec: .topKF16(4), agent: "a") }
        try store.write(clearance: .all) { tx in try tx.importLabels(.soft(softRows(30, seed: 4)), ids: Array(ids[20..<50]), into: "t", agent: "b") }
        try store.write(clearance: .all) { tx in try tx.importLabels(.hard((0..<10).map { $0 % 10 }), ids: Array(ids[60..<70]), into: "t", agent: "c") }
        try store.read(clearance: .all) { tx in
            for version in 1...3 {
                let reference = LabelSetReference(name: "t", version: version)
                var scan: [Int: [(UInt64, Float)]] = [:]
                try tx.forEachLabel(in: reference) { id, label in
                    let (c, conf): (Int, Float) = label.soft.map { _ in label.top1! } ?? (label.hard!, 1)
                    scan[c, default: []].append((id, conf))
                    return true
                }
                for c in 0..<10 {
                    let expected = (scan[c] ?? []).map(\.0).sorted()
                    #expect(try tx.samples(withTop1: c, in: reference) == expected, "class \(c) at v\(version)")
                }
                // The storage-order walk meets the same labels.
                var byID: [UInt64: Label] = [:], inStorageOrder: [UInt64: Label] = [:]
                try tx.forEachLabel(in: reference) { byID[$0] = $1; return true }
                try tx.forEachLabelInStorageOrder(in: reference) { inStorageOrder[$0] = $1; return true }
                #expect(byID == inStorageOrder && byID.count == 80)
            }
        }
    }

    @Test("bad label input is refused and writes nothing")
    func badInput() throws {
        let (dir, store) = try prepared(4)
        _ = dir
        defer { store.close() }
        let ids: [UInt64] = [1, 2, 3, 4]
        var rows = softRows(4, seed: 6)
        let cases: [(LabelValues, [UInt64], SoftLabelCodec?, String)] = [
            (.soft({ var r = rows; r[12] = -0.1; return r }()), ids, nil, "row 1: probability of class 2 is -0.1"),
            (.soft({ var r = rows; r[25] = .nan; return r }()), ids, nil, "row 2: probability of class 5 is NaN"),
            (.soft({ var r = rows; r[31] += 0.5; return r }()), ids, nil, "row 3: probabilities sum to"),
            (.soft(Array(rows.prefix(30))), ids, nil, "30 probabilities for 4 rows × 10 classes"),
            (.soft(rows), [1, 2, 3, 99], nil, "id 99 is not a sample"),
            (.soft(rows), [1, 2, 2, 4], nil, "appears more than once"),
            (.hard([0, 1, 10, 2]), ids, nil, "row 2: class 10 is out of range"),
            (.hard([0, -1, 1, 2]), ids, nil, "row 1: class -1 is out of range"),
            (.multi([[1], [2, 12], [], [3]]), ids, nil, "row 1: class 12 is out of range"),
            (.soft(rows), ids, .topKF16(11), "K = 11 is larger than the 10 classes"),
        ]
        for (values, rowIDs, codec, fragment) in cases {
            #expect(performing: {
                try store.write(clearance: .all) { tx in try tx.importLabels(values, ids: rowIDs, into: "t", codec: codec, agent: "x") }
            }, throws: { error in "\(error)".contains(fragment) })
        }
        #expect(try store.read(clearance: .all) { try $0.labelSets() }.isEmpty)
        // --normalize rescales instead of refusing.
        rows[31] += 0.5
        try store.write(clearance: .all) { tx in try tx.importLabels(.soft(rows), ids: ids, into: "t", codec: .denseF32, agent: "x", normalize: true) }
        let label = try #require(try store.read(clearance: .all) { try $0.label(of: 4, in: LabelSetReference(name: "t")) })
        #expect(abs(label.soft!.reduce(0, +) - 1) < 1e-5)
        #expect(throws: LabelError.codecMismatch(set: "t", existing: "dense:f32", requested: "dense:f16")) {
            try store.write(clearance: .all) { tx in try tx.importLabels(.soft(softRows(4, seed: 7)), ids: ids, into: "t", codec: .denseF16, agent: "x") }
        }
        #expect(throws: LabelError.unknownLabelSet("nope")) { _ = try store.read(clearance: .all) { try $0.label(of: 1, in: LabelSetReference(name: "nope")) } }
        #expect(throws: LabelError.invalidReference("t@0")) { _ = try LabelSetReference(parsing: "t@0") }
    }

    @Test("deleting a sample removes its labels and index entries in every version")
    func deletePurgesLabels() throws {
        let (dir, store) = try prepared(10)
        _ = dir
        defer { store.close() }
        let ids = (1...10).map { UInt64($0) }
        try store.write(clearance: .all) { tx in try tx.importLabels(.hard(Array(repeating: 2, count: 10)), ids: ids, into: "h", agent: "a") }
        try store.write(clearance: .all) { tx in try tx.importLabels(.hard(Array(repeating: 3, count: 10)), ids: ids, into: "h", agent: "b") }
        try store.write(clearance: .all) { tx in _ = try tx.delete([4, 5]) }
        let v1 = try LabelSetReference(parsing: "h@1")
        #expect(try store.read(clearance: .all) { try $0.label(of: 4, in: v1) } == nil)
        #expect(try store.read(clearance: .all) { try $0.samples(withTop1: 2, in: v1) } == [1, 2, 3, 6, 7, 8, 9, 10])
        #expect(try store.read(clearance: .all) { try $0.samples(withTop1: 3, in: LabelSetReference(name: "h")) }.count == 8)
    }
}
