import Foundation
import Testing
@testable import LabelDB

/// Packing slots (a shard keeps a small part of the store's samples) and splitting a store into a
/// sharded corpus (issue 16): nothing a reader sees may change.
@Suite("Slot packing and corpus splits")
struct ShardTests {
    /// What a store holds, as the library reads it under `.all`: every sample, every label of every
    /// set at every version, the top-1 postings of each class, verify's verdict.
    static func contents(_ store: Store) throws -> String {
        try store.read(clearance: .all) { tx in
            var out = ""
            try tx.forEachSample { view in
                out += "\(view.id) \(view.embedding()) \(JSONValue.object(try view.metadata()).serialized()) \(view.payload.count) \(view.taint)\n"
                return true
            }
            let ids = try tx.ids()
            for set in try tx.labelSets() {
                for version in 1...set.latest {
                    let reference = LabelSetReference(name: set.name, version: version)
                    for id in ids { if let label = try tx.label(of: id, in: reference) { out += "\(set.name)@\(version) \(id) \(label)\n" } }
                    if !set.perView {
                        for c in 0..<3 { out += "top1 \(set.name)@\(version) \(c): \(try tx.samples(withTop1: c, in: reference))\n" }
                    }
                }
            }
            for projector in try tx.projectors() {
                let loaded = try tx.load(ProjectorReference(name: projector.name))
                out += "\(projector.name): \(try tx.regenerate(ids, with: loaded).map { "\($0.status) \($0.probabilities)" })\n"
            }
            return out
        }
    }

    /// Every slot of `store` below its sample count, none free.
    static func slotsArePacked(_ store: Store) throws -> Bool {
        try store.read(clearance: .all) { tx in
            let count = UInt64(try tx.count())
            var slots: [UInt64] = []
            try tx.forEachSample { slots.append($0.slot); return true }
            return try tx.nextSlot() == count && tx.entries(.freeSlots) == 0 && Set(slots) == Set(0..<count)
        }
    }

    @Test("packing slots across blocks changes no sample, label, posting or regenerated label, and verify passes")
    func packingKeepsEverything() throws {
        let dir = TemporaryDirectory("pack")
        let store = try Store.create(at: dir.file("store"), schema: Schema(dimension: 4, classes: ["cat", "dog", "bird"], rowsPerBlock: 64))
        defer { store.close() }
        let samples = randomSamples(count: 9_000, dimension: 4, seed: 16, ids: (0..<9_000).map { UInt64($0) * 7 + 3 })
        var rng = SeededGenerator(seed: 17)
        func soft(_ n: Int) -> [Float] {
            (0..<n).flatMap { _ -> [Float] in let a = Float.random(in: 0.1...1, using: &rng), b = Float.random(in: 0.1...1, using: &rng); return [a / (a + b + 1), b / (a + b + 1), 1 / (a + b + 1)] }
        }
        let ids = samples.map(\.id)
        let evens = ids.enumerated().filter { $0.offset % 2 == 0 }.map(\.element)
        try store.write(clearance: .all) { tx in
            _ = try tx.put(SampleBatch(samples))
            try tx.importLabels(.soft(soft(ids.count)), ids: ids, into: "teacher", agent: "t")
            try tx.importLabels(.hard(ids.map { Int($0 % 3) }), ids: ids, into: "human", agent: "h")
            let views = evens.flatMap { id in (0..<2).map { AugmentedView(view: $0, crop: [0, 0, 1, 1], epoch: $0, seed: Int(id)) } }
            try tx.importLabels(.hard(views.indices.map { $0 % 3 }), ids: evens.flatMap { [$0, $0] }, into: "crops", views: views, agent: "v")
        }
        try store.write(clearance: .all) { tx in
            try tx.importLabels(.soft(soft(evens.count)), ids: evens, into: "teacher", agent: "t2", source: TaintLabel(secrecy: ["licensed"], integrity: []))
            try tx.relabel(Array(ids[100..<200]), TaintChange(addSecrecy: ["pii"]), agent: "admin")
        }
        try store.fitProjector("p", from: LabelSetReference(name: "teacher", version: 1), options: quickFitOptions, clearance: .all)
        // Holes everywhere: every third sample, and whole blocks of embeddings and label rows.
        let doomed = ids.enumerated().filter { $0.offset % 3 == 1 || (4_000..<4_300).contains($0.offset) }.map(\.element)
        try store.write(clearance: .all) { tx in _ = try tx.delete(doomed) }
        let before = try Self.contents(store)
        #expect(try !Self.slotsArePacked(store))

        let moved = try store.write(clearance: .all) { try $0.packSlots() }
        #expect(moved > 5_000)
        #expect(try Self.slotsArePacked(store))
        #expect(try Self.contents(store) == before)
        let report = try store.read(clearance: .all) { try $0.verify() }
        #expect(report.isClean, "\(report.problems.prefix(5))")
        // A second packing finds nothing to move; a new sample takes the next slot.
        #expect(try store.write(clearance: .all) { try $0.packSlots() } == 0)
        try store.write(clearance: .all) { tx in try tx.put(Sample(id: 1, embedding: [1, 0, 0, 0])) }
        #expect(try store.read(clearance: .all) { try $0.sample(1)?.embedding } == [1, 0, 0, 0])
        #expect(try Self.slotsArePacked(store))
    }

    /// The non-interference scenario's store (taint, two teacher versions, hard labels, a head,
    /// two projectors, a relabel, a delete), with a few more deletes.
    static func scenarioStore(at path: String) throws -> Store {
        let store = try NonInterferenceTests.build(NonInterferenceTests.scenario(), at: path)
        try store.write(clearance: .all) { tx in _ = try tx.delete([2, 11, 30]) }
        return store
    }

    @Test("a split gives every sample to the shard its rule names, with its labels, taint and regenerated labels as in the store", arguments: [
        (SplitRule.hash, 3), (SplitRule.range, 2), (SplitRule.hash, 1),
    ])
    func splitKeepsEverySample(rule: SplitRule, count: Int) throws {
        let dir = TemporaryDirectory("split")
        let store = try Self.scenarioStore(at: dir.file("store"))
        let ids = try store.read(clearance: .all) { try $0.ids() }
        store.close()
        let manifest = try CorpusManifest.split(store: dir.file("store"), into: dir.file("corpus"), shards: count, rule: rule, clearance: .all, agent: "test")
        #expect(try CorpusManifest.read(from: dir.file("corpus")) == manifest)
        #expect(manifest.shards.count == count)
        var seen: [UInt64] = []
        for (index, name) in manifest.shards.enumerated() {
            let shard = try Store(opening: dir.file("corpus/" + name), options: Store.Options(readOnly: true))
            defer { shard.close() }
            #expect(try Self.slotsArePacked(shard))
            let report = try shard.read(clearance: .all) { try $0.verify() }
            #expect(report.isClean, "\(name): \(report.problems.prefix(5))")
            let held = try shard.read(clearance: .all) { try $0.ids() }
            #expect(held.allSatisfy { manifest.shard(of: $0) == index })
            seen += held
            let last = try shard.read(clearance: .all) { try $0.provenanceRecords().last?.record }
            #expect(last?.activity == "shard" && last?.parameters["shard"] == "\(index)")
        }
        #expect(seen.sorted() == ids)
        // Each sample reads the same through the command line, from its shard and from the store.
        for id in ids + [2, 1_000] {
            let shard = manifest.shard(of: id).map { dir.file("corpus/" + manifest.shards[$0]) } ?? dir.file("corpus/" + manifest.shards[0])
            let arguments = ["\(id)", "--format", "json", "--labels", "teacher@1", "--labels", "teacher", "--labels", "human", "--regen", "wide", "--regen", "open", "--clearance", "all"]
            let fromStore = try runCLI(["get", dir.file("store")] + arguments), fromShard = try runCLI(["get", shard] + arguments)
            #expect(fromShard.status == fromStore.status && fromShard.stdout == fromStore.stdout, "id \(id)\n\(fromShard.stdout)\n\(fromStore.stdout)")
        }
    }

    @Test("a split refuses a narrow clearance, a used destination and a range split of too few samples, and leaves nothing behind")
    func splitRefusals() throws {
        let dir = TemporaryDirectory("split-refusals")
        let store = try Self.scenarioStore(at: dir.file("store"))
        store.close()
        #expect(throws: TaintError.self) {
            try CorpusManifest.split(store: dir.file("store"), into: dir.file("c1"), shards: 2, rule: .hash, clearance: .public, agent: "t")
        }
        #expect(!FileManager.default.fileExists(atPath: dir.file("c1")))
        #expect(throws: CorpusError.self) {
            try CorpusManifest.split(store: dir.file("store"), into: dir.file("c2"), shards: 100, rule: .range, clearance: .all, agent: "t")
        }
        #expect(!FileManager.default.fileExists(atPath: dir.file("c2")))
        try FileManager.default.createDirectory(atPath: dir.file("used"), withIntermediateDirectories: false)
        try "x".write(toFile: dir.file("used/keep.txt"), atomically: false, encoding: .utf8)
        #expect(throws: StoreError.self) {
            try CorpusManifest.split(store: dir.file("store"), into: dir.file("used"), shards: 2, rule: .hash, clearance: .all, agent: "t")
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.file("used")) == ["keep.txt"])
        // Through the command line: exit 2 for bad usage, the corpus path untouched.
        let bad = try runCLI(["shard", dir.file("store"), dir.file("c3"), "--shards", "2", "--by", "modulo", "--clearance", "all"])
        #expect(bad.status == 2 && bad.stderr.contains("--by"))
        #expect(!FileManager.default.fileExists(atPath: dir.file("c3")))
    }
}
