import Foundation
import Testing
@testable import LabelDB

@Suite("Query evaluation")
struct QueryEvaluationTests {
    /// 200 samples (ids 1…200) with metadata, a soft label set `t` (10 classes) and a hard/multi set `h`.
    func prepared() throws -> (TemporaryDirectory, Store, [UInt64: [Float]], [UInt64: [String: JSONValue]]) {
        let dir = TemporaryDirectory()
        let store = try Store.create(at: dir.file("store"), schema: Schema(dimension: 4, classes: (0..<10).map { "c\($0)" }))
        var rng = SplitMix64(seed: 13)
        let ids = (1...UInt64(200)).map { $0 }
        var meta: [UInt64: [String: JSONValue]] = [:]
        var soft: [UInt64: [Float]] = [:]
        var flat: [Float] = []
        for id in ids {
            meta[id] = ["source": .string(["web", "books"][Int(id % 2)]), "width": .int(Int64(id % 7))]
            let p = randomDistribution(10, &rng)
            soft[id] = p
            flat += p
        }
        try store.write(clearance: .all) { tx in
            try tx.put(SampleBatch(ids: ids, embeddings: Array(repeating: 0.5, count: 800), metadata: ids.map { meta[$0]! }))
            try tx.importLabels(.soft(flat), ids: ids, into: "t", codec: .denseF32, agent: "x", normalize: true)
            try tx.importLabels(.multi(ids.map { [Int($0 % 10), Int($0 % 3)] }), ids: ids, into: "h", agent: "y")
        }
        return (dir, store, soft, meta)
    }

    @Test("filters select exactly what a direct evaluation selects; the index plan agrees with a scan")
    func matchesDirectEvaluation() throws {
        let (dir, store, soft, meta) = try prepared()
        _ = dir
        defer { store.close() }
        func top(_ p: [Float]) -> Int { p.indices.max { p[$0] < p[$1] || (p[$0] == p[$1] && $0 > $1) }! }
        let cases: [(String, (UInt64) -> Bool)] = [
            ("label(t).top1 = 'c3'", { top(soft[$0]!) == 3 }),
            ("label(t).top1 = 3 and label(t).confidence < 0.6", { top(soft[$0]!) == 3 && soft[$0]![3] < 0.6 }),
            ("label(t).prob('c1') >= 0.2 or id < 10", { soft[$0]![1] >= 0.2 || $0 < 10 }),
            ("meta.source = 'web' and not (meta.width > 3)", { meta[$0]!["source"] == "web" && !(meta[$0]!["width"]!.doubleValue! > 3) }),
            ("label(h).has('c2') and id >= 100", { ($0 % 10 == 2 || $0 % 3 == 2) && $0 >= 100 }),
            ("label(t).version = 1 and meta.missing = 'x'", { _ in false }),
        ]
        for (text, expected) in cases {
            var got: [UInt64] = []
            let plan = try store.read(clearance: .all) { tx in try tx.query(try QueryExpression(parsing: text)) { got.append($0) } }
            #expect(got == (1...UInt64(200)).filter(expected), "\(text)")
            #expect((plan.index != nil) == text.hasPrefix("label(t).top1"), "\(text): \(plan)")
        }
    }

    @Test("order by confidence, descending, with offset and limit")
    func ordering() throws {
        let (dir, store, soft, _) = try prepared()
        _ = dir
        defer { store.close() }
        let filter = try QueryExpression(parsing: "id <= 150")
        var got: [UInt64] = []
        try store.read(clearance: .all) { tx in try tx.query(filter, order: .confidence(LabelSetReference(name: "t")), descending: true, limit: 5, offset: 2) { got.append($0) } }
        let expected = (1...UInt64(150)).sorted { a, b in
            let ca = soft[a]!.max()!, cb = soft[b]!.max()!
            return ca != cb ? ca > cb : a < b
        }
        #expect(got == Array(expected[2..<7]))
        var descendingIDs: [UInt64] = []
        try store.read(clearance: .all) { tx in try tx.query(nil, descending: true, limit: 3) { descendingIDs.append($0) } }
        #expect(descendingIDs == [200, 199, 198])
    }

    @Test("unknown classes, unknown tags and unknown label sets are refused with clear errors")
    func errors() throws {
        let (dir, store, _, _) = try prepared()
        _ = dir
        defer { store.close() }
        #expect(throws: QueryError.unknownClass("cat")) { try store.read(clearance: .all) { tx in try tx.query(try QueryExpression(parsing: "label(t).top1 = 'cat'")) { _ in } } }
        #expect(throws: QueryError.unknownTag("pii")) { try store.read(clearance: .all) { tx in try tx.query(try QueryExpression(parsing: "tagged('pii')")) { _ in } } }
        #expect(throws: LabelError.unknownLabelSet("nope")) { try store.read(clearance: .all) { tx in try tx.query(try QueryExpression(parsing: "label(nope).confidence > 0")) { _ in } } }
    }

    @Test("filters that compare two label sets select what a direct evaluation selects; a missing label matches nothing, != included")
    func comparingLabelSets() throws {
        let (dir, store, soft, _) = try prepared()
        _ = dir
        defer { store.close() }
        // A hard set over every third sample: class id % 10.
        let hardIDs = (1...UInt64(200)).filter { $0 % 3 == 0 }
        try store.write(clearance: .all) { tx in
            try tx.importLabels(.hard(hardIDs.map { Int($0 % 10) }), ids: hardIDs, into: "g", agent: "z")
        }
        func top(_ p: [Float]) -> Int { p.indices.max { p[$0] < p[$1] || (p[$0] == p[$1] && $0 > $1) }! }
        func g(_ id: UInt64) -> Int? { id % 3 == 0 ? Int(id % 10) : nil }
        let multi: (UInt64) -> Set<Int> = { [Int($0 % 10), Int($0 % 3)] }
        let cases: [(String, (UInt64) -> Bool)] = [
            ("label(t).top1 = label(g).top1", { id in g(id).map { top(soft[id]!) == $0 } ?? false }),
            ("label(t).top1 != label(g).top1", { id in g(id).map { top(soft[id]!) != $0 } ?? false }),
            ("agree(t, g)", { id in g(id).map { top(soft[id]!) == $0 } ?? false }),
            ("not agree(t, g)", { id in !(g(id).map { top(soft[id]!) == $0 } ?? false) }),
            ("label(t).prob(label(g).top1) < 0.1", { id in g(id).map { soft[id]![$0] < 0.1 } ?? false }),
            ("label(h).has(label(t).top1)", { multi($0).contains(top(soft[$0]!)) }),
            ("label(g).top1 = label(g@1).top1 and id < 50", { g($0) != nil && $0 < 50 }),
        ]
        for (text, expected) in cases {
            let filter = try QueryExpression(parsing: text)
            #expect(try QueryExpression(parsing: filter.description) == filter, "\(text)")
            var found: [UInt64] = []
            try store.read(clearance: .all) { tx in try tx.query(filter) { found.append($0) } }
            #expect(found == (1...UInt64(200)).filter(expected), "\(text)")
        }
        for bad in ["label(t).top1 = label(g).confidence", "agree(t)", "label(t).confidence < label(g).top1", "agree(t, nope)"] {
            #expect(throws: (any Error).self, "\(bad)") {
                try store.read(clearance: .all) { tx in try tx.query(try QueryExpression(parsing: bad)) { _ in } }
            }
        }
    }
}
