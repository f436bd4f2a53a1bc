import ArgumentParser
import Foundation
import LabelDB

/// `labeldb get STORE ID [--format json]`
struct GetCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "get", abstract: "Print one sample.")

    @OptionGroup var target: StoreArgument

    @Argument(help: "The sample id.")
    var id: UInt64

    @Option(help: "Output format: text or json.")
    var format: OutputFormat = .text

    @Flag(help: "Include the payload, base64-encoded, as \"payload_base64\".")
    var payload = false

    @Option(help: "Show the label in this label set (SET or SET@VERSION); repeatable. Default: every label set's latest version.")
    var labels: [String] = []

    func run() throws {
        let references = try labels.map { try LabelSetReference(parsing: $0) }
        let store = try target.open(readOnly: true)
        defer { store.close() }
        let classes = store.schema.classes
        guard let (sample, labelled) = try store.read({ tx -> (Sample, [(String, JSONValue, String)])? in
            guard let sample = try tx.sample(id) else { return nil }
            let wanted = references.isEmpty ? try tx.labelSets().map { LabelSetReference(name: $0.name) } : references
            var labelled: [(String, JSONValue, String)] = []
            for reference in wanted {
                let (set, version) = try tx.resolve(reference)
                guard let label = try tx.label(of: id, in: reference) else { continue }
                let json = labelJSON(label, set: set, version: version, classes: classes)
                let top = (json["top"]?.arrayValue ?? []).compactMap { entry -> String? in
                    guard let name = entry["name"]?.stringValue, let p = entry["p"]?.doubleValue else { return nil }
                    return String(format: "%@ %.4g", name, p)
                }.joined(separator: ", ")
                labelled.append((set.name, json, "\(set.name)@\(version) (written in v\(label.version) by \(set.versions[label.version - 1].agent)): \(top)"))
            }
            return (sample, labelled)
        }) else {
            throw StoreError.sampleNotFound(id)
        }
        switch format {
        case .json:
            var object: [String: JSONValue] = [
                "id": .uint(sample.id),
                "embedding": .array(sample.embedding.map(jsonNumber)),
                "metadata": .object(sample.metadata),
                "payload_bytes": .int(Int64(sample.payload.count)),
            ]
            if payload { object["payload_base64"] = .string(Data(sample.payload).base64EncodedString()) }
            object["labels"] = .object(Dictionary(labelled.map { ($0.0, $0.1) }, uniquingKeysWith: { a, _ in a }))
            printJSON(.object(object))
        case .text:
            print("id: \(sample.id)")
            print("metadata: \(JSONValue.object(sample.metadata).serialized())")
            print("payload: \(sample.payload.count) bytes")
            let shown = sample.embedding.prefix(8).map { "\($0)" }.joined(separator: ", ")
            let more = sample.embedding.count > 8 ? ", …" : ""
            print("embedding: [\(shown)\(more)] (\(sample.embedding.count) × \(store.schema.elementType.rawValue))")
            if payload { print("payload_base64: \(Data(sample.payload).base64EncodedString())") }
            for (_, _, text) in labelled { print("label \(text)") }
        }
    }
}

/// `labeldb info STORE [--format json]`
struct InfoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "info", abstract: "Print counts, schema, sizes and format version.")

    @OptionGroup var target: StoreArgument

    @Option(help: "Output format: text or json.")
    var format: OutputFormat = .text

    func run() throws {
        let store = try target.open(readOnly: true)
        defer { store.close() }
        let count = try store.read { try $0.count() }
        let schema = store.schema
        switch format {
        case .json:
            printJSON([
                "path": .string(store.path),
                "count": .int(Int64(count)),
                "dim": .int(Int64(schema.dimension)),
                "dtype": .string(schema.elementType.rawValue),
                "classes": .array(schema.classes.map { .string($0) }),
                "format_version": .int(Int64(store.formatVersion)),
                "bytes_on_disk": .int(Int64(store.bytesOnDisk)),
                "rows_per_block": .int(Int64(schema.rowsPerBlock)),
                "read_only": .bool(store.isReadOnly),
            ])
        case .text:
            print("store: \(store.path)")
            print("samples: \(count)")
            print("embeddings: \(schema.dimension)-d \(schema.elementType.rawValue), \(schema.rowsPerBlock) per block")
            let preview = schema.classes.prefix(10).joined(separator: ", ") + (schema.classes.count > 10 ? ", …" : "")
            print("classes: \(schema.classes.count) (\(preview))")
            print("format version: \(store.formatVersion)")
            print("bytes on disk: \(store.bytesOnDisk)")
        }
    }
}

/// `labeldb verify STORE`
struct VerifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify", abstract: "Check every record's checksum and cross-references; exit 0 only when all check.")

    @OptionGroup var target: StoreArgument

    @Option(help: "Output format: text or json.")
    var format: OutputFormat = .text

    func run() throws {
        let store = try target.open(readOnly: true)
        defer { store.close() }
        let report = try store.read { try $0.verify() }
        switch format {
        case .json:
            printJSON([
                "ok": .bool(report.isClean),
                "samples_checked": .int(Int64(report.samplesChecked)),
                "blocks_checked": .int(Int64(report.blocksChecked)),
                "problems": .array(report.problems.map { ["table": .string($0.table), "key": .string($0.key), "detail": .string($0.detail)] }),
            ])
        case .text:
            for problem in report.problems { print(problem) }
            print(report.isClean
                  ? "ok: \(report.samplesChecked) samples, \(report.blocksChecked) embedding blocks"
                  : "\(report.problems.count) bad records (\(report.samplesChecked) samples, \(report.blocksChecked) blocks checked)")
        }
        if !report.isClean { throw ExitCode(ExitStatus.checkFailed) }
    }
}

/// `labeldb export STORE --embeddings-out X.npy --ids-out IDS.npy [--meta-out M.jsonl] [--payloads-out P.jsonl]`
struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export", abstract: "Write every sample out, in ascending id order, streaming.")

    @OptionGroup var target: StoreArgument

    @Option(help: "Embeddings output: a float32 .npy, rows × dim.")
    var embeddingsOut: String

    @Option(help: "Ids output: a uint64 .npy.")
    var idsOut: String

    @Option(help: "Metadata output: JSONL, one object per row.")
    var metaOut: String?

    @Option(help: "Payloads output: JSONL, one {\"base64\": …} per row.")
    var payloadsOut: String?

    @Flag(help: "No progress bar.")
    var quiet = false

    func run() throws {
        let store = try target.open(readOnly: true)
        defer { store.close() }
        let dimension = store.schema.dimension
        let rows = try store.read { tx -> Int in
            let count = try tx.count()
            let embeddings = try NumPyWriter(path: embeddingsOut, dtype: .float32, shape: [count, dimension])
            let ids = try NumPyWriter(path: idsOut, dtype: .uint64, shape: [count])
            let meta = try metaOut.map(LineWriter.init(path:))
            let payloads = try payloadsOut.map(LineWriter.init(path:))
            let progress = ProgressBar(total: count, label: "exporting", quiet: quiet)
            var done = 0
            var row = [Float](repeating: 0, count: dimension)
            try tx.forEachSample { view in
                row = view.embedding()
                try embeddings.append(row)
                var id = view.id.littleEndian
                try withUnsafeBytes(of: &id) { try ids.append($0) }
                if let meta { try meta.write(.object(try view.metadata())) }
                if let payloads { try payloads.write(["base64": .string(Data(view.payload).base64EncodedString())]) }
                done += 1
                if done % 4096 == 0 { progress.update(done) }
                return true
            }
            progress.update(done)
            progress.finish()
            try embeddings.finish()
            try ids.finish()
            try meta?.close()
            try payloads?.close()
            return done
        }
        print("exported \(rows) samples")
    }
}

/// `labeldb scan STORE [--from ID] [--limit N] [--format json]`
struct ScanCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scan", abstract: "List samples in ascending id order (id, metadata, payload size).")

    @OptionGroup var target: StoreArgument

    @Option(help: "Start at the first id ≥ this.")
    var from: UInt64 = 0

    @Option(help: "At most this many samples.")
    var limit: Int = .max

    @Option(help: "Output format: text (one id per line) or json (one object per line).")
    var format: OutputFormat = .text

    func run() throws {
        let store = try target.open(readOnly: true)
        defer { store.close() }
        var shown = 0
        guard limit > 0 else { return }
        try store.read { tx in
            try tx.forEachSample(from: from) { view in
                switch format {
                case .json:
                    printJSON(["id": .uint(view.id), "metadata": .object(try view.metadata()), "payload_bytes": .int(Int64(view.payload.count))])
                case .text:
                    print(view.id)
                }
                shown += 1
                return shown < limit
            }
        }
    }
}
