import Foundation
import Testing
@testable import LabelDB

/// README's "Common tasks" block, run as written (issue 17): every command line of the block, in
/// order, on a corpus with the files it names, each expected to succeed.
@Suite("README common tasks")
struct ReadmeTaskTests {
    /// The command lines of the shell block under the heading `### <heading>`.
    static func commands(under heading: String = "Common tasks") throws -> [String] {
        let readme = try String(contentsOfFile: URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("README.md").path, encoding: .utf8)
        let section = try #require(readme.components(separatedBy: "### \(heading)\n").dropFirst().first)
        let block = try #require(section.components(separatedBy: "```sh\n").dropFirst().first?.components(separatedBy: "```").first)
        return block.split(separator: "\n").map(String.init).filter { !$0.hasPrefix("#") && !$0.trimmingCharacters(in: .whitespaces).isEmpty }
    }

    /// Splits a command line as a POSIX shell would for these lines: words, '…' and "…" quoting,
    /// and `$(cat FILE)` inside double quotes read from `directory`.
    static func words(_ line: String, directory: String) throws -> [String] {
        var words: [String] = [], current = "", inWord = false
        var chars = Array(line)[...]
        while let c = chars.popFirst() {
            switch c {
            case " " where true:
                if inWord { words.append(current); current = ""; inWord = false }
            case "'":
                inWord = true
                while let q = chars.popFirst(), q != "'" { current.append(q) }
            case "\"":
                inWord = true
                var quoted = ""
                while let q = chars.popFirst(), q != "\"" { quoted.append(q) }
                if quoted.hasPrefix("$(cat "), quoted.hasSuffix(")") {
                    let file = String(quoted.dropFirst(6).dropLast())
                    quoted = try String(contentsOfFile: directory + "/" + file, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
                }
                current += quoted
            default:
                inWord = true
                current.append(c)
            }
        }
        if inWord { words.append(current) }
        return words
    }

    @Test("every command of README's Common tasks runs and succeeds, in order")
    func commonTasks() throws {
        let dir = TemporaryDirectory("readme-tasks")
        let f = dir.file
        let n = 200, d = 8, c = 10
        try ((0..<c).map { "class\($0)" }.joined(separator: "\n") + "\n").write(toFile: f("classes.txt"), atomically: false, encoding: .utf8)
        var rng = SeededGenerator(seed: 8)
        try NumPyArray.write((0..<(n * d)).map { _ in Float.random(in: -1...1, using: &rng) }, shape: [n, d], to: f("emb.npy"))
        try (0..<n).map { i in
            JSONValue.object(["license": .string(i % 5 == 0 ? "getty" : "cc-by"), "split": .string(i % 10 == 1 ? "val" : "train")]).serialized() + "\n"
        }.joined().write(toFile: f("meta.jsonl"), atomically: false, encoding: .utf8)
        try NumPyArray.write((0..<(n * c)).map { _ in Float.random(in: -3...3, using: &rng) }, shape: [n, c], to: f("logits.npy"))
        let human = (0..<UInt64(n)).filter { $0 % 3 == 0 }
        try NumPyArray.write(human, to: f("human-ids.npy"))
        try NumPyArray.write(human.map { Int32($0 % UInt64(c)) }, shape: [human.count], to: f("human.npy"))
        try NumPyArray.write([UInt64(3)], to: f("withdrawn.npy"))
        let commands = try Self.commands()
        #expect(commands.count >= 12, "\(commands)")
        for line in commands {
            if line.contains("--expect-head") {
                // What the README says head.txt holds: a head an earlier --verify-log printed.
                let head = try run(["audit", "corpus", "--verify-log", "--format", "json"], in: dir.path)
                try (try JSONValue.parse(head.stdout)["head"]?.stringValue ?? "").write(toFile: f("head.txt"), atomically: false, encoding: .utf8)
            }
            let words = try Self.words(line, directory: dir.path)
            #expect(words.first == "labeldb", "\(line)")
            let result = try run(Array(words.dropFirst()), in: dir.path)
            #expect(result.status == 0, "\(line)\n\(result.stderr)")
        }
        // What the tasks promise: secret getty rows, the drop, the deletion on record, the archive.
        let audit = try JSONValue.parse(try run(["audit", "corpus", "3", "--clearance", "all", "--format", "json"], in: dir.path).stdout)
        #expect(audit["deleted_by"]?["activity"] == .string("delete"))
        #expect(try run(["labels", "show", "corpus", "teacher", "--clearance", "all"], in: dir.path).status == 1)
        #expect(FileManager.default.fileExists(atPath: f("train.npz")) && FileManager.default.fileExists(atPath: f("disagree.npy")))
        let info = try JSONValue.parse(try run(["info", "corpus", "--format", "json"], in: dir.path).stdout)
        #expect(info["count"] == .int(Int64(n - n / 5 - 1)))   // getty rows hidden; sample 3 deleted
    }

    @Test("every command of README's Several teachers runs and succeeds, and gives what it promises")
    func severalTeachers() throws {
        let dir = TemporaryDirectory("readme-teachers")
        let f = dir.file
        let n = 300, c = 5
        try ((0..<c).map { "class\($0)" }.joined(separator: "\n") + "\n").write(toFile: f("classes.txt"), atomically: false, encoding: .utf8)
        var rng = SeededGenerator(seed: 9)
        try NumPyArray.write((0..<(n * 4)).map { _ in Float.random(in: -1...1, using: &rng) }, shape: [n, 4], to: f("emb.npy"))
        let truth = (0..<n).map { _ in Int.random(in: 0..<c, using: &rng) }
        // Humans flip 8% of labels; each teacher is right about 85% of the time, fairly sure.
        let human = truth.map { Double.random(in: 0..<1, using: &rng) < 0.08 ? ($0 + 1) % c : $0 }
        try NumPyArray.write(human.map(Int32.init), shape: [n], to: f("human.npy"))
        var llmTop: [Int] = []
        for name in ["llm", "vit"] {
            let tops = truth.map { Double.random(in: 0..<1, using: &rng) < 0.85 ? $0 : Int.random(in: 0..<c, using: &rng) }
            let soft = tops.flatMap { top -> [Float] in
                let p = Float.random(in: 0.6...0.95, using: &rng)
                return (0..<c).map { $0 == top ? p : (1 - p) / Float(c - 1) }
            }
            try NumPyArray.write(soft, shape: [n, c], to: f("\(name).npy"))
            if name == "llm" { llmTop = tops }
        }
        #expect(try run(["init", "corpus", "--dim", "4", "--classes", "classes.txt"], in: dir.path).status == 0)
        #expect(try run(["import", "corpus", "--embeddings", "emb.npy"], in: dir.path).status == 0)
        let commands = try Self.commands(under: "Several teachers")
        #expect(commands.count >= 8, "\(commands)")
        var outputs: [String] = []
        for line in commands {
            let words = try Self.words(line, directory: dir.path)
            #expect(words.first == "labeldb", "\(line)")
            let result = try run(Array(words.dropFirst()), in: dir.path)
            #expect(result.status == 0, "\(line)\n\(result.stderr)")
            outputs.append(result.stdout)
        }
        // The agreement table, a consensus with its provenance, ranked errors, the disagreements.
        let all = outputs.joined()
        #expect(all.contains("human@1 vs llm@1:") && all.contains("all 3 sets:") && all.contains("Fleiss' κ"))
        #expect(all.contains("dawid-skene:") && all.contains("reference human@1:"))
        #expect(all.contains("samples flagged (prune-by-noise-rate) in human@1 against llm@1") && all.contains("wrote label set to-review"))
        let disagreements = outputs.last!.split(separator: "\n").count
        #expect(disagreements == (0..<n).filter { human[$0] != llmTop[$0] }.count && disagreements > 0)
        try runCLI(["provenance", "export", f("corpus"), "--out", f("prov.json")])
        let prov = try String(contentsOfFile: f("prov.json"), encoding: .utf8)
        #expect(prov.contains("label consensus") && prov.contains("label issues"))
    }

    func run(_ arguments: [String], in directory: String) throws -> CLIResult { try runCLI(arguments, in: directory) }
}
