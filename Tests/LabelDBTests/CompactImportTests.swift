import Foundation
import Testing
@testable import LabelDB

/// Issue 12 §5: soft labels imported as they arrive (top-K classes, probabilities, leftover) are
/// stored without a round trip when the codec is `topk:K:f16`, and read back like a dense import.
@Suite struct CompactImportTests {
    let k = 3

    /// Rows of top-3 f16-exact probabilities (most probable first) and their leftover.
    func rows(_ n: Int) -> (classes: [Int], probs: [Float], rest: [Float]) {
        var rng = SplitMix64(seed: 5)
        var classes: [Int] = [], probs: [Float] = [], rest: [Float] = []
        for _ in 0..<n {
            var picked = Set<Int>()
            while picked.count < k { picked.insert(Int(rng.next() % 10)) }
            let values = [Float(Float16(0.5)), Float(Float16(0.25)), Float(Float16(0.125))]
            classes += Array(picked)
            probs += values
            rest.append(Float(Float16(0.125)))
        }
        return (classes, probs, rest)
    }

    @Test("the CLI imports compact rows exactly; reads equal a dense import of the same distributions")
    func cliExact() throws {
        let dir = TemporaryDirectory()
        try (0..<10).map { "c\($0)" }.joined(separator: "\n").write(toFile: dir.file("classes.txt"), atomically: false, encoding: .utf8)
        let store = dir.file("store")
        #expect(try runCLI(["init", store, "--dim", "4", "--classes", dir.file("classes.txt")]).status == 0)
        try NumPyArray.write([Float](repeating: 0.5, count: 20 * 4), shape: [20, 4], to: dir.file("emb.npy"))
        #expect(try runCLI(["import", store, "--embeddings", dir.file("emb.npy")]).status == 0)
        let (classes, probs, rest) = rows(20)
        try classes.map { UInt16($0) }.withUnsafeBytes { try NumPyArray.write(dtype: .uint16, shape: [20, k], data: $0, to: dir.file("cls.npy")) }
        try probs.map { Float16($0) }.withUnsafeBytes { try NumPyArray.write(dtype: .float16, shape: [20, k], data: $0, to: dir.file("p.npy")) }
        try rest.map { Float16($0) }.withUnsafeBytes { try NumPyArray.write(dtype: .float16, shape: [20], data: $0, to: dir.file("rest.npy")) }
        let imported = try runCLI(["labels", "import", store, "t", "--topk-classes", dir.file("cls.npy"), "--topk-probs", dir.file("p.npy"),
                                   "--leftover", dir.file("rest.npy"), "--format", "json"])
        #expect(imported.status == 0, "\(imported.stderr)")
        let fidelity = try JSONValue.parse(imported.stdout)["fidelity"]
        #expect(fidelity?["exact"] == .bool(true) && fidelity?["mean_kl"]?.doubleValue == 0)
        // The same distributions, dense, through the same codec.
        var dense = [Float](repeating: 0, count: 20 * 10)
        for r in 0..<20 {
            for j in 0..<10 { dense[r * 10 + j] = rest[r] / 7 }
            for j in 0..<k { dense[r * 10 + classes[r * k + j]] = probs[r * k + j] }
        }
        try NumPyArray.write(dense, shape: [20, 10], to: dir.file("dense.npy"))
        #expect(try runCLI(["labels", "import", store, "d", "--soft", dir.file("dense.npy"), "--codec", "topk:3:f16"]).status == 0)
        let a = try runCLI(["labels", "export", store, "t", "--out", dir.file("a.npy")]), b = try runCLI(["labels", "export", store, "d", "--out", dir.file("b.npy")])
        #expect(a.status == 0 && b.status == 0)
        let left = try NumPyArray.read(dir.file("a.npy")).floats(), right = try NumPyArray.read(dir.file("b.npy")).floats()
        for i in left.indices { #expect(abs(left[i] - right[i]) <= 1e-6) }
    }

    @Test("bad compact rows are refused and nothing is written", arguments: ["duplicate", "range", "negative", "sum", "shape"])
    func refused(kind: String) throws {
        let dir = TemporaryDirectory()
        let store = try makeStore(dir, dimension: 4)
        defer { store.close() }
        let ids: [UInt64] = [1, 2]
        try store.write(clearance: .all) { tx in _ = try tx.put(SampleBatch(ids: ids, embeddings: [Float](repeating: 0, count: 8))) }
        var rows = TopKRows(k: 2, classes: [0, 1, 2, 0], probabilities: [0.6, 0.3, 0.5, 0.4])
        switch kind {
        case "duplicate": rows.classes[1] = 0
        case "range": rows.classes[2] = 3
        case "negative": rows.probabilities[0] = -0.1
        case "sum": rows.leftover = [0.5, 0.1]
        default: rows.probabilities.removeLast()
        }
        #expect(throws: LabelError.self) {
            try store.write(clearance: .all) { tx in try tx.importLabels(.topK(rows), ids: ids, into: "t", agent: "test") }
        }
        #expect(try store.read(clearance: .all) { try $0.labelSets() }.isEmpty)
    }

    @Test("f32 probabilities are rounded to f16 (not exact) and measured; another codec expands the rows")
    func roundedAndOtherCodecs() throws {
        let dir = TemporaryDirectory()
        let store = try makeStore(dir, dimension: 4)
        defer { store.close() }
        let ids: [UInt64] = [1, 2]
        try store.write(clearance: .all) { tx in _ = try tx.put(SampleBatch(ids: ids, embeddings: [Float](repeating: 0, count: 8))) }
        let rows = TopKRows(k: 2, classes: [0, 1, 2, 0], probabilities: [0.6001, 0.2999, 0.51, 0.4])
        let v = try store.write(clearance: .all) { tx in try tx.importLabels(.topK(rows), ids: ids, into: "t", agent: "test") }
        #expect(v.fidelity?.exact == false && (v.fidelity?.meanKL ?? 1) < 1e-4)
        let dense = try store.write(clearance: .all) { tx in try tx.importLabels(.topK(rows), ids: ids, into: "u", codec: .denseF32, agent: "test") }
        #expect(dense.fidelity?.exact == nil)
        let label = try store.read(clearance: .all) { try $0.label(of: 2, in: LabelSetReference(name: "u")) }
        #expect(label?.soft == [0.4, 0.09, 0.51])  // the leftover 1 − 0.91 on the one class not listed
    }

    @Test("the compact fidelity pass (K + 1 logarithms) gives the dense pass's figures")
    func compactFidelityEqualsDense() throws {
        var rng = SplitMix64(seed: 9)
        let c = 50
        var sparse = FidelityAccumulator(classCount: c), dense = FidelityAccumulator(classCount: c)
        for row in 0..<2_000 {
            let k = Int(rng.next() % 6) + 1
            var classes: [Int] = []
            while classes.count < k { let x = Int(rng.next() % UInt64(c)); if !classes.contains(x) { classes.append(x) } }
            // Some rows put more mass on the rest than on a kept class, some tie, some have no rest.
            var probabilities = (0..<k).map { _ in Float(rng.next() % 1000) / 3000 }
            if row % 7 == 0 { probabilities = [Float](repeating: 0.125, count: k) }
            let kept = probabilities.reduce(0, +)
            let rest = row % 11 == 0 ? 0 : max(0, 1 - kept)
            let input = TopKRows(k: k, classes: classes, probabilities: probabilities, leftover: [rest])
            let codec = SoftLabelCodec.topKF16(k)
            let (entries, left) = input.row(0)
            var bytes: [UInt8] = []
            var decoded = [Float](repeating: 0, count: c)
            var scratch = FidelityAccumulator(classCount: c)
            bytes = try SoftEncoding.encode(input, row: 0, codec: codec, classCount: c, decoded: &decoded, fidelity: &scratch)
            try bytes.withUnsafeBytes { raw in try decoded.withUnsafeMutableBufferPointer { try codec.decode(raw, into: $0) } }
            let original = input.dense(0, classCount: c)
            decoded.withUnsafeBufferPointer { q in
                sparse.addCompact(entries: entries, rest: left, decoded: q, bytes: bytes.count)
                original.withUnsafeBufferPointer { dense.add(original: $0, decoded: q, bytes: bytes.count) }
            }
        }
        let a = sparse.result(), b = dense.result()
        #expect(abs(a.meanKL - b.meanKL) <= 1e-12 * max(b.meanKL, 1e-30) + 1e-18)
        #expect(abs(a.maxKL - b.maxKL) <= 1e-12 * max(b.maxKL, 1e-30) + 1e-18)
        #expect(a.top1Agreement == b.top1Agreement && a.klHistogram == b.klHistogram && a.bytesPerLabel == b.bytesPerLabel)
        #expect(b.top1Agreement < 1 || b.meanKL > 0)
    }
}
