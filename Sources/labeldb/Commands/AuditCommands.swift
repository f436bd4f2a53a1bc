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
            it elsewhere to detect a rewritten or truncated log). Exit 1 when the log is damaged.
            """)
    @OptionGroup var target: StoreArgument
    @Argument(help: "The sample id.") var id: UInt64?
    @Flag(help: "Verify the provenance log instead.") var verifyLog = false
    @Option(help: "Output format: text or json.") var format: OutputFormat = .text

    func run() throws {
        let (store, clearance) = try target.openCleared(readOnly: true)
        defer { store.close() }
        if verifyLog {
            let report = try store.read(clearance: clearance) { try $0.verifyProvenanceLog() }
            switch format {
            case .json:
                printJSON(["ok": .bool(report.firstBad == nil), "records": .int(Int64(report.records)), "head": .string(report.head),
                           "first_bad": report.firstBad.map { ["id": .uint($0.id), "reason": .string($0.reason)] } ?? .null])
            case .text:
                if let bad = report.firstBad {
                    print("provenance record \(bad.id): \(bad.reason)")
                } else {
                    print("ok: \(report.records) records, head \(report.head)")
                }
            }
            if report.firstBad != nil { throw ExitCode(ExitStatus.checkFailed) }
            return
        }
        guard let id else { throw UsageError(description: "give a sample id or --verify-log") }
        let classes = store.schema.classes
        let result = try store.read(clearance: clearance) { tx -> JSONValue in
            guard let (provenanceID, sampleTaint) = try tx.withSample(id, { ($0.provenance, $0.taint) }) else { throw StoreError.sampleNotFound(id) }
            // Why a derived value carries its taint label: the labels that were joined into it.
            func because(_ parts: [(String, TaintLabel)]) -> JSONValue {
                .array(parts.map { ["from": .string($0.0), "taint": $0.1.json] })
            }
            var labels: [String: JSONValue] = [:]
            for set in try tx.labelSets() {
                guard let label = try tx.label(of: id, set: set, version: set.latest) else { continue }
                let version = set.versions[label.version - 1]
                labels[set.name] = [
                    "version": .int(Int64(set.latest)), "row_version": .int(Int64(label.version)), "agent": .string(version.agent),
                    "top": topClassesJSON(label.distribution(classCount: classes.count), classes: classes),
                    "taint": label.taint.json,
                    "taint_because": because([("sample \(id)", sampleTaint), ("label source \(set.name)@\(label.version) (\(version.agent))", version.sourceLabel)]),
                    "lineage": try lineage(tx, version.provenance),
                ]
            }
            var regenerated: [String: JSONValue] = [:]
            for projector in try tx.projectors() {
                // A projector fitted on data this clearance does not admit is not used.
                guard let info = projector.versions.last, !info.statisticsRedacted else { continue }
                let loaded = try tx.load(ProjectorReference(name: projector.name))
                let label = try tx.regenerate([id], with: loaded)[0]
                regenerated[projector.name] = [
                    "version": .int(Int64(projector.latest)), "status": .string(label.status.rawValue),
                    "top": topClassesJSON(label.probabilities, classes: classes),
                    "taint": label.taint.json,
                    "taint_because": because([
                        ("projector \(projector.name)@\(projector.latest): the join of the \(info.samples) labels of \(info.sourceSet)@\(info.sourceVersion) it was fitted on", info.taintLabel),
                        ("sample \(id)", sampleTaint)]),
                    "lineage": try lineage(tx, loaded.version.provenance),
                ]
            }
            return ["id": .uint(id), "taint": sampleTaint.json, "sample_lineage": try lineage(tx, provenanceID), "labels": .object(labels), "regenerated": .object(regenerated)]
        }
        switch format {
        case .json: printJSON(result)
        case .text: printAudit(result)
        }
    }

    /// The record `id` and, through the label sets and projectors it used, the records behind
    /// those, back to input files.
    func lineage(_ tx: LabelDB.Transaction, _ id: UInt64?, depth: Int = 0) throws -> JSONValue {
        guard let id, id > 0, depth < 16, let record = try tx.provenanceRecord(id) else { return .array([]) }
        var steps: [JSONValue] = [[
            "record": .uint(id), "activity": .string(record.activity), "agent": .string(record.agent), "time_ms": .int(record.timeMilliseconds),
            "used": .array(record.used.map { entityJSON($0) }), "generated": .array(record.generated.map { entityJSON($0) }),
        ]]
        for used in record.used {
            var next: UInt64? = nil
            if used.kind == "label_set", let v = used.version, let set = try tx.labelSet(named: used.name), v <= set.latest {
                next = set.versions[v - 1].provenance
            } else if used.kind == "projector", let v = used.version, let projector = try tx.projector(named: used.name), v <= projector.latest {
                next = projector.versions[v - 1].provenance
            }
            if let next, case .array(let more) = try lineage(tx, next, depth: depth + 1) { steps += more }
        }
        return .array(steps)
    }

    func printAudit(_ result: JSONValue) {
        print("sample \(result["id"].map { $0.serialized() } ?? "?"), taint \(taintText(result["taint"]))")
        func printBecause(_ parts: JSONValue?) {
            for part in parts?.arrayValue ?? [] {
                print("    ⊔ \(taintText(part["taint"])) from \(part["from"]?.stringValue ?? "?")")
            }
        }
        func printLineage(_ lineage: JSONValue?, indent: String) {
            for step in lineage?.arrayValue ?? [] {
                let time = ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: (step["time_ms"]?.doubleValue ?? 0) / 1000))
                let used = (step["used"]?.arrayValue ?? []).map { entityText($0) }.joined(separator: ", ")
                print("\(indent)← \(step["activity"]?.stringValue ?? "?") by \(step["agent"]?.stringValue ?? "?") at \(time) (record \(step["record"]?.serialized() ?? "?"))" + (used.isEmpty ? "" : "; used \(used)"))
            }
        }
        printLineage(result["sample_lineage"], indent: "  ")
        for (name, label) in (result["labels"]?.objectValue ?? [:]).sorted(by: { $0.key < $1.key }) {
            print("label \(name)@\(label["version"]?.serialized() ?? "?") (row from v\(label["row_version"]?.serialized() ?? "?"), \(label["agent"]?.stringValue ?? "?")): \(topClassesText(label["top"] ?? .null))")
            print("  taint \(taintText(label["taint"])), the join of:")
            printBecause(label["taint_because"])
            printLineage(label["lineage"], indent: "  ")
        }
        for (name, label) in (result["regenerated"]?.objectValue ?? [:]).sorted(by: { $0.key < $1.key }) {
            print("regenerated by \(name)@\(label["version"]?.serialized() ?? "?") (\(label["status"]?.stringValue ?? "?")): \(topClassesText(label["top"] ?? .null))")
            print("  taint \(taintText(label["taint"])), the join of:")
            printBecause(label["taint_because"])
            printLineage(label["lineage"], indent: "  ")
        }
    }
}

func entityJSON(_ e: ProvenanceEntity) -> JSONValue {
    var object: [String: JSONValue] = ["kind": .string(e.kind), "name": .string(e.name)]
    if let v = e.version { object["version"] = .int(Int64(v)) }
    if let h = e.hash { object["xxh3_128"] = .string(h) }
    if let r = e.rows { object["rows"] = .int(Int64(r)) }
    if let f = e.firstID { object["first_id"] = .uint(f) }
    if let l = e.lastID { object["last_id"] = .uint(l) }
    return .object(object)
}

func entityText(_ e: JSONValue) -> String {
    let name = e["name"]?.stringValue ?? "?"
    if let v = e["version"] { return "\(name)@\(v.serialized())" }
    if let h = e["xxh3_128"]?.stringValue { return "\(name) (xxh3-128 \(h.prefix(12))…)" }
    return name
}

/// `labeldb provenance export STORE --out prov.json`
struct ProvenanceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "provenance", abstract: "The provenance log.", subcommands: [ProvenanceExportCommand.self])
}

/// W3C PROV-JSON of the whole log.
struct ProvenanceExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export", abstract: "Write the provenance log as W3C PROV-JSON (entities, activities, agents and their relations).")
    @OptionGroup var target: StoreArgument
    @Option(help: "The PROV-JSON file to write.") var out: String

    func run() throws {
        let (store, clearance) = try target.openCleared(readOnly: true)
        defer { store.close() }
        let records = try store.read(clearance: clearance) { try $0.provenanceRecords() }
        var entities: [String: JSONValue] = [:], activities: [String: JSONValue] = [:], agents: [String: JSONValue] = [:]
        var used: [String: JSONValue] = [:], generated: [String: JSONValue] = [:], associated: [String: JSONValue] = [:]
        var relation = 0
        func entityID(_ e: ProvenanceEntity) -> String {
            let base = "labeldb:\(e.kind)/\(e.name)" + (e.version.map { "@\($0)" } ?? "")
            return e.hash.map { base + "#\($0)" } ?? base
        }
        func time(_ ms: Int64) -> String {
            let f = ISO8601DateFormatter()
            f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
            return f.string(from: Date(timeIntervalSince1970: Double(ms) / 1000))
        }
        for (id, record) in records {
            let activity = "labeldb:activity/\(id)"
            let agent = "labeldb:agent/\(record.agent)"
            var attributes: [String: JSONValue] = ["prov:type": .string(record.activity), "prov:startTime": .string(time(record.timeMilliseconds)),
                                                   "prov:endTime": .string(time(record.timeMilliseconds))]
            for (k, v) in record.parameters { attributes["labeldb:\(k)"] = .string(v) }
            activities[activity] = .object(attributes)
            agents[agent] = ["prov:label": .string(record.agent)]
            relation += 1
            associated["_:assoc\(relation)"] = ["prov:activity": .string(activity), "prov:agent": .string(agent)]
            for e in record.used {
                entities[entityID(e)] = entityJSON(e)
                relation += 1
                used["_:used\(relation)"] = ["prov:activity": .string(activity), "prov:entity": .string(entityID(e))]
            }
            for e in record.generated {
                entities[entityID(e)] = entityJSON(e)
                relation += 1
                generated["_:gen\(relation)"] = ["prov:entity": .string(entityID(e)), "prov:activity": .string(activity),
                                                 "prov:time": .string(time(record.timeMilliseconds))]
            }
        }
        let document: JSONValue = [
            "prefix": ["labeldb": "https://labeldb.invalid/ns#", "prov": "http://www.w3.org/ns/prov#"],
            "entity": .object(entities), "activity": .object(activities), "agent": .object(agents),
            "used": .object(used), "wasGeneratedBy": .object(generated), "wasAssociatedWith": .object(associated),
        ]
        do { try document.serialized().write(toFile: out, atomically: true, encoding: .utf8) } catch {
            throw InputError(file: out, reason: "cannot write: \(error.localizedDescription)")
        }
        print("exported \(records.count) provenance records to \(out)")
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
