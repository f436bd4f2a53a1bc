import ArgumentParser
import Foundation
import LabelDB

/// `labeldb import STORE --embeddings X.npy [--ids IDS.npy] [--meta META.jsonl] [--payloads PAYLOADS.jsonl] [--source NAME] [--secrecy T,…] [--integrity T,…]`
struct ImportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import",
        abstract: "Import samples: embeddings, ids, metadata and payloads, all or nothing.",
        discussion: """
            Rows of every file align. Without --ids, ids continue from the largest stored id \
            (max+1, max+2, …; 0 for an empty store). An id already stored is an error unless \
            --replace is given. Payload lines are {"base64": …}, {"text": …} or {"path": …} \
            (relative to the JSONL file's folder). Taint labels: --secrecy and --integrity tag \
            every row; a metadata line's "taint" member ({"secrecy": [...], "integrity": [...]}) \
            adds tags to its row and is not kept in the metadata. --secrecy-where EXPR TAGS \
            (and --integrity-where EXPR TAGS, with --privilege) adds TAGS to the rows that match \
            EXPR — the `labeldb query` grammar over id, meta.FIELD, tagged('T') and flows_to('…'), \
            the last two against the row's label before any rule — in the same transaction, so no \
            such row is ever stored without them. E.g. \
            --secrecy-where "meta.license = 'getty'" licensed:getty.
            """)

    @OptionGroup var target: StoreArgument

    @Option(help: "Embeddings: a 2-D .npy of <f4, <f2 or <f8, rows × dim.")
    var embeddings: String

    @Option(help: "Ids: a 1-D .npy of <u8 or <i8, one per row.")
    var ids: String?

    @Option(help: "Metadata: JSONL, one object per row.")
    var meta: String?

    @Option(help: "Payloads: JSONL, one {\"base64\"|\"text\"|\"path\": …} per row.")
    var payloads: String?

    @Option(help: "A source name recorded as each row's metadata field \"source\" when the row has none.")
    var source: String?

    /// The taint label of every row, and the privileges the import holds.
    @OptionGroup var taint: TaintOptions

    @Option(name: .customLong("secrecy-where"), parsing: .upToNextOption, help: ArgumentHelp(
        "Two values: a filter (the query grammar) and secrecy tags (comma-separated) added to the rows it matches; repeatable.",
        valueName: "expr tags"))
    var secrecyWhere: [String] = []

    @Option(name: .customLong("integrity-where"), parsing: .upToNextOption, help: ArgumentHelp(
        "Two values: a filter and integrity tags added to the rows it matches (each needs --privilege); repeatable.",
        valueName: "expr tags"))
    var integrityWhere: [String] = []

    @Flag(help: "Overwrite samples whose id is already stored.")
    var replace = false

    @Option(help: "Who imports, for the provenance log (default: user:$USER).")
    var agent: String?

    @Flag(help: "No progress bar.")
    var quiet = false

    @Option(help: "Output format: text or json.")
    var format: OutputFormat = .text

    func run() throws {
        let rules = try taintRules()
        if FileManager.default.fileExists(atPath: target.store + "/" + CorpusManifest.fileName) { return try importIntoCorpus(rules: rules) }
        let (store, clearance) = try target.openCleared(readOnly: false)
        defer { store.close() }
        let input = try ImportInput.load(
            embeddings: embeddings, ids: ids, meta: meta, payloads: payloads, source: source, taint: try taint.label(), dimension: store.schema.dimension)
        let privileges = try taint.privileges()
        let parameters = try taint.parameters()
        let progress = ProgressBar(total: input.rows, label: "importing", quiet: quiet)
        // Inputs with their content hashes, for the provenance record.
        let used = try [embeddings, ids, meta, payloads].compactMap { $0 }.map { try ProvenanceEntity.file($0, rows: input.rows) }
        let ruleParameters = Self.ruleParameters(rules)
        let (summary, matched) = try store.write(clearance: clearance) { tx in
            var batch = input.batch
            if batch.ids.isEmpty && input.rows > 0 {
                batch.ids = try ImportInput.nextIDs(after: tx.largestIDInUse(), count: input.rows)
            }
            // The rules run inside the write, after ids are known: the rows are written once, tagged.
            let matched = try batch.apply(rules)
            let summary = try tx.put(batch, mode: replace ? .replace : .insert, privileges: privileges, progress: progress.update)
            tx.describe(ProvenanceRecord(
                activity: "import", agent: agent ?? defaultAgent(), used: used,
                generated: [ProvenanceEntity(kind: "samples", name: "samples", rows: input.rows, firstID: batch.ids.min(), lastID: batch.ids.max())],
                parameters: parameters.merging(["inserted": "\(summary.inserted)", "replaced": "\(summary.replaced)", "source": source ?? ""]) { $1 }
                    .merging(ruleParameters) { $1 }))
            return (summary, matched)
        }
        progress.finish()
        printResult(rows: input.rows, summary: summary, rules: rules, matched: matched)
    }

    /// The import into a sharded corpus: each row into the shard of its id, checked in every
    /// shard before any is written (``CorpusWriter/importSamples(_:mode:privileges:clearance:provenance:afterShardCommit:)``).
    func importIntoCorpus(rules: [TaintRule]) throws {
        let writer = try CorpusWriter(opening: target.store)
        defer { writer.close() }
        let clearance = try Clearance(parsing: target.clearance)
        try writer.validate(clearance)
        let input = try ImportInput.load(
            embeddings: embeddings, ids: ids, meta: meta, payloads: payloads, source: source, taint: try taint.label(), dimension: writer.manifest.dimension)
        var batch = input.batch
        if batch.ids.isEmpty && input.rows > 0 { batch.ids = try ImportInput.nextIDs(after: writer.largestIDInUse(), count: input.rows) }
        let matched = try batch.apply(rules)
        let used = try [embeddings, ids, meta, payloads].compactMap { $0 }.map { try ProvenanceEntity.file($0, rows: input.rows) }
        let record = ProvenanceRecord(activity: "import", agent: agent ?? defaultAgent(), used: used,
                                      parameters: try taint.parameters().merging(["source": source ?? "", "corpus": "true"]) { $1 }.merging(Self.ruleParameters(rules)) { $1 })
        let summary = try writer.importSamples(batch, mode: replace ? .replace : .insert, privileges: try taint.privileges(), clearance: clearance, provenance: record)
        printResult(rows: input.rows, summary: summary, rules: rules, matched: matched)
    }

    /// The --secrecy-where and --integrity-where rules as provenance parameters.
    static func ruleParameters(_ rules: [TaintRule]) -> [String: String] {
        var parameters: [String: String] = [:]
        for kind in [TaintRule.Kind.secrecy, .integrity] {
            let described = rules.filter { $0.kind == kind }.map { "\($0.filter) => \($0.tags.sorted().joined(separator: ","))" }
            if !described.isEmpty { parameters["\(kind.rawValue)_where"] = described.joined(separator: "; ") }
        }
        return parameters
    }

    /// What an import prints.
    func printResult(rows: Int, summary: PutSummary, rules: [TaintRule], matched: [Int]) {
        switch format {
        case .json:
            // `replaced` only with --replace (format-spec/cli.md, C-8: a key without a value is omitted).
            var object: [String: JSONValue] = ["imported": .int(Int64(rows)), "inserted": .int(Int64(summary.inserted))]
            if replace { object["replaced"] = .int(Int64(summary.replaced)) }
            if !rules.isEmpty {
                object["rules"] = .array(zip(rules, matched).map { rule, count in
                    ["where": .string(rule.filter.description), rule.kind.rawValue: .array(rule.tags.sorted().map(JSONValue.string)), "matched": .int(Int64(count))]
                })
            }
            printJSON(.object(object))
        case .text:
            print("imported \(rows) samples into \(target.store) (\(summary.inserted) new, \(summary.replaced) replaced)")
            for (rule, count) in zip(rules, matched) { print("  \(rule.kind.rawValue) \(rule.tags.sorted().joined(separator: ",")): \(count) rows where \(rule.filter)") }
        }
    }

    /// The --secrecy-where and --integrity-where pairs, parsed before the store is opened.
    func taintRules() throws -> [TaintRule] {
        var rules: [TaintRule] = []
        for (flag, values, kind) in [("--secrecy-where", secrecyWhere, TaintRule.Kind.secrecy), ("--integrity-where", integrityWhere, .integrity)] {
            guard values.count % 2 == 0 else {
                throw UsageError(description: "\(flag) takes two values, a filter and tags: \(flag) \"meta.license = 'getty'\" licensed:getty")
            }
            for pair in stride(from: 0, to: values.count, by: 2) {
                let filter: QueryExpression
                do { filter = try QueryExpression(parsing: values[pair]) } catch let error as QueryParseError {
                    throw UsageError(description: "\(flag) \(error)\n  \(values[pair])\n  \(String(repeating: " ", count: max(error.column - 1, 0)))^")
                }
                do { rules.append(try TaintRule(filter: filter, kind: kind, tags: values[pair + 1])) } catch {
                    throw UsageError(description: "\(flag) \(values[pair]): \(error)")
                }
            }
        }
        return rules
    }
}

/// The files of one import, read and checked before the store is touched.
struct ImportInput {
    var batch: SampleBatch
    var rows: Int

    static func load(
        embeddings: String, ids: String?, meta: String?, payloads: String?, source: String?, taint: TaintLabel = .public, dimension: Int
    ) throws -> ImportInput {
        let matrix = try NumPyArray.read(embeddings)
        guard matrix.shape.count == 2 else {
            throw InputError(file: embeddings, reason: "expected a 2-D array (rows × \(dimension)), found shape \(matrix.shape)")
        }
        guard matrix.dtype.isFloat else {
            throw InputError(file: embeddings, reason: "dtype \(matrix.dtype.rawValue) is not supported for embeddings; use <f4, <f2 or <f8")
        }
        let rows = matrix.shape[0]
        guard matrix.shape[1] == dimension else {
            throw InputError(file: embeddings, reason: "rows have \(matrix.shape[1]) columns; the store's embedding dimension is \(dimension)")
        }
        let values = try matrix.floats(file: embeddings)
        try values.withUnsafeBufferPointer { buffer in
            for i in 0..<buffer.count where !buffer[i].isFinite {
                throw InputError(file: embeddings, location: "row \(i / dimension), column \(i % dimension)",
                                 reason: "\(buffer[i].isNaN ? "NaN" : "infinite value") (embeddings must be finite)")
            }
        }
        var idList: [UInt64] = []
        if let ids {
            let array = try NumPyArray.read(ids)
            guard array.shape.count == 1 else {
                throw InputError(file: ids, reason: "expected a 1-D array of ids, found shape \(array.shape)")
            }
            idList = try array.ids(file: ids)
            guard idList.count == rows else {
                throw InputError(file: ids, reason: "\(idList.count) ids for \(rows) embedding rows in \(embeddings)")
            }
            var firstRow: [UInt64: Int] = [:]
            firstRow.reserveCapacity(rows)
            for (row, id) in idList.enumerated() {
                if let earlier = firstRow.updateValue(row, forKey: id) {
                    throw InputError(file: ids, location: "rows \(earlier) and \(row)", reason: "id \(id) appears more than once")
                }
            }
        }
        var metadata: [[String: JSONValue]]? = nil
        var taints: [TaintLabel]? = taint == .public ? nil : Array(repeating: taint, count: rows)
        if let meta {
            var objects = try JSONLines.readObjects(meta)
            guard objects.count == rows else {
                throw InputError(file: meta, reason: "\(objects.count) lines for \(rows) embedding rows in \(embeddings)")
            }
            if let rowTaints = try SampleBatch.takeTaintMembers(&objects, base: taint, file: meta, location: { "line \($0 + 1)" }) {
                taints = rowTaints
            }
            metadata = objects
        }
        if let source {
            var filled = metadata ?? Array(repeating: [:], count: rows)
            for row in filled.indices where filled[row]["source"] == nil { filled[row]["source"] = .string(source) }
            metadata = filled
        }
        var payloadList: [[UInt8]]? = nil
        if let payloads {
            let list = try JSONLines.readPayloads(payloads)
            guard list.count == rows else {
                throw InputError(file: payloads, reason: "\(list.count) lines for \(rows) embedding rows in \(embeddings)")
            }
            payloadList = list
        }
        return ImportInput(batch: SampleBatch(ids: idList, embeddings: values, metadata: metadata, payloads: payloadList, taints: taints), rows: rows)
    }

    /// max+1, max+2, … (0, 1, … for an empty store).
    static func nextIDs(after maxID: UInt64?, count: Int) throws -> [UInt64] {
        let first: UInt64
        if let maxID {
            guard maxID < UInt64.max, UInt64.max - maxID >= UInt64(count) else {
                throw UsageError(description: "cannot number \(count) new ids after \(maxID): past 2^64−1; pass --ids")
            }
            first = maxID + 1
        } else {
            first = 0
        }
        return (0..<UInt64(count)).map { first + $0 }
    }
}
