import Foundation
import Testing
@testable import LabelDB

/// The columnar hard-label scan (issue 12 §2) reads exactly the rows the row-by-row scan reads.
@Suite("Hard label block scan")
struct HardLabelScanTests {
    /// (id, class) of every hard label `reference` shows under `clearance`, row by row.
    func rowByRow(_ store: Store, _ reference: LabelSetReference, _ clearance: Clearance) throws -> [UInt64: Int] {
        try store.read(clearance: clearance) { tx in
            var out: [UInt64: Int] = [:]
            try tx.forEachLabelInStorageOrder(in: reference) { id, label in
                if let hard = label.hard { out[id] = hard }
                return true
            }
            return out
        }
    }

    func columnar(_ store: Store, _ reference: LabelSetReference, _ clearance: Clearance) throws -> (rows: [UInt64: Int], classCounts: [Int: Int]) {
        try store.read(clearance: clearance) { tx in
            var rows: [UInt64: Int] = [:], counts: [Int: Int] = [:]
            try tx.forEachHardLabelBlock(in: reference, ids: true) { ids, classes in
                #expect(ids?.count == classes.count)
                for (id, c) in zip(ids!, classes) { #expect(rows.updateValue(Int(c), forKey: id) == nil) }
                return true
            }
            try tx.forEachHardLabelBlock(in: reference) { ids, classes in
                #expect(ids == nil)
                for c in classes { counts[Int(c), default: 0] += 1 }
                return true
            }
            return (rows, counts)
        }
    }

    @Test("equals the row-by-row scan across blocks, versions, soft rows, tainted samples, secret sources and clearances",
          arguments: [false, true])
    func equalsRowByRow(taintedSamples: Bool) throws {
        let dir = TemporaryDirectory()
        let store = try Store.create(at: dir.file("store"), schema: Schema(dimension: 2, classes: (0..<7).map { "c\($0)" }))
        defer { store.close() }
        let n = 9_000   // three label blocks
        try store.write(clearance: .all) { tx in
            let pii = TaintLabel(secrecy: ["pii"], integrity: [])
            let samples: [Sample] = (1...n).map { (i: Int) -> Sample in
                let taint: TaintLabel = taintedSamples && i % 1_000 == 7 ? pii : .public
                return Sample(id: UInt64(i * 3), embedding: [Float(i), 1], taint: taint)
            }
            _ = try tx.put(SampleBatch(samples))
            let ids = (1...n).map { UInt64($0 * 3) }
            try tx.importLabels(.hard(ids.map { Int($0 % 7) }), ids: ids, into: "hard", agent: "a")
            // Version 2 replaces a third of the rows from a secret source; version 3 adds soft
            // labels to others (those rows keep their hard label, in a longer row).
            let some = ids.filter { $0 % 3 == 0 }
            try tx.importLabels(.hard(some.map { Int(($0 + 1) % 7) }), ids: some, into: "hard", agent: "b", source: TaintLabel(secrecy: ["vendor"], integrity: []))
            let others = ids.filter { $0 % 5 == 0 }
            let soft = others.flatMap { _ in [Float](repeating: 1 / 7, count: 7) }
            try tx.importLabels(.soft(soft), ids: others, into: "hard", agent: "c", normalize: true)
        }
        let clearances: [Clearance] = [.public, .all, try Clearance(parsing: "secrecy=pii;integrity="), try Clearance(parsing: "secrecy=vendor;integrity=")]
        for clearance in clearances {
            for version in [1, 2, 3] {
                let reference = LabelSetReference(name: "hard", version: version)
                let expected = try rowByRow(store, reference, clearance)
                let got = try columnar(store, reference, clearance)
                // (Counted, not compared whole: a failure would print thousands of rows.)
                let wrong = got.rows.filter { expected[$0.key] != $0.value }.count
                #expect(got.rows.count == expected.count && wrong == 0, "version \(version): \(wrong) rows differ")
                #expect(got.classCounts == Dictionary(grouping: expected.values, by: { $0 }).mapValues(\.count))
                #expect(expected.count > n / 2)
            }
        }
        // Stopping early stops after the first block.
        let blocks = try store.read(clearance: .all) { tx in
            var calls = 0
            try tx.forEachHardLabelBlock(in: LabelSetReference(name: "hard")) { _, _ in calls += 1; return false }
            return calls
        }
        #expect(blocks == 1)
        #expect(throws: LabelError.self) { try store.read(clearance: .all) { try $0.forEachHardLabelBlock(in: LabelSetReference(name: "none")) { _, _ in true } } }
    }

    @Test("a damaged row in a block is named, not skipped")
    func damagedRowIsNamed() throws {
        let dir = TemporaryDirectory()
        let store = try Store.create(at: dir.file("store"), schema: Schema(dimension: 2, classes: ["a", "b", "c"]))
        try store.write(clearance: .all) { tx in
            _ = try tx.put(SampleBatch(ids: (1...50).map { $0 }, embeddings: [Float](repeating: 1, count: 100)))
            try tx.importLabels(.hard((0..<50).map { $0 % 3 }), ids: (1...50).map { $0 }, into: "hard", agent: "a")
        }
        store.close()
        // The 50 rows are the block's last 450 bytes (9 each): flip a byte of row 20's class.
        let path = dir.file("store") + "/data.mdb"
        var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
        var flipped = false
        // Find row 20 (class 2) by its neighbours' classes: rows 19, 20, 21 hold 1, 2, 0.
        for i in 0..<(bytes.count - 27) where bytes[i] == LabelRecord.hasHard && bytes[i + 1] == 1 && bytes[i + 9] == LabelRecord.hasHard
            && bytes[i + 10] == 2 && bytes[i + 18] == LabelRecord.hasHard && bytes[i + 19] == 0 && bytes[i + 2] == 0 {
            bytes[i + 10] = 1
            flipped = true
            break
        }
        #expect(flipped)
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        let reopened = try Store(opening: dir.file("store"))
        defer { reopened.close() }
        do {
            try reopened.read(clearance: .all) { try $0.forEachHardLabelBlock(in: LabelSetReference(name: "hard")) { _, _ in true } }
            Issue.record("the damaged row was read")
        } catch {
            #expect("\(error)".contains("hard@1 sample"), "\(error)")
        }
    }
}
