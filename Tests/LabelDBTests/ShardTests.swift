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
        // A projector whose tight bound stores corrections (each must follow its sample to its shard).
        try store.fitProjector("tight", from: LabelSetReference(name: "teacher", version: 1), options: quickFitOptions, maxKL: 1e-4,
                               requireTop1: true, clearance: .all)
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
        let corrections = try store.read(clearance: .all) { try $0.entries(.projectorCorrections) }
        store.close()
        let manifest = try CorpusManifest.split(store: dir.file("store"), into: dir.file("corpus"), shards: count, rule: rule, clearance: .all, agent: "test")
        #expect(try CorpusManifest.read(from: dir.file("corpus")) == manifest)
        #expect(manifest.shards.count == count)
        var seen: [UInt64] = []
        var correctedTotal = 0
        for (index, name) in manifest.shards.enumerated() {
            let shard = try Store(opening: dir.file("corpus/" + name), options: Store.Options(readOnly: true))
            defer { shard.close() }
            #expect(try Self.slotsArePacked(shard))
            let report = try shard.read(clearance: .all) { try $0.verify() }
            #expect(report.isClean, "\(name): \(report.problems.prefix(5))")
            let held = try shard.read(clearance: .all) { try $0.ids() }
            #expect(held.allSatisfy { manifest.shard(of: $0) == index })
            seen += held
            // Only its own samples' projector corrections.
            let corrected = try shard.read(clearance: .all) { tx -> [UInt64] in
                var ids: [UInt64] = []
                try tx.walk(.projectorCorrections, from: nil) { key, _ in ids.append(BigEndianKey.u64(key, at: 8)); return true }
                return ids
            }
            #expect(corrected.allSatisfy { manifest.shard(of: $0) == index })
            correctedTotal += corrected.count
            let last = try shard.read(clearance: .all) { try $0.provenanceRecords().last?.record }
            #expect(last?.activity == "shard" && last?.parameters["shard"] == "\(index)")
        }
        #expect(seen.sorted() == ids)
        #expect(correctedTotal > 0 && correctedTotal <= corrections, "\(correctedTotal) of \(corrections) corrections kept")
        // Each sample reads the same through the command line, from its shard and from the store.
        for id in ids + [2, 1_000] {
            let shard = manifest.shard(of: id).map { dir.file("corpus/" + manifest.shards[$0]) } ?? dir.file("corpus/" + manifest.shards[0])
            let arguments = ["\(id)", "--format", "json", "--labels", "teacher@1", "--labels", "teacher", "--labels", "human", "--regen", "wide", "--regen", "open",
                             "--regen", "tight", "--clearance", "all"]
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

/// The read commands on a sharded corpus print what they print on the store it was split from.
@Suite("Corpus reads equal the single store's")
struct CorpusReadTests {
    /// What a command shows: its exit status, standard output and error, and the bytes of the
    /// files it wrote.
    static func observe(_ arguments: [String], files: [String]) throws -> String {
        for file in files { try? FileManager.default.removeItem(atPath: file) }
        let result = try runCLI(arguments)
        var shown = "exit \(result.status)\n\(result.stdout)\n\(result.stderr)\n"
        for file in files { shown += (FileManager.default.contents(atPath: file)?.base64EncodedString() ?? "absent") + "\n" }
        return shown
    }

    static func commands(_ path: String, out: String, query: String) -> [(arguments: [String], files: [String])] {
        var list: [(arguments: [String], files: [String])] = [
            (["scan", path, "--format", "json"], []),
            (["scan", path, "--from", "9", "--limit", "7"], []),
            (["query", path, "label(teacher).top1 = 'cat'", "--labels", "teacher", "--format", "json"], []),
            (["query", path, "id >= 0", "--labels", "teacher", "--labels", "human", "--order-by", "confidence", "--format", "json"], []),
            (["query", path, "id >= 0", "--labels", "teacher", "--order-by", "margin", "--desc", "--offset", "3", "--limit", "9", "--format", "json"], []),
            (["query", path, "meta.src = 'web' or tagged('pii')", "--desc", "--offset", "2", "--limit", "5"], []),
            (["query", path, "label(teacher@1).confidence < 0.5 or label(human).has('dog')", "--columns", "id,taint,labels,metadata,embedding,payload_bytes",
              "--labels", "open", "--format", "json", "--ids-out", out + "/q-ids.npy", "--embeddings-out", out + "/q-emb.npy", "--labels-out", out + "/q-lab.npy"],
             [out + "/q-ids.npy", out + "/q-emb.npy", out + "/q-lab.npy"]),
            (["query", path, "label(open).top1 = 'dog'", "--labels", "open", "--order-by", "entropy", "--format", "json"], []),
            (["knn", path, "--query", query, "--k", "5", "--format", "json"], []),
            (["knn", path, "--query", query, "--k", "7", "--metric", "l2", "--where", "label(human).top1 != 'cat'", "--format", "json"], []),
            (["knn", path, "--query", query, "--k", "50"], []),
            (["knn", path, "--query", query, "--k", "5", "--labels", "teacher", "--format", "json"], []),
            (["knn", path, "--query", query, "--k", "7", "--labels", "teacher@1", "--flow", "conservative", "--format", "json"], []),
            (["knn", path, "--query", query, "--k", "4", "--labels", "human", "--metric", "l2", "--lambda", "0.3", "--where", "id > 3", "--format", "json"], []),
            (["knn", path, "--query", query, "--k", "6", "--labels", "wide", "--format", "json"], []),
            (["export", path, "--embeddings-out", out + "/x.npy", "--ids-out", out + "/i.npy", "--meta-out", out + "/m.jsonl", "--payloads-out", out + "/p.jsonl"],
             [out + "/x.npy", out + "/i.npy", out + "/m.jsonl", out + "/p.jsonl"]),
            (["export", path, "--where", "label(teacher).confidence > 0.3", "--labels-out", "teacher=" + out + "/t.npy,human=" + out + "/h.npy", "--npz", out + "/all.npz", "--labels", "open"],
             [out + "/t.npy", out + "/h.npy", out + "/all.npz"]),
        ]
        for id in [1, 2, 3, 4, 7, 12, 25, 31, 40, 41] {
            list.append((["get", path, "\(id)", "--format", "json", "--regen", "wide", "--regen", "tight"], []))
        }
        for id in [1, 2, 5, 22, 33] {
            list.append((["audit", path, "\(id)", "--format", "json"], []))
        }
        list += [(["labels", "export", path, "teacher@1", "--out", out + "/le.npy", "--hard-out", out + "/lh.npy", "--ids-out", out + "/li.npy"],
                  [out + "/le.npy", out + "/lh.npy", out + "/li.npy"]),
                 (["labels", "export", path, "--regen", "tight", "--out", out + "/lr.npy", "--ids-out", out + "/lri.npy"], [out + "/lr.npy", out + "/lri.npy"]),
                 (["labels", "list", path, "--format", "json"], []), (["labels", "list", path], []),
                 (["projector", "list", path, "--format", "json"], []), (["projector", "show", path, "tight", "--format", "json"], []),
                 (["projector", "show", path, "wide"], []),
                 (["labels", "show", path, "teacher", "--format", "json"], []), (["labels", "show", path, "human@1"], []),
                 (["labels", "diff", path, "teacher@1", "teacher@2", "--format", "json", "--ids-out", out + "/d.npy"], [out + "/d.npy"]),
                 (["labels", "diff", path, "teacher", "human"], []),
                 (["labels", "agree", path, "teacher", "human", "open", "--format", "json"], []),
                 (["labels", "agree", path, "teacher@1", "teacher@2", "--where", "id > 5"], []),
                 (["labels", "issues", path, "--given", "human", "--probs", "teacher", "--format", "json"], []),
                 (["labels", "issues", path, "--given", "human", "--probs", "open", "--filter", "both"], []),
                 (["heads", "list", path], []),
                 (["projector", "check", path, "tight", "--format", "json"], []), (["projector", "check", path, "wide"], [])]
        return list
    }

    @Test("every corpus-reading command prints and writes what it does on the store", arguments: [(SplitRule.hash, 3), (SplitRule.range, 4)])
    func corpusEqualsStore(rule: SplitRule, count: Int) throws {
        let dir = TemporaryDirectory("corpus-reads")
        try ShardTests.scenarioStore(at: dir.file("store")).close()
        _ = try CorpusManifest.split(store: dir.file("store"), into: dir.file("corpus"), shards: count, rule: rule, clearance: .all, agent: "test")
        try NumPyArray.write([0.5, -0.2, 0.1, 0.3, -0.4, 0.6, 0.2, -0.1, 0.1, 0.1, 0.1, 0.1] as [Float], shape: [3, 4], to: dir.file("q.npy"))
        try FileManager.default.createDirectory(atPath: dir.file("out"), withIntermediateDirectories: true)
        for clearance in ["all", "public", "secrecy=pii"] {
            for (a, b) in zip(Self.commands(dir.file("corpus"), out: dir.file("out"), query: dir.file("q.npy")),
                              Self.commands(dir.file("store"), out: dir.file("out"), query: dir.file("q.npy"))) {
                let fromCorpus = try Self.observe(a.arguments + ["--clearance", clearance], files: a.files)
                let fromStore = try Self.observe(b.arguments + ["--clearance", clearance], files: b.files)
                #expect(fromCorpus == fromStore, "\(clearance): \(a.arguments.prefix(3).joined(separator: " "))\ncorpus: \(fromCorpus.prefix(800))\nstore: \(fromStore.prefix(800))")
                #expect(clearance != "all" || fromStore.hasPrefix("exit 0") || a.arguments[0] == "get", "\(b.arguments.joined(separator: " ")): \(fromStore.prefix(300))")
            }
            let info = try runCLI(["info", dir.file("corpus"), "--format", "json", "--clearance", clearance])
            let single = try runCLI(["info", dir.file("store"), "--format", "json", "--clearance", clearance])
            let (a, b) = (try JSONValue.parse(info.stdout), try JSONValue.parse(single.stdout))
            #expect(a["count"] == b["count"] && a["classes"] == b["classes"] && a["tags"] == b["tags"] && a["shards"]?.arrayValue?.count == count)
        }
        let verify = try runCLI(["verify", dir.file("corpus"), "--clearance", "all"])
        #expect(verify.status == 0, "\(verify.stdout)\(verify.stderr)")
    }

    /// Where two JSON documents differ: paths, each with both values (short).
    static func differences(_ a: JSONValue, _ b: JSONValue, at path: String = "") -> [String] {
        switch (a, b) {
        case (.object(let x), .object(let y)):
            return Set(x.keys).union(y.keys).sorted().flatMap { key in differences(x[key] ?? .null, y[key] ?? .null, at: path + "." + key) }
        case (.array(let x), .array(let y)) where x.count == y.count:
            return zip(x, y).enumerated().flatMap { differences($0.element.0, $0.element.1, at: path + "[\($0.offset)]") }
        default:
            return a == b ? [] : ["\(path): \(a.serialized().prefix(80)) vs \(b.serialized().prefix(80))"]
        }
    }

    @Test("the corpus card of a corpus equals the store's but for provenance (shard 0's log) and bytes on disk")
    func cardEqualsStore() throws {
        let dir = TemporaryDirectory("corpus-card")
        try CorpusImportTests.setUp(dir)
        // A corpus-level import first, so the label sources' versions are combined over the shards.
        for (a, b) in zip(CorpusImportTests.importArguments(dir.file("corpus"), dir), CorpusImportTests.importArguments(dir.file("store"), dir)) {
            #expect(try runCLI(a).status == 0 && runCLI(b).status == 0)
        }
        /// The card as JSON without what a corpus shows of itself.
        func card(_ path: String, _ clearance: String) throws -> JSONValue {
            let result = try runCLI(["card", path, "--format", "json", "--clearance", clearance, "--out", dir.file("out/card.html")])
            #expect(result.status == 0, "\(result.stderr)")
            guard case .object(var document) = try JSONValue.parse(result.stdout), case .object(var composition)? = document["composition"] else {
                Issue.record("no card: \(result.stdout.prefix(300))"); return .null
            }
            composition["bytes_on_disk"] = nil
            document["composition"] = .object(composition)
            document["provenance"] = nil
            return .object(document)
        }
        for clearance in ["all", "public", "secrecy=pii"] {
            let fromCorpus = try card(dir.file("corpus"), clearance), fromStore = try card(dir.file("store"), clearance)
            // The two imports ran at different times: their versions' times are all that may differ.
            let differences = Self.differences(fromCorpus, fromStore).filter { !$0.contains(".time_ms:") }
            #expect(differences.isEmpty, "\(clearance): differs at \(differences.prefix(8))")
        }
        let card = try JSONValue.parse(try runCLI(["card", dir.file("corpus"), "--format", "json", "--clearance", "all"]).stdout)
        #expect(card["provenance"]?["verifies"] == .bool(true), "\(card["provenance"]?.serialized() ?? "none")")
    }

    @Test("a corpus with a damaged manifest, a misrouted sample or a changed schema is refused or reported; store-only commands say so")
    func corpusDamage() throws {
        let dir = TemporaryDirectory("corpus-damage")
        try ShardTests.scenarioStore(at: dir.file("store")).close()
        let manifest = try CorpusManifest.split(store: dir.file("store"), into: dir.file("corpus"), shards: 2, rule: .hash, clearance: .all, agent: "test")
        // A store-only command names the commands that read a corpus.
        let list = try runCLI(["labels", "drop", dir.file("corpus"), "teacher@1", "--clearance", "all"])
        #expect(list.status == 2 && list.stderr.contains("sharded corpus"), "\(list.stderr)")
        // A sample written into the wrong shard behind the corpus's back: verify reports it.
        let misrouted = (100...200).map(UInt64.init).first { manifest.shard(of: $0) == 1 }!
        let shard = try Store(opening: dir.file("corpus/" + manifest.shards[0]))
        try shard.write(clearance: .all) { tx in try tx.put(Sample(id: misrouted, embedding: [1, 2, 3, 4])) }
        shard.close()
        let verify = try runCLI(["verify", dir.file("corpus"), "--clearance", "all"])
        #expect(verify.status == 1 && verify.stdout.contains("\(misrouted)") && verify.stdout.contains("routing rule"), "\(verify.stdout)")
        // A shard's log cut short behind the manifest's back: --verify-log fails for that shard.
        let intact = try runCLI(["audit", dir.file("corpus"), "--verify-log", "--clearance", "all"])
        #expect(intact.status == 0, "\(intact.stdout)")
        let cut = try Store(opening: dir.file("corpus/" + manifest.shards[1]))
        try cut.write(clearance: .all) { tx in _ = try tx.delete(.provenance, key: try tx.lastKey(.provenance)!) }
        cut.close()
        let truncated = try runCLI(["audit", dir.file("corpus"), "--verify-log", "--clearance", "all"])
        #expect(truncated.status == 1 && truncated.stdout.contains("\(manifest.shards[1]): the manifest's head"), "\(truncated.stdout)")
        // A shard replaced by a store of another schema: the corpus does not open (exit 3).
        try FileManager.default.removeItem(atPath: dir.file("corpus/" + manifest.shards[1]))
        try Store.create(at: dir.file("corpus/" + manifest.shards[1]), schema: Schema(dimension: 4, classes: ["cat", "dog", "fish"])).close()
        let changed = try runCLI(["scan", dir.file("corpus")])
        #expect(changed.status == 3 && changed.stderr.contains("schema differs"), "\(changed.stderr)")
        // One changed byte of the manifest: every command refuses the corpus (exit 3).
        var bytes = [UInt8](FileManager.default.contents(atPath: dir.file("corpus/corpus.json"))!)
        bytes[bytes.count / 2] ^= 0x01
        try Data(bytes).write(to: URL(fileURLWithPath: dir.file("corpus/corpus.json")))
        for arguments in [["scan", dir.file("corpus")], ["get", dir.file("corpus"), "1"], ["info", dir.file("corpus")]] {
            let result = try runCLI(arguments)
            #expect(result.status == 3 && result.stderr.contains("manifest"), "\(arguments): \(result.stderr)")
        }
    }
}

/// Label imports into a sharded corpus: routed by id, one version for all shards, visible when
/// the manifest records it.
@Suite("Corpus label imports")
struct CorpusImportTests {
    /// A store and the corpus split from it, with a query file and import files for a new
    /// version of `teacher` over ids 1…40 (deleted ids left out) and a new hard set.
    static func setUp(_ dir: TemporaryDirectory, rule: SplitRule = .hash, shards: Int = 3) throws {
        try ShardTests.scenarioStore(at: dir.file("store")).close()
        _ = try CorpusManifest.split(store: dir.file("store"), into: dir.file("corpus"), shards: shards, rule: rule, clearance: .all, agent: "test")
        try NumPyArray.write([0.5, -0.2, 0.1, 0.3, -0.4, 0.6, 0.2, -0.1] as [Float], shape: [2, 4], to: dir.file("q.npy"))
        let ids = (1...40).map(UInt64.init).filter { ![2, 7, 11, 30].contains($0) }
        try NumPyArray.write(ids, to: dir.file("ids.npy"))
        var rng = SeededGenerator(seed: 99)
        let soft: [Float] = ids.flatMap { _ -> [Float] in
            let a = Float.random(in: 0.05...1, using: &rng), b = Float.random(in: 0.05...1, using: &rng)
            return [a / (a + b + 1), b / (a + b + 1), 1 / (a + b + 1)]
        }
        try NumPyArray.write(soft, shape: [ids.count, 3], to: dir.file("soft.npy"))
        try NumPyArray.write(ids.map { $0 % 3 }, to: dir.file("hard.npy"))
        try FileManager.default.createDirectory(atPath: dir.file("out"), withIntermediateDirectories: true)
    }

    static func importArguments(_ path: String, _ dir: TemporaryDirectory) -> [[String]] {
        [["labels", "import", path, "teacher", "--soft", dir.file("soft.npy"), "--ids", dir.file("ids.npy"), "--agent", "t3", "--secrecy", "licensed:getty", "--clearance", "all"],
         ["labels", "import", path, "fresh", "--hard", dir.file("hard.npy"), "--ids", dir.file("ids.npy"), "--agent", "h2", "--clearance", "all"]]
    }

    /// Runs ``importArguments(_:_:)``'s imports into the corpus and the store; each must succeed.
    static func importIntoBoth(_ dir: TemporaryDirectory) throws {
        for (a, b) in zip(importArguments(dir.file("corpus"), dir), importArguments(dir.file("store"), dir)) {
            let corpus = try runCLI(a), store = try runCLI(b)
            #expect(corpus.status == 0 && store.status == 0, "\(corpus.stderr)\(store.stderr)")
        }
    }

    /// Everything the read commands show of the corpus and of the store, under each clearance.
    ///
    /// With `renumbered`, projector versions' `sequence` is left out: merged shards number their
    /// embedding sequences afresh (each store counts its own; only their order means anything).
    static func sameReads(_ dir: TemporaryDirectory, sets: [String], renumbered: Bool = false) throws {
        for clearance in ["all", "public"] {
            // A sample's audit shows its shard's own log after a corpus import (record numbers, the
            // shard's part of the rows): it is compared with the store's only straight after a split.
            var commands = CorpusReadTests.commands(dir.file("corpus"), out: dir.file("out"), query: dir.file("q.npy")).filter { $0.arguments[0] != "audit" }
            var single = CorpusReadTests.commands(dir.file("store"), out: dir.file("out"), query: dir.file("q.npy")).filter { $0.arguments[0] != "audit" }
            for set in sets {
                for (list, path) in [(0, dir.file("corpus")), (1, dir.file("store"))] {
                    let extra: [(arguments: [String], files: [String])] = [
                        (["labels", "show", path, set, "--format", "json"], []),
                        (["query", path, "label(\(set)).top1 = 'dog' or label(\(set)).confidence > 0.6", "--labels", set, "--format", "json"], []),
                        (["export", path, "--labels-out", "\(set)=\(dir.file("out/l.npy"))", "--ids-out", dir.file("out/li.npy")], [dir.file("out/l.npy"), dir.file("out/li.npy")]),
                    ] + [1, 3, 4, 12, 25, 31, 40].map { (["get", path, "\($0)", "--format", "json", "--labels", set], []) }
                    if list == 0 { commands += extra } else { single += extra }
                }
            }
            // The two imports ran at different times, and each shard numbers its own log (it has a
            // `shard` record the store lacks): the records' times and numbers are all that may differ.
            func untimed(_ text: String) -> String {
                Self.meanKLRounded(text.replacingOccurrences(of: #""time_ms":[0-9]+"#, with: "", options: .regularExpression)
                    .replacingOccurrences(of: #""record":[0-9]+"#, with: "", options: .regularExpression)
                    .replacingOccurrences(of: renumbered ? #""sequence":[0-9]+"# : "^$", with: "", options: .regularExpression))
            }
            for (a, b) in zip(commands, single) {
                let fromCorpus = untimed(try CorpusReadTests.observe(a.arguments + ["--clearance", clearance], files: a.files))
                let fromStore = untimed(try CorpusReadTests.observe(b.arguments + ["--clearance", clearance], files: b.files))
                #expect(fromCorpus == fromStore, "\(clearance): \(a.arguments.prefix(4).joined(separator: " "))\ncorpus: \(fromCorpus.prefix(600))\nstore: \(fromStore.prefix(600))")
            }
        }
    }

    /// `text` with every `"mean_kl"` rounded to 12 significant digits: a corpus's version adds its
    /// shards' mean KLs weighted by their rows, which can differ from one store's mean in the last bit.
    static func meanKLRounded(_ text: String) -> String {
        var out = text
        let pattern = try! NSRegularExpression(pattern: #""mean_kl":([-+0-9.eE]+)"#)
        for match in pattern.matches(in: text, range: NSRange(text.startIndex..., in: text)).reversed() {
            guard let range = Range(match.range(at: 1), in: out), let value = Double(out[range]) else { continue }
            out.replaceSubrange(range, with: String(format: "%.12g", value))
        }
        return out
    }

    @Test("an import routes each row to its shard under one version: every read equals the store's after the same import")
    func routedImportEqualsStore() throws {
        let dir = TemporaryDirectory("corpus-import")
        try Self.setUp(dir)
        for (a, b) in zip(Self.importArguments(dir.file("corpus"), dir), Self.importArguments(dir.file("store"), dir)) {
            let corpus = try runCLI(a), store = try runCLI(b)
            #expect(corpus.status == 0 && store.status == 0, "\(corpus.stderr)\(store.stderr)")
            #expect(corpus.stdout.contains("version \(a[3] == "teacher" ? 3 : 1)"), "\(corpus.stdout)")
        }
        let manifest = try CorpusManifest.read(from: dir.file("corpus"))
        #expect(manifest.labelSets["teacher"] == 3 && manifest.labelSets["fresh"] == 1 && manifest.generation == 3)
        try Self.sameReads(dir, sets: ["teacher", "fresh"])
        let verify = try runCLI(["verify", dir.file("corpus"), "--clearance", "all"])
        #expect(verify.status == 0, "\(verify.stdout)")
    }

    @Test("a writer killed between shards leaves the corpus reading as before; the next import replaces the orphaned rows")
    func killedBetweenShards() throws {
        let dir = TemporaryDirectory("corpus-kill")
        try Self.setUp(dir)
        let before = try CorpusReadTests.observe(["query", dir.file("corpus"), "id >= 0", "--labels", "teacher", "--format", "json", "--clearance", "all"], files: [])
        for killAfter in [0, 1] {
            let killed = try runCLI(Self.importArguments(dir.file("corpus"), dir)[0], environment: ["LABELDB_TEST_KILL_AFTER_SHARD": "\(killAfter)"])
            #expect(killed.status == SIGKILL, "exit \(killed.status): \(killed.stderr)")
            // The shards that committed hold version 3; the manifest still says 2, and so do reads.
            let manifest = try CorpusManifest.read(from: dir.file("corpus"))
            #expect(manifest.labelSets["teacher"] == 2 && manifest.generation == 1)
            let shard = try Store(opening: dir.file("corpus/" + manifest.shards[0]), options: Store.Options(readOnly: true))
            #expect(try shard.read(clearance: .all) { try $0.labelSet(named: "teacher")?.latest } == 3)
            shard.close()
            let after = try CorpusReadTests.observe(["query", dir.file("corpus"), "id >= 0", "--labels", "teacher", "--format", "json", "--clearance", "all"], files: [])
            #expect(after == before)
            let get = try runCLI(["get", dir.file("corpus"), "1", "--labels", "teacher@3", "--clearance", "all"])
            #expect(get.status == 1 && get.stderr.contains("version"), "\(get.stderr)")
            // The shards that committed have a log record the manifest does not vouch for: reported, not failed.
            let log = try runCLI(["audit", dir.file("corpus"), "--verify-log", "--clearance", "all"])
            #expect(log.status == 0 && log.stdout.contains("after the manifest's generation"), "\(log.stdout)")
        }
        // The next import takes version 3 in every shard, replacing the orphaned rows.
        try CorpusImportTests.importIntoBoth(dir)
        #expect(try CorpusManifest.read(from: dir.file("corpus")).labelSets["teacher"] == 3)
        try Self.sameReads(dir, sets: ["teacher", "fresh"])
        let log = try runCLI(["audit", dir.file("corpus"), "--verify-log", "--format", "json", "--clearance", "all"])
        let report = try JSONValue.parse(log.stdout)
        #expect(log.status == 0 && report["ok"] == .bool(true), "\(log.stdout)")
        let verify = try runCLI(["verify", dir.file("corpus"), "--clearance", "all"])
        #expect(verify.status == 0, "\(verify.stdout)")
    }

    @Test("labels consensus on a corpus writes what the store's writes: each method, weights, a reference set and a reference tag")
    func consensusEqualsStore() throws {
        let dir = TemporaryDirectory("corpus-consensus")
        try Self.setUp(dir)
        let variants: [[String]] = [
            ["--from", "teacher,human", "--method", "mean", "--weights", "human=2"],
            ["--from", "teacher@1,teacher@2,human", "--method", "vote", "--reference", "human"],
            ["--from", "teacher@1,teacher@2,human", "--method", "dawid-skene"],
            ["--from", "teacher,human", "--method", "mean", "--reference-tag", "reviewed", "--reference-set", "human"],
        ]
        for variant in variants {
            var outputs: [String] = []
            for path in [dir.file("corpus"), dir.file("store")] {
                let result = try runCLI(["labels", "consensus", path, "cons"] + variant + ["--clearance", "all", "--format", "json"])
                #expect(result.status == 0, "\(variant): \(result.stderr)")
                outputs.append(Self.meanKLRounded(result.stdout.replacingOccurrences(of: #""time_ms":[0-9]+"#, with: "", options: .regularExpression)))
            }
            #expect(outputs[0] == outputs[1], "\(variant)\ncorpus: \(outputs[0])\nstore: \(outputs[1])")
        }
        #expect(try CorpusManifest.read(from: dir.file("corpus")).labelSets["cons"] == variants.count)
        try Self.sameReads(dir, sets: ["cons"])
        // A consensus refused once every shard's rows were read (a reference tag no sample
        // carries as integrity: no reference sample) writes nothing in any shard.
        let manifest = try CorpusManifest.read(from: dir.file("corpus")), before = CorpusSessionTests.dataFiles(dir, manifest)
        let refused = try runCLI(["labels", "consensus", dir.file("corpus"), "cons", "--from", "teacher,human", "--reference-tag", "licensed:getty",
                                  "--reference-set", "human", "--clearance", "all"])
        #expect(refused.status == 2 && refused.stderr.contains("labels no sample") && CorpusSessionTests.dataFiles(dir, manifest) == before, "\(refused.stderr)")
    }

    @Test("a tag only one shard's rows carry is registered in every shard; a clearance naming it reads as on the store")
    func tagRegistryIsTheCorpus() throws {
        let dir = TemporaryDirectory("corpus-registry")
        try Self.setUp(dir)
        let manifest = try CorpusManifest.read(from: dir.file("corpus"))
        // One new sample, tainted with a tag no store has yet, in whichever shard its id routes to.
        let samples = randomSamples(count: 1, dimension: 4, seed: 5, ids: [500])
        try writeImportFiles(dir, prefix: "rare-", samples: samples, dimension: 4)
        let line = try String(contentsOfFile: dir.file("rare-meta.jsonl"), encoding: .utf8).trimmingCharacters(in: .newlines)
        try (String(line.dropLast()) + #","taint":{"secrecy":["rare"]}}"# + "\n").write(toFile: dir.file("rare-meta.jsonl"), atomically: false, encoding: .utf8)
        for path in [dir.file("corpus"), dir.file("store")] {
            let result = try runCLI(["import", path, "--embeddings", dir.file("rare-emb.npy"), "--ids", dir.file("rare-ids.npy"),
                                     "--meta", dir.file("rare-meta.jsonl"), "--clearance", "all", "--quiet"])
            #expect(result.status == 0, "\(result.stderr)")
        }
        for name in manifest.shards {
            let shard = try Store(opening: dir.file("corpus/" + name), options: Store.Options(readOnly: true))
            #expect(try shard.read(clearance: .all) { try $0.registeredTags() }.contains("rare"), "\(name)")
            shard.close()
        }
        let query = { (path: String) in try CorpusReadTests.observe(["query", path, "id >= 0", "--format", "json", "--clearance", "secrecy=rare"], files: []) }
        let fromCorpus = try query(dir.file("corpus")), fromStore = try query(dir.file("store"))
        #expect(fromCorpus.hasPrefix("exit 0") && fromCorpus.contains("\"id\":500") && fromCorpus == fromStore, "\(fromCorpus.prefix(300))")
        // A shard that registered a tag behind the corpus's back: a clearance naming it is understood.
        let shard = try Store(opening: dir.file("corpus/" + manifest.shards[2]))
        try shard.write(clearance: .all) { tx in try tx.registerTags(["late"]) }
        shard.close()
        #expect(try runCLI(["scan", dir.file("corpus"), "--clearance", "secrecy=late"]).status == 0)
        #expect(try runCLI(["scan", dir.file("corpus"), "--clearance", "secrecy=never"]).status == 2)
        let info = try JSONValue.parse(try runCLI(["info", dir.file("corpus"), "--format", "json", "--clearance", "all"]).stdout)
        #expect(info["tags"]?.arrayValue?.contains(.string("late")) == true)
        // The next writer spreads it to every shard, and registering logs nothing: the logs still
        // end where the manifest says.
        try CorpusWriter(opening: dir.file("corpus")).close()
        for name in manifest.shards {
            let shard = try Store(opening: dir.file("corpus/" + name), options: Store.Options(readOnly: true))
            #expect(try shard.read(clearance: .all) { try $0.registeredTags() }.contains("late"), "\(name)")
            shard.close()
        }
        let log = try runCLI(["audit", dir.file("corpus"), "--verify-log", "--clearance", "all"])
        #expect(log.status == 0 && !log.stdout.contains("after the manifest"), "\(log.stdout)")
    }

    @Test("a write into a corpus's shard on its own is refused and writes nothing; reading it works")
    func directShardWritesAreRefused() throws {
        let dir = TemporaryDirectory("corpus-direct")
        try Self.setUp(dir)
        let manifest = try CorpusManifest.read(from: dir.file("corpus"))
        let files = CorpusSessionTests.dataFiles(dir, manifest)
        let shard = dir.file("corpus/" + manifest.shards[1])
        for arguments in [["labels", "import", shard, "teacher", "--soft", dir.file("soft.npy"), "--ids", dir.file("ids.npy"), "--clearance", "all"],
                          ["delete", shard, "--ids", dir.file("ids.npy"), "--missing-ok", "--clearance", "all"],
                          ["labels", "drop", shard, "teacher@1", "--clearance", "all"]] {
            let result = try runCLI(arguments)
            #expect(result.status == 2 && result.stderr.contains("is shard 1 of the corpus"), "\(arguments[0]): \(result.stderr)")
        }
        #expect(CorpusSessionTests.dataFiles(dir, manifest) == files)
        #expect(try runCLI(["scan", shard, "--clearance", "all"]).status == 0)
        // A store beside a corpus but not one of its shards is a store like any other.
        try FileManager.default.copyItem(atPath: shard, toPath: dir.file("corpus-copy"))
        let copy = try runCLI(["delete", dir.file("corpus-copy"), "--ids", dir.file("ids.npy"), "--missing-ok", "--clearance", "all"])
        #expect(copy.status == 0, "\(copy.stderr)")
    }

    @Test("provenance export of a corpus holds each shard's log as a bundle, equal to the shard's own export, with the manifest's state")
    func provenanceExport() throws {
        let dir = TemporaryDirectory("corpus-prov")
        try Self.setUp(dir)
        #expect(try runCLI(Self.importArguments(dir.file("corpus"), dir)[0]).status == 0)
        let manifest = try CorpusManifest.read(from: dir.file("corpus"))
        for clearance in ["all", "public"] {
            let result = try runCLI(["provenance", "export", dir.file("corpus"), "--out", dir.file("out/prov.json"), "--clearance", clearance])
            #expect(result.status == 0 && result.stdout.contains("of 3 shards"), "\(result.stdout)\(result.stderr)")
            let document = try JSONValue.parse(String(contentsOfFile: dir.file("out/prov.json"), encoding: .utf8))
            #expect(document["hadMember"]?.objectValue?.count == 3)
            for (index, name) in manifest.shards.enumerated() {
                let own = try runCLI(["provenance", "export", dir.file("corpus/" + name), "--out", dir.file("out/shard.json"), "--clearance", clearance])
                #expect(own.status == 0, "\(own.stderr)")
                guard case .object(var expected) = try JSONValue.parse(String(contentsOfFile: dir.file("out/shard.json"), encoding: .utf8)) else { continue }
                expected.removeValue(forKey: "prefix")
                #expect(document["bundle"]?["labeldb:shard/\(name)"] == .object(expected), "\(name)")
                #expect(document["entity"]?["labeldb:shard/\(name)"]?["labeldb:committed_head"] == .string(manifest.shardStates[index].head))
            }
        }
    }

    @Test("labels issues --write-set writes the same suggestions into a corpus as into the store")
    func issuesWrittenIntoCorpus() throws {
        let dir = TemporaryDirectory("corpus-issues-write")
        try Self.setUp(dir)
        func write(_ path: String) throws -> CLIResult {
            try runCLI(["labels", "issues", path, "--given", "human", "--probs", "teacher", "--filter", "both", "--write-set", "review",
                        "--agent", "reviewer", "--clearance", "all"])
        }
        let corpus = try write(dir.file("corpus")), store = try write(dir.file("store"))
        #expect(corpus.status == 0 && corpus.stdout == store.stdout && corpus.stdout.contains("wrote label set review version 1"), "\(corpus.stdout)\(corpus.stderr)")
        #expect(try CorpusManifest.read(from: dir.file("corpus")).labelSets["review"] == 1)
        try Self.sameReads(dir, sets: ["review"])
        // A --where that reads labels is refused, and nothing is written.
        let refused = try runCLI(["labels", "issues", dir.file("corpus"), "--given", "human", "--probs", "teacher", "--write-set", "review",
                                  "--where", "label(teacher).confidence > 0.1", "--clearance", "all"])
        #expect(refused.status == 2 && refused.stderr.contains("--where"), "\(refused.stderr)")
        #expect(try CorpusManifest.read(from: dir.file("corpus")).labelSets["review"] == 1)
    }

    @Test("a sample import routes each row to its shard: the corpus reads as the store after the same import; bad rows write nothing")
    func routedSampleImport() throws {
        let dir = TemporaryDirectory("corpus-samples")
        try Self.setUp(dir)
        // New samples (one replacing sample 1), some tainted through their metadata line.
        var samples = randomSamples(count: 30, dimension: 4, seed: 77, ids: (100..<130).map(UInt64.init))
        samples[0] = Sample(id: 1, embedding: [0.5, 0.5, 0.5, 0.5], metadata: ["n": .int(1), "src": .string("web")])
        try writeImportFiles(dir, prefix: "new-", samples: samples, dimension: 4)
        var lines = try String(contentsOfFile: dir.file("new-meta.jsonl"), encoding: .utf8).split(separator: "\n").map(String.init)
        for i in [3, 7] { lines[i] = String(lines[i].dropLast()) + #","taint":{"secrecy":["pii"]}}"# }
        try (lines.joined(separator: "\n") + "\n").write(toFile: dir.file("new-meta.jsonl"), atomically: false, encoding: .utf8)
        let manifest = try CorpusManifest.read(from: dir.file("corpus"))
        func files() -> [Data] { manifest.shards.map { fileBytes(dir.file("corpus/\($0)/data.mdb")) } + [fileBytes(dir.file("corpus/corpus.json"))] }
        let arguments = ["--embeddings", dir.file("new-emb.npy"), "--ids", dir.file("new-ids.npy"), "--meta", dir.file("new-meta.jsonl"),
                         "--payloads", dir.file("new-payloads.jsonl"), "--replace", "--clearance", "all", "--quiet"]
        // Without --replace, sample 1 exists: refused in the check, nothing written anywhere.
        let before = files()
        let refused = try runCLI(["import", dir.file("corpus")] + arguments.filter { $0 != "--replace" })
        #expect(refused.status != 0 && files() == before, "\(refused.stderr)")
        for path in [dir.file("corpus"), dir.file("store")] {
            let result = try runCLI(["import", path] + arguments)
            #expect(result.status == 0 && result.stdout.contains("29 new, 1 replaced"), "\(result.stdout)\(result.stderr)")
        }
        #expect(try CorpusManifest.read(from: dir.file("corpus")).generation == 2)
        try Self.sameReads(dir, sets: ["teacher"])
        let verify = try runCLI(["verify", dir.file("corpus"), "--clearance", "all"])
        #expect(verify.status == 0, "\(verify.stdout)")
        let log = try runCLI(["audit", dir.file("corpus"), "--verify-log", "--clearance", "all"])
        #expect(log.status == 0 && !log.stdout.contains("after the manifest"), "\(log.stdout)")
    }

    @Test("a replaced sample given a secrecy tag restricts the projectors fitted on it in every shard, as in the store")
    func replacedSampleRestrictsEveryShard() throws {
        let dir = TemporaryDirectory("corpus-restrict")
        try Self.setUp(dir)
        let samples = [Sample(id: 4, embedding: [0.1, 0.2, 0.3, 0.4], metadata: ["n": .int(4), "src": .string("web")])]
        try writeImportFiles(dir, prefix: "r-", samples: samples, dimension: 4)
        try #"{"n":4,"src":"web","taint":{"secrecy":["teamB"]}}"#.appending("\n").write(toFile: dir.file("r-meta.jsonl"), atomically: false, encoding: .utf8)
        for path in [dir.file("corpus"), dir.file("store")] {
            let result = try runCLI(["import", path, "--embeddings", dir.file("r-emb.npy"), "--ids", dir.file("r-ids.npy"), "--meta", dir.file("r-meta.jsonl"),
                                     "--replace", "--clearance", "all", "--quiet"])
            #expect(result.status == 0, "\(result.stderr)")
        }
        let manifest = try CorpusManifest.read(from: dir.file("corpus"))
        for name in manifest.shards {
            let shard = try Store(opening: dir.file("corpus/" + name), options: Store.Options(readOnly: true))
            defer { shard.close() }
            let taint = try shard.read(clearance: .all) { try $0.projector(named: "wide")?.versions[0].taintLabel }
            guard case .tags(let secrecy) = taint?.secrecy else { Issue.record("\(name): no wide@1"); continue }
            #expect(secrecy.contains("teamB"), "\(name): \(secrecy)")
        }
        try Self.sameReads(dir, sets: ["teacher"])
        let log = try runCLI(["audit", dir.file("corpus"), "--verify-log", "--clearance", "all"])
        #expect(log.status == 0, "\(log.stdout)")
    }

    @Test("a sample import interrupted between shards leaves the committed parts visible; the same import with replace completes it")
    func interruptedSampleImport() throws {
        let dir = TemporaryDirectory("corpus-samples-crash")
        try Self.setUp(dir)
        let batch = SampleBatch(randomSamples(count: 40, dimension: 4, seed: 5, ids: (200..<240).map(UInt64.init)))
        let manifest = try CorpusManifest.read(from: dir.file("corpus"))
        struct Killed: Error {}
        let writer = try CorpusWriter(opening: dir.file("corpus"))
        #expect(throws: Killed.self) { try writer.importSamples(batch, mode: .insert, clearance: .all) { if $0 == 0 { throw Killed() } } }
        writer.close()
        #expect(try CorpusManifest.read(from: dir.file("corpus")).generation == manifest.generation)
        let first = batch.ids.filter { manifest.shard(of: $0) == 0 }
        let scanned = try runCLI(["scan", dir.file("corpus"), "--from", "200", "--clearance", "all"])
        #expect(scanned.stdout.split(separator: "\n").map { UInt64($0)! } == first.sorted())
        let log = try runCLI(["audit", dir.file("corpus"), "--verify-log", "--clearance", "all"])
        #expect(log.status == 0 && log.stdout.contains("\(manifest.shards[0]): ok") && log.stdout.contains("after the manifest's generation"), "\(log.stdout)")
        // The same import again: refused as it was (ids exist) without replace, completed with it.
        let again = try CorpusWriter(opening: dir.file("corpus"))
        #expect(throws: StoreError.self) { try again.importSamples(batch, mode: .insert, clearance: .all) }
        let summary = try again.importSamples(batch, mode: .replace, clearance: .all)
        again.close()
        #expect(summary.inserted == 40 - first.count && summary.replaced == first.count)
        let all = try runCLI(["scan", dir.file("corpus"), "--from", "200", "--clearance", "all"])
        #expect(all.stdout.split(separator: "\n").map { UInt64($0)! } == batch.ids)
        #expect(try runCLI(["verify", dir.file("corpus"), "--clearance", "all"]).status == 0)
        #expect(try runCLI(["audit", dir.file("corpus"), "--verify-log", "--clearance", "all"]).stdout.contains("after the manifest") == false)
    }

    @Test("init --shards makes an empty corpus that imports and reads as a store does")
    func emptyCorpusFilledByImports() throws {
        let dir = TemporaryDirectory("corpus-init")
        try "cat\ndog\nbird\n".write(toFile: dir.file("classes.txt"), atomically: false, encoding: .utf8)
        let samples = randomSamples(count: 50, dimension: 4, seed: 3, ids: (1...50).map { UInt64($0) * 1_000_003 })
        try writeImportFiles(dir, samples: samples, dimension: 4)
        for (path, extra) in [(dir.file("corpus"), ["--shards", "4"]), (dir.file("store"), [])] {
            let created = try runCLI(["init", path, "--dim", "4", "--classes", dir.file("classes.txt")] + extra)
            #expect(created.status == 0, "\(created.stderr)")
            let imported = try runCLI(["import", path, "--embeddings", dir.file("emb.npy"), "--ids", dir.file("ids.npy"), "--meta", dir.file("meta.jsonl"),
                                       "--payloads", dir.file("payloads.jsonl"), "--quiet"])
            #expect(imported.status == 0 && imported.stdout.contains("50 new"), "\(imported.stderr)")
        }
        let manifest = try CorpusManifest.read(from: dir.file("corpus"))
        #expect(manifest.shards.count == 4 && manifest.routing == .hash && manifest.generation == 2)
        for arguments in [["scan", "--format", "json"], ["query", "meta.source = 'web'", "--format", "json"], ["get", "\(samples[7].id)", "--format", "json"]] {
            let a = try runCLI([arguments[0], dir.file("corpus")] + arguments.dropFirst()), b = try runCLI([arguments[0], dir.file("store")] + arguments.dropFirst())
            // The two imports ran at different times.
            func untimed(_ text: String) -> String { text.replacingOccurrences(of: #""time_ms":[0-9]+"#, with: "", options: .regularExpression) }
            #expect(a.status == 0 && untimed(a.stdout) == untimed(b.stdout), "\(arguments): \(a.stdout.prefix(300)) \(b.stdout.prefix(300))")
        }
        #expect(try runCLI(["verify", dir.file("corpus"), "--clearance", "all"]).status == 0)
    }

    @Test("an interrupted first soft import leaves no codec behind: the retry with another codec agrees in every shard")
    func interruptedImportLeavesNoCodec() throws {
        let dir = TemporaryDirectory("corpus-codec")
        try Self.setUp(dir)
        let ids = (1...40).map(UInt64.init).filter { ![2, 7, 11, 30].contains($0) }
        let soft = [Float](repeating: 1.0 / 3, count: ids.count * 3)
        struct Killed: Error {}
        // `human` holds hard labels only; its first soft import (dense:f16) dies after shard 0.
        let writer = try CorpusWriter(opening: dir.file("corpus"))
        #expect(throws: Killed.self) {
            try writer.importLabels(.soft(soft), ids: ids, into: "human", agent: "t", clearance: .all) { if $0 == 0 { throw Killed() } }
        }
        writer.close()
        let manifest = try CorpusManifest.read(from: dir.file("corpus"))
        let top = TopKRows(k: 2, classes: ids.flatMap { _ in [0, 1] }, probabilities: ids.flatMap { _ in [Float(0.5), 0.25] })
        let retry = try CorpusWriter(opening: dir.file("corpus"))
        let parts = try retry.importLabels(.topK(top), ids: ids, into: "human", codec: .topKF16(2), agent: "t", clearance: .all)
        retry.close()
        #expect(parts.map(\.version) == [2, 2, 2])
        for name in manifest.shards {
            let shard = try Store(opening: dir.file("corpus/" + name), options: Store.Options(readOnly: true))
            #expect(try shard.read(clearance: .all) { try $0.labelSet(named: "human")?.codec } == .topKF16(2))
            shard.close()
        }
    }

    @Test("a bad import writes nothing in any shard; a second writer is refused while one holds the corpus")
    func badImportsAndOneWriter() throws {
        let dir = TemporaryDirectory("corpus-bad-import")
        try Self.setUp(dir)
        let manifest = try CorpusManifest.read(from: dir.file("corpus"))
        func files() -> [Data] { manifest.shards.map { fileBytes(dir.file("corpus/\($0)/data.mdb")) } + [fileBytes(dir.file("corpus/corpus.json"))] }
        let before = files()
        // An id no shard holds (row 5), a row that does not sum to 1, no --ids, a codec mismatch.
        var ids = (1...40).map(UInt64.init).filter { ![2, 7, 11, 30].contains($0) }
        ids[5] = 1_000
        try NumPyArray.write(ids, to: dir.file("bad-ids.npy"))
        try NumPyArray.write([Float](repeating: 0.5, count: 36 * 3), shape: [36, 3], to: dir.file("bad-soft.npy"))
        let attempts: [([String], Int32, String)] = [
            (["--soft", dir.file("soft.npy"), "--ids", dir.file("bad-ids.npy")], 2, "1000"),
            (["--soft", dir.file("bad-soft.npy"), "--ids", dir.file("ids.npy")], 2, "row 0"),
            (["--soft", dir.file("soft.npy")], 2, "--ids"),
            (["--soft", dir.file("soft.npy"), "--ids", dir.file("ids.npy"), "--codec", "topk:2:u8"], 2, "codec"),
        ]
        for (options, status, message) in attempts {
            let result = try runCLI(["labels", "import", dir.file("corpus"), "teacher"] + options + ["--clearance", "all"])
            #expect(result.status == status && result.stderr.contains(message), "\(options): exit \(result.status) \(result.stderr)")
            #expect(files() == before, "\(options) changed a file")
        }
        let writer = try CorpusWriter(opening: dir.file("corpus"))
        let busy = try runCLI(Self.importArguments(dir.file("corpus"), dir)[1])
        #expect(busy.status == 3 && busy.stderr.contains("another writer"), "\(busy.stderr)")
        #expect(throws: CorpusError.self) { try CorpusWriter(opening: dir.file("corpus")) }
        writer.close()
        #expect(try runCLI(Self.importArguments(dir.file("corpus"), dir)[1]).status == 0)
    }
}

/// Re-sharding a corpus (issue 16): each shard split further, never two merged; every read of the
/// new corpus equals the store's.
@Suite("Corpus re-sharding")
struct CorpusReshardTests {
    @Test("re-sharding by hash after routed imports and an interrupted one: every read equals the store's, and the leftovers are gone")
    func reshardByHash() throws {
        let dir = TemporaryDirectory("corpus-reshard")
        try CorpusImportTests.setUp(dir)
        try CorpusImportTests.importIntoBoth(dir)
        // A writer stopped after shard 0: its rows are not committed and must not survive the re-shard.
        let killed = try runCLI(CorpusImportTests.importArguments(dir.file("corpus"), dir)[1], environment: ["LABELDB_TEST_KILL_AFTER_SHARD": "0"])
        #expect(killed.status == SIGKILL)
        let before = try CorpusManifest.read(from: dir.file("corpus"))
        let result = try runCLI(["shard", dir.file("corpus"), dir.file("wide"), "--shards", "6", "--clearance", "all", "--format", "json"])
        #expect(result.status == 0, "\(result.stderr)")
        let after = try CorpusManifest.read(from: dir.file("wide"))
        #expect(after.shards.count == 6 && after.ruleName == "hash" && after.labelSets == before.labelSets && after.projectors == before.projectors)
        #expect(after.splitVersions == before.labelSets && after.generation == 1)
        for (index, name) in after.shards.enumerated() {
            let shard = try Store(opening: dir.file("wide/" + name), options: Store.Options(readOnly: true))
            // Shard j is cut from old shard j mod 3; none holds the interrupted version 2 of `fresh`.
            let ids = try shard.read(clearance: .all) { try $0.ids() }
            #expect(ids.allSatisfy { after.shard(of: $0) == index && before.shard(of: $0) == index % 3 })
            #expect(try shard.read(clearance: .all) { try $0.labelSet(named: "fresh")?.latest } == 1)
            shard.close()
        }
        try FileManager.default.removeItem(atPath: dir.file("corpus"))
        try FileManager.default.moveItem(atPath: dir.file("wide"), toPath: dir.file("corpus"))
        try CorpusImportTests.sameReads(dir, sets: ["teacher", "fresh"])
        let verify = try runCLI(["verify", dir.file("corpus"), "--clearance", "all"])
        #expect(verify.status == 0, "\(verify.stdout)")
        let log = try runCLI(["audit", dir.file("corpus"), "--verify-log", "--format", "json", "--clearance", "all"])
        let report = try JSONValue.parse(log.stdout)
        #expect(log.status == 0 && report["ok"] == .bool(true), "\(log.stdout)")
        // The re-sharded corpus takes imports as any corpus does, and still reads as the store.
        try CorpusImportTests.importIntoBoth(dir)
        try CorpusImportTests.sameReads(dir, sets: ["teacher", "fresh"])
    }

    @Test("re-sharding that merges shards (fewer, not a multiple, another rule): every read equals the store's, verify and the logs pass", arguments: [
        (SplitRule.hash, 3, SplitRule.hash, 2), (.hash, 3, .range, 4), (.range, 2, .range, 3), (.range, 3, .hash, 5),
    ])
    func reshardByMerging(from: SplitRule, count: Int, to: SplitRule, newCount: Int) throws {
        let dir = TemporaryDirectory("corpus-merge")
        try CorpusImportTests.setUp(dir, rule: from, shards: count)
        try CorpusImportTests.importIntoBoth(dir)
        // Uncommitted rows a writer left in shard 0 must not be copied into any merged shard.
        let killed = try runCLI(CorpusImportTests.importArguments(dir.file("corpus"), dir)[1], environment: ["LABELDB_TEST_KILL_AFTER_SHARD": "0"])
        #expect(killed.status == SIGKILL)
        let before = try CorpusManifest.read(from: dir.file("corpus"))
        let result = try runCLI(["shard", dir.file("corpus"), dir.file("merged"), "--shards", "\(newCount)", "--by", to.rawValue, "--clearance", "all"])
        #expect(result.status == 0, "\(result.stderr)")
        let after = try CorpusManifest.read(from: dir.file("merged"))
        #expect(after.shards.count == newCount && after.ruleName == to.rawValue && after.labelSets == before.labelSets && after.projectors == before.projectors)
        var mergedFrom: [Int] = []
        for (index, name) in after.shards.enumerated() {
            let shard = try Store(opening: dir.file("merged/" + name), options: Store.Options(readOnly: true))
            let ids = try shard.read(clearance: .all) { try $0.ids() }
            #expect(ids.allSatisfy { after.shard(of: $0) == index })
            #expect(try shard.read(clearance: .all) { try $0.labelSet(named: "fresh")?.latest } == 1)
            #expect(try ShardTests.slotsArePacked(shard))
            mergedFrom.append(Set(ids.map { before.shard(of: $0)! }).count)
            shard.close()
        }
        // Some new shard really holds samples of several old ones.
        #expect(mergedFrom.contains { $0 > 1 }, "\(mergedFrom)")
        try FileManager.default.removeItem(atPath: dir.file("corpus"))
        try FileManager.default.moveItem(atPath: dir.file("merged"), toPath: dir.file("corpus"))
        try CorpusImportTests.sameReads(dir, sets: ["teacher", "fresh"], renumbered: true)
        let verify = try runCLI(["verify", dir.file("corpus"), "--clearance", "all"])
        #expect(verify.status == 0, "\(verify.stdout)")
        let log = try runCLI(["audit", dir.file("corpus"), "--verify-log", "--format", "json", "--clearance", "all"])
        #expect(log.status == 0 && (try? JSONValue.parse(log.stdout))?["ok"] == .bool(true), "\(log.stdout)")
        // The merged corpus takes imports and a projector fit as any corpus does, and still reads as the store.
        try CorpusImportTests.importIntoBoth(dir)
        try CorpusImportTests.sameReads(dir, sets: ["teacher", "fresh"], renumbered: true)
    }

    @Test("merged shards keep each sample stale for exactly the fits it was stale for in its own shard, and every regenerated label")
    func mergeKeepsStaleness() throws {
        let dir = TemporaryDirectory("corpus-merge-stale")
        try CorpusImportTests.setUp(dir)
        let corpus = dir.file("corpus")
        // Re-embedding a sample after a fit makes it stale for that fit. Samples 12, 25 and 40 are
        // re-embedded between the scenario's fits and a new one (`late`); 1 and 3 after all of them.
        func replace(_ ids: [UInt64], seed: UInt64) throws {
            let samples = randomSamples(count: ids.count, dimension: 4, seed: seed, ids: ids)
            try writeImportFiles(dir, prefix: "r\(seed)-", samples: samples, dimension: 4)
            let result = try runCLI(["import", corpus, "--embeddings", dir.file("r\(seed)-emb.npy"), "--ids", dir.file("r\(seed)-ids.npy"),
                                     "--meta", dir.file("r\(seed)-meta.jsonl"), "--replace", "--clearance", "all", "--quiet"])
            #expect(result.status == 0, "\(result.stderr)")
        }
        // Merging into one shard copies every other shard into the one holding most samples (the
        // base). Its write sequence is pushed ahead of the others' first (by parts written in
        // sessions that leave the other shards alone; the CLI's imports write every shard, which
        // keeps the counters level), so a sequence copied unchanged from another shard would
        // compare wrongly against the base's fits.
        let manifest = try CorpusManifest.read(from: corpus)
        let held = try manifest.shards.map { name in
            let store = try Store(opening: corpus + "/" + name, options: Store.Options(readOnly: true))
            defer { store.close() }
            return try store.read(clearance: .all) { try $0.ids() }
        }
        let base = held.indices.max { (held[$0].count, $1) < (held[$1].count, $0) }!
        for seed in [7, 8, 9] as [UInt64] {
            let writer = try CorpusWriter(opening: corpus)
            let session = try writer.beginSession()
            let ids = held[base].filter { ![12, 25, 40].contains($0) }
            _ = try CorpusWriter.importSamples(SampleBatch(randomSamples(count: ids.count, dimension: 4, seed: seed, ids: ids)), shard: base, of: corpus,
                                               session: session.id, mode: .replace, clearance: .all)
            _ = try writer.commitSession()
            writer.close()
        }
        try replace([12, 25, 40], seed: 5)
        let fit = try runCLI(["projector", "fit", corpus, "late", "--from", "teacher", "--rank", "2", "--epochs", "0", "--clearance", "all", "--quiet"])
        #expect(fit.status == 0, "\(fit.stderr)")
        let late = held.indices.filter { $0 != base }.map { held[$0][0] }
        try replace(late, seed: 6)
        let before = try Self.regenerated(corpus, projectors: ["wide", "tight", "late"])
        #expect(before["wide 12"]?.hasPrefix("stale") == true && before["late 12"]?.hasPrefix("stale") == false)
        #expect(late.allSatisfy { before["late \($0)"]?.hasPrefix("stale") == true } && before["late 4"]?.hasPrefix("stale") == false)
        let result = try runCLI(["shard", corpus, dir.file("merged"), "--shards", "1", "--clearance", "all"])
        #expect(result.status == 0, "\(result.stderr)")
        let after = try Self.regenerated(dir.file("merged"), projectors: ["wide", "tight", "late"])
        #expect(after == before, "\(after.filter { before[$0.key] != $0.value }.sorted { $0.key < $1.key }.prefix(6))")
        #expect(try runCLI(["verify", dir.file("merged"), "--clearance", "all"]).status == 0)
    }

    /// "projector id" → the regenerated label's status and probabilities, for every sample of
    /// every shard of the corpus at `path`.
    static func regenerated(_ path: String, projectors: [String]) throws -> [String: String] {
        var out: [String: String] = [:]
        for name in try CorpusManifest.read(from: path).shards {
            let store = try Store(opening: path + "/" + name, options: Store.Options(readOnly: true))
            defer { store.close() }
            try store.read(clearance: .all) { tx in
                let ids = try tx.ids()
                for projector in projectors {
                    let labels = try tx.regenerate(ids, with: try tx.load(ProjectorReference(name: projector)))
                    for (id, label) in zip(ids, labels) { out["\(projector) \(id)"] = "\(label.status) \(label.probabilities)" }
                }
            }
        }
        return out
    }

    @Test("re-sharding by range cuts each range at its own quantiles; a narrow clearance is refused and writes nothing")
    func reshardByRange() throws {
        let dir = TemporaryDirectory("corpus-reshard-range")
        try ShardTests.scenarioStore(at: dir.file("store")).close()
        let old = try CorpusManifest.split(store: dir.file("store"), into: dir.file("two"), shards: 2, rule: .range, clearance: .all, agent: "test")
        for (arguments, message) in [(["--shards", "0"], "at least 1"), (["--shards", "4", "--clearance", "public"], "clearance")] {
            let refused = try runCLI(["shard", dir.file("two"), dir.file("bad")] + arguments + (arguments.contains("--clearance") ? [] : ["--clearance", "all"]))
            #expect(refused.status != 0 && refused.stderr.contains(message), "\(refused.stderr)")
            #expect(!FileManager.default.fileExists(atPath: dir.file("bad")))
        }
        let result = try runCLI(["shard", dir.file("two"), dir.file("corpus"), "--shards", "4", "--clearance", "all"])
        #expect(result.status == 0 && result.stdout.contains("4 shards by range"), "\(result.stderr)")
        let manifest = try CorpusManifest.read(from: dir.file("corpus"))
        guard case .range(let new) = manifest.routing, case .range(let parents) = old.routing else { Issue.record("not range routing"); return }
        #expect(new.count == 4 && new[0].lowerBound == parents[0].lowerBound && new[1].upperBound == parents[0].upperBound
                && new[2].lowerBound == parents[1].lowerBound && new[3].upperBound == parents[1].upperBound)
        try FileManager.default.createDirectory(atPath: dir.file("out"), withIntermediateDirectories: true)
        try NumPyArray.write([0.5, -0.2, 0.1, 0.3, -0.4, 0.6, 0.2, -0.1, 0.1, 0.1, 0.1, 0.1] as [Float], shape: [3, 4], to: dir.file("q.npy"))
        for clearance in ["all", "public"] {
            for (a, b) in zip(CorpusReadTests.commands(dir.file("corpus"), out: dir.file("out"), query: dir.file("q.npy")),
                              CorpusReadTests.commands(dir.file("store"), out: dir.file("out"), query: dir.file("q.npy"))) {
                let fromCorpus = try CorpusReadTests.observe(a.arguments + ["--clearance", clearance], files: a.files)
                let fromStore = try CorpusReadTests.observe(b.arguments + ["--clearance", clearance], files: b.files)
                #expect(fromCorpus == fromStore, "\(clearance): \(a.arguments.prefix(3).joined(separator: " "))\ncorpus: \(fromCorpus.prefix(600))\nstore: \(fromStore.prefix(600))")
            }
        }
        let verify = try runCLI(["verify", dir.file("corpus"), "--clearance", "all"])
        #expect(verify.status == 0, "\(verify.stdout)")
    }
}
