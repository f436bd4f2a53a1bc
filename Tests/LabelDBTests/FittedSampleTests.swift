import Foundation
import Testing
@testable import LabelDB

/// A projector version's fitted samples (format 7, storage.md §11.7): what reads claim a bound
/// for, what relabels restrict, and what `projector check` compares with.
@Suite("Fitted samples")
struct FittedSampleTests {
    /// A store with samples 1…8 (sample 8 secret), a teacher's soft labels for all, and projector
    /// `p` fitted under the public clearance.
    static func fitted(_ dir: TemporaryDirectory) throws -> Store {
        let store = try makeStore(dir)
        try store.write(clearance: .all) { tx in
            for id in UInt64(1)...8 {
                try tx.put(Sample(id: id, embedding: (0..<8).map { Float(($0 * 7 + Int(id) * 3) % 11) / 11 - 0.4 },
                                  taint: id == 8 ? TaintLabel(secrecy: ["pii"], integrity: []) : .public))
            }
            try tx.importLabels(.soft((1...8).flatMap { i in [0.6, 0.3, 0.1].map { Float($0) }.shiftedBy(i % 3) }), ids: Array(1...8), into: "t", agent: "t")
        }
        _ = try store.fitProjector("p", from: LabelSetReference(name: "t"), options: quickFitOptions, maxKL: 0.05, clearance: .public)
        return store
    }

    func statuses(_ store: Store, _ ids: [UInt64]) throws -> [RegenerationStatus] {
        try store.read(clearance: .all) { tx in try tx.regenerate(ids, with: try tx.load(ProjectorReference(name: "p"))).map(\.status) }
    }

    func projectorSecrecy(_ store: Store) throws -> [String] {
        try store.read(clearance: .all) { try $0.projector(named: "p")!.versions[0].taintLabel.secrecy.sorted }
    }

    @Test("a sample that takes a deleted sample's slot is not fitted, and relabelling it restricts nothing")
    func slotReuse() throws {
        let dir = TemporaryDirectory("fitted")
        let store = try Self.fitted(dir)
        defer { store.close() }
        #expect(try statuses(store, [5, 8]).first != .unfitted)
        #expect(try statuses(store, [8]) == [.unfitted])   // the public fit could not use it
        let slot5 = try store.read(clearance: .all) { try $0.storedSlot(of: 5) }
        try store.write(clearance: .all) { tx in
            _ = try tx.delete([5])
            try tx.put(Sample(id: 50, embedding: Array(repeating: 0.1, count: 8)))
        }
        #expect(try store.read(clearance: .all) { try $0.storedSlot(of: 50) } == slot5, "the new sample takes the freed slot")
        #expect(try statuses(store, [50]) == [.unfitted])
        try store.write(clearance: .all) { tx in try tx.relabel([50], TaintChange(addSecrecy: ["team:x"]), agent: "a") }
        #expect(try projectorSecrecy(store).isEmpty)
        // A fitted sample still restricts it.
        try store.write(clearance: .all) { tx in try tx.relabel([2], TaintChange(addSecrecy: ["team:y"]), agent: "a") }
        #expect(try projectorSecrecy(store) == ["team:y"])
        #expect(try store.read(clearance: .all) { try $0.verify() }.isClean)
    }

    @Test("projector check compares with the row the fit read, not a newer one a wider clearance sees")
    func checkUsesTheFittedRow() throws {
        let dir = TemporaryDirectory("fitted")
        let store = try Self.fitted(dir)
        defer { store.close() }
        // A licensed teacher relabels sample 3 in version 2, far from what p learnt; a public fit of
        // t@2 reads the version-1 row (the licensed one does not flow to public).
        try store.write(clearance: .all) { tx in
            try tx.importLabels(.soft([0.01, 0.01, 0.98]), ids: [3], into: "t", agent: "lic", source: TaintLabel(secrecy: ["licensed"], integrity: []))
        }
        _ = try store.fitProjector("q", from: LabelSetReference(name: "t", version: 2), options: quickFitOptions, maxKL: 0.05, clearance: .public)
        for clearance in [Clearance.public, .all] {
            let check = try store.read(clearance: clearance) { try $0.checkProjector(ProjectorReference(name: "q")) }
            #expect(check.boundHolds && check.checked == 7, "\(clearance): \(check)")
        }
    }
}

extension Array where Element == Float {
    /// The elements rotated right by `k`.
    func shiftedBy(_ k: Int) -> [Float] { Array(self[(count - k % count)...] + self[..<(count - k % count)]) }
}
