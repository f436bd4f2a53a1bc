import Foundation
import Testing
@testable import LabelDB

/// A seeded store whose samples carry random taint labels, with the truth kept beside it.
private struct TaintedCorpus {
    static let secrecyTags = ["licensed:getty", "pii", "customer:acme"]
    static let integrityTags = ["human-reviewed", "trusted-teacher"]

    let dir = TemporaryDirectory("taint")
    let store: Store
    var labels: [UInt64: TaintLabel] = [:]
    var embeddings: [UInt64: [Float]] = [:]
    let source: TaintLabel
    let d = 6

    init(seed: UInt64, count: Int = 120) throws {
        var rng = SeededGenerator(seed: seed)
        store = try makeStore(dir, dimension: d)
        func randomLabel() -> TaintLabel {
            TaintLabel(secrecy: Set(Self.secrecyTags.filter { _ in Int.random(in: 0..<4, using: &rng) == 0 }),
                       integrity: Set(Self.integrityTags.filter { _ in Bool.random(using: &rng) }))
        }
        var samples: [Sample] = []
        for i in 0..<count {
            let id = UInt64(i * 3 + Int.random(in: 0...2, using: &rng))
            let label = randomLabel()
            let embedding = (0..<d).map { _ in Float.random(in: -1...1, using: &rng) }
            samples.append(Sample(id: id, embedding: embedding, metadata: ["row": .int(Int64(i))], taint: label))
            labels[id] = label
            embeddings[id] = embedding
        }
        source = Bool.random(using: &rng) ? .public : TaintLabel(secrecy: ["licensed:getty"], integrity: ["trusted-teacher"])
        let ids = samples.map(\.id)
        var soft: [Float] = []
        for _ in ids {
            var row = (0..<3).map { _ in Float.random(in: 0.05...1, using: &rng) }
            let sum = row.reduce(0, +)
            row = row.map { $0 / sum }
            soft += row
        }
        try store.write(clearance: .all) { tx in
            try tx.put(SampleBatch(samples), privileges: Set(Self.integrityTags))
            try tx.importLabels(.soft(soft), ids: ids, into: "teacher", codec: .denseF32, agent: "t", source: source, privileges: ["trusted-teacher"])
        }
        try store.fitProjector("p", from: LabelSetReference(name: "teacher"), options: quickFit(rank: 2), clearance: .all)
    }

    static func randomClearance(_ rng: inout SeededGenerator) -> Clearance {
        if Int.random(in: 0..<8, using: &rng) == 0 { return .all }
        return Clearance(allowedSecrecy: .tags(Set(secrecyTags.filter { _ in Bool.random(using: &rng) })),
                         requiredIntegrity: Set(integrityTags.filter { _ in Int.random(in: 0..<3, using: &rng) == 0 }))
    }
}

/// Closed-form only, nothing held out: fast and deterministic.
private func quickFit(rank: Int) -> ProjectorFitOptions {
    var options = ProjectorFitOptions(rank: rank)
    options.holdout = 0
    options.epochs = 0
    return options
}

@Suite("Taint labels in the store")
struct TaintStoreTests {
    @Test("no leaks: every read path returns and counts only what flows to the clearance", arguments: [1, 2, 3] as [UInt64])
    func noLeaks(seed: UInt64) throws {
        let corpus = try TaintedCorpus(seed: seed)
        var rng = SeededGenerator(seed: seed &* 977)
        let projectorTaint = corpus.labels.values.reduce(TaintLabel.bottom) { $0.join($1.join(corpus.source)) }
        for _ in 0..<12 {
            let clearance = TaintedCorpus.randomClearance(&rng)
            let visible = Set(corpus.labels.filter { clearance.admits($0.value) }.keys)
            let labelVisible = Set(corpus.labels.filter { clearance.admits($0.value.join(corpus.source)) }.keys)
            try corpus.store.read(clearance: clearance) { tx in
                // Samples: count, ids, contains, get, scans.
                #expect(try tx.count() == visible.count)
                #expect(try tx.ids() == visible.sorted())
                #expect(try tx.maxID() == visible.max())
                for id in corpus.labels.keys {
                    #expect(try tx.contains(id) == visible.contains(id))
                    #expect(try (tx.sample(id) != nil) == visible.contains(id))
                    #expect(try (tx.taintLabel(of: id) != nil) == visible.contains(id))
                }
                #expect(try tx.samples().map(\.id) == visible.sorted())
                #expect(try tx.samples().allSatisfy { clearance.admits($0.taint) && $0.taint == corpus.labels[$0.id] })
                // Embedding blocks: hidden rows are neither live nor present as bytes.
                var live = Set<UInt64>()
                try tx.forEachEmbeddingBlock { rows in
                    for r in 0..<rows.rowCount {
                        let row = rows.floats[(r * rows.dimension)..<((r + 1) * rows.dimension)]
                        if rows.isLive(r) {
                            live.insert(rows.id(at: r))
                            #expect(Array(row) == corpus.embeddings[rows.id(at: r)])
                        } else {
                            #expect(row.allSatisfy { $0 == 0 })
                        }
                    }
                }
                #expect(live == visible)
                // Labels: point reads, scans, the class index; each carries sample ⊔ source.
                let set = try #require(try tx.labelSet(named: "teacher"))
                var scanned = Set<UInt64>()
                try tx.forEachLabel(in: LabelSetReference(name: "teacher")) { id, label in
                    scanned.insert(id)
                    #expect(label.taint == corpus.labels[id]!.join(corpus.source))
                    return true
                }
                #expect(scanned == labelVisible)
                for id in corpus.labels.keys {
                    #expect(try (tx.label(of: id, set: set, version: 1) != nil) == labelVisible.contains(id))
                }
                var indexed = Set<UInt64>()
                for c in 0..<3 { for id in try tx.samples(withTop1: c, in: LabelSetReference(name: "teacher")) { indexed.insert(id) } }
                #expect(indexed == labelVisible)
                // Statistics count every row: shown only to a clearance that sees everything.
                let seesAll = try tx.seesEverything
                #expect(set.versions[0].statisticsRedacted == !seesAll)
                #expect(set.versions[0].labelled == (seesAll ? corpus.labels.count : 0))
                // Queries and nearest neighbours.
                var queried: [UInt64] = []
                try tx.query(nil) { queried.append($0) }
                #expect(queried == visible.sorted())
                var byConfidence: [UInt64] = []
                try tx.query(nil, order: .confidence(LabelSetReference(name: "teacher"))) { byConfidence.append($0) }
                #expect(Set(byConfidence) == visible)
                var tagged: [UInt64] = []
                try tx.query(try QueryExpression(parsing: "tagged('pii')")) { tagged.append($0) }
                #expect(tagged == visible.filter { corpus.labels[$0]!.namedTags.contains("pii") }.sorted())
                var flowing: [UInt64] = []
                try tx.query(try QueryExpression(parsing: "flows_to('secrecy=pii')")) { flowing.append($0) }
                let bound = try Clearance(parsing: "secrecy=pii")
                #expect(flowing == visible.filter { bound.admits(corpus.labels[$0]!) }.sorted())
                let q = corpus.embeddings.values.first!
                let hits = try tx.nearestNeighbors(of: q, queries: 1, k: 1000, metric: .cosine)[0]
                #expect(Set(hits.map(\.id)) == visible)
                // Projectors: usable only when their fitted data is admitted.
                if clearance.admits(projectorTaint) {
                    let loaded = try tx.load(ProjectorReference(name: "p"))
                    for id in visible.prefix(5) {
                        #expect(try tx.regenerate([id], with: loaded)[0].taint == projectorTaint.join(corpus.labels[id]!))
                    }
                    if let hidden = corpus.labels.keys.first(where: { !visible.contains($0) }) {
                        #expect(throws: StoreError.sampleNotFound(hidden)) { try tx.regenerate([hidden], with: loaded) }
                    }
                } else {
                    #expect(throws: ProjectorError.notCleared(name: "p", version: 1)) { try tx.load(ProjectorReference(name: "p")) }
                }
            }
        }
    }

    @Test("conservative propagation: stored label = sample ⊔ source, projector = join of what it was fitted on, regenerated = projector ⊔ sample")
    func propagation() throws {
        let dir = TemporaryDirectory("taint-prop")
        let store = try makeStore(dir, dimension: 4)
        let licensed = TaintLabel(secrecy: ["licensed:getty"], integrity: ["human-reviewed"])
        let reviewed = TaintLabel(secrecy: [], integrity: ["human-reviewed", "trusted-teacher"])
        let teacher = TaintLabel(secrecy: ["teacher-licence"], integrity: ["trusted-teacher"])
        var samples: [Sample] = []
        for i in 0..<12 {
            let embedding: [Float] = (0..<4).map { j in Float((j + i) % 5) - 2 }
            samples.append(Sample(id: UInt64(i), embedding: embedding, taint: i < 6 ? licensed : reviewed))
        }
        let soft = (0..<12).flatMap { i -> [Float] in i % 2 == 0 ? [0.7, 0.2, 0.1] : [0.1, 0.3, 0.6] }
        try store.write(clearance: .all) { tx in
            try tx.put(SampleBatch(samples), privileges: ["human-reviewed", "trusted-teacher"])
            try tx.importLabels(.soft(soft), ids: samples.map(\.id), into: "teacher", agent: "t", source: teacher, privileges: ["trusted-teacher"])
        }
        try store.read(clearance: .all) { tx in
            let first = try tx.label(of: 0, in: LabelSetReference(name: "teacher"))
            let seventh = try tx.label(of: 7, in: LabelSetReference(name: "teacher"))
            #expect(first?.taint == licensed.join(teacher))
            #expect(seventh?.taint == TaintLabel(secrecy: ["teacher-licence"], integrity: ["trusted-teacher"]))
        }
        // Fitted under a clearance that sees only the reviewed half: the projector carries only their labels.
        let narrow = Clearance(allowedSecrecy: .tags(["teacher-licence"]))
        let info = try store.fitProjector("p", from: LabelSetReference(name: "teacher"), options: quickFit(rank: 1), clearance: narrow)
        #expect(info.samples == 6)
        #expect(info.taint == reviewed.join(teacher))
        let wide = try store.fitProjector("q", from: LabelSetReference(name: "teacher"), options: quickFit(rank: 1), clearance: .all)
        #expect(wide.taint == licensed.join(reviewed).join(teacher))
        try store.read(clearance: .all) { tx in
            let regenerated = try tx.regenerate([0, 7], with: tx.load(ProjectorReference(name: "p")))
            #expect(regenerated[0].taint == reviewed.join(teacher).join(licensed))
            #expect(regenerated[1].taint == reviewed.join(teacher))
        }
        // Adding secrecy to a fitted sample reaches the projectors fitted on it.
        try store.write(clearance: .all) { tx in
            try tx.relabel([7], TaintChange(addSecrecy: ["pii"]), agent: "dpo")
        }
        try store.read(clearance: .all) { tx in
            #expect(try tx.taintLabel(of: 7) == TaintLabel(secrecy: ["pii"], integrity: ["human-reviewed", "trusted-teacher"]))
            let p = try #require(try tx.projector(named: "p")).versions[0]
            #expect(p.taintLabel.secrecy.isSubset(of: .tags(["pii", "teacher-licence"])) && TagSet.tags(["pii"]).isSubset(of: p.taintLabel.secrecy))
        }
    }

    @Test("relabel: declassify and endorse need privileges, are logged, and nothing changes without them")
    func relabelPrivileges() throws {
        let dir = TemporaryDirectory("taint-relabel")
        let store = try makeStore(dir, dimension: 4)
        let secret = TaintLabel(secrecy: ["pii"], integrity: [])
        try store.write(clearance: .all) { tx in
            try tx.put(SampleBatch((0..<4).map { Sample(id: UInt64($0), embedding: [1, 2, 3, Float($0)], taint: secret) }))
        }
        let before = fileBytes(dir.file("store/data.mdb"))
        #expect(throws: TaintError.missingPrivilege(tag: "pii", action: "remove the secrecy tag (declassify)")) {
            try store.write(clearance: .all) { tx in try tx.relabel([0, 1], TaintChange(removeSecrecy: ["pii"]), agent: "x") }
        }
        #expect(throws: TaintError.missingPrivilege(tag: "human-reviewed", action: "add the integrity tag (endorse)")) {
            try store.write(clearance: .all) { tx in try tx.relabel([0], TaintChange(addIntegrity: ["human-reviewed"]), privileges: ["pii"], agent: "x") }
        }
        // A sample the clearance cannot see cannot be relabelled (it does not exist for it).
        #expect(throws: StoreError.sampleNotFound(0)) {
            try store.write(clearance: .public) { tx in try tx.relabel([0], TaintChange(addSecrecy: ["x"]), agent: "x") }
        }
        #expect(fileBytes(dir.file("store/data.mdb")) == before)
        try store.write(clearance: .all) { tx in try tx.relabel([0, 1], TaintChange(removeSecrecy: ["pii"]), privileges: ["pii"], agent: "dpo") }
        try store.read(clearance: .public) { tx in
            #expect(try tx.ids() == [0, 1])
            let last = try tx.provenanceRecords().last!.record
            #expect(last.activity == "declassify" && last.agent == "dpo" && last.parameters["privileges"] == "pii")
        }
        #expect(try store.read(clearance: .all) { try $0.verify() }.isClean)
    }

    @Test("writes respect the clearance: invisible samples are absent to labels, deletes and inserts")
    func writesUnderClearance() throws {
        let dir = TemporaryDirectory("taint-writes")
        let store = try makeStore(dir, dimension: 4)
        try store.write(clearance: .all) { tx in
            try tx.put(Sample(id: 1, embedding: [1, 0, 0, 0]))
            try tx.put(Sample(id: 2, embedding: [0, 1, 0, 0], taint: TaintLabel(secrecy: ["pii"], integrity: [])))
        }
        #expect(throws: LabelError.unknownSample(2)) {
            try store.write(clearance: .public) { tx in try tx.importLabels(.hard([0]), ids: [2], into: "h", agent: "a") }
        }
        #expect(throws: StoreError.idHeldByHiddenSample(2)) {
            try store.write(clearance: .public) { tx in try tx.put(Sample(id: 2, embedding: [0, 0, 1, 0])) }
        }
        #expect(throws: StoreError.idExists(2)) {
            try store.write(clearance: .public) { tx in try tx.put(SampleBatch([Sample(id: 2, embedding: [0, 0, 1, 0])]), mode: .insert) }
        }
        #expect(try store.write(clearance: .public) { tx in try tx.delete([1, 2]) } == 1)
        #expect(try store.read(clearance: .all) { try $0.ids() } == [2])
        #expect(try store.read(clearance: .all) { try $0.sample(2)?.embedding } == [0, 1, 0, 0])
    }

    @Test("clearances naming unknown tags are refused; malformed ones too")
    func clearanceValidation() throws {
        let dir = TemporaryDirectory("taint-validate")
        let store = try makeStore(dir, dimension: 4)
        try store.write(clearance: .all) { tx in try tx.put(Sample(id: 1, embedding: [1, 0, 0, 0], taint: TaintLabel(secrecy: ["pii"], integrity: ["ok"])), privileges: ["ok"]) }
        try store.read(clearance: .all) { tx in
            try tx.validate(try Clearance(parsing: "secrecy=pii;integrity=ok"))
            #expect(throws: TaintError.unknownTag("pi")) { try tx.validate(try Clearance(parsing: "secrecy=pi")) }
            #expect(try tx.registeredTags() == ["ok", "pii"])
        }
        #expect(throws: TaintError.malformedClearance("secrecy")) { _ = try Clearance(parsing: "secrecy") }
        #expect(throws: TaintError.malformedClearance("trust=a")) { _ = try Clearance(parsing: "trust=a") }
    }
}

@Suite("Taint records on disk")
struct TaintRecordTests {
    @Test("verify finds a damaged label record, a sample naming an unknown label, and a missing partition entry")
    func verifyTaint() throws {
        let dir = TemporaryDirectory("taint-verify")
        let store = try makeStore(dir, dimension: 4)
        try store.write(clearance: .all) { tx in
            try tx.put(SampleBatch([Sample(id: 1, embedding: [1, 0, 0, 0], taint: TaintLabel(secrecy: ["pii"], integrity: [])),
                                    Sample(id: 2, embedding: [0, 1, 0, 0])]))
        }
        #expect(try store.read(clearance: .all) { try $0.verify() }.isClean)
        // A partition entry removed behind the store's back.
        try store.write(clearance: .all) { tx in
            var key: [UInt8] = []
            BigEndianKey.append(UInt32(1), to: &key)
            BigEndianKey.append(UInt64(1), to: &key)
            let removed = try tx.delete(.taintMembers, key: key)
            #expect(removed)
        }
        let missing = try store.read(clearance: .all) { try $0.verify() }
        #expect(missing.problems.contains { $0.table == "taint_members" })
        // A flipped byte in the interned label: its checksum catches it, and reads refuse rather than guess.
        try store.write(clearance: .all) { tx in
            let bytes = try tx.withValue(.taintLabels, key: [0, 0, 0, 1]) { Array($0!) }
            var damaged = bytes
            damaged[damaged.count - 1] ^= 0x01
            try tx.put(.taintLabels, key: [0, 0, 0, 1], bytes: damaged)
        }
        let report = try store.read(clearance: .all) { try $0.verify() }
        #expect(report.problems.contains { $0.table == "taint_labels" && $0.detail.contains("checksum") })
        #expect(throws: StoreError.self) { _ = try store.read(clearance: .public) { try $0.count() } }
    }
}

@Suite("Taint and label versions")
struct TaintLabelVersionTests {
    @Test("a later import does not carry forward kinds from a source whose label does not flow to its own")
    func noCarryAcrossSources() throws {
        let dir = TemporaryDirectory("taint-carry")
        let store = try makeStore(dir, dimension: 4)
        let licensed = TaintLabel(secrecy: ["teacher-licence"], integrity: [])
        try store.write(clearance: .all) { tx in
            try tx.put(SampleBatch([Sample(id: 1, embedding: [1, 0, 0, 0]), Sample(id: 2, embedding: [0, 1, 0, 0])]))
            try tx.importLabels(.soft([0.7, 0.2, 0.1, 0.1, 0.8, 0.1]), ids: [1, 2], into: "t", agent: "teacher", source: licensed)
            // A public annotator adds hard labels: the licensed soft labels must not become public.
            try tx.importLabels(.hard([0, 1]), ids: [1, 2], into: "t", agent: "annotator")
            // The licensed teacher again, hard labels this time: its own soft labels carry forward.
            try tx.importLabels(.hard([2]), ids: [1], into: "u", agent: "teacher", source: licensed)
        }
        try store.read(clearance: .public) { tx in
            let label = try #require(try tx.label(of: 1, in: LabelSetReference(name: "t")))
            #expect(label.hard == 0 && label.soft == nil && label.taint == .public)
        }
        try store.write(clearance: .all) { tx in
            try tx.importLabels(.soft([0.1, 0.1, 0.8]), ids: [1], into: "u", agent: "teacher", source: licensed)
            try tx.importLabels(.hard([0]), ids: [1], into: "u", agent: "teacher", source: licensed)
        }
        try store.read(clearance: .all) { tx in
            let label = try #require(try tx.label(of: 1, in: LabelSetReference(name: "u")))
            #expect(label.hard == 0 && label.soft != nil && label.taint == licensed.join(.public))
        }
    }
}

extension TaintLabelVersionTests {
    @Test("replacing a sample never lowers its taint label")
    func replaceKeepsTheJoin() throws {
        let dir = TemporaryDirectory("taint-replace")
        let store = try makeStore(dir, dimension: 4)
        let secret = TaintLabel(secrecy: ["pii"], integrity: ["reviewed"])
        try store.write(clearance: .all) { tx in try tx.put(Sample(id: 1, embedding: [1, 0, 0, 0], taint: secret), privileges: ["reviewed"]) }
        try store.write(clearance: .all) { tx in try tx.put(Sample(id: 1, embedding: [0, 1, 0, 0], taint: TaintLabel(secrecy: ["web"], integrity: ["reviewed"])), privileges: ["reviewed"]) }
        #expect(try store.read(clearance: .all) { try $0.taintLabel(of: 1) } == TaintLabel(secrecy: ["pii", "web"], integrity: ["reviewed"]))
        #expect(try store.read(clearance: .public) { try $0.count() } == 0)
        #expect(try store.read(clearance: .all) { try $0.verify() }.isClean)
    }
}

extension TaintRecordTests {
    @Test("a point read of a tainted sample reads its one label, not the whole catalog")
    func pointReadIsLazy() throws {
        let dir = TemporaryDirectory("taint-lazy")
        let store = try makeStore(dir, dimension: 4)
        try store.write(clearance: .all) { tx in
            try tx.put(SampleBatch((1...50).map { Sample(id: UInt64($0), embedding: [1, 0, 0, 0], taint: TaintLabel(secrecy: ["user:\($0)"], integrity: [])) }))
        }
        let clearance = try Clearance(parsing: "secrecy=user:7")
        try store.read(clearance: clearance) { tx in
            let seven = try tx.sample(7)
            let eight = try tx.sample(8)
            #expect(seven?.taint == TaintLabel(secrecy: ["user:7"], integrity: []) && eight == nil)
            #expect(tx.taintState?.full == nil && tx.taintState?.labels.count == 3)
            let count = try tx.count()   // counting needs every label
            #expect(count == 1 && tx.taintState?.full != nil)
        }
    }
}

extension TaintRecordTests {
    @Test("labels are interned through the content index: once, without reading the catalog; verify checks the index")
    func contentIndex() throws {
        let dir = TemporaryDirectory("taint-index")
        let store = try makeStore(dir, dimension: 4)
        let label = TaintLabel(secrecy: ["pii", "licensed"], integrity: ["ok"])
        try store.write(clearance: .all) { tx in try tx.put(Sample(id: 1, embedding: [1, 0, 0, 0], taint: label), privileges: ["ok"]) }
        try store.write(clearance: .all) { tx in
            try tx.put(Sample(id: 2, embedding: [0, 1, 0, 0], taint: label), privileges: ["ok"])
            #expect(tx.taintState?.full == nil)
        }
        let (labels, clean) = try store.read(clearance: .all) { tx in (try tx.catalog().labels, try tx.verify().isClean) }
        #expect(labels == [.public, label] && clean)
        // Damage the index entry: verify names it, and interning refuses to trust it.
        try store.write(clearance: .all) { tx in
            var entry: (key: [UInt8], value: [UInt8])? = nil
            try tx.walk(.taintLabelIndex, from: nil) { key, value in entry = (Array(key), Array(value)); return false }
            guard let (key, original) = entry else { return }
            var value = original
            value[value.count - 1] ^= 0x01
            try tx.put(.taintLabelIndex, key: key, bytes: value)
        }
        let report = try store.read(clearance: .all) { try $0.verify() }
        #expect(report.problems.contains { $0.table == "taint_label_index" })
        #expect(throws: StoreError.self) {
            try store.write(clearance: .all) { tx in try tx.put(Sample(id: 3, embedding: [0, 0, 1, 0], taint: label), privileges: ["ok"]) }
        }
    }
}
