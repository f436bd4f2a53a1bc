import Foundation
import Testing
@testable import LabelDB

/// Differential non-interference over the CLI (issue 10): for each clearance C, every read command
/// run under C on a store with public, tagged and mixed-source data prints what it prints on a
/// twin store built by replaying the same operations while keeping only what flows to C — a
/// hidden-source label import becomes a zero-row import so version numbers line up, a projector
/// whose label does not flow to C is never fitted. Outputs are compared after removing only what
/// the format spec lists as side channels or redactions (the tag registry, timings, store size,
/// write sequences, and statistics redacted for a clearance that does not see everything).
@Suite("Non-interference: every command under a clearance equals a store without what it hides")
struct NonInterferenceTests {
    static let licensed = TaintLabel(secrecy: ["licensed:getty"], integrity: [])
    static let pii = TaintLabel(secrecy: ["pii"], integrity: [])
    static let reviewed = TaintLabel(secrecy: [], integrity: ["reviewed"])

    /// One operation of the scenario, replayable with a filter.
    enum Operation {
        case put([Sample])
        case labels(name: String, ids: [UInt64], values: [[Float]], source: TaintLabel)
        case hardLabels(name: String, ids: [UInt64], classes: [Int])
        case head(String, [Float])
        case fit(name: String, from: String, head: String?, clearance: Clearance)
        case relabel([UInt64], TaintChange)
        case delete([UInt64])
    }

    /// The seeded scenario: 40 samples (public, reviewed, licensed, per-row pii), a teacher with a
    /// public and a licensed version, a public hard-label set, a head, two projectors (one fitted
    /// under `all`, one under `public`), a relabel that adds pii, a delete.
    static func scenario() -> [Operation] {
        var rng = SeededGenerator(seed: 4242)
        func embedding() -> [Float] { (0..<4).map { _ in Float.random(in: -1...1, using: &rng) } }
        func soft() -> [Float] {
            let a = Float.random(in: 0.05...1, using: &rng), b = Float.random(in: 0.05...1, using: &rng), c = Float.random(in: 0.05...1, using: &rng)
            return [a, b, c].map { $0 / (a + b + c) }
        }
        let samples: [Sample] = (1...40).map { i in
            let taint: TaintLabel = i <= 5 ? reviewed : i <= 20 ? .public : i <= 30 ? licensed : (i % 2 == 0 ? pii : .public)
            return Sample(id: UInt64(i), embedding: embedding(), metadata: ["n": .int(Int64(i)), "src": .string(i <= 20 ? "web" : "books")], taint: taint)
        }
        let all = (1...40).map(UInt64.init)
        let second = Array(1...10).map(UInt64.init) + Array(21...25).map(UInt64.init)
        return [
            .put(samples),
            .labels(name: "teacher", ids: all, values: all.map { _ in soft() }, source: .public),
            .labels(name: "teacher", ids: second, values: second.map { _ in soft() }, source: licensed),
            .hardLabels(name: "human", ids: all.filter { $0 % 2 == 1 }, classes: all.filter { $0 % 2 == 1 }.map { Int($0 % 3) }),
            .head("zs", (0..<12).map { Float($0) / 12 - 0.4 }),
            .fit(name: "wide", from: "teacher@1", head: "zs", clearance: .all),
            .fit(name: "open", from: "teacher@1", head: nil, clearance: .public),
            .relabel([3, 4], TaintChange(addSecrecy: ["pii"])),
            .delete([7]),
        ]
    }

    /// Runs `operations` on a fresh store at `path`. With `keeping`, only what that clearance
    /// admits in the full store's final state is written (`full` answers for the full store).
    static func build(_ operations: [Operation], at path: String, keeping clearance: Clearance? = nil, full: Store? = nil) throws -> Store {
        let store = try Store.create(at: path, schema: try Schema(dimension: 4, classes: ["cat", "dog", "bird"]))
        // A sample is kept when its final label flows to the clearance (deleted samples: their last label).
        var finalLabels: [UInt64: TaintLabel] = [:]
        for operation in operations {
            if case .put(let samples) = operation { for s in samples { finalLabels[s.id] = s.taint } }
            if case .relabel(let ids, let change) = operation { for id in ids { finalLabels[id] = change.applied(to: finalLabels[id]!) } }
        }
        func kept(_ id: UInt64, source: TaintLabel = .bottom) -> Bool {
            guard let clearance else { return true }
            return clearance.admits(finalLabels[id]!.join(source))
        }
        for operation in operations {
            switch operation {
            case .put(let samples):
                try store.write(clearance: .all) { tx in _ = try tx.put(SampleBatch(samples.filter { kept($0.id) }), privileges: ["reviewed"]) }
            case .labels(let name, let ids, let values, let source):
                let rows = ids.indices.filter { kept(ids[$0], source: source) }
                try store.write(clearance: .all) { tx in
                    try tx.importLabels(.soft(rows.flatMap { values[$0] }), ids: rows.map { ids[$0] }, into: name, codec: .denseF32,
                                        agent: "teacher", source: source, now: Date(timeIntervalSince1970: 0))
                }
            case .hardLabels(let name, let ids, let classes):
                let rows = ids.indices.filter { kept(ids[$0]) }
                try store.write(clearance: .all) { tx in
                    try tx.importLabels(.hard(rows.map { classes[$0] }), ids: rows.map { ids[$0] }, into: name, agent: "humans", now: Date(timeIntervalSince1970: 0))
                }
            case .head(let name, let values):
                try store.write(clearance: .all) { tx in try tx.importHead(name, values: values, rows: 4, columns: 3) }
            case .fit(let name, let from, let head, let fitClearance):
                // A projector whose final label the clearance does not admit is never written.
                if let clearance, let full {
                    let label = try full.read(clearance: .all) { try $0.projector(named: name)!.versions.last!.taintLabel }
                    guard clearance.admits(label) else { continue }
                }
                try store.fitProjector(name, from: try LabelSetReference(parsing: from), options: quickFitOptions, head: head, agent: "fitter", clearance: fitClearance)
            case .relabel(let ids, let change):
                let visible = ids.filter { kept($0) }
                if !visible.isEmpty { try store.write(clearance: .all) { tx in try tx.relabel(visible, change, agent: "admin") } }
            case .delete(let ids):
                try store.write(clearance: .all) { tx in _ = try tx.delete(ids.filter { kept($0) }) }
            }
        }
        return store
    }

    /// Keys that are side channels or redactions (format-spec/storage.md §13.1, cli.md).
    static let ignored: Set<String> = [
        "time_ms", "seconds", "provenance", "path", "bytes_on_disk", "tags", "sequence", "read_only",
        "rows", "labelled", "soft_bytes", "fidelity", "statistics_redacted", "samples", "corrections", "correction_bytes",
        "report", "total_bytes", "ratio_to_stored", "ratio_to_dense_f16",
    ]

    static func normalized(_ value: JSONValue) -> JSONValue {
        switch value {
        case .object(let members):
            return .object(members.filter { !ignored.contains($0.key) }.mapValues(normalized))
        case .array(let items):
            return .array(items.map(normalized))
        default:
            return value
        }
    }

    /// What a command shows: its exit status, its standard output (JSON lines normalised), and
    /// the bytes of the files it wrote.
    static func observe(_ arguments: [String], files: [String]) throws -> String {
        for file in files { try? FileManager.default.removeItem(atPath: file) }
        let result = try runCLI(arguments)
        // Standard error may name what the clearance hides ("fitted on data your clearance does
        // not admit" against "no projector named"): names are a listed side channel.
        var shown = "exit \(result.status)\n"
        for line in result.stdout.split(separator: "\n") {
            guard let json = try? JSONValue.parse(String(line)) else { shown += line + "\n"; continue }
            // A projector the clearance cannot use is listed by name only (names are a listed side channel).
            if json["usable"] == false { continue }
            shown += normalized(json).serialized() + "\n"
        }
        for file in files { shown += (FileManager.default.contents(atPath: file)?.base64EncodedString() ?? "absent") + "\n" }
        return shown
    }

    static func commands(_ store: String, out: String, query: String) -> [(arguments: [String], files: [String])] {
        var list: [(arguments: [String], files: [String])] = [
            (["info", store, "--format", "json"], []),
            (["scan", store, "--format", "json"], []),
            (["query", store, "label(teacher).top1 = 'cat'", "--labels", "teacher", "--format", "json"], []),
            (["query", store, "id >= 0", "--labels", "teacher", "--labels", "human", "--order-by", "confidence", "--format", "json"], []),
            (["query", store, "label(teacher@1).confidence < 0.5 or label(human).has('dog')", "--format", "json"], []),
            (["query", store, "label(open).top1 = 'dog'", "--labels", "open", "--format", "json"], []),
            (["labels", "list", store, "--format", "json"], []),
            (["labels", "show", store, "teacher", "--format", "json"], []),
            (["labels", "diff", store, "teacher@1", "teacher@2", "--format", "json"], []),
            (["projector", "list", store, "--format", "json"], []),
            (["knn", store, "--query", query, "--k", "5", "--format", "json"], []),
            (["knn", store, "--query", query, "--k", "5", "--labels", "teacher", "--format", "json"], []),
            (["knn", store, "--query", query, "--k", "5", "--labels", "teacher@1", "--flow", "conservative", "--format", "json"], []),
            (["export", store, "--embeddings-out", out + "/x.npy", "--ids-out", out + "/i.npy", "--meta-out", out + "/m.jsonl"],
             [out + "/x.npy", out + "/i.npy", out + "/m.jsonl"]),
            (["labels", "export", store, "teacher@2", "--out", out + "/p.npy", "--ids-out", out + "/pi.npy", "--hard-out", out + "/ph.npy"],
             [out + "/p.npy", out + "/pi.npy", out + "/ph.npy"]),
            (["labels", "export", store, "--regen", "open", "--out", out + "/r.npy", "--ids-out", out + "/ri.npy"], [out + "/r.npy", out + "/ri.npy"]),
        ]
        for id in 1...41 {
            list.append((["get", store, "\(id)", "--format", "json", "--labels", "teacher", "--labels", "human"], []))
        }
        list.append((["get", store, "2", "--format", "json", "--regen", "open"], []))
        return list
    }

    @Test("every read command under a clearance prints what it prints on the twin store", arguments: [
        "public", "secrecy=licensed:getty", "secrecy=pii", "integrity=reviewed", "secrecy=licensed:getty,pii",
    ])
    func differential(clearanceText: String) throws {
        let clearance = try Clearance(parsing: clearanceText)
        let dir = TemporaryDirectory("noninterference")
        let operations = Self.scenario()
        let full = try Self.build(operations, at: dir.file("full"))
        let twin = try Self.build(operations, at: dir.file("twin"), keeping: clearance, full: full)
        full.close()
        twin.close()
        try NumPyArray.write([0.5, -0.2, 0.1, 0.3, -0.4, 0.6, 0.2, -0.1] as [Float], shape: [2, 4], to: dir.file("q.npy"))
        try FileManager.default.createDirectory(atPath: dir.file("out"), withIntermediateDirectories: true)
        let fullCommands = Self.commands(dir.file("full"), out: dir.file("out"), query: dir.file("q.npy"))
        let twinCommands = Self.commands(dir.file("twin"), out: dir.file("out"), query: dir.file("q.npy"))
        var compared = 0
        for (a, b) in zip(fullCommands, twinCommands) {
            let seen = try Self.observe(a.arguments + ["--clearance", clearanceText], files: a.files)
            let expected = try Self.observe(b.arguments + ["--clearance", clearanceText], files: b.files)
                .replacingOccurrences(of: dir.file("twin"), with: dir.file("full"))
            #expect(seen == expected, "under \(clearanceText): \(a.arguments.dropFirst(2).prefix(4).joined(separator: " "))\nfull: \(seen.prefix(600))\ntwin: \(expected.prefix(600))")
            compared += 1
        }
        #expect(compared == fullCommands.count)
    }
}
