import ArgumentParser
import Foundation
import LabelDB

/// `labeldb audit STORE ID` and `labeldb audit STORE --verify-log`
struct AuditCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit",
        abstract: "Explain a sample's labels and their lineage, or verify the provenance log's hash chain.",
        discussion: """
            With ID: for each label the sample has (stored or regenerated), its value, version and \
            agent, and the chain of activities back to the input files. With --verify-log: checks \
            the hash chain end to end, names the first bad record, and prints the head hash (keep \
            it elsewhere to detect a rewritten or truncated log). Exit 1 when the log is damaged. \
            --expect-head HASH (a head printed before) also exits 1 when the head differs, saying \
            whether HASH is still a record of the chain (the log has grown since) or not (the log \
            was truncated or rewritten: what the hash chain alone cannot show).
            """)
    @OptionGroup var target: StoreArgument
    @Argument(help: "The sample id.") var id: UInt64?
    @Flag(help: "Verify the provenance log instead.") var verifyLog = false
    @Option(help: "With --verify-log: the head hash kept from before (32 hex digits); exit 1 when the head differs.") var expectHead: String?
    @Option(help: "Output format: text or json.") var format: OutputFormat = .text

    func run() throws {
        if FileManager.default.fileExists(atPath: target.store + "/" + CorpusManifest.fileName) {
            guard !verifyLog else {
                guard expectHead == nil else { throw UsageError(description: "--expect-head checks one store's log; a corpus keeps each shard's head in its manifest") }
                return try verifyCorpusLogs()
            }
            // A sample's audit reads its own shard, whose log holds the store's history before
            // the split and the corpus's writes since.
            guard let id else { throw UsageError(description: "give a sample id or --verify-log") }
            let (corpus, clearance) = try target.openCorpusCleared()
            defer { corpus.close() }
            guard let store = corpus.shard(of: id) else { throw StoreError.sampleNotFound(id) }
            return try printAudit(try store.read(clearance: clearance) { try $0.auditJSON(id) })
        }
        let (store, clearance) = try target.openCleared(readOnly: true)
        defer { store.close() }
        if let expectHead {
            guard verifyLog else { throw UsageError(description: "--expect-head goes with --verify-log") }
            guard expectHead.utf8.count == 32, expectHead.allSatisfy(\.isHexDigit) else {
                throw UsageError(description: "--expect-head must be 32 hex digits (the head `audit --verify-log` printed), not '\(expectHead)'")
            }
        }
        if verifyLog {
            let report = try store.read(clearance: clearance) { try $0.verifyProvenanceLog(expecting: expectHead) }
            let headDiffers = expectHead.map { $0.lowercased() != report.head } ?? false
            switch format {
            case .json:
                var object = provenanceLogJSON(report)
                if let expectHead, case .object(var members) = object {
                    members["expected_head"] = .string(expectHead.lowercased())
                    members["expected_head_record"] = report.expectedHeadRecord.map(JSONValue.uint) ?? .null
                    object = .object(members)
                }
                printJSON(object)
            case .text:
                if let bad = report.firstBad {
                    print("provenance record \(bad.id): \(bad.reason)")
                } else {
                    print("ok: \(report.records) records, head \(report.head)")
                }
                if headDiffers {
                    if let record = report.expectedHeadRecord {
                        print("head differs from the expected one, which is record \(record)'s hash: the log has grown by \(report.records - Int(record)) records since")
                    } else {
                        print("head differs from the expected one, which no record of the chain has: the log was truncated or rewritten")
                    }
                }
            }
            if report.firstBad != nil || headDiffers { throw ExitCode(ExitStatus.checkFailed) }
            return
        }
        guard let id else { throw UsageError(description: "give a sample id or --verify-log") }
        try printAudit(try store.read(clearance: clearance) { try $0.auditJSON(id) })
    }

    /// Prints a sample's audit document in the chosen format.
    func printAudit(_ result: JSONValue) throws {
        switch format {
        case .json: printJSON(result)
        case .text: printAuditText(result)
        }
    }

    func printAuditText(_ result: JSONValue) {
        if let deletion = result["deleted_by"] {
            print("sample \(result["id"].map { $0.serialized() } ?? "?") is not stored: deleted by record \(deletion["record"]?.serialized() ?? "?")"
                  + (deletion["ids"] != nil ? " (possibly: the record keeps only a digest of the ids it deleted)" : ""))
            printLineage([deletion], indent: "  ")
            return
        }
        print("sample \(result["id"].map { $0.serialized() } ?? "?"), taint \(taintText(result["taint"]))")
        func printBecause(_ parts: JSONValue?) {
            for part in parts?.arrayValue ?? [] {
                print("    ⊔ \(taintText(part["taint"])) from \(part["from"]?.stringValue ?? "?")")
            }
        }
        printLineage(result["sample_lineage"]?.arrayValue ?? [], indent: "  ")
        for (name, label) in (result["labels"]?.objectValue ?? [:]).sorted(by: { $0.key < $1.key }) {
            let shown = label["views"]?.arrayValue.map { "\($0.count) view\($0.count == 1 ? "" : "s")" } ?? topClassesText(label["top"] ?? .null)
            print("label \(name)@\(label["version"]?.serialized() ?? "?") (row from v\(label["row_version"]?.serialized() ?? "?"), \(label["agent"]?.stringValue ?? "?")): \(shown)")
            print("  taint \(taintText(label["taint"])), the join of:")
            printBecause(label["taint_because"])
            printLineage(label["lineage"]?.arrayValue ?? [], indent: "  ")
        }
        for (name, label) in (result["regenerated"]?.objectValue ?? [:]).sorted(by: { $0.key < $1.key }) {
            print("regenerated by \(name)@\(label["version"]?.serialized() ?? "?") (\(label["status"]?.stringValue ?? "?")): \(topClassesText(label["top"] ?? .null))")
            print("  taint \(taintText(label["taint"])), the join of:")
            printBecause(label["taint_because"])
            printLineage(label["lineage"]?.arrayValue ?? [], indent: "  ")
        }
    }

    /// Lineage steps, one line each, with their parameters on the next.
    func printLineage(_ steps: [JSONValue], indent: String) {
        for step in steps {
            let time = ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: (step["time_ms"]?.doubleValue ?? 0) / 1000))
            let used = (step["used"]?.arrayValue ?? []).map { entityText($0) }.joined(separator: ", ")
            print("\(indent)← \(step["activity"]?.stringValue ?? "?") by \(step["agent"]?.stringValue ?? "?") at \(time) (record \(step["record"]?.serialized() ?? "?"))"
                  + (used.isEmpty ? "" : "; used \(used)") + (step["ids"] != nil ? "; may include this sample (only a digest of its ids is kept)" : ""))
            let parameters = (step["parameters"]?.objectValue ?? [:]).sorted { $0.key < $1.key }.compactMap { key, value in
                value.stringValue.flatMap { $0.isEmpty ? nil : "\(key)=\($0)" }
            }
            if !parameters.isEmpty { print("\(indent)    \(parameters.joined(separator: ", "))") }
        }
    }
}

func entityText(_ e: JSONValue) -> String {
    let name = e["name"]?.stringValue ?? "?"
    if let v = e["version"] { return "\(name)@\(v.serialized())" }
    if let h = e["xxh3_128"]?.stringValue { return "\(name) (xxh3-128 \(h.prefix(12))…)" }
    return name
}

extension AuditCommand {
    /// `audit CORPUS --verify-log`: every shard's hash chain, and each shard's head as the
    /// manifest recorded it at its last commit (corpus.md K-9). A head no record of the chain has
    /// (a truncated or rewritten log), or found at another position, fails (exit 1); records
    /// after it — a write that did not reach the manifest — are reported, not failed.
    func verifyCorpusLogs() throws {
        let (corpus, clearance) = try target.openCorpusCleared()
        defer { corpus.close() }
        guard let manifest = corpus.manifest else { return }
        var allOK = true
        var shardsJSON: [JSONValue] = []
        for (index, shard) in corpus.shards.enumerated() {
            let recorded = manifest.shardStates[index]
            let report = try shard.read(clearance: clearance) { try $0.verifyProvenanceLog(expecting: recorded.head) }
            let at = report.expectedHeadRecord.map(Int.init)
            let ok = report.firstBad == nil && at == recorded.records
            allOK = allOK && ok
            let ahead = ok ? report.records - recorded.records : 0
            switch format {
            case .json:
                guard case .object(var members) = provenanceLogJSON(report) else { continue }
                members["ok"] = .bool(ok)
                members["shard"] = .string(manifest.shards[index])
                members["manifest_records"] = .int(Int64(recorded.records))
                members["manifest_head"] = .string(recorded.head)
                members["manifest_head_record"] = at.map { .int(Int64($0)) } ?? .null
                members["ahead"] = .int(Int64(ahead))
                shardsJSON.append(.object(members))
            case .text:
                let name = manifest.shards[index]
                if let bad = report.firstBad {
                    print("\(name): provenance record \(bad.id): \(bad.reason)")
                } else if at == nil {
                    print("\(name): the manifest's head \(recorded.head) is no record's hash: the log was truncated or rewritten")
                } else if at != recorded.records {
                    print("\(name): the manifest's head is record \(at!)'s hash, but it recorded \(recorded.records) records")
                } else {
                    print("\(name): ok: \(report.records) records, head \(report.head)" + (ahead > 0 ? " (\(ahead) after the manifest's generation \(manifest.generation))" : ""))
                }
            }
        }
        if format == .json {
            printJSON(["ok": .bool(allOK), "generation": .int(Int64(manifest.generation)), "shards": .array(shardsJSON)])
        }
        if !allOK { throw ExitCode(ExitStatus.checkFailed) }
    }
}

/// `labeldb provenance export STORE --out prov.json`
struct ProvenanceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "provenance", abstract: "The provenance log.", subcommands: [ProvenanceExportCommand.self])
}

/// W3C PROV-JSON of the whole log.
struct ProvenanceExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export", abstract: "Write the provenance log as W3C PROV-JSON (entities, activities, agents and their relations); of a corpus, one bundle per shard.")
    @OptionGroup var target: StoreArgument
    @Option(help: "The PROV-JSON file to write.") var out: String

    func run() throws {
        // A corpus: one bundle per shard (Corpus.provenanceDocument); a store: its log.
        let (corpus, clearance) = try target.openCorpusCleared()
        defer { corpus.close() }
        let (document, records) = try corpus.provenanceDocument(clearance: clearance)
        // Not `atomically`: Foundation on Linux leaves an empty `TemporaryDirectory.*` behind in
        // /tmp for every atomic write. A failed run removes the output instead (main.swift).
        do { try document.serialized().write(toFile: out, atomically: false, encoding: .utf8) } catch {
            throw InputError(file: out, reason: "cannot write: \(error.localizedDescription)")
        }
        print("exported \(records) provenance records\(corpus.isSharded ? " of \(corpus.shards.count) shards" : "") to \(out)")
    }
}

/// `{secrecy: a,b; integrity: c}` from a taint label's JSON.
func taintText(_ taint: JSONValue?) -> String {
    func list(_ key: String) -> String { (taint?[key]?.arrayValue ?? []).compactMap(\.stringValue).joined(separator: ",") }
    return "{secrecy: \(list("secrecy")); integrity: \(list("integrity"))}"
}

extension ProvenanceExportCommand: WritesOutputFiles {
    var outputPaths: [String] { [out] }
}
