import Foundation
import Testing
@testable import LabelDB

/// Labels per augmented view (issue 14, format-spec §10.7).
@Suite("Per-view labels")
struct ViewLabelTests {
    static let classes = ["cat", "dog", "bird", "fish", "frog"]

    func makeViewStore(_ dir: TemporaryDirectory, count: Int = 6, taint: (Int) -> TaintLabel = { _ in .public }) throws -> Store {
        let store = try Store.create(at: dir.file("store"), schema: Schema(dimension: 2, classes: Self.classes))
        try store.write(clearance: .all) { tx in
            _ = try tx.put(SampleBatch((1...count).map { Sample(id: UInt64($0 * 10), embedding: [Float($0), 1], taint: taint($0)) }))
        }
        return store
    }

    /// A view with parameters derived from (id, view), so every field differs between views.
    static func view(_ id: UInt64, _ v: Int, extra: String? = nil) -> AugmentedView {
        let a = Float(v) / 16, b = Float(id % 7) / 16
        return AugmentedView(view: v, crop: [a, b, a + 0.25, b + 0.5], flip: (Int(id) + v) % 2 == 1, epoch: v / 2, seed: Int(id) * 1_000 + v, extra: extra)
    }

    /// Top-2 rows: class (id + view) mod C first.
    static func topK(_ rows: [(UInt64, Int)]) -> TopKRows {
        let c = classes.count
        return TopKRows(k: 2, classes: rows.flatMap { [Int($0.0 + UInt64($0.1)) % c, Int($0.0 + UInt64($0.1) + 1) % c] },
                        probabilities: rows.flatMap { _ in [0.5, 0.25] })
    }

    @Test("R-55/R-56: every field of every view round-trips, through label(of:), readViews and verify")
    func roundTrip() throws {
        let dir = TemporaryDirectory()
        let store = try makeViewStore(dir)
        defer { store.close() }
        // Rows deliberately out of (id, view) order; sample 30 has one view, 20 none.
        let rows: [(UInt64, Int)] = [(10, 3), (40, 0), (10, 0), (30, 7), (10, 1), (40, 2), (50, 0), (60, 9), (60, 4)]
        let views = rows.map { Self.view($0.0, $0.1, extra: $0.1 == 3 ? #"{"scale":[0.08,1],"tag":"x"}"# : nil) }
        let info = try store.write(clearance: .all) { tx in
            try tx.importLabels(.topK(Self.topK(rows)), ids: rows.map(\.0), into: "fkd", views: views, agent: "teacher")
        }
        #expect(info.rows == 5 && info.views == 9 && info.labelled == 5 && info.kind == .soft)
        #expect(info.fidelity?.exact == true)
        try store.read(clearance: .all) { tx throws in
            let set = try #require(try tx.labelSet(named: "fkd"))
            #expect(set.perView && set.codec == .topKF16(2))
            for id in [10, 30, 40, 50, 60] as [UInt64] {
                let label = try #require(try tx.label(of: id, in: LabelSetReference(name: "fkd")))
                let expected = rows.filter { $0.0 == id }.map(\.1).sorted()
                #expect(label.views?.map(\.parameters.view) == expected)
                #expect(label.hard == nil && label.soft == nil && label.top1 == nil)
                for view in label.views ?? [] {
                    #expect(view.parameters == Self.view(id, view.parameters.view, extra: view.parameters.view == 3 ? #"{"scale":[0.08,1],"tag":"x"}"# : nil))
                    #expect(view.top1?.classIndex == Int(id + UInt64(view.parameters.view)) % Self.classes.count)
                    #expect(abs(view.soft!.reduce(0, +) - 1) < 1e-5)
                }
            }
            #expect(try tx.label(of: 20, in: LabelSetReference(name: "fkd")) == nil)
            #expect(try tx.viewCounts(in: LabelSetReference(name: "fkd")) == (5, 1, 9, 3))
            #expect(try tx.verify().isClean)
        }
        // The batch read: every view, then the replay view of each epoch.
        try store.read(clearance: .all) { tx throws in
            let all = try tx.readViews([10, 20, 30, 999], from: LabelSetReference(name: "fkd"))
            #expect(all.offsets == [0, 3, 3, 4, 4] && all.versions == [1, 0, 1, 0] && all.k == 2)
            #expect(all.views == [0, 1, 3, 7])
            #expect(SIMD4(all.crops[0..<4]) == Self.view(10, 0).crop && all.seeds == [10_000, 10_001, 10_003, 30_007])
            #expect(all.extras == [nil, nil, #"{"scale":[0.08,1],"tag":"x"}"#, nil])
            #expect(all.topClasses[0] == 0 && all.topClasses[1] == 1 && all.hard == [-1, -1, -1, -1])
            // Every parameter of every view, against what was imported.
            let expected = [(10, 0), (10, 1), (10, 3), (30, 7)].map { Self.view($0.0, $0.1) }
            #expect(all.flips == expected.map { $0.flip ? 1 : 0 } && all.epochs == expected.map { UInt16($0.epoch) })
            #expect(all.crops == expected.flatMap { v in (0..<4).map { v.crop[$0] } })
            let dense = try tx.readViews([10], from: LabelSetReference(name: "fkd"), soft: .dense)
            #expect(dense.dense.count == 3 * Self.classes.count && dense.topClasses.isEmpty)
            let label = try tx.label(of: 10, in: LabelSetReference(name: "fkd"))!
            #expect(Array(dense.dense[5..<10]) == label.views![1].soft!)
        }
    }

    @Test("R-57: epoch E replays the view at index E mod n, in view-number order")
    func replayOrder() throws {
        let dir = TemporaryDirectory()
        let store = try makeViewStore(dir)
        defer { store.close() }
        let rows: [(UInt64, Int)] = [(10, 5), (10, 2), (10, 9), (20, 4)]
        try store.write(clearance: .all) { tx in
            try tx.importLabels(.hard([0, 1, 2, 3]), ids: rows.map(\.0), into: "v", views: rows.map { Self.view($0.0, $0.1) }, agent: "a")
        }
        try store.read(clearance: .all) { tx throws in
            for epoch in 0..<7 {
                let batch = try tx.readViews([10, 20, 30], from: LabelSetReference(name: "v"), epoch: epoch)
                #expect(batch.offsets == [0, 1, 2, 2])
                #expect(batch.views == [[2, 5, 9][epoch % 3], 4])
                #expect(batch.hard == [[1, 0, 2][epoch % 3], 3])
            }
            #expect(throws: InputError.self) { try tx.readViews([10], from: LabelSetReference(name: "v"), epoch: -1) }
        }
    }

    @Test("R-56: a later import replaces a sample's whole view list for its version; older versions read the old list")
    func versions() throws {
        let dir = TemporaryDirectory()
        let store = try makeViewStore(dir)
        defer { store.close() }
        try store.write(clearance: .all) { tx in
            let first: [(UInt64, Int)] = [(10, 0), (10, 1), (10, 2), (20, 0)]
            try tx.importLabels(.hard([0, 1, 2, 3]), ids: first.map(\.0), into: "v", views: first.map { Self.view($0.0, $0.1) }, agent: "a")
            let second: [(UInt64, Int)] = [(10, 7), (30, 0)]
            let info = try tx.importLabels(.hard([4, 4]), ids: second.map(\.0), into: "v", views: second.map { Self.view($0.0, $0.1) }, agent: "b")
            #expect(info.version == 2 && info.labelled == 3 && info.views == 2)
        }
        try store.read(clearance: .all) { tx throws in
            #expect(try tx.label(of: 10, in: LabelSetReference(name: "v"))?.views?.map(\.parameters.view) == [7])
            #expect(try tx.label(of: 10, in: LabelSetReference(name: "v", version: 1))?.views?.map(\.parameters.view) == [0, 1, 2])
            #expect(try tx.label(of: 20, in: LabelSetReference(name: "v"))?.views?.map(\.hard) == [3])
            #expect(try tx.viewCounts(in: LabelSetReference(name: "v")) == (3, 1, 3, 1))
            #expect(try tx.viewCounts(in: LabelSetReference(name: "v", version: 1)) == (2, 1, 4, 3))
        }
        // Deleting a sample removes its views in every version.
        try store.write(clearance: .all) { tx in _ = try tx.delete([10] as [UInt64]) }
        try store.read(clearance: .all) { tx throws in
            #expect(try tx.viewCounts(in: LabelSetReference(name: "v", version: 1)) == (1, 1, 1, 1))
            #expect(try tx.verify().isClean)
        }
    }

    @Test("clearances: views from a secret source, or of a secret sample, read as if never written")
    func clearanceNonInterference() throws {
        let pii = TaintLabel(secrecy: ["pii"], integrity: [])
        let vendor = TaintLabel(secrecy: ["vendor"], integrity: [])
        func build(withHidden: Bool) throws -> (TemporaryDirectory, Store) {
            let dir = TemporaryDirectory()
            let store = try makeViewStore(dir, taint: { $0 == 6 ? pii : .public })
            try store.write(clearance: .all) { tx in
                let first: [(UInt64, Int)] = [(10, 0), (10, 1), (20, 0)]
                try tx.importLabels(.hard([0, 1, 2]), ids: first.map(\.0), into: "v", views: first.map { Self.view($0.0, $0.1) }, agent: "a")
                if withHidden {
                    let secret: [(UInt64, Int)] = [(10, 5), (60, 0), (60, 1)]
                    try tx.importLabels(.hard([3, 3, 4]), ids: secret.map(\.0), into: "v", views: secret.map { Self.view($0.0, $0.1) }, agent: "s", source: vendor)
                }
            }
            return (dir, store)
        }
        let (d1, withHidden) = try build(withHidden: true)
        let (d2, without) = try build(withHidden: false)
        defer { withHidden.close(); without.close(); _ = (d1, d2) }
        for ids in [[10, 20, 60] as [UInt64], [60], [10]] {
            for epoch in [nil, 0, 1] as [Int?] {
                let seen = try withHidden.read(clearance: .public) { try $0.readViews(ids, from: LabelSetReference(name: "v", version: $0.labelSet(named: "v")!.latest), epoch: epoch) }
                let truth = try without.read(clearance: .public) { try $0.readViews(ids, from: LabelSetReference(name: "v"), epoch: epoch) }
                #expect(seen == truth)
            }
        }
        #expect(try withHidden.read(clearance: .public) { try $0.viewCounts(in: LabelSetReference(name: "v")) } == (2, 1, 3, 2))
        // Cleared for the vendor, sample 10 reads its secret-source views, and 60 stays hidden (pii).
        let vendorClearance = try Clearance(parsing: "secrecy=vendor;integrity=")
        let cleared = try withHidden.read(clearance: vendorClearance) { try $0.readViews([10, 60], from: LabelSetReference(name: "v")) }
        #expect(cleared.views == [5] && cleared.offsets == [0, 1, 1])
        let label = try withHidden.read(clearance: vendorClearance) { try $0.label(of: 10, in: LabelSetReference(name: "v")) }
        #expect(label?.taint == vendor)
    }

    @Test("bad input is refused with a reason, and nothing is written")
    func badInput() throws {
        let dir = TemporaryDirectory()
        let store = try makeViewStore(dir)
        defer { store.close() }
        try store.write(clearance: .all) { tx in
            try tx.importLabels(.hard([0]), ids: [10], into: "plain", agent: "a")
            try tx.importLabels(.hard([0]), ids: [10], into: "v", views: [Self.view(10, 0)], agent: "a")
        }
        let before = fileBytes(dir.file("store/data.mdb"))
        func refused(_ values: LabelValues, _ ids: [UInt64], _ views: [AugmentedView]?, into set: String = "v", _ fragment: String) {
            do {
                try store.write(clearance: .all) { tx in _ = try tx.importLabels(values, ids: ids, into: set, views: views, agent: "x") }
                Issue.record("accepted: \(fragment)")
            } catch {
                #expect("\(error)".contains(fragment), "\(error)")
            }
        }
        var flat = Self.view(10, 1)
        flat.crop = [0.5, 0.1, 0.5, 0.9]
        var outside = Self.view(10, 1)
        outside.crop = [-0.1, 0, 0.5, 0.5]
        var badExtra = Self.view(10, 1)
        badExtra.extra = "[1]"
        var badEpoch = Self.view(10, 1)
        badEpoch.epoch = 70_000
        refused(.hard([0, 1]), [10, 10], [Self.view(10, 1), Self.view(10, 1)], "view 1 of id 10 appears twice")
        refused(.hard([0]), [10], [flat], "zero area")
        refused(.hard([0]), [10], [outside], "outside [0, 1]")
        refused(.hard([0]), [10], [badExtra], "not a JSON object")
        refused(.hard([0]), [10], [badEpoch], "epoch 70000")
        refused(.hard([0, 1]), [10, 20], [Self.view(10, 1)], "1 views for 2 label rows")
        refused(.hard([0]), [10], [Self.view(10, 1)], into: "plain", "holds one label per sample")
        refused(.hard([0]), [10], nil, "holds labels per augmented view")
        refused(.multi([[0]]), [10], [Self.view(10, 1)], "not multi-labels")
        refused(.hard([0]), [11], [Self.view(11, 1)], "id 11 is not a sample")
        #expect(fileBytes(dir.file("store/data.mdb")) == before)
        // Per-sample readers refuse the per-view set by name.
        try store.read(clearance: .all) { tx throws in
            #expect(throws: LabelError.perViewSet(set: "v", operation: "the hard-label scan")) {
                try tx.forEachHardLabelBlock(in: LabelSetReference(name: "v")) { _, _ in true }
            }
            #expect(throws: LabelError.perViewSet(set: "v", operation: "agreement")) { try tx.agreement(of: [LabelSetReference(name: "v"), LabelSetReference(name: "plain")]) }
            #expect(throws: LabelError.perViewSet(set: "v", operation: "a top-1 filter")) { try tx.samples(withTop1: 0, in: LabelSetReference(name: "v")) }
            #expect(throws: LabelError.viewLayout(set: "plain", perView: false)) { try tx.readViews([10], from: LabelSetReference(name: "plain")) }
        }
    }

    @Test("R-55: adaptive and dense codecs per view; extras normalised, reserved members refused")
    func codecsAndExtras() throws {
        for codec in [SoftLabelCodec.adaptive(0.001), .denseF16, .topKU8(2)] {
            let dir = TemporaryDirectory()
            let store = try makeViewStore(dir)
            defer { store.close() }
            // Rows that need different K under the adaptive codec: one peaked, one flat.
            let rows: [[Float]] = [[0.96, 0.01, 0.01, 0.01, 0.01], [0.3, 0.25, 0.2, 0.15, 0.1], [0.5, 0.5, 0, 0, 0]]
            let views = [AugmentedView(view: 4, crop: [0, 0, 1, 1], extra: #"{ "z": 1, "a": [ 2 ] }"#),
                         AugmentedView(view: 1, crop: [0.5, 0.5, 1, 1]), AugmentedView(view: 2, crop: [0, 0, 0.5, 0.5])]
            try store.write(clearance: .all) { tx in
                _ = try tx.importLabels(.soft(rows.flatMap { $0 }), ids: [10, 10, 10], into: "v", codec: codec, views: views, agent: "a")
            }
            try store.read(clearance: .all) { tx throws in
                let label = try #require(try tx.label(of: 10, in: LabelSetReference(name: "v")))
                #expect(label.views?.map(\.parameters.view) == [1, 2, 4])
                #expect(label.views?[2].parameters.extra == #"{"a":[2],"z":1}"#)
                for (view, original) in zip(label.views ?? [], [rows[1], rows[2], rows[0]]) {
                    #expect(kl(original, view.soft!) < (codec == .denseF16 ? 1e-5 : 0.05), "\(codec)")
                    #expect(view.top1?.classIndex == 0)
                }
                let batch = try tx.readViews([10], from: LabelSetReference(name: "v"), soft: .dense)
                #expect(batch.dense == (label.views ?? []).flatMap { $0.soft! })
                #expect(try tx.verify().isClean)
            }
        }
        let dir = TemporaryDirectory()
        let store = try makeViewStore(dir)
        defer { store.close() }
        for member in ["hard", "top", "view", "seed"] {
            #expect(throws: LabelError.self) {
                try store.write(clearance: .all) { tx in
                    _ = try tx.importLabels(.hard([0]), ids: [10], into: "v", views: [AugmentedView(view: 0, crop: [0, 0, 1, 1], extra: "{\"\(member)\": 1}")], agent: "a")
                }
            }
        }
    }

    @Test("R-55: damaged per-view rows are reported by verify and refused by reads, never read as labels")
    func damagedRows() throws {
        /// A section: (flags, bytes after the flags), each a way R-55 can fail with a checksum that checks.
        func record(_ crop: [Float], flip: UInt8 = 0, reserved: UInt8 = 0) -> [UInt8] {
            var out: [UInt8] = []
            for v in crop { withUnsafeBytes(of: v.bitPattern.littleEndian) { out.append(contentsOf: $0) } }
            out += [flip, 0, 0, 0, 0, 0, 0, reserved]
            return out
        }
        func u32(_ v: UInt32) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
        let box: [Float] = [0, 0, 1, 1]
        let cases: [(String, UInt8, [UInt8])] = [
            ("count 0", 9, u32(0)),
            ("count past the row", 9, u32(1000) + u32(0) + record(box) + u32(0)),
            ("views descending", 9, u32(2) + u32(5) + u32(3) + record(box) + record(box) + u32(0) + u32(1)),
            ("reserved byte set", 9, u32(1) + u32(0) + record(box, reserved: 1) + u32(0)),
            ("flip 2", 9, u32(1) + u32(0) + record(box, flip: 2) + u32(0)),
            ("inverted crop", 9, u32(1) + u32(0) + record([0.5, 0, 0.25, 1]) + u32(0)),
            ("hard label out of range", 9, u32(1) + u32(0) + record(box) + u32(7)),
            ("trailing bytes", 9, u32(1) + u32(0) + record(box) + u32(0) + [0]),
            ("no label", 8, u32(1) + u32(0) + record(box)),
            ("multi flag", 11, u32(1) + u32(0) + record(box) + u32(0)),
            ("soft in a hard set", 13, u32(1) + u32(0) + record(box) + u32(0) + [0, 0]),
        ]
        for (name, flags, section) in cases {
            let dir = TemporaryDirectory()
            let store = try makeViewStore(dir)
            defer { store.close() }
            try store.write(clearance: .all) { tx in
                _ = try tx.importLabels(.hard([1, 2]), ids: [10, 20], into: "v", views: [Self.view(10, 0), Self.view(20, 0)], agent: "a")
                _ = try tx.importLabels(.hard([1]), ids: [10], into: "plain", agent: "a")
                // Sample 10's row replaced by the damaged one, sealed with the right checksums.
                let set = try tx.labelSet(named: "v")!
                let slot = try tx.storedSlot(of: 10)!, other = try tx.storedSlot(of: 20)!
                let key = LabelBlock.key(set: set.id, block: 0, version: 1)
                let seed = SealedRecord.seed(key: key)
                let good = try #require(try tx.withValue(.labelBlocks, key: key) { bytes in
                    try bytes.map { value in try key.withUnsafeBytes { k in Array(try LabelBlockView(key: k, bytes: value).rowBytes(rank: 1)) } }
                })
                let bad = LabelBlock.encodeRow(hard: nil, multi: nil, soft: nil, views: (flags, section), seed: seed ^ 10)
                try tx.put(.labelBlocks, key: key, bytes: LabelBlock.encode(key: key, rows: [(Int(slot), bad), (Int(other), good)].sorted { $0.0 < $1.0 }))
            }
            try store.read(clearance: .all) { tx throws in
                let report = try tx.verify()
                #expect(report.problems.contains { $0.key.contains("sample 10") }, "\(name): \(report.problems)")
                #expect(throws: StoreError.self, "\(name)") { try tx.readViews([10], from: LabelSetReference(name: "v")) }
                #expect(throws: StoreError.self, "\(name)") { try tx.label(of: 10, in: LabelSetReference(name: "v")) }
                #expect(try tx.readViews([20], from: LabelSetReference(name: "v")).views == [0], "\(name): the undamaged row still reads")
            }
        }
    }

    @Test("a per-view row in a per-sample set is damage for every reader, the hard-label scan too")
    func layoutMismatch() throws {
        let dir = TemporaryDirectory()
        let store = try makeViewStore(dir)
        defer { store.close() }
        try store.write(clearance: .all) { tx in
            _ = try tx.importLabels(.hard([1]), ids: [10], into: "plain", agent: "a")
            let set = try tx.labelSet(named: "plain")!
            let key = LabelBlock.key(set: set.id, block: 0, version: 1)
            let section = ViewRowEncoding.encode(views: [Self.view(10, 0)], hard: [1], soft: nil)
            let row = LabelBlock.encodeRow(hard: nil, multi: nil, soft: nil, views: section, seed: SealedRecord.seed(key: key) ^ 10)
            try tx.put(.labelBlocks, key: key, bytes: LabelBlock.encode(key: key, rows: [(Int(try tx.storedSlot(of: 10)!), row)]))
        }
        try store.read(clearance: .all) { tx throws in
            #expect(try !tx.verify().isClean)
            #expect(throws: StoreError.self) { try tx.label(of: 10, in: LabelSetReference(name: "plain")) }
            #expect(throws: StoreError.self) { try tx.forEachHardLabelBlock(in: LabelSetReference(name: "plain")) { _, _ in true } }
        }
    }
}

