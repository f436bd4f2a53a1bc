import Foundation
import Testing
@testable import LabelDB

/// Dropping label-set versions: every version that is not dropped reads, under every
/// clearance, exactly what it read before, while rows no remaining version reads are removed.
@Suite("Label drops")
struct LabelDropTests {
    /// Every readable version's labels (id → top-1 class and row version) under each clearance.
    static func snapshot(_ store: Store, set: String, clearances: [Clearance]) throws -> [String: [UInt64: [Int]]] {
        var out: [String: [UInt64: [Int]]] = [:]
        for (c, clearance) in clearances.enumerated() {
            try store.read(clearance: clearance) { tx in
                guard let labelSet = try tx.labelSet(named: set) else { return }
                for version in 1...labelSet.latest where !labelSet.versions[version - 1].isDropped {
                    var rows: [UInt64: [Int]] = [:]
                    try tx.forEachLabel(in: LabelSetReference(name: set, version: version)) { id, label in
                        rows[id] = [label.hard ?? -1, label.version]
                        return true
                    }
                    out["\(c)@\(version)"] = rows
                    // The class postings answer the same as the rows.
                    for cls in 0..<3 {
                        let fromPostings = try tx.samples(withTop1: cls, in: LabelSetReference(name: set, version: version))
                        #expect(fromPostings == rows.filter { $0.value[0] == cls }.keys.sorted(), "\(set)@\(version) class \(cls)")
                    }
                }
            }
        }
        return out
    }

    @Test("random imports with public and secret sources, dropped in random order: remaining versions read as before")
    func dropsPreserveRemainingVersions() throws {
        var rng = SeededGenerator(seed: 54)
        let clearances: [Clearance] = [.public, .all, try Clearance(parsing: "secrecy=pii;integrity=")]
        var removedInAll = 0
        for round in 0..<6 {
            let dir = TemporaryDirectory("label-drop")
            let store = try makeStore(dir)
            defer { store.close() }
            let ids = (1...UInt64(40)).map { $0 }
            try store.write(clearance: .all) { tx in
                for id in ids {
                    let taint = id % 7 == 0 ? TaintLabel(secrecy: ["pii"], integrity: []) : .public
                    try tx.put(Sample(id: id, embedding: (0..<8).map { _ in Float.random(in: -1...1, using: &rng) }, taint: taint))
                }
                for _ in 0..<6 {
                    let chosen = ids.filter { _ in Bool.random(using: &rng) }
                    guard !chosen.isEmpty else { continue }
                    let source = Int.random(in: 0..<3, using: &rng) == 0 ? TaintLabel(secrecy: ["vendor"], integrity: []) : .public
                    try tx.importLabels(.hard(chosen.map { _ in Int.random(in: 0..<3, using: &rng) }), ids: chosen, into: "h", agent: "a", source: source)
                }
            }
            let latest = try store.read(clearance: .all) { try $0.labelSet(named: "h")!.latest }
            let before = try Self.snapshot(store, set: "h", clearances: clearances)
            var removed = 0
            for version in (1..<latest).shuffled(using: &rng) {
                removed += try store.write(clearance: .all) { try $0.dropLabelVersion("h", version: version) }.rows
                let after = try Self.snapshot(store, set: "h", clearances: clearances)
                #expect(after == before.filter { after.keys.contains($0.key) }, "round \(round), dropped \(version)")
                #expect(!after.keys.contains { $0.hasSuffix("@\(version)") })
                #expect(try store.read(clearance: .all) { try $0.verify() }.isClean, "round \(round)")
            }
            // With every version but the latest dropped, only rows the latest reads remain.
            let remaining = try store.read(clearance: .all) { tx in try tx.entries(.labelBlocks) }
            #expect(remaining >= 1)
            removedInAll += removed
        }
        #expect(removedInAll > 0, "the drops removed rows")
    }

    @Test("a dropped version refuses reads; the latest cannot be dropped; a narrow clearance cannot drop")
    func refusals() throws {
        let dir = TemporaryDirectory("label-drop")
        let store = try makeStore(dir)
        defer { store.close() }
        try store.write(clearance: .all) { tx in
            for id in UInt64(1)...4 { try tx.put(Sample(id: id, embedding: Array(repeating: Float(id), count: 8), taint: id == 4 ? TaintLabel(secrecy: ["pii"], integrity: []) : .public)) }
            try tx.importLabels(.hard([0, 1, 2, 0]), ids: [1, 2, 3, 4], into: "h", agent: "a")
            try tx.importLabels(.hard([2, 2]), ids: [1, 2], into: "h", agent: "b")
        }
        #expect(throws: LabelError.latestVersionKept(set: "h", version: 2)) { try store.write(clearance: .all) { try $0.dropLabelVersion("h", version: 2) } }
        #expect(throws: TaintError.self) { try store.write(clearance: .public) { try $0.dropLabelVersion("h", version: 1) } }
        let drop = try store.write(clearance: .all) { try $0.dropLabelVersion("h", version: 1) }
        #expect(drop.rows == 2)   // ids 1 and 2: version 2 relabelled them
        #expect(throws: LabelError.droppedVersion(set: "h", version: 1)) { try store.read(clearance: .all) { try $0.resolve(LabelSetReference(name: "h", version: 1)) } }
        #expect(throws: LabelError.droppedVersion(set: "h", version: 1)) { try store.write(clearance: .all) { try $0.dropLabelVersion("h", version: 1) } }
        // Rows of version 1 that version 2 still reads stay: ids 3 and 4.
        let latest = try store.read(clearance: .all) { tx in
            try [1, 2, 3, 4].map { try tx.label(of: $0, in: LabelSetReference(name: "h"))?.version ?? 0 }
        }
        #expect(latest == [2, 2, 1, 1])
    }
}
