import Foundation
import Testing
@testable import LabelDB

/// What a first-time user tripped over (issue 17), each kept as a CLI test: a small corpus built
/// the way the README says — embeddings, metadata with a license field, a teacher given as
/// logits, a partial human label set — and the everyday tasks run against it.
@Suite("First-time user CLI")
struct FirstUserCLITests {
    /// The corpus: `count` samples with ids 0…count−1, metadata `{"license", "split"}` (every third
    /// row `getty`), a teacher's logits for every row and a human's hard labels for every fourth.
    struct Corpus {
        let dir = TemporaryDirectory("first-user")
        /// Samples imported (0: the store is only created; the files still hold `rows` rows).
        let count: Int
        /// Rows in the input files.
        let rows: Int
        let dimension = 8
        let classes = ["cat", "dog", "bird", "fish"]
        var store: String { dir.file("store") }

        init(count: Int = 120, rows: Int = 120) throws {
            self.count = count
            self.rows = max(count, rows)
            let count = self.rows
            try (classes.joined(separator: "\n") + "\n").write(toFile: dir.file("classes.txt"), atomically: false, encoding: .utf8)
            var rng = SeededGenerator(seed: 17)
            let embeddings = (0..<(count * dimension)).map { _ in Float.random(in: -1...1, using: &rng) }
            try NumPyArray.write(embeddings, shape: [count, dimension], to: dir.file("emb.npy"))
            try (0..<count).map { i in
                JSONValue.object(["license": .string(Corpus.license(i)), "split": .string(i % 10 == 0 ? "val" : "train")]).serialized() + "\n"
            }.joined().write(toFile: dir.file("meta.jsonl"), atomically: false, encoding: .utf8)
            let logits = (0..<(count * classes.count)).map { _ in Float.random(in: -3...3, using: &rng) }
            try NumPyArray.write(logits, shape: [count, classes.count], to: dir.file("logits.npy"))
            let humanIDs = (0..<UInt64(count)).filter { $0 % 4 == 0 }
            try NumPyArray.write(humanIDs, to: dir.file("human-ids.npy"))
            try NumPyArray.write(humanIDs.map { Int32($0 % 3) }, shape: [humanIDs.count], to: dir.file("human.npy"))
            try run(["init", store, "--dim", "\(dimension)", "--classes", dir.file("classes.txt")])
            guard self.count > 0 else { return }
            try run(["import", store, "--embeddings", dir.file("emb.npy"), "--meta", dir.file("meta.jsonl"), "--quiet"])
            try run(["labels", "import", store, "teacher", "--logits", dir.file("logits.npy"), "--temperature", "2"])
            try run(["labels", "import", store, "human", "--hard", dir.file("human.npy"), "--ids", dir.file("human-ids.npy")])
        }

        static func license(_ i: Int) -> String { i % 3 == 0 ? "getty" : "cc-by" }

        /// Runs `labeldb`, throwing with its standard error when it fails.
        @discardableResult
        func run(_ arguments: [String]) throws -> CLIResult {
            let result = try runCLI(arguments)
            guard result.status == 0 else { throw CheckFailure("labeldb \(arguments.joined(separator: " ")): \(result.stderr)") }
            return result
        }

        /// `ids` written as a .npy in the corpus folder; returns its path.
        func idsFile(_ name: String, _ ids: [UInt64]) throws -> String {
            try NumPyArray.write(ids, to: dir.file(name))
            return dir.file(name)
        }
    }

    @Test("wrong: label counts are true after a delete (per version: rows written; labelled now)")
    func countsAfterDelete() throws {
        let corpus = try Corpus()
        try corpus.run(["delete", corpus.store, "--ids", try corpus.idsFile("del.npy", Array(1...11))])
        let list = try corpus.run(["labels", "list", corpus.store, "--clearance", "all", "--format", "json"]).stdout
        let sets = try list.split(separator: "\n").map { try JSONValue.parse(String($0)) }
        let teacher = try #require(sets.first { $0["name"] == .string("teacher") })
        #expect(teacher["labelled"] == .int(Int64(corpus.count - 11)), "\(list)")
        let human = try #require(sets.first { $0["name"] == .string("human") })
        // Ids 4 and 8 of the human set's every-fourth rows were deleted.
        #expect(human["labelled"] == .int(Int64(corpus.count / 4 - 2)), "\(list)")
        let show = try JSONValue.parse(try corpus.run(["labels", "show", corpus.store, "teacher", "--format", "json"]).stdout)
        let version = try #require(show["versions"]?.arrayValue?.first)
        #expect(version["rows"] == .int(Int64(corpus.count)) && version["labelled"] == .int(Int64(corpus.count - 11)))
        try corpus.run(["labels", "export", corpus.store, "teacher", "--out", corpus.dir.file("t.npy")])
        #expect(try NumPyArray.read(corpus.dir.file("t.npy")).shape == [corpus.count - 11, corpus.classes.count])
    }

    @Test("wrong: knn --labels accepts a projector, whose labels are regenerated on read")
    func knnFromProjector() throws {
        let corpus = try Corpus()
        try corpus.run(["projector", "fit", corpus.store, "proj", "--from", "teacher", "--rank", "2", "--epochs", "0"])
        try NumPyArray.write(Array((try NumPyArray.read(corpus.dir.file("emb.npy")).floats())[(5 * 8)..<(6 * 8)]), shape: [8], to: corpus.dir.file("q.npy"))
        let result = try corpus.run(["knn", corpus.store, "--query", corpus.dir.file("q.npy"), "--k", "3", "--labels", "proj", "--format", "json"])
        let answer = try JSONValue.parse(result.stdout)
        let neighbors = try #require(answer["neighbors"]?.arrayValue)
        #expect(neighbors.count == 3 && neighbors.first?["id"] == .int(5))
        // The label is the weighted mean of the neighbours' regenerated labels.
        var expected = [Double](repeating: 0, count: corpus.classes.count)
        var total = 0.0
        for neighbor in neighbors {
            let id = neighbor["id"]?.doubleValue ?? -1, weight = max(neighbor["similarity"]?.doubleValue ?? .nan, 0)
            let get = try JSONValue.parse(try corpus.run(["get", corpus.store, "\(Int(id))", "--regen", "proj", "--format", "json"]).stdout)
            let top = try #require(get["regenerated"]?["proj"]?["top"]?.arrayValue)
            for entry in top {
                let c = Int(entry["class"]?.doubleValue ?? -1), p = entry["p"]?.doubleValue ?? .nan
                expected[c] += weight * p
            }
            total += weight
        }
        let probs = try #require(answer["probs"]?.arrayValue).map { $0.doubleValue ?? .nan }
        for c in 0..<corpus.classes.count { #expect(abs(probs[c] - expected[c] / total) < 1e-3, "class \(c): \(probs) vs \(expected)") }
        // A name that is neither a label set nor a projector is still an error.
        let unknown = try runCLI(["knn", corpus.store, "--query", corpus.dir.file("q.npy"), "--labels", "nope"])
        #expect(unknown.status == 1 && unknown.stderr.contains("nope"))
    }

    @Test("friction 1: not-found messages name the clearance; the label-count message does not blame --ids")
    func messagesNameTheClearance() throws {
        let corpus = try Corpus()
        // Hide the getty rows behind a secrecy tag, as a user with licensed data would.
        let getty = (0..<UInt64(corpus.count)).filter { $0 % 3 == 0 }
        try corpus.run(["relabel", corpus.store, "--ids", try corpus.idsFile("getty.npy", getty), "--add-secrecy", "licensed:getty"])
        let get = try runCLI(["get", corpus.store, "6"])
        #expect(get.status == 1 && get.stderr.contains("sample 6 not found under clearance public"), "\(get.stderr)")
        let absent = try runCLI(["get", corpus.store, "100000", "--clearance", "all"])
        #expect(absent.status == 1 && absent.stderr.contains("sample 100000 not found under clearance all"), "\(absent.stderr)")
        let delete = try runCLI(["delete", corpus.store, "--ids", try corpus.idsFile("d.npy", [3, 6, 7])])
        #expect(delete.status == 1 && delete.stderr.contains("2 ids not found under clearance public (3, 6)"), "\(delete.stderr)")
        let labels = try runCLI(["labels", "import", corpus.store, "teacher", "--logits", corpus.dir.file("logits.npy")])
        #expect(labels.status == 2)
        #expect(labels.stderr.contains("\(corpus.count) label rows, but \(corpus.count - getty.count) samples are visible under clearance public"), "\(labels.stderr)")
        #expect(!labels.stderr.contains("pass --ids"))
        #expect(try corpus.run(["labels", "import", corpus.store, "teacher", "--logits", corpus.dir.file("logits.npy"), "--clearance", "all"]).status == 0)
    }

    @Test("friction 2: import --secrecy-where / --integrity-where tag rows by their metadata in the import's own transaction")
    func taintRulesAtImport() throws {
        let corpus = try Corpus(count: 0)
        let import_ = try runCLI(["import", corpus.store, "--embeddings", corpus.dir.file("emb.npy"), "--meta", corpus.dir.file("meta.jsonl"), "--quiet",
                                  "--secrecy-where", "meta.license = 'getty'", "licensed:getty",
                                  "--integrity-where", "id < 10 and not tagged('licensed:getty')", "human-reviewed", "--privilege", "human-reviewed",
                                  "--format", "json"])
        #expect(import_.status == 0, "\(import_.stderr)")
        let summary = try JSONValue.parse(import_.stdout)
        let rules = try #require(summary["rules"]?.arrayValue)
        let getty = (0..<corpus.rows).filter { Corpus.license($0) == "getty" }.count
        #expect(rules.count == 2 && rules[0]["matched"] == .int(Int64(getty)) && rules[0]["secrecy"] == .array([.string("licensed:getty")]))
        // Rules see the row's label before any rule: `not tagged(...)` is true for every row, so all of ids 0…9 match.
        #expect(rules[1]["matched"] == .int(10))
        for id in 0..<corpus.rows {
            let get = try JSONValue.parse(try corpus.run(["get", corpus.store, "\(id)", "--clearance", "all", "--format", "json"]).stdout)
            let secrecy = get["taint"]?["secrecy"], integrity = get["taint"]?["integrity"]
            #expect(secrecy == .array(Corpus.license(id) == "getty" ? [.string("licensed:getty")] : []), "id \(id)")
            #expect(integrity == .array(id < 10 ? [.string("human-reviewed")] : []), "id \(id)")
        }
        // Public never saw a getty row: the count under public excludes them.
        let info = try JSONValue.parse(try corpus.run(["info", corpus.store, "--format", "json"]).stdout)
        #expect(info["count"] == .int(Int64(corpus.rows - getty)))
        try corpus.run(["provenance", "export", corpus.store, "--out", corpus.dir.file("prov.json")])
        #expect(try String(contentsOfFile: corpus.dir.file("prov.json"), encoding: .utf8).contains("meta.license = 'getty' => licensed:getty"))

        // Refusals write nothing: an integrity rule without its privilege, a label form, a missing tag list.
        let before = fileBytes(corpus.store + "/data.mdb")
        for bad in [["--integrity-where", "id < 5", "human-reviewed"], ["--secrecy-where", "label(teacher).top1 = 'cat'", "x"], ["--secrecy-where", "id < 5"]] {
            let result = try runCLI(["import", corpus.store, "--embeddings", corpus.dir.file("emb.npy"), "--quiet", "--replace", "--ids", try corpus.idsFile("all.npy", (0..<UInt64(corpus.rows)).map { $0 })] + bad)
            #expect(result.status == 2, "\(bad): \(result.stderr)")
        }
        #expect(fileBytes(corpus.store + "/data.mdb") == before)
    }

    @Test("friction 5: export --where with several --labels-out; hard labels as int32 class indices, -1 where absent")
    func filteredExportWithLabels() throws {
        let corpus = try Corpus()
        try corpus.run(["projector", "fit", corpus.store, "proj", "--from", "teacher", "--rank", "2", "--epochs", "0"])
        let f = corpus.dir.file
        let result = try corpus.run(["export", corpus.store, "--where", "meta.license = 'getty' and id < 60", "--ids-out", f("ids.npy"),
                                     "--labels-out", "human=\(f("human.npy")),teacher=\(f("teacher.npy"))", "--labels-out", "proj=\(f("proj.npy"))"])
        let expectedIDs = (0..<UInt64(60)).filter { Corpus.license(Int($0)) == "getty" }
        #expect(result.stdout.contains("exported \(expectedIDs.count) samples"))
        #expect(try NumPyArray.read(f("ids.npy")).ids() == expectedIDs)
        let human = try NumPyArray.read(f("human.npy"))
        #expect(human.dtype == .int32 && human.shape == [expectedIDs.count])
        let hard = try human.integers()
        for (row, id) in expectedIDs.enumerated() { #expect(hard[row] == (id % 4 == 0 ? Int64(id % 3) : -1), "id \(id)") }
        // Soft labels and a projector's: the rows `labels export` and `get --regen` give for the same ids.
        try corpus.run(["labels", "export", corpus.store, "teacher", "--out", f("all-teacher.npy"), "--ids-out", f("all-ids.npy")])
        let allTeacher = try NumPyArray.read(f("all-teacher.npy")).floats(), teacher = try NumPyArray.read(f("teacher.npy"))
        #expect(teacher.shape == [expectedIDs.count, corpus.classes.count])
        let c = corpus.classes.count
        for (row, id) in expectedIDs.enumerated() {
            #expect(Array(try teacher.floats()[(row * c)..<((row + 1) * c)]) == Array(allTeacher[(Int(id) * c)..<((Int(id) + 1) * c)]))
        }
        #expect(try NumPyArray.read(f("proj.npy")).shape == [expectedIDs.count, c])
        // Bad requests write nothing.
        #expect(try runCLI(["export", corpus.store, "--labels-out", "teacher"]).status == 2)
        #expect(try runCLI(["export", corpus.store, "--npz", f("twice.npz"), "--labels", "teacher,teacher"]).status == 2)
        #expect(try runCLI(["export", corpus.store]).status == 2)
        #expect(try runCLI(["export", corpus.store, "--ids-out", f("x.npy"), "--where", "meta.license ="]).status == 2)
        #expect(!FileManager.default.fileExists(atPath: f("x.npy")))
    }

    @Test("friction 9: query --order-by margin | entropy | confidence, unlabelled samples last")
    func orderByLabelScores() throws {
        let corpus = try Corpus()
        let f = corpus.dir.file
        try corpus.run(["labels", "export", corpus.store, "teacher", "--out", f("t.npy")])
        let p = try NumPyArray.read(f("t.npy")).floats(), c = corpus.classes.count
        func row(_ id: Int) -> [Float] { Array(p[(id * c)..<((id + 1) * c)]) }
        func margin(_ id: Int) -> Float { let s = row(id).sorted(by: >); return s[0] - s[1] }
        func entropy(_ id: Int) -> Float { -row(id).reduce(0) { $0 + ($1 > 0 ? $1 * log($1) : 0) } }
        func ordered(_ args: [String]) throws -> [Int] {
            try corpus.run(["query", corpus.store, "id >= 0"] + args).stdout.split(separator: "\n").map { Int($0)! }
        }
        let byMargin = try ordered(["--labels", "teacher", "--order-by", "margin", "--limit", "10"])
        let expected = (0..<corpus.count).sorted { (margin($0), $0) < (margin($1), $1) }
        #expect(byMargin == Array(expected.prefix(10)), "\(byMargin.map(margin))")
        let byEntropy = try ordered(["--labels", "teacher", "--order-by", "entropy", "--desc"])
        #expect(byEntropy.count == corpus.count)
        for (a, b) in zip(byEntropy, byEntropy.dropFirst()) { #expect(entropy(a) >= entropy(b) - 1e-6) }
        // The human set labels every fourth sample: the others come after them, in either direction.
        for direction in [[], ["--desc"]] {
            let byConfidence = try ordered(["--labels", "human", "--order-by", "confidence"] + direction)
            #expect(byConfidence.prefix(corpus.count / 4).allSatisfy { $0 % 4 == 0 } && byConfidence.suffix(corpus.count - corpus.count / 4).allSatisfy { $0 % 4 != 0 })
        }
        #expect(try runCLI(["query", corpus.store, "id >= 0", "--order-by", "margin"]).status == 2)
        #expect(try runCLI(["query", corpus.store, "id >= 0", "--labels", "teacher", "--order-by", "surprise"]).status == 2)
    }

    @Test("friction 10: help texts have no runs of spaces in sentences; labels diff compares two sets and writes --ids-out")
    func helpAndDiff() throws {
        let commands = [["init"], ["import"], ["labels", "import"], ["labels", "list"], ["labels", "show"], ["labels", "export"], ["labels", "diff"],
                        ["heads", "import"], ["projector", "fit"], ["projector", "list"], ["projector", "show"], ["get"], ["info"], ["verify"],
                        ["scan"], ["export"], ["delete"], ["relabel"], ["backup"], ["audit"], ["provenance", "export"], ["knn"], ["query"]]
        for command in commands {
            let help = try runCLI(["help"] + command)
            #expect(help.status == 0, "\(command)")
            // The prose before USAGE; grammar tables (lines with :=) align columns on purpose.
            let prose = help.stdout.components(separatedBy: "USAGE:")[0].split(separator: "\n").filter { !$0.contains(":=") }
            for line in prose {
                #expect(line.trimmingCharacters(in: .whitespaces).range(of: "\\S {2,}\\S", options: .regularExpression) == nil, "\(command): \(line)")
            }
        }
        let corpus = try Corpus()
        let f = corpus.dir.file
        let diff = try JSONValue.parse(try corpus.run(["labels", "diff", corpus.store, "teacher", "human@1", "--ids-out", f("changed.npy"), "--format", "json"]).stdout)
        let changed = try #require(diff["changed"]?.arrayValue).map { UInt64($0["id"]?.doubleValue ?? -1) }
        #expect(try NumPyArray.read(f("changed.npy")).ids() == changed)
        #expect(diff["counts"]?["only_in_first"] == .int(Int64(corpus.count - corpus.count / 4)))
        #expect(diff["counts"]?["changed"].flatMap { $0.doubleValue }.map(Int.init) == changed.count)
        #expect(!changed.isEmpty && changed.allSatisfy { $0 % 4 == 0 })
    }

    @Test("friction 8: projector check recomputes the bound over every fitted sample, and fails when a correction is gone")
    func projectorCheck() throws {
        let corpus = try Corpus()
        try corpus.run(["projector", "fit", corpus.store, "bounded", "--from", "teacher", "--rank", "2", "--epochs", "0", "--max-kl", "0.02", "--top1"])
        let check = try JSONValue.parse(try corpus.run(["projector", "check", corpus.store, "bounded", "--format", "json"]).stdout)
        #expect(check["checked"] == .int(Int64(corpus.count)) && check["bound_holds"] == .bool(true) && check["violations"] == .array([]))
        #expect((check["max_kl"]?.doubleValue ?? 1) <= 0.02 && check["top1_misses"] == .int(0))
        let corrected = try #require(check["corrected"]?.doubleValue)
        #expect(corrected > 0, "the test needs a sample the bound corrects")

        // Remove one stored correction behind the store's back: the check must name that sample.
        let store = try Store(opening: corpus.store)
        let victim = try store.write(clearance: .all) { tx -> UInt64 in
            let loaded = try tx.load(LabelSetReference(name: "bounded"))
            let id = try (0..<UInt64(corpus.count)).first { try tx.correction(for: $0, loaded: loaded) != nil }!
            #expect(try tx.delete(.projectorCorrections, key: ProjectorCodec.correctionKey(id: loaded.projector.id, version: 1, sample: id)))
            return id
        }
        store.close()
        let broken = try runCLI(["projector", "check", corpus.store, "bounded", "--format", "json"])
        #expect(broken.status == 1, "\(broken.stderr)")
        let report = try JSONValue.parse(broken.stdout)
        #expect(report["bound_holds"] == .bool(false) && report["violations"]?.arrayValue?.compactMap(\.doubleValue) == [Double(victim)], "\(broken.stdout)")

        // Without a bound, the figures are reported and nothing fails.
        try corpus.run(["projector", "fit", corpus.store, "free", "--from", "teacher", "--rank", "1", "--epochs", "0"])
        let free = try JSONValue.parse(try corpus.run(["projector", "check", corpus.store, "free", "--format", "json"]).stdout)
        #expect(free["bound_holds"] == .null && free["checked"] == .int(Int64(corpus.count)))
        #expect(try runCLI(["projector", "check", corpus.store, "nope"]).status == 1)
    }

    @Test("friction 8: audit --verify-log --expect-head fails when the head differs, and tells growth from truncation")
    func expectHead() throws {
        let corpus = try Corpus()
        func verify(_ head: String) throws -> (status: Int32, report: JSONValue) {
            let result = try runCLI(["audit", corpus.store, "--verify-log", "--expect-head", head, "--format", "json"])
            return (result.status, try JSONValue.parse(result.stdout))
        }
        let kept = try #require(try JSONValue.parse(try corpus.run(["audit", corpus.store, "--verify-log", "--format", "json"]).stdout)["head"]?.stringValue)
        #expect(try verify(kept).status == 0)
        #expect(try verify(kept.uppercased()).status == 0)
        // The log grows: the kept head is an earlier record's.
        try corpus.run(["delete", corpus.store, "--ids", try corpus.idsFile("d.npy", [1])])
        let grown = try verify(kept)
        #expect(grown.status == 1 && grown.report["ok"] == .bool(true) && grown.report["expected_head_record"]?.doubleValue == 3, "\(grown.report)")
        let newHead = try #require(grown.report["head"]?.stringValue)
        // The last record removed behind the store's back: the chain still verifies, the kept head catches it.
        let store = try Store(opening: corpus.store)
        try store.write(clearance: .all) { tx in
            var key: [UInt8] = []
            BigEndianKey.append(UInt64(4), to: &key)
            let removed = try tx.delete(.provenance, key: key)
            #expect(removed)
        }
        store.close()
        let truncated = try verify(newHead)
        #expect(truncated.status == 1 && truncated.report["ok"] == .bool(true) && truncated.report["expected_head_record"] == .null, "\(truncated.report)")
        let text = try runCLI(["audit", corpus.store, "--verify-log", "--expect-head", newHead])
        #expect(text.stdout.contains("truncated or rewritten"))
        #expect(try runCLI(["audit", corpus.store, "--verify-log", "--expect-head", "xyz"]).status == 2)
        #expect(try runCLI(["audit", corpus.store, "1", "--expect-head", kept]).status == 2)
    }

    @Test("friction 7: label(SET).agent and label(SET).source_tagged('T') find labels by their source, whose integrity the row's join loses")
    func queryBySource() throws {
        let corpus = try Corpus()
        let f = corpus.dir.file
        // A second human version from a reviewed team, over ids 0…9.
        try NumPyArray.write((0..<UInt64(10)).map { $0 }, to: f("r-ids.npy"))
        try NumPyArray.write((0..<10).map { Int32($0 % 2) }, shape: [10], to: f("r.npy"))
        try corpus.run(["labels", "import", corpus.store, "human", "--hard", f("r.npy"), "--ids", f("r-ids.npy"), "--agent", "annotators:reviewed",
                        "--integrity", "human-reviewed", "--privilege", "human-reviewed"])
        func ids(_ filter: String) throws -> [Int] {
            try corpus.run(["query", corpus.store, filter]).stdout.split(separator: "\n").map { Int($0)! }
        }
        // The samples carry no integrity tag, so every row's joined label has none.
        #expect(try ids("tagged('human-reviewed')").isEmpty)
        #expect(try ids("label(human).source_tagged('human-reviewed')") == Array(0..<10))
        #expect(try ids("label(human).agent = 'annotators:reviewed'") == Array(0..<10))
        // Rows the first version wrote and the second did not touch keep their own agent.
        let older = try ids("label(human).agent != 'annotators:reviewed'")
        #expect(older == (0..<corpus.count).filter { $0 % 4 == 0 && $0 >= 10 })
        // A pinned version sees only the first import's rows and agent.
        #expect(try ids("label(human@1).source_tagged('human-reviewed')").isEmpty)
        // A projector's source is its own label: fitted on public labels, it carries no tag.
        try corpus.run(["projector", "fit", corpus.store, "proj", "--from", "teacher", "--rank", "1", "--epochs", "0", "--agent", "fitter"])
        #expect(try ids("label(proj).agent = 'fitter' and id < 3") == [0, 1, 2])
        #expect(try runCLI(["query", corpus.store, "label(human).source_tagged(human-reviewed)"]).status == 2)
    }

    @Test("friction 6: audit lists every step that changed a sample's taint, each step's parameters, and the delete that removed an id")
    func auditCompleteness() throws {
        let corpus = try Corpus()
        try corpus.run(["relabel", corpus.store, "--ids", try corpus.idsFile("g.npy", [6, 7]), "--add-secrecy", "licensed:getty"])
        try corpus.run(["relabel", corpus.store, "--ids", try corpus.idsFile("h.npy", [7, 8]), "--add-integrity", "checked", "--privilege", "checked", "--clearance", "all"])
        try corpus.run(["delete", corpus.store, "--ids", try corpus.idsFile("d.npy", [9, 11]), "--clearance", "all"])
        func audit(_ id: Int) throws -> JSONValue {
            try JSONValue.parse(try corpus.run(["audit", corpus.store, "\(id)", "--clearance", "all", "--format", "json"]).stdout)
        }
        let steps = try #require(try audit(7)["sample_lineage"]?.arrayValue)
        #expect(steps.map { $0["activity"]?.stringValue ?? "?" } == ["import", "relabel", "endorse"])
        #expect(steps[1]["parameters"]?["add_secrecy"] == .string("licensed:getty"))
        #expect(steps[2]["parameters"]?["add_integrity"] == .string("checked"))
        // Sample 6 was in the first relabel only; sample 5 in none.
        #expect(try audit(6)["sample_lineage"]?.arrayValue?.map { $0["activity"]?.stringValue ?? "?" } == ["import", "relabel"])
        #expect(try audit(5)["sample_lineage"]?.arrayValue?.count == 1)
        // The teacher's label lineage shows the temperature the logits were softened with.
        let teacher = try #require(try audit(5)["labels"]?["teacher"]?["lineage"]?.arrayValue?.first)
        #expect(teacher["parameters"]?["temperature"] == .string("2.0"), "\(teacher)")
        // A deleted id names its delete; an id never stored is still not found.
        let deleted = try audit(11)
        #expect(deleted["deleted_by"]?["activity"] == .string("delete") && deleted["deleted_by"]?["record"] == .int(6), "\(deleted)")
        let text = try corpus.run(["audit", corpus.store, "9"]).stdout
        #expect(text.contains("deleted by record 6"))
        #expect(try runCLI(["audit", corpus.store, "10"]).status == 0)
        #expect(try runCLI(["audit", corpus.store, "1000"]).status == 1)
        // The id imported again is another sample: the earlier one's relabels are not its lineage,
        // and stored again, hidden, it is not "deleted" either.
        try NumPyArray.write((0..<8).map { _ in Float(0.25) }, shape: [1, 8], to: corpus.dir.file("again.npy"))
        try corpus.run(["import", corpus.store, "--embeddings", corpus.dir.file("again.npy"), "--ids", try corpus.idsFile("again-ids.npy", [9]), "--secrecy", "pii"])
        #expect(try audit(9)["sample_lineage"]?.arrayValue?.map { $0["activity"]?.stringValue ?? "?" } == ["import"])
        #expect(try runCLI(["audit", corpus.store, "9"]).status == 1)
    }

    @Test("friction 6: long id lists are kept as a digest, and audit says a step may include the sample")
    func recordedIDDigest() throws {
        let ids = (0..<UInt64(5000)).map { $0 * 2 }   // 5,000 runs: past the list limit
        let recorded = RecordedIDs.parameters(kind: "deleted", ids: ids.reversed())
        #expect(recorded["deleted_ids"] == nil && recorded["deleted_ids_count"] == "5000" && recorded["deleted_ids_range"] == "0-9998")
        #expect(RecordedIDs.membership(of: 7, kind: "deleted", in: recorded) == .possibly(count: 5000))
        #expect(RecordedIDs.membership(of: 10_000, kind: "deleted", in: recorded) == .absent)
        let short = RecordedIDs.parameters(kind: "deleted", ids: [5, 3, 4, 9, 3, UInt64.max])
        #expect(short == ["deleted_ids": "3-5,9,18446744073709551615"])
        for (id, expected) in [(4, true), (6, false), (9, true), (2, false)] {
            #expect((RecordedIDs.membership(of: UInt64(id), kind: "deleted", in: short) == .listed) == expected)
        }
        #expect(RecordedIDs.membership(of: .max, kind: "deleted", in: short) == .listed)
        // Untrusted text from the log reads as absent, never traps.
        for garbage in ["-", "5-3", "x,1-", "99999999999999999999", ",,,", "1-2-3"] {
            _ = RecordedIDs.membership(of: 4, kind: "deleted", in: ["deleted_ids": garbage])
        }
        for id: UInt64 in [3, 4, 5] { #expect(RecordedIDs.membership(of: id, kind: "deleted", in: ["deleted_ids": "5-3"]) == .absent) }
        #expect(RecordedIDs.membership(of: 2, kind: "deleted", in: ["deleted_ids": "1-2-3"]) == .absent)
    }

    @Test("friction 3: labels import --dry-run measures every codec and writes nothing; --codec auto:MAXKL picks the smallest that meets it; a dominated codec warns")
    func choosingACodec() throws {
        let corpus = try Corpus()
        let f = corpus.dir.file
        let before = fileBytes(corpus.store + "/data.mdb")
        let dry = try corpus.run(["labels", "import", corpus.store, "t2", "--logits", f("logits.npy"), "--dry-run", "--format", "json"])
        #expect(fileBytes(corpus.store + "/data.mdb") == before)
        #expect(try runCLI(["labels", "show", corpus.store, "t2"]).status == 1)
        let trials = try dry.stdout.split(separator: "\n").map { try JSONValue.parse(String($0)) }
        let codecs = trials.compactMap { $0["codec"]?.stringValue }
        #expect(Set(codecs) == Set(["dense:f32", "dense:f16", "topk:1:f16", "topk:1:u8", "topk:2:f16", "topk:2:u8", "topk:3:f16", "topk:3:u8",
                                    "adaptive:0.01", "adaptive:0.001", "adaptive:0.0001"]), "\(codecs)")
        let dense32 = try #require(trials.first { $0["codec"] == .string("dense:f32") })
        #expect(dense32["max_kl"]?.doubleValue == 0 && dense32["bytes_per_label"]?.doubleValue == 16)
        let sizes = trials.compactMap { $0["bytes_per_label"]?.doubleValue }
        #expect(sizes == sizes.sorted(), "smallest first")
        // The figures are the ones a real import of that codec reports.
        let real = try JSONValue.parse(try corpus.run(["labels", "import", corpus.store, "t3", "--logits", f("logits.npy"), "--codec", "topk:2:f16", "--format", "json"]).stdout)
        let trial = try #require(trials.first { $0["codec"] == .string("topk:2:f16") })
        #expect(abs((real["fidelity"]?["max_kl"]?.doubleValue ?? -1) - (trial["max_kl"]?.doubleValue ?? -2)) < 1e-9)

        // auto: the smallest codec whose max KL meets the bound, on every row.
        let bound = 0.05
        let passing = trials.filter { ($0["max_kl"]?.doubleValue ?? .infinity) <= bound }
        let smallest = try #require(passing.min { ($0["bytes_per_label"]?.doubleValue ?? 0, $0["mean_kl"]?.doubleValue ?? 0) < ($1["bytes_per_label"]?.doubleValue ?? 0, $1["mean_kl"]?.doubleValue ?? 0) })
        let auto = try JSONValue.parse(try corpus.run(["labels", "import", corpus.store, "t4", "--logits", f("logits.npy"), "--codec", "auto:\(bound)", "--format", "json"]).stdout)
        #expect(auto["auto_chose"] == smallest["codec"] || (auto["auto_chose"]?.stringValue == "adaptive:\(bound)" && (auto["fidelity"]?["bytes_per_label"]?.doubleValue ?? .infinity) <= (smallest["bytes_per_label"]?.doubleValue ?? 0)),
                "\(auto) vs \(smallest)")
        #expect((auto["fidelity"]?["max_kl"]?.doubleValue ?? 1) <= bound)
        // A set keeps its codec: auto on it uses that codec when it meets the bound, else refuses.
        #expect(try JSONValue.parse(try corpus.run(["labels", "import", corpus.store, "t3", "--logits", f("logits.npy"), "--codec", "auto:10", "--format", "json"]).stdout)["auto_chose"] == .string("topk:2:f16"))
        #expect(try runCLI(["labels", "import", corpus.store, "t3", "--logits", f("logits.npy"), "--codec", "auto:0.000001"]).status == 2)
        #expect(try runCLI(["labels", "import", corpus.store, "t5", "--hard", f("human.npy"), "--ids", f("human-ids.npy"), "--dry-run"]).status == 2)
        #expect(try runCLI(["labels", "import", corpus.store, "t5", "--logits", f("logits.npy"), "--codec", "auto:x"]).status == 2)

        // A dominated codec warns, once, at the set's first soft import.
        let dominated = try #require(trials.first { $0["dominated_by"] != .null && $0["dominated_by"] != nil }, "the test needs a dominated codec")
        let name = try #require(dominated["codec"]?.stringValue)
        let warned = try corpus.run(["labels", "import", corpus.store, "t6", "--logits", f("logits.npy"), "--codec", name])
        #expect(warned.stderr.contains("warning: \(name) is dominated"), "\(warned.stderr)")
        let quiet = try corpus.run(["labels", "import", corpus.store, "t7", "--logits", f("logits.npy"), "--codec", "dense:f32"])
        #expect(!quiet.stderr.contains("warning"), "\(quiet.stderr)")
    }

    @Test("friction 4: labels drop removes a label set or an old version (logged), refuses hidden rows; dependent projectors keep their bound")
    func droppingLabels() throws {
        let corpus = try Corpus()
        let f = corpus.dir.file
        try corpus.run(["projector", "fit", corpus.store, "proj", "--from", "teacher", "--rank", "1", "--epochs", "0", "--max-kl", "0.05"])
        try corpus.run(["relabel", corpus.store, "--ids", try corpus.idsFile("s.npy", [8]), "--add-secrecy", "pii"])
        // A clearance that misses a row (sample 8 is labelled by both sets) may not drop.
        let narrow = try runCLI(["labels", "drop", corpus.store, "human"])
        #expect(narrow.status == 2 && narrow.stderr.contains("sees every row"), "\(narrow.stderr)")
        let dropped = try JSONValue.parse(try corpus.run(["labels", "drop", corpus.store, "human", "--clearance", "all", "--format", "json"]).stdout)
        #expect(dropped["rows"] == .int(Int64(corpus.count / 4)) && dropped["versions"] == .int(1))
        #expect(try runCLI(["labels", "show", corpus.store, "human", "--clearance", "all"]).status == 1)
        #expect(try runCLI(["query", corpus.store, "label(human).top1 = 'cat'"]).status == 1)
        #expect(try corpus.run(["verify", corpus.store, "--clearance", "all"]).status == 0)
        // The dropped name is free again, and the new set starts from version 1.
        try corpus.run(["labels", "import", corpus.store, "human", "--hard", f("human.npy"), "--ids", f("human-ids.npy"), "--clearance", "all"])
        #expect(try JSONValue.parse(try corpus.run(["labels", "show", corpus.store, "human", "--format", "json", "--clearance", "all"]).stdout)["latest"] == .int(1))

        // The teacher has a dependent projector: named, and it keeps working, bound included.
        func regenerated() throws -> (summary: String, rows: Data) {
            let out = try corpus.run(["labels", "export", corpus.store, "--regen", "proj", "--out", f("r.npy"), "--clearance", "all"]).stdout
            return (out, fileBytes(f("r.npy")))
        }
        let before = try regenerated()
        #expect(before.summary.contains("corrected") && !before.summary.contains(" 0 regenerated, 0 corrected"), "\(before.summary)")
        let teacherDrop = try corpus.run(["labels", "drop", corpus.store, "teacher", "--clearance", "all"])
        #expect(teacherDrop.stdout.contains("labeldb backup") && teacherDrop.stdout.contains("proj"))
        let after = try regenerated()
        #expect(after.summary == before.summary && after.rows == before.rows, "\(after.summary)")
        // Only the check, which compares with the stored labels, cannot run any more.
        #expect(try runCLI(["projector", "check", corpus.store, "proj", "--clearance", "all"]).status == 1)
        // A new set of the name changes nothing.
        try NumPyArray.write(Array(try NumPyArray.read(f("logits.npy")).floats().prefix(60 * corpus.classes.count)), shape: [60, corpus.classes.count], to: f("l60.npy"))
        try corpus.run(["labels", "import", corpus.store, "teacher", "--logits", f("l60.npy"), "--ids", try corpus.idsFile("i60.npy", (0..<60).map { $0 }), "--clearance", "all"])
        #expect(try regenerated().rows == before.rows)
        // A relabel restricts the projector exactly when it was fitted on a relabelled sample: 100
        // was (its label was dropped with the set), a sample imported after the fit was not.
        try NumPyArray.write((0..<8).map { _ in Float(0.5) }, shape: [1, 8], to: f("new.npy"))
        try corpus.run(["import", corpus.store, "--embeddings", f("new.npy"), "--ids", try corpus.idsFile("new-ids.npy", [1000]), "--clearance", "all"])
        try corpus.run(["relabel", corpus.store, "--ids", try corpus.idsFile("n.npy", [1000]), "--add-secrecy", "team:b"])
        try corpus.run(["relabel", corpus.store, "--ids", try corpus.idsFile("r.npy", [100]), "--add-secrecy", "team:a"])
        let show = try JSONValue.parse(try corpus.run(["projector", "show", corpus.store, "proj", "--clearance", "all", "--format", "json"]).stdout)
        let secrecy = show["taint"]?["secrecy"]?.arrayValue ?? []
        #expect(secrecy.contains(.string("team:a")) && !secrecy.contains(.string("team:b")), "\(show)")
        let log = try JSONValue.parse(try corpus.run(["audit", corpus.store, "--verify-log", "--format", "json"]).stdout)
        #expect(log["ok"] == .bool(true))
        try corpus.run(["provenance", "export", corpus.store, "--out", f("prov.json")])
        #expect(try String(contentsOfFile: f("prov.json"), encoding: .utf8).contains("label drop"))
        // One old version: the latest is refused; an older one reads as dropped, later ones as before.
        #expect(try runCLI(["labels", "drop", corpus.store, "human@1", "--clearance", "all"]).status == 2)
        try NumPyArray.write([UInt64(0), 4], to: f("h2-ids.npy"))
        try NumPyArray.write([Int32(2), 2], shape: [2], to: f("h2.npy"))
        try corpus.run(["labels", "import", corpus.store, "human", "--hard", f("h2.npy"), "--ids", f("h2-ids.npy"), "--clearance", "all"])
        let birds = try corpus.run(["query", corpus.store, "label(human).top1 = 'bird'", "--clearance", "all"]).stdout
        let version = try JSONValue.parse(try corpus.run(["labels", "drop", corpus.store, "human@1", "--clearance", "all", "--format", "json"]).stdout)
        #expect(version["rows"] == .int(2))   // ids 0 and 4: version 2 relabelled them
        #expect(try corpus.run(["query", corpus.store, "label(human).top1 = 'bird'", "--clearance", "all"]).stdout == birds)
        let gone = try runCLI(["query", corpus.store, "label(human@1).top1 = 'bird'", "--clearance", "all"])
        #expect(gone.status == 1 && gone.stderr.contains("was dropped"), "\(gone.stderr)")
        let shown = try JSONValue.parse(try corpus.run(["labels", "show", corpus.store, "human@1", "--clearance", "all", "--format", "json"]).stdout)
        #expect(shown["versions"]?.arrayValue?.first?["dropped"] == .bool(true))
        #expect(try corpus.run(["verify", corpus.store, "--clearance", "all"]).status == 0)
    }
}
