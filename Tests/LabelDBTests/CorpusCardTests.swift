import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import Testing
@testable import LabelDB

/// The corpus card (issue 15): its figures against brute force on a seeded store, the HTML
/// (well-formed, self-contained, every chart captioned, the embedded JSON equal to the CLI's),
/// the clearance rule, and awkward stores.
@Suite("Corpus card")
struct CorpusCardTests {
    static let classes = ["cat", "dog", "bird"]

    /// `n` samples: metadata `{"n": i, "source": …}` on even rows, payloads of i bytes, every
    /// fifth sample secret (pii) when `secret`, rows 0 and 1 with the same embedding; a hard
    /// set on every sample, a soft set on two thirds.
    static func makeStore(_ dir: TemporaryDirectory, n: Int = 60, secret: Bool = true, keep: (Int) -> Bool = { _ in true }) throws -> Store {
        let store = try Store.create(at: dir.file("store"), schema: Schema(dimension: 4, classes: classes))
        var rng = SeededGenerator(seed: 5)
        let rows = (0..<n).map { i -> (Sample, hard: Int, soft: [Float]) in
            var e = (0..<4).map { _ in Float.random(in: -1...1, using: &rng) }
            if i == 1 { e = [1, 2, 3, 4] }
            if i == 0 { e = [1, 2, 3, 4] }
            let meta: [String: JSONValue] = i % 2 == 0 ? ["n": .int(Int64(i)), "source": .string(i % 4 == 0 ? "web" : "books")] : [:]
            let taint = secret && i % 5 == 3 ? TaintLabel(secrecy: ["pii"], integrity: []) : .public
            let p = Float.random(in: 0.4...0.9, using: &rng)
            let top = i % 3
            return (Sample(id: UInt64(i + 1), embedding: e, metadata: meta, payload: [UInt8](repeating: 7, count: i), taint: taint),
                    i % 3 == 0 ? 1 : i % 3, (0..<3).map { $0 == top ? p : (1 - p) / 2 })
        }.enumerated().filter { keep($0.offset) }.map(\.element)
        try store.write(clearance: .all) { tx in
            try tx.put(SampleBatch(rows.map(\.0)))
            try tx.importLabels(.hard(rows.map(\.hard)), ids: rows.map(\.0.id), into: "human", agent: "people")
            let soft = rows.filter { $0.0.id % 3 != 0 }
            try tx.importLabels(.soft(soft.flatMap(\.soft)), ids: soft.map(\.0.id), into: "teacher", codec: .denseF32, agent: "model")
        }
        return store
    }

    @Test("the figures equal a brute-force count over what the clearance sees")
    func figures() throws {
        let dir = TemporaryDirectory("card")
        let store = try Self.makeStore(dir)
        defer { store.close() }
        let card = try store.read(clearance: .public) { try $0.corpusCard() }
        let all = try store.read(clearance: .all) { try $0.samples() }
        let visible = all.filter { $0.taint == .public }
        #expect(card.composition.samples == visible.count && card.clearance == "public")
        #expect(card.composition.bytesOnDisk == nil)
        #expect(try store.read(clearance: .all) { try $0.corpusCard() }.composition.bytesOnDisk == store.bytesOnDisk)
        // Metadata: exact top values, presence, a numeric histogram over n.
        let source = try #require(card.composition.fields.first { $0.name == "source" })
        let web = visible.filter { $0.metadata["source"] == .string("web") }.count
        #expect(source.present == visible.filter { $0.metadata["source"] != nil }.count && source.topValues.first { $0.value == "web" }?.count == web)
        #expect(!source.approximate && source.numeric == nil)
        #expect(card.composition.fields.first { $0.name == "n" }?.numeric?.counts.reduce(0, +) == visible.filter { $0.metadata["n"] != nil }.count)
        #expect(card.composition.payloadSizes.reduce(0, +) == visible.count && card.composition.payloadSizes[0] == visible.filter { $0.payload.isEmpty }.count)
        // Labels: class balance and histograms over the visible rows only.
        let human = try #require(card.labelSources.first { $0.name == "human@1" })
        let hard = try store.read(clearance: .public) { tx in try visible.map { try tx.label(of: $0.id, in: LabelSetReference(name: "human"))!.hard! } }
        #expect(human.classCounts == (0..<3).map { c in hard.filter { $0 == c }.count } && human.labelled == visible.count)
        #expect(human.confidence.counts.last == visible.count)   // hard labels: confidence 1
        let teacher = try #require(card.labelSources.first { $0.name == "teacher@1" })
        #expect(teacher.labelled == visible.filter { $0.id % 3 != 0 }.count && teacher.entropy.counts.reduce(0, +) == teacher.labelled)
        #expect(card.unlabelled == 0)
        // Agreement of the one pair, as `labels agree` computes it.
        let agree = try store.read(clearance: .public) { try $0.agreement(of: [LabelSetReference(name: "human"), LabelSetReference(name: "teacher")]) }
        #expect(card.pairs == [CorpusCard.Pair(a: "human@1", b: "teacher@1", count: agree.pairs[0].count, agreement: agree.pairs[0].agreement, kappa: agree.pairs[0].kappa)])
        // Flow labels: only public samples are seen; the all-clearance card sees both labels.
        #expect(card.taintLabels == [CorpusCard.TaintCount(secrecy: [], integrity: [], samples: visible.count)])
        let allCard = try store.read(clearance: .all) { try $0.corpusCard() }
        #expect(allCard.taintLabels.map(\.samples).sorted() == [all.count - visible.count, visible.count])
        #expect(allCard.clearanceViews.map(\.samples) == [visible.count, all.count])
        // Embeddings: rows 0 and 1 share an embedding; every sample has a norm.
        #expect(card.exactDuplicates == 1 && card.norms.counts.reduce(0, +) == visible.count)
        #expect(card.nearDuplicateQueries == visible.count && card.nearDuplicates >= 2)
        #expect(card.provenanceVerifies && card.provenanceRecords == card.activities.count)
    }

    @Test("the public card of a mixed store equals the card of a store holding only the public rows, but for the documented side channels")
    func clearance() throws {
        let mixedDir = TemporaryDirectory("card"), publicDir = TemporaryDirectory("card")
        let mixed = try Self.makeStore(mixedDir)
        defer { mixed.close() }
        let alone = try Self.makeStore(publicDir, secret: false, keep: { $0 % 5 != 3 })
        defer { alone.close() }
        let a = try mixed.read(clearance: .public) { try $0.corpusCard() }
        let b = try alone.read(clearance: .public) { try $0.corpusCard() }
        // Side channels, documented in format-spec/cli.md: the provenance log (any clearance
        // reads it), import statistics (redacted when rows are hidden, shown when none is), and
        // the file's size (shown only to a clearance that sees every row).
        func withoutSideChannels(_ card: CorpusCard) -> JSONValue {
            var top = corpusCardJSON(card).objectValue!
            top["provenance"] = nil
            var composition = top["composition"]!.objectValue!
            composition["bytes_on_disk"] = nil
            top["composition"] = .object(composition)
            top["label_sources"] = .array(top["label_sources"]!.arrayValue!.map { var s = $0.objectValue!; s["versions"] = nil; return .object(s) })
            return .object(top)
        }
        let left = withoutSideChannels(a), right = withoutSideChannels(b)
        #expect(left == right)
    }

    @Test("the HTML is well-formed, self-contained, every chart captioned with a text alternative, and embeds the CLI's JSON")
    func html() throws {
        let dir = TemporaryDirectory("card")
        let store = try Self.makeStore(dir)
        store.close()
        let result = try runCLI(["card", dir.file("store"), "--out", dir.file("card.html"), "--format", "json", "--clearance", "all"])
        #expect(result.status == 0, "\(result.stderr)")
        let html = try String(contentsOfFile: dir.file("card.html"), encoding: .utf8)
        let parser = XMLParser(data: Data(html.utf8))
        #expect(parser.parse(), "\(String(describing: parser.parserError))")
        for external in ["http:", "https:", "src=", "href=", "@import", "url(", "<link", "<img", "<iframe"] {
            #expect(!html.contains(external), "\(external)")
        }
        let svgs = html.components(separatedBy: "<svg").count - 1
        #expect(svgs > 5 && html.components(separatedBy: "<figcaption>").count - 1 == svgs)
        #expect(html.components(separatedBy: "<title>").count - 1 == svgs + 1)   // the page's own, and one per chart
        // The embedded document is the JSON the CLI printed.
        let embedded = try #require(html.components(separatedBy: "<script type=\"application/json\" id=\"card-data\">").last?.components(separatedBy: "</script>").first)
        #expect(try JSONValue.parse(embedded) == JSONValue.parse(result.stdout))
        // And the tables show its numbers: the sample count, each class count.
        let card = try JSONValue.parse(result.stdout)
        #expect(html.contains("<td class=\"n\">\(Int(card["composition"]!["samples"]!.doubleValue!))</td>"))
        for count in card["label_sources"]!.arrayValue![0]["class_counts"]!.arrayValue! where count.doubleValue! > 0 {
            #expect(html.contains(">\(Int(count.doubleValue!))</text>"))
        }
    }

    @Test("awkward stores: empty, no labels, 10,000 classes; an unwritable output is a clear error")
    func awkward() throws {
        let dir = TemporaryDirectory("card")
        let empty = try Store.create(at: dir.file("empty"), schema: Schema(dimension: 2, classes: ["only"]))
        let card = try empty.read(clearance: .all) { try $0.corpusCard() }
        #expect(card.composition.samples == 0 && card.labelSources.isEmpty && card.agreementNote == "fewer than two label sources")
        let parser = XMLParser(data: Data(corpusCardHTML(card, title: "empty").utf8))
        #expect(parser.parse())
        empty.close()
        let wide = try Store.create(at: dir.file("wide"), schema: Schema(dimension: 2, classes: (0..<10_000).map { "c\($0)" }))
        try wide.write(clearance: .all) { tx in
            try tx.put(SampleBatch((1...200).map { Sample(id: UInt64($0), embedding: [Float($0), 1]) }))
            try tx.importLabels(.hard((0..<200).map { $0 * 37 % 10_000 }), ids: (1...200).map(UInt64.init), into: "h", agent: "x")
            try tx.importLabels(.hard((0..<200).map { $0 * 41 % 10_000 }), ids: (1...200).map(UInt64.init), into: "g", agent: "x")
        }
        let wideCard = try wide.read(clearance: .all) { try $0.corpusCard() }
        #expect(wideCard.agreementNote == "more than 4096 classes: agreement is not computed")
        let html = corpusCardHTML(wideCard, title: "wide")
        #expect(html.contains("other (171)") && html.contains("class=\"scroll\""))   // 29 bars + other; all 200 in the table
        wide.close()
        let bad = try runCLI(["card", dir.file("wide"), "--out", dir.file("no/such/dir/card.html"), "--clearance", "all"])
        #expect(bad.status == 2 && bad.stderr.contains("card.html") && bad.stderr.contains("cannot write"))
        let usage = try runCLI(["card", dir.file("wide")])
        #expect(usage.status == 2 && usage.stderr.contains("give --out card.html, --format json, or both"))
    }

    @Test("the KL histogram is recorded at import (exact compact rows below 1e-6) and shown on the card")
    func klHistogram() throws {
        let dir = TemporaryDirectory("card")
        let store = try Store.create(at: dir.file("store"), schema: Schema(dimension: 2, classes: ["a", "b", "c"]))
        defer { store.close() }
        let (lossy, exact) = try store.write(clearance: .all) { tx in
            for id in UInt64(1)...4 { try tx.put(Sample(id: id, embedding: [Float(id), 1])) }
            let lossy = try tx.importLabels(.soft([0.5, 0.3, 0.2, 0.6, 0.3, 0.1, 0.7, 0.2, 0.1, 0.4, 0.5, 0.1]), ids: [1, 2, 3, 4], into: "t",
                                            codec: .topKF16(1), agent: "x")
            let exact = try tx.importLabels(.topK(TopKRows(k: 1, classes: [0, 1, 2, 0], probabilities: [0.5, 0.5, 0.5, 0.5])), ids: [1, 2, 3, 4],
                                            into: "c", codec: .topKF16(1), agent: "x")
            return (lossy, exact)
        }
        // Every lossy row lands in the bin of its KL (all well above 1e-6 here).
        let bins = try #require(lossy.fidelity?.klHistogram)
        #expect(bins.count == 9 && bins.reduce(0, +) == 4 && bins[0] == 0)
        #expect(Fidelity.klBin(0) == 0 && Fidelity.klBin(5e-7) == 0 && Fidelity.klBin(1e-6) == 1 && Fidelity.klBin(0.05) == 5 && Fidelity.klBin(50) == 8)
        #expect(exact.fidelity?.klHistogram == [4, 0, 0, 0, 0, 0, 0, 0, 0])
        let html = corpusCardHTML(try store.read(clearance: .all) { try $0.corpusCard() }, title: "t")
        #expect(html.contains("Codec fidelity of version 1"))
    }

    @Test("a projector whose base head gained secrecy after the fit is left off the public card, not an error")
    func secretHead() throws {
        let dir = TemporaryDirectory("card")
        let store = try Self.makeStore(dir, secret: false)
        defer { store.close() }
        let head = [Float](repeating: 0.1, count: 4 * 3)
        try store.write(clearance: .all) { tx in try tx.importHead("w0", values: head, rows: 4, columns: 3) }
        try store.fitProjector("p", from: LabelSetReference(name: "teacher"), options: quickFitOptions, head: "w0", clearance: .public)
        #expect(try store.read(clearance: .public) { try $0.corpusCard() }.labelSources.map(\.name).contains("p@1"))
        try store.write(clearance: .public) { tx in
            try tx.importHead("w0", values: head, rows: 4, columns: 3, replace: true, taint: TaintLabel(secrecy: ["pii"], integrity: []))
        }
        let card = try store.read(clearance: .public) { try $0.corpusCard() }
        #expect(card.labelSources.map(\.name) == ["human@1", "teacher@1"])
        #expect(try store.read(clearance: .all) { try $0.corpusCard() }.labelSources.map(\.name) == ["human@1", "teacher@1", "p@1"])
    }

    @Test("hostile names and values keep the page well-formed; multi-labels count; ±1e308 metadata bins; a projector named like a set")
    func hostile() throws {
        let dir = TemporaryDirectory("card")
        let classes = ["<b>&amp;", "\"q'", "]]>", "ctl\u{1}\u{FFFF}"]
        let store = try Store.create(at: dir.file("store"), schema: Schema(dimension: 2, classes: classes))
        defer { store.close() }
        try store.write(clearance: .all) { tx in
            try tx.put(SampleBatch((1...6).map { i in
                Sample(id: UInt64(i), embedding: [Float(i), 1e20],
                       metadata: ["x": .double(i % 2 == 0 ? 1e308 : -1e308), "<k>": .string("v&\u{FFFE}</script>")])
            }))
            try tx.importLabels(.multi([[0, 1], [2], [0, 1, 3], [], [1], [3]]), ids: Array(1...6), into: "m", agent: "a<&>\u{FFFF}")
            try tx.importLabels(.hard([0, 1, 2, 3, 0, 1]), ids: Array(1...6), into: "h", agent: "x")
            try tx.importLabels(.soft((0..<6).flatMap { i in (0..<4).map { $0 == i % 4 ? Float(0.7) : 0.1 } }), ids: Array(1...6), into: "s", agent: "x")
        }
        _ = try store.fitProjector("h", from: LabelSetReference(name: "s"), options: quickFitOptions, clearance: .all)
        let card = try store.read(clearance: .all) { try $0.corpusCard() }
        let multi = try #require(card.labelSources.first { $0.name == "m@1" })
        #expect(multi.labelled == 5 && multi.classCounts == [2, 3, 1, 2])
        #expect(card.labelSources.map(\.name) == ["h@1", "m@1", "s@1"])   // the projector "h" is shadowed by the set
        #expect(card.composition.fields.first { $0.name == "x" }?.numeric?.counts.reduce(0, +) == 6)
        #expect(card.norms.counts.reduce(0, +) == 6 && card.norms.upper > 1e20)
        let html = corpusCardHTML(card, title: "<store & \u{FFFF}>")
        let parser = XMLParser(data: Data(html.utf8))
        #expect(parser.parse(), "\(String(describing: parser.parserError))")
        let embedded = try #require(html.components(separatedBy: "id=\"card-data\">").last?.components(separatedBy: "</script>").first)
        // (Parsed both ways: JSON text does not tell 1.0 from 1.)
        #expect(try JSONValue.parse(embedded) == JSONValue.parse(corpusCardJSON(card).serialized()))
    }
}
