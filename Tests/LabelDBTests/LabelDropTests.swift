import Foundation
import Testing
@testable import LabelDB

/// Dropping label-set versions (R-54): every version that is not dropped reads, under every
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
                        rows[id] = [label.top1?.classIndex ?? -1, label.version]
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
        let clearances: [Clearance] = [.public, .all, try Clearance(parsing: "secrecy=pii;integrity="), try Clearance(parsing: "secrecy=vendor;integrity=reviewed")]
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
                    // Sources: public, secret, or vouched for (an integrity tag the row keeps only
                    // where its sample has it too); labels hard or soft.
                    let source = [TaintLabel.public, TaintLabel(secrecy: ["vendor"], integrity: []), TaintLabel(secrecy: [], integrity: ["reviewed"])][Int.random(in: 0..<3, using: &rng)]
                    let values: LabelValues = Bool.random(using: &rng)
                        ? .hard(chosen.map { _ in Int.random(in: 0..<3, using: &rng) })
                        : .soft(chosen.flatMap { _ in
                            let raw = (0..<3).map { _ in Float.random(in: 0.01...1, using: &rng) }
                            return raw.map { $0 / raw.reduce(0, +) }
                        })
                    try tx.importLabels(values, ids: chosen, into: "h", agent: "a", source: source, privileges: ["reviewed"], normalize: true)
                }
            }
            let latest = try store.read(clearance: .all) { try $0.labelSet(named: "h")!.latest }
            let before = try Self.snapshot(store, set: "h", clearances: clearances)
            var removed = 0, dropped = Set<Int>()
            for version in (1..<latest).shuffled(using: &rng) {
                removed += try store.write(clearance: .all) { try $0.dropLabelVersion("h", version: version) }.rows
                dropped.insert(version)
                let after = try Self.snapshot(store, set: "h", clearances: clearances)
                let expected = before.filter { key, _ in !dropped.contains(Int(key.split(separator: "@")[1])!) }
                #expect(after == expected, "round \(round), dropped \(version)")
                #expect(try store.read(clearance: .all) { try $0.verify() }.isClean, "round \(round)")
            }
            // With every version but the latest dropped, every row left is one the latest reads
            // under some clearance: the one that admits exactly the row's own label.
            try store.read(clearance: .all) { tx in
                let set = try tx.labelSet(named: "h")!
                var owners = SlotOwners()
                var left: [(id: UInt64, version: Int)] = []
                try tx.walkLabelBlocks(of: set) { number, version, key, value in
                    var offsets: [Int] = []
                    (try LabelBlockView(key: key, bytes: value)).forEachSlot { offset, _ in offsets.append(offset) }
                    for offset in offsets {
                        left.append((try owners.sample(at: number * LabelBlock.slots + UInt64(offset), in: tx, naming: .labelBlocks, set: set), version))
                    }
                    return true
                }
                for (id, version) in left {
                    let label = try tx.taintLabel(of: id)!.join(set.versions[version - 1].sourceLabel)
                    let reader = Clearance(allowedSecrecy: label.secrecy, requiredIntegrity: Set(label.integrity.sorted))
                    let read = try store.read(clearance: reader) { try $0.label(of: id, in: LabelSetReference(name: "h"))?.version }
                    #expect(read == version, "round \(round): sample \(id)'s row of v\(version) is left but the latest reads v\(read ?? 0) under its label")
                }
            }
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
