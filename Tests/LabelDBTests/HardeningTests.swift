import CLMDB
import Foundation
import Testing
@testable import LabelDB

/// The findings of the adversarial and fault-injection reviews (issue 10), each as the test that
/// failed before its fix: leaks across clearances, endorsement without privilege, crashes on
/// crafted input, and the smaller input and output defects.
@Suite("Hardening: leaks across clearances")
struct HardeningLeakTests {
    static let licensed = TaintLabel(secrecy: ["licensed:getty"], integrity: [])

    /// Ten public samples 1…10 along the first axes; `teacher@1` (public source) labels all of
    /// them; `teacher@2`, written by a licensed source, relabels 1…5.
    func twoVersionStore(_ dir: TemporaryDirectory) throws -> Store {
        let store = try makeStore(dir, dimension: 4)
        let ids = (1...10).map(UInt64.init)
        try store.write(clearance: .all) { tx in
            try tx.put(SampleBatch(ids.map { id in Sample(id: id, embedding: [1, Float(id) / 100, 0, 0]) }))
            try tx.importLabels(.soft(ids.flatMap { _ in [0.8, 0.1, 0.1] as [Float] }), ids: ids, into: "teacher", codec: .denseF32, agent: "v1")
            try tx.importLabels(.soft((1...5).flatMap { _ in [0.1, 0.8, 0.1] as [Float] }), ids: Array(ids.prefix(5)), into: "teacher",
                                codec: .denseF32, agent: "licensed", source: Self.licensed)
        }
        return store
    }

    @Test("item 2: a hidden newer row neither shows nor hides the visible older one, in point reads, scans, the class index and kNN")
    func hiddenNewerRowKeepsOlder() throws {
        let dir = TemporaryDirectory("harden-versions")
        let store = try twoVersionStore(dir)
        defer { store.close() }
        let v2 = LabelSetReference(name: "teacher", version: 2)
        try store.read(clearance: .public) { tx in
            for id in UInt64(1)...10 {
                let label = try #require(try tx.label(of: id, in: v2))
                #expect(label.version == 1 && label.soft?[0] == 0.8 && label.taint == .public)
            }
            var scanned: [UInt64] = []
            try tx.forEachLabel(in: v2) { id, label in
                #expect(label.version == 1)
                scanned.append(id)
                return true
            }
            #expect(scanned == Array(1...10))
            var inStorageOrder: [UInt64] = []
            try tx.forEachLabelInStorageOrder(in: v2) { id, label in
                #expect(label.version == 1)
                inStorageOrder.append(id)
                return true
            }
            #expect(inStorageOrder.sorted() == Array(1...10))
            // The class index agrees with the scan: class 0 for every id at v2, class 1 for none.
            #expect(try tx.samples(withTop1: 0, in: v2) == Array(1...10))
            #expect(try tx.samples(withTop1: 1, in: v2).isEmpty)
            // kNN over v2 finds the v1 rows, and (item 5) its label carries no source it did not use.
            let results = try tx.knnLabels(of: [1, 0.01, 0, 0], queries: 1, k: 3, from: v2, mode: .conservative)
            #expect(results[0].neighbors.map(\.id).sorted() == [1, 2, 3])
            #expect(results[0].conservativeLabel == .public && results[0].label == .public)
        }
        try store.read(clearance: Clearance(allowedSecrecy: .tags(["licensed:getty"]))) { tx in
            // The cleared reader sees v2's rows where they exist.
            #expect(try tx.label(of: 1, in: v2)?.version == 2)
            #expect(try tx.samples(withTop1: 1, in: v2) == Array(1...5))
            #expect(try tx.samples(withTop1: 0, in: v2) == Array(6...10))
            let results = try tx.knnLabels(of: [1, 0.01, 0, 0], queries: 1, k: 3, from: v2, mode: .conservative)
            #expect(results[0].conservativeLabel == Self.licensed)
        }
    }

    @Test("item 2 through the CLI: labels diff, export and knn --labels under the public clearance")
    func hiddenNewerRowCLI() throws {
        let dir = TemporaryDirectory("harden-versions-cli")
        let store = try twoVersionStore(dir)
        store.close()
        let path = dir.file("store")
        let diff = try JSONValue.parse(try runCLI(["labels", "diff", path, "teacher@1", "teacher@2", "--format", "json"]).stdout)
        #expect(diff["counts"]?["only_in_first"] == 0 && diff["counts"]?["only_in_second"] == 0 && diff["counts"]?["unchanged"] == 10)
        let export = try runCLI(["labels", "export", path, "teacher@2", "--out", dir.file("p.npy"), "--ids-out", dir.file("i.npy")])
        #expect(export.status == 0, "\(export.stderr)")
        #expect(try NumPyArray.read(dir.file("i.npy")).ids(file: "i") == Array(1...10))
        try NumPyArray.write([1, 0.01, 0, 0], shape: [1, 4], to: dir.file("q.npy"))
        let knn = try runCLI(["knn", path, "--query", dir.file("q.npy"), "--k", "3", "--labels", "teacher", "--format", "json"])
        let result = try JSONValue.parse(knn.stdout.split(separator: "\n").first.map(String.init) ?? "")
        #expect(result["conservative_label"] == ["secrecy": [], "integrity": []], "\(knn.stdout)")
    }

    @Test("item 1: a label import under a clearance that does not see everything returns a redacted labelled count")
    func importRedactsLabelled() throws {
        let dir = TemporaryDirectory("harden-import-count")
        let store = try makeStore(dir, dimension: 4)
        try store.write(clearance: .all) { tx in
            try tx.put(SampleBatch([Sample(id: 1, embedding: [1, 0, 0, 0]), Sample(id: 2, embedding: [0, 1, 0, 0], taint: Self.licensed)]))
            try tx.importLabels(.hard([0, 1]), ids: [1, 2], into: "h", agent: "all")
        }
        store.close()
        try NumPyArray.write([UInt64(1)], to: dir.file("one.npy"))
        try NumPyArray.write([Int32(2)], shape: [1], to: dir.file("y.npy"))
        let output = try runCLI(["labels", "import", dir.file("store"), "h", "--hard", dir.file("y.npy"), "--ids", dir.file("one.npy"), "--format", "json"])
        #expect(output.status == 0, "\(output.stderr)")
        let json = try JSONValue.parse(output.stdout)
        #expect(json["labelled"] == 0 && json["statistics_redacted"] == true && json["rows"] == 1)
        let cleared = try JSONValue.parse(try runCLI(["labels", "import", dir.file("store"), "h", "--hard", dir.file("y.npy"), "--ids", dir.file("one.npy"),
                                                      "--format", "json", "--clearance", "all"]).stdout)
        #expect(cleared["labelled"] == 2 && cleared["statistics_redacted"] == false)
    }

    @Test("item 3: a sample whose label row the fit did not use reads unfitted, never regenerated")
    func projectorStatusFollowsTheFit() throws {
        let dir = TemporaryDirectory("harden-status")
        let store = try makeStore(dir, dimension: 4)
        defer { store.close() }
        var rng = SeededGenerator(seed: 3)
        let ids = (1...40).map(UInt64.init)
        try store.write(clearance: .all) { tx in
            try tx.put(SampleBatch(ids.map { Sample(id: $0, embedding: (0..<4).map { _ in Float.random(in: -1...1, using: &rng) }) }))
            let soft: [Float] = ids.flatMap { _ in
                let a = Float.random(in: 0.1...1, using: &rng), b = Float.random(in: 0.1...1, using: &rng), c = Float.random(in: 0.1...1, using: &rng)
                return [a, b, c].map { $0 / (a + b + c) }
            }
            try tx.importLabels(.soft(Array(soft.prefix(39 * 3))), ids: Array(ids.prefix(39)), into: "teacher", agent: "public")
            // Sample 40's only soft label comes from a licensed source.
            try tx.importLabels(.soft(Array(soft.suffix(3))), ids: [40], into: "teacher", agent: "licensed", source: Self.licensed)
        }
        _ = try store.fitProjector("p", from: LabelSetReference(name: "teacher"), options: quickFitOptions, clearance: .public)
        for clearance in [Clearance.public, .all] {
            try store.read(clearance: clearance) { tx in
                let loaded = try tx.load(ProjectorReference(name: "p"))
                let out = try tx.regenerate([1, 40], with: loaded)
                #expect(out[0].status == .regenerated)
                #expect(out[1].status == .unfitted, "under \(clearance)")
            }
        }
    }

    @Test("item 4: verify needs a clearance that sees the whole store")
    func verifyNeedsEverything() throws {
        let dir = TemporaryDirectory("harden-verify")
        let store = try makeStore(dir, dimension: 4)
        try store.write(clearance: .all) { tx in
            try tx.put(SampleBatch([Sample(id: 1, embedding: [1, 0, 0, 0]), Sample(id: 2, embedding: [0, 1, 0, 0], taint: Self.licensed)]))
        }
        #expect(throws: TaintError.self) { try store.read(clearance: .public) { try $0.verify() } }
        #expect(try store.read(clearance: .all) { try $0.verify() }.isClean)
        store.close()
        let narrow = try runCLI(["verify", dir.file("store")])
        #expect(narrow.status == 2 && narrow.stderr.contains("--clearance all") && narrow.stdout.isEmpty)
        #expect(try runCLI(["verify", dir.file("store"), "--clearance", "all"]).status == 0)
    }
}

@Suite("Hardening: endorsement needs the privilege")
struct HardeningEndorsementTests {
    @Test("item 6: import, labels import and replace cannot add integrity tags without --privilege; replaced content keeps old ∩ new")
    func endorsement() throws {
        let dir = TemporaryDirectory("harden-endorse")
        let store = try initCLIStore(dir, dimension: 4)
        try NumPyArray.write([1, 0, 0, 0, 0, 1, 0, 0] as [Float], shape: [2, 4], to: dir.file("x.npy"))
        try NumPyArray.write([UInt64(1), 2], to: dir.file("ids.npy"))
        try NumPyArray.write([Int32(0), 1], shape: [2], to: dir.file("y.npy"))
        let before = fileBytes(store + "/data.mdb")
        let refused = try runCLI(["import", store, "--embeddings", dir.file("x.npy"), "--ids", dir.file("ids.npy"), "--integrity", "reviewed"])
        #expect(refused.status == 2 && refused.stderr.contains("--privilege reviewed"))
        #expect(fileBytes(store + "/data.mdb") == before)
        #expect(try runCLI(["import", store, "--embeddings", dir.file("x.npy"), "--ids", dir.file("ids.npy"),
                            "--integrity", "reviewed", "--privilege", "reviewed"]).status == 0)
        let labelsRefused = try runCLI(["labels", "import", store, "h", "--hard", dir.file("y.npy"), "--ids", dir.file("ids.npy"), "--integrity", "trusted"])
        #expect(labelsRefused.status == 2 && labelsRefused.stderr.contains("--privilege trusted"))
        #expect(try runCLI(["labels", "import", store, "h", "--hard", dir.file("y.npy"), "--ids", dir.file("ids.npy"),
                            "--integrity", "trusted", "--privilege", "trusted"]).status == 0)
        // Replacing endorsed samples with unvouched content drops the endorsement (old ∩ new).
        #expect(try runCLI(["import", store, "--embeddings", dir.file("x.npy"), "--ids", dir.file("ids.npy"), "--replace"]).status == 0)
        let replaced = try JSONValue.parse(try runCLI(["get", store, "1", "--format", "json"]).stdout)
        #expect(replaced["taint"] == ["secrecy": [], "integrity": []])
        // A replace may not add what the privilege does not cover either.
        let sneaky = try runCLI(["import", store, "--embeddings", dir.file("x.npy"), "--ids", dir.file("ids.npy"), "--replace", "--integrity", "reviewed"])
        #expect(sneaky.status == 2)
    }

    @Test("item 6 in the library: puts and label imports check privileges before writing anything")
    func libraryEndorsement() throws {
        let dir = TemporaryDirectory("harden-endorse-lib")
        let store = try makeStore(dir, dimension: 4)
        defer { store.close() }
        let vouched = TaintLabel(secrecy: [], integrity: ["reviewed"])
        #expect(throws: TaintError.missingPrivilege(tag: "reviewed", action: "write data with the integrity tag (endorse)")) {
            try store.write(clearance: .all) { tx in try tx.put(Sample(id: 1, embedding: [1, 0, 0, 0], taint: vouched)) }
        }
        #expect(try store.read(clearance: .all) { try $0.count() } == 0)
        try store.write(clearance: .all) { tx in try tx.put(Sample(id: 1, embedding: [1, 0, 0, 0]), privileges: []) }
        #expect(throws: TaintError.self) {
            try store.write(clearance: .all) { tx in try tx.importLabels(.hard([0]), ids: [1], into: "h", agent: "a", source: vouched) }
        }
        #expect(try store.read(clearance: .all) { try $0.labelSets() }.isEmpty)
    }
}

extension HardeningEndorsementTests {
    @Test("item 7: heads carry a taint label that joins into projectors; a replaced head makes fitted rows stale, never regenerated")
    func headsUnderProjectors() throws {
        let dir = TemporaryDirectory("harden-heads")
        let store = try makeStore(dir, dimension: 4)
        defer { store.close() }
        var rng = SeededGenerator(seed: 9)
        let ids = (1...30).map(UInt64.init)
        let head: [Float] = (0..<12).map { _ in Float.random(in: -1...1, using: &rng) }
        let licensedHead = TaintLabel(secrecy: ["licensed:clip"], integrity: ["vetted"])
        try store.write(clearance: .all) { tx in
            try tx.put(SampleBatch(ids.map { Sample(id: $0, embedding: (0..<4).map { _ in Float.random(in: -1...1, using: &rng) }) }))
            try tx.importLabels(.soft(ids.flatMap { _ in
                let a = Float.random(in: 0.1...1, using: &rng), b = Float.random(in: 0.1...1, using: &rng)
                return [a, b, 1].map { $0 / (a + b + 1) }
            }), ids: ids, into: "teacher", agent: "t")
            #expect(throws: TaintError.self) { try tx.importHead("zs", values: head, rows: 4, columns: 3, taint: licensedHead) }
            try tx.importHead("zs", values: head, rows: 4, columns: 3, taint: licensedHead, privileges: ["vetted"])
        }
        // A clearance that does not admit the head cannot fit with it.
        #expect(throws: ProjectorError.notClearedHead("zs")) {
            _ = try store.fitProjector("p", from: LabelSetReference(name: "teacher"), options: quickFitOptions, head: "zs", clearance: .public)
        }
        let fitted = try store.fitProjector("p", from: LabelSetReference(name: "teacher"), options: quickFitOptions, head: "zs", clearance: .all)
        #expect(fitted.taintLabel.secrecy == .tags(["licensed:clip"]) && fitted.headHash != nil)
        try store.read(clearance: .all) { tx in
            let out = try tx.regenerate(ids, with: try tx.load(ProjectorReference(name: "p")))
            #expect(out.allSatisfy { $0.status == .regenerated && $0.taint.secrecy == .tags(["licensed:clip"]) })
        }
        // Swap the head under the projector (same name, other content, unvouched).
        try store.write(clearance: .all) { tx in
            try tx.importHead("zs", values: head.map { $0 * 40 }, rows: 4, columns: 3, replace: true)
        }
        try store.read(clearance: .all) { tx in
            let loaded = try tx.load(ProjectorReference(name: "p"))
            #expect(loaded.headChanged)
            let out = try tx.regenerate(ids, with: loaded)
            #expect(out.allSatisfy { $0.status == .stale })
        }
        // A head the clearance cannot see cannot be replaced under it either.
        try store.write(clearance: .all) { tx in
            try tx.importHead("secret", values: head, rows: 4, columns: 3, taint: TaintLabel(secrecy: ["pii"], integrity: []))
        }
        #expect(throws: ProjectorError.notClearedHead("secret")) {
            try store.write(clearance: .public) { tx in try tx.importHead("secret", values: head, rows: 4, columns: 3, replace: true) }
        }
        #expect(try store.read(clearance: .public) { try $0.head(named: "secret") } == nil)
    }
}

@Suite("Hardening: crafted input")
struct HardeningInputTests {
    /// A `.npy` file whose header declares `shape` over `dtype` with a few bytes of data.
    func craftedNpy(_ path: String, descr: String, shape: String) throws {
        var header = "{'descr': '\(descr)', 'fortran_order': False, 'shape': \(shape), }"
        while (10 + header.utf8.count + 1) % 64 != 0 { header += " " }
        header += "\n"
        var bytes: [UInt8] = [0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(header.utf8.count & 0xFF), UInt8(header.utf8.count >> 8)]
        bytes += Array(header.utf8) + [UInt8](repeating: 0, count: 16)
        try Data(bytes).write(to: URL(fileURLWithPath: path))
    }

    @Test("item 9: a .npy shape whose product overflows is a clean error in every command that reads .npy")
    func npyShapeOverflow() throws {
        let dir = TemporaryDirectory("harden-npy")
        let store = try initCLIStore(dir, dimension: 16)
        for (n, shape) in ["(4611686018427387904, 16)", "(9223372036854775807, 16)", "(0, 9223372036854775807)", "(3037000500, 3037000500)"].enumerated() {
            let f4 = dir.file("f\(n).npy"), u8 = dir.file("u\(n).npy")
            try craftedNpy(f4, descr: "<f4", shape: shape)
            try craftedNpy(u8, descr: "<u8", shape: shape.replacingOccurrences(of: ", 16)", with: ",)"))
            let before = fileBytes(store + "/data.mdb")
            for args in [["import", store, "--embeddings", f4], ["labels", "import", store, "t", "--soft", f4], ["knn", store, "--query", f4, "--k", "1"],
                         ["delete", store, "--ids", u8], ["relabel", store, "--ids", u8, "--add-secrecy", "x"], ["heads", "import", store, "h", f4]] {
                let result = try runCLI(args)
                #expect(result.status == 2, "\(args) \(shape): \(result.status) \(result.stderr)")
                #expect(result.stderr.contains(f4) || result.stderr.contains(u8), "\(args): \(result.stderr)")
            }
            #expect(fileBytes(store + "/data.mdb") == before)
        }
        #expect(throws: InputError.self) { _ = try NumPyArray.read(dir.file("f0.npy")) }
    }

    @Test("item 10: long and deep filters in query and knn --where are answered or refused, never a crash")
    func filterSizes() throws {
        let dir = TemporaryDirectory("harden-filters")
        let store = try makeStore(dir, dimension: 4)
        try store.write(clearance: .all) { tx in try tx.put(SampleBatch((0..<20).map { Sample(id: UInt64($0), embedding: [1, Float($0), 0, 0]) })) }
        store.close()
        let path = dir.file("store")
        let chain = (0..<5_000).map { "id = \($0 * 3)" }.joined(separator: " or ")
        let long = try runCLI(["query", path, chain, "--format", "json"])
        #expect(long.status == 0, "\(long.stderr)")
        #expect(long.stdout.split(separator: "\n").count == 7)   // 0, 3, …, 18
        try NumPyArray.write([1, 0, 0, 0] as [Float], shape: [1, 4], to: dir.file("q.npy"))
        #expect(try runCLI(["knn", path, "--query", dir.file("q.npy"), "--k", "2", "--where", chain]).status == 0)
        for deep in [String(repeating: "not ", count: 6_000) + "id = 1", String(repeating: "(", count: 20_000) + "id = 1" + String(repeating: ")", count: 20_000)] {
            for args in [["query", path, deep], ["knn", path, "--query", dir.file("q.npy"), "--k", "2", "--where", deep]] {
                let result = try runCLI(args)
                #expect(result.status == 2 && result.stderr.contains("nested more than"), "\(result.status) \(result.stderr.prefix(200))")
            }
        }
        let huge = try runCLI(["query", path, "id = 99999999999999999999999"])
        #expect(huge.status == 2 && huge.stderr.contains("an id is a whole number"))
    }

    @Test("smaller: directories, padding, empty tags, malformed clearances, hidden ids, tiny temperatures, unknown tags")
    func smallerInputs() throws {
        let dir = TemporaryDirectory("harden-smaller")
        let store = try initCLIStore(dir, dimension: 4)
        try NumPyArray.write([1, 0, 0, 0] as [Float], shape: [1, 4], to: dir.file("x.npy"))
        try NumPyArray.write([UInt64(7)], to: dir.file("ids.npy"))
        #expect(try runCLI(["import", store, "--embeddings", dir.file("x.npy"), "--ids", dir.file("ids.npy"), "--secrecy", "pii"]).status == 0)
        try FileManager.default.createDirectory(atPath: dir.file("adir"), withIntermediateDirectories: true)
        try #"{"base64":"QUJD="}"#.write(toFile: dir.file("pad.jsonl"), atomically: false, encoding: .utf8)
        try NumPyArray.write([UInt64(8)], to: dir.file("ids8.npy"))
        try NumPyArray.write([100, 1, 1] as [Float], shape: [1, 3], to: dir.file("z.npy"))
        let before = fileBytes(store + "/data.mdb")
        let cases: [([String], String)] = [
            (["import", store, "--embeddings", dir.file("adir")], "is a directory"),
            (["import", store, "--embeddings", dir.file("x.npy"), "--ids", dir.file("ids8.npy"), "--payloads", dir.file("pad.jsonl")], "invalid base64"),
            (["import", store, "--embeddings", dir.file("x.npy"), "--ids", dir.file("ids8.npy"), "--secrecy", "a,,b"], "not a valid tag"),
            (["import", store, "--embeddings", dir.file("x.npy"), "--ids", dir.file("ids8.npy"), "--secrecy", "a,"], "not a valid tag"),
            (["info", store, "--clearance", "secrecy=pii,"], "not a valid tag"),
            (["info", store, "--clearance", ";;;"], "not a clearance"),
            (["info", store, "--clearance", "secrecy=pii;secrecy=pii"], "not a clearance"),
            (["import", store, "--embeddings", dir.file("x.npy"), "--ids", dir.file("ids.npy"), "--replace"], "does not see"),
            (["relabel", store, "--ids", dir.file("ids.npy"), "--remove-secrecy", "never-seen", "--privilege", "never-seen", "--clearance", "all"], "unknown tag 'never-seen'"),
            (["labels", "import", store, "t", "--logits", dir.file("z.npy"), "--ids", dir.file("ids.npy"), "--temperature", "1e-45", "--clearance", "all"], "temperature"),
            (["labels", "import", store, "t", "--logits", dir.file("z.npy"), "--ids", dir.file("ids.npy"), "--temperature", "1e-37", "--clearance", "all"], "temperature"),
        ]
        for (args, fragment) in cases {
            let result = try runCLI(args)
            #expect(result.status == 2, "\(args): \(result.status) \(result.stderr)")
            #expect(result.stderr.contains(fragment), "\(args): expected '\(fragment)' in \(result.stderr)")
            #expect(!result.stderr.contains("NSCocoaErrorDomain"))
        }
        #expect(fileBytes(store + "/data.mdb") == before)
        // The rejected declassify left no provenance record behind.
        let log = try runCLI(["audit", store, "--verify-log", "--format", "json"])
        #expect(!log.stdout.contains("declassify"))
    }

    @Test("smaller: an export that runs out of space exits 3 and leaves no output files")
    func exportFailureCleansUp() throws {
        let dir = TemporaryDirectory("harden-export")
        let store = try makeStore(dir, dimension: 64)
        try store.write(clearance: .all) { tx in try tx.put(SampleBatch(randomSamples(count: 200, dimension: 64, seed: 4))) }
        store.close()
        // RLIMIT_FSIZE with SIGXFSZ ignored: writes past 4 KiB fail with EFBIG, as on a full disk.
        let script = "trap '' XFSZ; ulimit -f 4; exec \"$0\" export \"$1\" --embeddings-out \"$2\" --ids-out \"$3\" --clearance all"
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", script, labeldbBinary, dir.file("store"), dir.file("x.npy"), dir.file("i.npy")]
        process.standardError = FileHandle.nullDevice
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        #expect(process.terminationStatus == 3)
        #expect(!FileManager.default.fileExists(atPath: dir.file("x.npy")) && !FileManager.default.fileExists(atPath: dir.file("i.npy")))
    }
}

@Suite("Hardening: damage is reported")
struct HardeningDamageTests {
    /// A store with a record in every table: tagged samples, two label versions (one from a
    /// licensed source), a head, a projector with corrections, a provenance log.
    static func everyTable(_ dir: TemporaryDirectory) throws -> Store {
        let store = try makeStore(dir, dimension: 4)
        var rng = SeededGenerator(seed: 12)
        let ids = (1...24).map(UInt64.init)
        try store.write(clearance: .all) { tx in
            try tx.put(SampleBatch(ids.map { Sample(id: $0, embedding: (0..<4).map { _ in Float.random(in: -1...1, using: &rng) },
                                                     taint: $0 % 5 == 0 ? TaintLabel(secrecy: ["pii"], integrity: ["ok"]) : .public) }), privileges: ["ok"])
            let soft: [Float] = ids.flatMap { _ in
                let a = Float.random(in: 0.05...1, using: &rng), b = Float.random(in: 0.05...1, using: &rng)
                return [a, b, 0.3].map { $0 / (a + b + 0.3) }
            }
            try tx.importLabels(.soft(soft), ids: ids, into: "teacher", codec: .topKF16(2), agent: "t")
            try tx.importLabels(.hard([1, 2]), ids: [3, 4], into: "teacher", agent: "h", source: TaintLabel(secrecy: ["lic"], integrity: []))
            try tx.importHead("zs", values: (0..<12).map { Float($0) / 12 }, rows: 4, columns: 3)
            try tx.delete([7])
        }
        _ = try store.fitProjector("p", from: LabelSetReference(name: "teacher"), options: quickFitOptions, head: "zs", maxKL: 1e-4, clearance: .all)
        return store
    }

    @Test("item 11: verify walks every table: one flipped value byte in any table is reported, and so is each broken cross-reference")
    func verifyReadsEveryTable() throws {
        let dir = TemporaryDirectory("harden-verify-all")
        let store = try Self.everyTable(dir)
        defer { store.close() }
        #expect(try store.read(clearance: .all) { try $0.verify() }.isClean)
        let nonEmpty = try store.read(clearance: .all) { tx in try Table.allCases.filter { try tx.entries($0) > 0 } }
        // Every table but the free slots holds a record (the deleted sample's slot is reused by
        // nothing), and the tables format 6 retired, which a new store lacks.
        let retired = Set(Table.allCases.filter { $0.retiredIn != nil })
        #expect(Set(Table.allCases).subtracting(nonEmpty).isSubset(of: retired.union([.freeSlots])), "\(Set(Table.allCases).subtracting(nonEmpty))")
        for table in nonEmpty {
            // Flip the last byte of the table's first value that has one.
            let entry: (key: [UInt8], value: [UInt8])? = try store.read(clearance: .all) { tx in
                var found: (key: [UInt8], value: [UInt8])? = nil
                try tx.walk(table, from: nil) { key, value in
                    if !value.isEmpty { found = (Array(key), Array(value)) }
                    return found == nil
                }
                return found
            }
            guard let entry else { continue }   // tables of empty values: partitions, free slots
            var damaged = entry.value
            damaged[damaged.count - 1] ^= 0x04
            try store.write(clearance: .all) { tx in
                try tx.put(table, key: entry.key, bytes: damaged)
                tx.changeSummary = [:]
            }
            let report = try store.read(clearance: .all) { try $0.verify() }
            #expect(report.problems.contains { $0.table == table.rawValue }, "\(table): \(report.problems)")
            try store.write(clearance: .all) { tx in
                try tx.put(table, key: entry.key, bytes: entry.value)
                tx.changeSummary = [:]
            }
        }
        #expect(try store.read(clearance: .all) { try $0.verify() }.isClean)
        // Cross-references: one direction of the tag registry, a chunk of class postings, parameters.
        for (table, prefix) in [(Table.taintTags, [UInt8(ascii: "i")]), (.labelPostings, []), (.projectorParameters, [])] as [(Table, [UInt8])] {
            let key: [UInt8] = try store.read(clearance: .all) { tx in
                var found: [UInt8] = []
                try tx.walk(table, from: prefix.isEmpty ? nil : prefix) { key, _ in found = Array(key); return false }
                return found
            }
            let value = try store.read(clearance: .all) { tx in try tx.withValue(table, key: key) { Array($0!) } }
            let deleted = try store.write(clearance: .all) { tx -> Bool in
                tx.changeSummary = [:]
                return try tx.delete(table, key: key)
            }
            #expect(deleted)
            let report = try store.read(clearance: .all) { try $0.verify() }
            #expect(report.problems.contains { $0.table == table.rawValue }, "\(table): \(report.problems)")
            try store.write(clearance: .all) { tx in
                try tx.put(table, key: key, bytes: value)
                tx.changeSummary = [:]
            }
        }
        #expect(try store.read(clearance: .all) { try $0.verify() }.isClean)
    }

    @Test("smaller: a malformed provenance key is reported by verify and --verify-log, not thrown")
    func malformedProvenanceKey() throws {
        let dir = TemporaryDirectory("harden-prov-key")
        let store = try makeStore(dir, dimension: 4)
        defer { store.close() }
        try store.write(clearance: .all) { tx in
            try tx.put(Sample(id: 1, embedding: [1, 0, 0, 0]))
            tx.describe(ProvenanceRecord(activity: "import", agent: "t"))
        }
        try store.write(clearance: .all) { tx in try tx.put(.provenance, key: [0, 0, 0, 0, 9], bytes: [1, 2, 3]) }
        let report = try store.read(clearance: .all) { try $0.verify() }
        #expect(report.problems.contains { $0.table == "provenance" })
        let log = try store.read(clearance: .all) { try $0.verifyProvenanceLog() }
        #expect(log.firstBad != nil)
    }

    @Test("smaller: a damaged write-sequence counter stops a projector fit instead of reading as 0")
    func damagedSequenceCounter() throws {
        let dir = TemporaryDirectory("harden-counter")
        let store = try makeStore(dir, dimension: 4)
        defer { store.close() }
        try store.write(clearance: .all) { tx in
            try tx.put(SampleBatch([Sample(id: 1, embedding: [1, 0, 0, 0]), Sample(id: 2, embedding: [0, 1, 0, 0])]))
            try tx.importLabels(.soft([0.7, 0.2, 0.1, 0.1, 0.8, 0.1]), ids: [1, 2], into: "t", agent: "a")
            var counter = CounterRecord.encoded(5)
            counter[12] ^= 0x40
            try tx.put(.meta, name: MetaKey.sequence, bytes: counter)
        }
        #expect(throws: StoreError.self) {
            _ = try store.fitProjector("p", from: LabelSetReference(name: "t"), options: quickFitOptions, clearance: .all)
        }
    }

    @Test("smaller: SoftLabelCodec.decode throws a public error type callers can match")
    func codecErrorIsPublic() {
        var out = [Float](repeating: 0, count: 3)
        #expect(throws: RecordDecodingError.self) {
            try [UInt8](repeating: 0, count: 5).withUnsafeBytes { bytes in
                try out.withUnsafeMutableBufferPointer { try SoftLabelCodec.denseF32.decode(bytes, into: $0) }
            }
        }
    }

    @Test("item 8: a lost taint-partition entry hides rows (reads fail closed), never reveals them; verify names it")
    func lostPartitionEntryFailsClosed() throws {
        let dir = TemporaryDirectory("harden-partition")
        let store = try makeStore(dir, dimension: 4)
        let secret = TaintLabel(secrecy: ["pii"], integrity: [])
        try store.write(clearance: .all) { tx in
            try tx.put(SampleBatch((1...6).map { Sample(id: UInt64($0), embedding: [1, Float($0), 0, 0], taint: $0 > 4 ? secret : .public) }))
            try tx.importLabels(.hard([0, 1, 2, 0, 1, 2]), ids: Array(1...6), into: "h", agent: "t")
        }
        // Delete sample 6's partition entry, as a hex editor or a bad sector would.
        try store.write(clearance: .all) { tx in
            var key: [UInt8] = []
            BigEndianKey.append(try #require(try tx.sampleTaintID(6)), to: &key)
            BigEndianKey.append(UInt64(6), to: &key)
            #expect(try tx.delete(.taintMembers, key: key))
        }
        try store.read(clearance: .public) { tx in
            #expect(throws: StoreError.self) { _ = try tx.count() }
            #expect(throws: StoreError.self) { _ = try tx.ids() }
            #expect(throws: StoreError.self) { _ = try tx.samples(withTop1: 2, in: LabelSetReference(name: "h")) }
            #expect(throws: StoreError.self) { _ = try tx.nearestNeighbors(of: [1, 6, 0, 0], queries: 1, k: 6, metric: .cosine) }
            let hidden = try tx.sample(6)
            #expect(hidden == nil)
        }
        // A clearance that sees everything needs no partitions and still reads.
        #expect(try store.read(clearance: .all) { try $0.count() } == 6)
        let report = try store.read(clearance: .all) { try $0.verify() }
        #expect(report.problems.contains { $0.table == "taint_members" } && report.problems.contains { $0.key == "tainted" })
        store.close()
        let info = try runCLI(["info", dir.file("store"), "--format", "json"])
        #expect(info.status == 3 && info.stdout.isEmpty && info.stderr.contains("run verify"))
    }

    @Test("item 8: a damaged partition key (another sample, another label) no longer checks, so reads fail closed")
    func damagedPartitionKeyFailsClosed() throws {
        let dir = TemporaryDirectory("harden-partition-key")
        let store = try makeStore(dir, dimension: 4)
        defer { store.close() }
        try store.write(clearance: .all) { tx in
            try tx.put(SampleBatch((1...4).map { Sample(id: UInt64($0), embedding: [1, Float($0), 0, 0], taint: $0 == 4 ? TaintLabel(secrecy: ["pii"], integrity: []) : .public) }))
        }
        // Sample 4's entry moves to sample 5 (a flipped bit in the key), its value unchanged.
        try store.write(clearance: .all) { tx in
            let label = try #require(try tx.sampleTaintID(4))
            let key = PartitionEntry.key(label: label, sample: 4)
            let value = try tx.withValue(.taintMembers, key: key) { Array($0!) }
            _ = try tx.delete(.taintMembers, key: key)
            try tx.put(.taintMembers, key: PartitionEntry.key(label: label, sample: 5), bytes: value)
            tx.changeSummary = [:]
        }
        #expect(throws: StoreError.self) { _ = try store.read(clearance: .public) { try $0.count() } }
        #expect(!(try store.read(clearance: .all) { try $0.verify() }.isClean))
    }

    @Test("item 12: a damaged transaction id in LMDB's meta page (a silent rollback) is reported by verify")
    func damagedMetaPage() throws {
        let dir = TemporaryDirectory("harden-meta")
        let store = try makeStore(dir, dimension: 4)
        for id in UInt64(1)...3 { try store.write(clearance: .all) { tx in try tx.put(Sample(id: id, embedding: [1, Float(id), 0, 0])) } }
        store.close()
        #expect(try { let s = try Store(opening: dir.file("store")); defer { s.close() }; return try s.read(clearance: .all) { try $0.verify() }.isClean }())
        // Bit 47 of page 1's mm_txnid (offset 144 in the meta page; 4 KiB pages).
        var bytes = try Data(contentsOf: URL(fileURLWithPath: dir.file("store/data.mdb")))
        bytes[4096 + 144 + 5] ^= 0x80
        try bytes.write(to: URL(fileURLWithPath: dir.file("store/data.mdb")))
        let result = try runCLI(["verify", dir.file("store"), "--clearance", "all", "--format", "json"])
        #expect(result.status == 1 && result.stdout.contains("meta pages name transactions"))
    }

    @Test("item 12: labelled counts stay exact through deletes, and a read that skips rows is reported, not answered")
    func labelledCountsCrossCheckReads() throws {
        let dir = TemporaryDirectory("harden-labelled")
        let store = try makeStore(dir, dimension: 4)
        defer { store.close() }
        try store.write(clearance: .all) { tx in
            try tx.put(SampleBatch((1...10).map { Sample(id: UInt64($0), embedding: [1, Float($0), 0, 0]) }))
            try tx.importLabels(.hard(Array(repeating: 0, count: 10)), ids: Array(1...10), into: "h", agent: "a")
            try tx.importLabels(.hard([1, 1]), ids: [2, 3], into: "h", agent: "b")
            _ = try tx.delete([2, 5])
        }
        let set = try #require(try store.read(clearance: .all) { try $0.labelSet(named: "h") })
        #expect(set.versions.map(\.labelled) == [8, 8])
        #expect(try store.read(clearance: .all) { try $0.verify() }.isClean)
        // A label row vanishes behind the counts' back (as when a damaged page hides it).
        try store.write(clearance: .all) { tx in
            let slot = try #require(try tx.storedSlot(of: 4))
            try tx.deleteRows(set: set, version: 1, block: slot / LabelBlock.slots, offsets: [Int(slot % LabelBlock.slots)])
            tx.changeSummary = [:]
        }
        #expect(throws: StoreError.self) {
            try store.read(clearance: .all) { tx in try tx.forEachLabel(in: LabelSetReference(name: "h")) { _, _ in true } }
        }
        #expect(throws: StoreError.self) {
            _ = try store.read(clearance: .all) { tx in try tx.knnLabels(of: [1, 0, 0, 0], queries: 1, k: 2, from: LabelSetReference(name: "h")) }
        }
        // A narrow clearance walks past the rows it cannot see too, so it notices as well — without
        // being told the (redacted) counts.
        try store.write(clearance: .all) { tx in try tx.put(Sample(id: 11, embedding: [0, 0, 0, 1], taint: TaintLabel(secrecy: ["pii"], integrity: []))) }
        #expect(performing: {
            try store.read(clearance: .public) { tx in try tx.forEachLabel(in: LabelSetReference(name: "h")) { _, _ in true } }
        }, throws: { error in
            guard case StoreError.corruptRecord(_, _, _, let detail) = error else { return false }
            return !detail.contains("read, the version records")
        })
        let report = try store.read(clearance: .all) { try $0.verify() }
        #expect(report.problems.contains { $0.table == "label_versions" })
    }
}

/// What a second adversarial review found after the first fixes, each as a test.
@Suite("Hardening: second review")
struct HardeningSecondReviewTests {
    static let licensed = TaintLabel(secrecy: ["licensed:getty"], integrity: ["vetted"])

    /// Samples 1…4 public, with a public soft label in `x@1`, and a hard-only `x@2` for sample 2
    /// from a licensed, vetted source (which nothing public flows to).
    func storeWithHiddenRow(_ dir: TemporaryDirectory) throws -> Store {
        let store = try makeStore(dir, dimension: 4)
        try store.write(clearance: .all) { tx in
            try tx.put(SampleBatch((1...4).map { Sample(id: UInt64($0), embedding: [1, Float($0), Float($0 % 2), 0.5]) }))
            try tx.importLabels(.soft([0.7, 0.2, 0.1, 0.2, 0.7, 0.1, 0.1, 0.2, 0.7, 0.6, 0.3, 0.1]), ids: [1, 2, 3, 4], into: "x", codec: .denseF32, agent: "t")
            try tx.importLabels(.hard([2]), ids: [2], into: "x", agent: "lic", source: Self.licensed, privileges: ["vetted"])
        }
        return store
    }

    @Test("a label import carries kinds forward from the newest row whose source flows to it, past hidden ones")
    func carryPastHiddenRow() throws {
        let dir = TemporaryDirectory("second-carry")
        let store = try storeWithHiddenRow(dir)
        defer { store.close() }
        try store.write(clearance: .public) { tx in try tx.importLabels(.hard([1]), ids: [2], into: "x", agent: "public") }
        let label = try #require(try store.read(clearance: .public) { try $0.label(of: 2, in: LabelSetReference(name: "x")) })
        #expect(label.version == 3 && label.hard == 1 && label.soft?[1] == 0.7)
    }

    @Test("a relabel reaches projectors fitted on an older row behind a hidden newer one; a replace that adds secrecy does too")
    func restrictionsReachEveryFit() throws {
        let dir = TemporaryDirectory("second-restrict")
        let store = try storeWithHiddenRow(dir)
        defer { store.close() }
        // A public fit of x@2 uses sample 2's v1 soft row (v2 is hidden from it).
        let fitted = try store.fitProjector("pp", from: LabelSetReference(name: "x"), options: quickFitOptions, clearance: .public)
        #expect(fitted.samples == 4 && fitted.taintLabel == .public)
        try store.write(clearance: .all) { tx in try tx.relabel([2], TaintChange(addSecrecy: ["pii"]), agent: "admin") }
        #expect(try store.read(clearance: .all) { try $0.projector(named: "pp")!.versions[0].taintLabel } == TaintLabel(secrecy: ["pii"], integrity: []))
        #expect(try store.read(clearance: .public) { try $0.projector(named: "pp")!.versions[0].statisticsRedacted })

        // Replacing sample 3 with content tagged `team:a` restricts the projector fitted on it too.
        _ = try store.fitProjector("qq", from: LabelSetReference(name: "x", version: 1), options: quickFitOptions, clearance: .all)
        try store.write(clearance: .all) { tx in try tx.put(Sample(id: 3, embedding: [0, 0, 1, 0], taint: TaintLabel(secrecy: ["team:a"], integrity: []))) }
        let qq = try store.read(clearance: .all) { try $0.projector(named: "qq")!.versions[0].taintLabel }
        #expect(qq.secrecy.sorted.contains("team:a"))
    }

    @Test("a projector the clearance cannot use is listed without its taint label")
    func hiddenProjectorTaint() throws {
        let dir = TemporaryDirectory("second-projector-taint")
        let store = try storeWithHiddenRow(dir)
        try store.write(clearance: .all) { tx in
            try tx.importLabels(.soft([0.1, 0.1, 0.8]), ids: [4], into: "x", agent: "lic", source: TaintLabel(secrecy: ["licensed:getty"], integrity: []))
        }
        _ = try store.fitProjector("wide", from: LabelSetReference(name: "x"), options: quickFitOptions, clearance: .all)
        store.close()
        let listed = try JSONValue.parse(try runCLI(["projector", "list", dir.file("store"), "--format", "json"]).stdout)
        #expect(listed["usable"] == false && listed["taint"] == .null)
    }

    @Test("a declassified sample a fit could not use reads unfitted (its fitted samples are recorded), never regenerated")
    func declassifyMakesStale() throws {
        let dir = TemporaryDirectory("second-declassify")
        let store = try makeStore(dir, dimension: 4)
        defer { store.close() }
        try store.write(clearance: .all) { tx in
            try tx.put(SampleBatch((1...6).map { Sample(id: UInt64($0), embedding: [1, Float($0), 0.3, -0.2], taint: $0 == 6 ? TaintLabel(secrecy: ["pii"], integrity: []) : .public) }))
            try tx.importLabels(.soft((1...6).flatMap { i in [0.5, 0.3, 0.2].map { Float($0) + (i == 6 ? 0 : 0) } }), ids: Array(1...6), into: "t", agent: "t")
        }
        _ = try store.fitProjector("p", from: LabelSetReference(name: "t"), options: quickFitOptions, clearance: .public)
        try store.write(clearance: .all) { tx in try tx.relabel([6], TaintChange(removeSecrecy: ["pii"]), privileges: ["pii"], agent: "legal") }
        let statuses = try store.read(clearance: .public) { tx in try tx.regenerate([1, 6], with: try tx.load(ProjectorReference(name: "p"))).map(\.status) }
        // Format 6 decided from the source row, which now flows to the projector, and relied on the
        // sequence to read it stale; format 7 knows the fit did not use it.
        #expect(statuses == [.regenerated, .unfitted])
    }

    @Test("a damaged tag name fails its seal instead of moving rows into another tag")
    func sealedTagNames() throws {
        let dir = TemporaryDirectory("second-tags")
        let store = try makeStore(dir, dimension: 4)
        defer { store.close() }
        try store.write(clearance: .all) { tx in
            try tx.put(SampleBatch([Sample(id: 1, embedding: [1, 0, 0, 0], taint: TaintLabel(secrecy: ["team:a"], integrity: [])),
                                    Sample(id: 2, embedding: [0, 1, 0, 0], taint: TaintLabel(secrecy: ["team:b"], integrity: []))]))
        }
        // Rename team:b's id entry to team:a, keeping its old seal (as a flipped byte would).
        try store.write(clearance: .all) { tx in
            let key = TagEntry.idKey(2)
            var value = try tx.withValue(.taintTags, key: key) { Array($0!) }
            value[value.count - 1] = UInt8(ascii: "a")
            try tx.put(.taintTags, key: key, bytes: value)
            tx.changeSummary = [:]
        }
        #expect(throws: StoreError.self) { _ = try store.read(clearance: Clearance(allowedSecrecy: .tags(["team:a"]))) { try $0.ids() } }
        #expect(!(try store.read(clearance: .all) { try $0.verify() }.isClean))
    }

    @Test("a table missing from LMDB's main database makes the store refuse to open, instead of reading as empty")
    func missingTableRefused() throws {
        let dir = TemporaryDirectory("second-missing-table")
        let store = try makeStore(dir, dimension: 4)
        try store.write(clearance: .all) { tx in try tx.put(Sample(id: 1, embedding: [1, 0, 0, 0], taint: TaintLabel(secrecy: ["pii"], integrity: []))) }
        store.close()
        // Drop `taint_labels` from the main database, as a damaged name in it would hide it.
        var env: OpaquePointer?
        #expect(mdb_env_create(&env) == 0)
        mdb_env_set_maxdbs(env, 32)
        #expect(mdb_env_open(env, dir.file("store"), 0, 0o644) == 0)
        var txn: OpaquePointer?
        #expect(mdb_txn_begin(env, nil, 0, &txn) == 0)
        var dbi: MDB_dbi = 0
        #expect(mdb_dbi_open(txn, "taint_labels", 0, &dbi) == 0)
        #expect(mdb_drop(txn, dbi, 1) == 0)
        #expect(mdb_txn_commit(txn) == 0)
        mdb_env_close(env)
        #expect(throws: StoreError.self) { _ = try Store(opening: dir.file("store"), options: .init(readOnly: true)) }
        let info = try runCLI(["info", dir.file("store")])
        #expect(info.status == 3 && info.stdout.isEmpty)
    }

    @Test("kNN labels with no visible labelled sample answer uniformly instead of crashing")
    func knnWithoutVisibleLabels() throws {
        let dir = TemporaryDirectory("second-knn-empty")
        let store = try makeStore(dir, dimension: 4)
        defer { store.close() }
        try store.write(clearance: .all) { tx in
            try tx.put(SampleBatch([Sample(id: 1, embedding: [1, 0, 0, 0]), Sample(id: 2, embedding: [0, 1, 0, 0])]))
            try tx.importLabels(.hard([0]), ids: [1], into: "h", agent: "a")
            _ = try tx.delete([1])
        }
        let results = try store.read(clearance: .all) { try $0.knnLabels(of: [1, 0, 0, 0], queries: 1, k: 3, from: LabelSetReference(name: "h")) }
        #expect(results.count == 1 && results[0].neighbors.isEmpty && results[0].label == .public)
    }
}
