import Foundation
import Testing
@testable import LabelDB

/// The taint contract of the CLI: tags on import (per import and per row), label sources,
/// `--clearance` on reads, `relabel` with privileges, and `audit` explaining a label's taint.
@Suite("Taint CLI")
struct TaintCLITests {
    @Test("public, licensed and web samples with their tags; a public reader sees only public rows; audit explains the joins")
    func doneWhen() throws {
        let dir = TemporaryDirectory("taint-cli")
        let store = dir.file("store")
        try "cat\ndog\nbird\n".write(toFile: dir.file("classes.txt"), atomically: false, encoding: .utf8)
        #expect(try runCLI(["init", store, "--dim", "4", "--classes", dir.file("classes.txt")]).status == 0)
        var rng = SeededGenerator(seed: 5)
        for (name, first, count) in [("pub", 0, 6), ("lic", 100, 4), ("web", 200, 4)] as [(String, UInt64, Int)] {
            try NumPyArray.write((0..<(count * 4)).map { _ in Float.random(in: -1...1, using: &rng) }, shape: [count, 4], to: dir.file("\(name).npy"))
            try NumPyArray.write((0..<UInt64(count)).map { first + $0 }, to: dir.file("\(name)-ids.npy"))
        }
        // Web rows: the first carries a per-row pii tag, which is consumed (not kept as metadata).
        try (0..<4).map { i in i == 0 ? #"{"url": "u0", "taint": {"secrecy": ["pii"]}}"# : #"{"url": "u\#(i)"}"# }.joined(separator: "\n")
            .write(toFile: dir.file("web.jsonl"), atomically: false, encoding: .utf8)
        #expect(try runCLI(["import", store, "--embeddings", dir.file("pub.npy"), "--ids", dir.file("pub-ids.npy"), "--integrity", "human-reviewed", "--privilege", "human-reviewed"]).status == 0)
        #expect(try runCLI(["import", store, "--embeddings", dir.file("lic.npy"), "--ids", dir.file("lic-ids.npy"), "--secrecy", "licensed:getty"]).status == 0)
        #expect(try runCLI(["import", store, "--embeddings", dir.file("web.npy"), "--ids", dir.file("web-ids.npy"), "--meta", dir.file("web.jsonl")]).status == 0)
        let badRow = try runCLI(["import", store, "--embeddings", dir.file("web.npy"), "--meta", dir.file("pub.npy")])
        #expect(badRow.status == 2)

        let ids: [UInt64] = Array(0..<6) + Array(100..<104) + Array(200..<204)
        try NumPyArray.write(ids, to: dir.file("all.npy"))
        try NumPyArray.write(ids.flatMap { $0 % 2 == 0 ? [Float(0.8), 0.1, 0.1] : [0.2, 0.7, 0.1] }, shape: [ids.count, 3], to: dir.file("soft.npy"))
        // Labels for samples the default (public) clearance cannot see fail as if they were absent.
        let hidden = try runCLI(["labels", "import", store, "teacher", "--soft", dir.file("soft.npy"), "--ids", dir.file("all.npy")])
        #expect(hidden.status == 2 && hidden.stderr.contains("100"))
        let labels = try runCLI(["labels", "import", store, "teacher", "--soft", dir.file("soft.npy"), "--ids", dir.file("all.npy"),
                                 "--clearance", "all", "--secrecy", "teacher-licence", "--agent", "resnet@1"])
        #expect(labels.status == 0, "\(labels.stderr)")

        func count(_ clearance: String) throws -> Double? {
            try JSONValue.parse(try runCLI(["info", store, "--format", "json", "--clearance", clearance]).stdout)["count"]?.doubleValue
        }
        #expect(try count("public") == 9)   // 6 public + 3 web rows without pii
        #expect(try count("all") == 14)
        #expect(try count("secrecy=licensed:getty") == 13)
        #expect(try count("integrity=human-reviewed") == 6)
        let unknown = try runCLI(["info", store, "--clearance", "secrecy=licenced:getty"])
        #expect(unknown.status == 2 && unknown.stderr.contains("unknown tag 'licenced:getty'"))
        #expect(try runCLI(["info", store, "--clearance", "secrecy"]).status == 2)
        #expect(try runCLI(["get", store, "100"]).status == 1)

        let web = try JSONValue.parse(try runCLI(["get", store, "200", "--format", "json", "--clearance", "secrecy=pii"]).stdout)
        #expect(web["taint"] == ["secrecy": ["pii"], "integrity": []])
        #expect(web["metadata"] == ["url": "u0"])
        // The public reader sees no label: every label carries the teacher's licence.
        let pub = try JSONValue.parse(try runCLI(["get", store, "0", "--format", "json"]).stdout)
        #expect(pub["labels"] == .object([:]))
        let cleared = try JSONValue.parse(try runCLI(["get", store, "0", "--format", "json", "--clearance", "secrecy=teacher-licence"]).stdout)
        #expect(cleared["labels"]?["teacher"]?["taint"] == ["secrecy": ["teacher-licence"], "integrity": []])

        let fit = try runCLI(["projector", "fit", store, "p", "--from", "teacher", "--rank", "1", "--epochs", "0", "--clearance", "all", "--quiet"])
        #expect(fit.status == 0, "\(fit.stderr)")
        let audit = try JSONValue.parse(try runCLI(["audit", store, "0", "--format", "json", "--clearance", "all"]).stdout)
        #expect(audit["taint"] == ["secrecy": [], "integrity": ["human-reviewed"]])
        let because = try #require(audit["labels"]?["teacher"]?["taint_because"]?.arrayValue)
        #expect(because.count == 2 && because[1]["taint"] == ["secrecy": ["teacher-licence"], "integrity": []])
        #expect(audit["regenerated"]?["p"]?["taint"] == ["secrecy": ["licensed:getty", "pii", "teacher-licence"], "integrity": []])
        let text = try runCLI(["audit", store, "0", "--clearance", "all"]).stdout
        #expect(text.contains("from label source teacher@1 (resnet@1)") && text.contains("import by"))

        // Declassify needs the privilege; with it the row becomes public and the log says so.
        try NumPyArray.write([UInt64(100)], to: dir.file("one.npy"))
        let denied = try runCLI(["relabel", store, "--ids", dir.file("one.npy"), "--remove-secrecy", "licensed:getty", "--clearance", "all"])
        #expect(denied.status == 2 && denied.stderr.contains("--privilege licensed:getty"))
        let granted = try runCLI(["relabel", store, "--ids", dir.file("one.npy"), "--remove-secrecy", "licensed:getty", "--privilege", "licensed:getty",
                                  "--clearance", "all", "--agent", "legal"])
        #expect(granted.status == 0, "\(granted.stderr)")
        #expect(try count("public") == 10)
        // A backup copies every record: only a clearance that sees the whole store may take one.
        let narrow = try runCLI(["backup", store, dir.file("copy")])
        #expect(narrow.status == 2 && narrow.stderr.contains("--clearance all"))
        #expect(!FileManager.default.fileExists(atPath: dir.file("copy")))
        #expect(try runCLI(["backup", store, dir.file("copy"), "--clearance", "all"]).status == 0)
        let log = try runCLI(["provenance", "export", store, "--out", dir.file("prov.json")])
        #expect(log.status == 0)
        #expect(try String(contentsOfFile: dir.file("prov.json"), encoding: .utf8).contains("declassify"))
    }
}
