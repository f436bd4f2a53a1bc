import ArgumentParser
import Foundation
import LabelDB

/// `labeldb export STORE [--where EXPR] [--embeddings-out X.npy] [--ids-out IDS.npy] [--meta-out M.jsonl] [--payloads-out P.jsonl] [--labels-out SET=FILE,…] [--npz OUT.npz [--labels SET,…]]`
struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export", abstract: "Write samples out, in ascending id order, streaming: all, or those matching --where.",
        discussion: """
            Every output has one row per exported sample, in the same order. --labels-out SET=FILE \
            writes a label set's labels (SET, SET@VERSION, or a projector, regenerated on read): \
            hard labels as int32 class indices (-1 where a sample has none), multi-labels as \
            uint8 multi-hot rows × classes, soft labels as float32 rows × classes (zeros where a \
            sample has none). --npz writes everything into one NumPy archive: ids, embeddings, \
            metadata and payloads (each as bytes with offsets: row i is bytes[offsets[i]:offsets[i+1]], \
            metadata as JSON), and labels/NAME for each --labels source.
            """)

    @OptionGroup var target: StoreArgument

    @Option(help: "Only samples matching this filter (the `labeldb query` grammar).")
    var `where`: String?

    @Option(help: "Embeddings output: a float32 .npy, rows × dim.")
    var embeddingsOut: String?

    @Option(help: "Ids output: a uint64 .npy.")
    var idsOut: String?

    @Option(help: "Metadata output: JSONL, one object per row.")
    var metaOut: String?

    @Option(help: "Payloads output: JSONL, one {\"base64\": …} per row.")
    var payloadsOut: String?

    @Option(help: "SET=FILE: a label set's (or projector's) labels as a .npy; comma-separated, repeatable.")
    var labelsOut: [String] = []

    @Option(help: "Everything in one .npz: ids, embeddings, metadata, payloads and the --labels sources.")
    var npz: String?

    @Option(help: "Label sets or projectors to include in --npz (comma-separated, repeatable).")
    var labels: [String] = []

    @Flag(help: "No progress bar.")
    var quiet = false

    func run() throws {
        let labelFiles = try parseLabelsOut()
        var npzLabels: [LabelSetReference] = []
        for text in labels.flatMap({ $0.split(separator: ",") }) {
            let reference = try LabelSetReference(parsing: String(text))
            guard !npzLabels.contains(reference) else { throw UsageError(description: "--labels names \(reference) twice") }
            npzLabels.append(reference)
        }
        guard npz != nil || npzLabels.isEmpty else { throw UsageError(description: "--labels names what --npz includes: give --npz too") }
        guard [embeddingsOut, idsOut, metaOut, payloadsOut, npz].contains(where: { $0 != nil }) || !labelFiles.isEmpty else {
            throw UsageError(description: "give at least one output: --ids-out, --embeddings-out, --meta-out, --payloads-out, --labels-out or --npz")
        }
        let filter = try parseWhere(`where`)
        let (corpus, clearance) = try target.openCorpusCleared()
        defer { corpus.close() }
        let references = labelFiles.map(\.reference) + npzLabels
        // Every shard has the same label sets and projectors: the first one says what each column holds.
        var outputs = try corpus.shards[0].read(clearance: clearance) { tx in
            try ExportOutputs(command: self, tx: tx, labelFiles: labelFiles, npzLabels: npzLabels)
        }
        let total = filter == nil ? try corpus.shards.reduce(0) { n, shard in n + (try shard.read(clearance: clearance) { try $0.count() }) } : 0
        let progress = ProgressBar(total: total, label: "exporting", quiet: quiet || filter != nil)
        let columns = outputs.columns
        let store = target.store
        var done = 0
        try corpus.merge(clearance: clearance, by: { $0.id < $1.id }, produce: { _, tx, emit in
            if filter == nil && references.isEmpty {
                // Every sample, in one cursor walk: the common case stays as fast as a scan.
                var walked = 0
                try tx.forEachSample { view in walked += 1; return try emit(try ExportRow(view, labels: [], columns: columns)) }
                // The walk must deliver what LMDB's own count says: fewer means damaged pages hid rows.
                let count = try tx.count()
                guard walked == count else {
                    throw StoreError.corruptRecord(store: store, table: "samples", key: "*", detail: "\(walked) samples read, \(count) counted; run verify")
                }
            } else {
                try tx.query(filter, labels: references) { id, rowLabels in
                    guard let row = try tx.withSample(id, { try ExportRow($0, labels: rowLabels, columns: columns) }) else {
                        throw StoreError.corruptRecord(store: store, table: "samples", key: "\(id)", detail: "found by the query but not by a lookup; run verify")
                    }
                    _ = try emit(row)
                }
            }
        }, consume: { row in
            try outputs.append(row)
            done += 1
            if done % 4096 == 0 { progress.update(done) }
            return true
        })
        progress.update(done)
        progress.finish()
        try outputs.finish()
        print("exported \(done) samples")
    }

    /// `--labels-out SET=FILE[,SET=FILE…]`, each naming one output file.
    func parseLabelsOut() throws -> [(reference: LabelSetReference, file: String)] {
        try labelsOut.flatMap { $0.split(separator: ",") }.map { item in
            let parts = item.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else {
                throw UsageError(description: "--labels-out takes SET=FILE (e.g. teacher=teacher.npy), not '\(item)'")
            }
            return (try LabelSetReference(parsing: parts[0]), parts[1])
        }
    }
}

extension ExportCommand: WritesOutputFiles {
    var outputPaths: [String] {
        [embeddingsOut, idsOut, metaOut, payloadsOut, npz].compactMap { $0 } + ((try? parseLabelsOut()) ?? []).map(\.file)
    }
}

/// The files one export writes, each appended one sample at a time.
struct ExportOutputs {
    var ids: [NumPyWriter] = []
    var embeddings: [NumPyWriter] = []
    let meta: LineWriter?
    let payloads: LineWriter?
    /// The label columns, in the order of the query's label references.
    var labelColumns: [LabelColumn] = []
    /// The .npz's byte columns: metadata and payloads as bytes with offsets.
    var npzMeta: ByteColumn?
    var npzPayloads: ByteColumn?
    let npz: NpzWriter?
    let dimension: Int

    init(command: ExportCommand, tx: LabelDB.Transaction, labelFiles: [(reference: LabelSetReference, file: String)], npzLabels: [LabelSetReference]) throws {
        dimension = tx.store.schema.dimension
        let classes = tx.store.schema.classes.count
        if let path = command.idsOut { ids.append(try NumPyWriter(path: path, dtype: .uint64, rowShape: [])) }
        if let path = command.embeddingsOut { embeddings.append(try NumPyWriter(path: path, dtype: .float32, rowShape: [dimension])) }
        meta = try command.metaOut.map(LineWriter.init(path:))
        payloads = try command.payloadsOut.map(LineWriter.init(path:))
        for (reference, file) in labelFiles {
            let kind = try LabelColumn.kind(of: reference, in: tx)
            labelColumns.append(LabelColumn(kind: kind, writer: try NumPyWriter(path: file, dtype: kind.dtype, rowShape: kind.rowShape(classes: classes)), classes: classes))
        }
        npz = try command.npz.map { try NpzWriter(path: $0) }
        if let npz {
            ids.append(try npz.member("ids", dtype: .uint64, rowShape: []))
            embeddings.append(try npz.member("embeddings", dtype: .float32, rowShape: [dimension]))
            npzMeta = try ByteColumn(npz, name: "metadata")
            npzPayloads = try ByteColumn(npz, name: "payloads")
            for reference in npzLabels {
                let kind = try LabelColumn.kind(of: reference, in: tx)
                labelColumns.append(LabelColumn(kind: kind, writer: try npz.member("labels/\(reference)", dtype: kind.dtype, rowShape: kind.rowShape(classes: classes)), classes: classes))
            }
        }
    }

    /// Which parts of a sample the outputs need.
    var columns: ExportRow.Columns {
        ExportRow.Columns(embedding: !embeddings.isEmpty, metadata: meta != nil || npzMeta != nil, payload: payloads != nil || npzPayloads != nil)
    }

    mutating func append(_ row: ExportRow) throws {
        var id = row.id.littleEndian
        for writer in ids { try withUnsafeBytes(of: &id) { try writer.append($0) } }
        if let embedding = row.embedding { for writer in embeddings { try writer.append(embedding) } }
        if let metadata = row.metadata {
            try meta?.write(metadata)
            try npzMeta?.append(Array(metadata.serialized().utf8))
        }
        if let payload = row.payload {
            try payloads?.write(["base64": .string(Data(payload).base64EncodedString())])
            try npzPayloads?.append(payload)
        }
        for (column, label) in zip(labelColumns, row.labels) { try column.append(label) }
    }

    func finish() throws {
        for writer in ids + embeddings { try writer.finish() }
        try meta?.close()
        try payloads?.close()
        for column in labelColumns { try column.writer.finish() }
        try npzMeta?.finish()
        try npzPayloads?.finish()
        try npz?.finish()
    }
}

/// One exported sample, copied out of its shard's transaction: the parts the outputs need.
struct ExportRow: Sendable {
    /// Which parts to copy.
    struct Columns: Sendable {
        let embedding: Bool
        let metadata: Bool
        let payload: Bool
    }

    let id: UInt64
    let embedding: [Float]?
    /// The metadata object; a tainted row's label rides along as the "taint" member `import`
    /// consumes, so export → import keeps it.
    let metadata: JSONValue?
    let payload: [UInt8]?
    let labels: [Label?]

    init(_ view: SampleView, labels: [Label?], columns: Columns) throws {
        id = view.id
        embedding = columns.embedding ? view.embedding() : nil
        if columns.metadata {
            var members = try view.metadata()
            if view.taint != .public { members["taint"] = view.taint.json }
            metadata = .object(members)
        } else {
            metadata = nil
        }
        payload = columns.payload ? Array(view.payload) : nil
        self.labels = labels
    }
}

/// One label source's output column: its shape follows the kind of label.
struct LabelColumn {
    enum Kind {
        /// int32 class index, -1 when absent.
        case hard
        /// uint8 multi-hot row.
        case multi
        /// float32 distribution, zeros when absent.
        case soft

        var dtype: NumPyArray.DType {
            switch self {
            case .hard: .int32
            case .multi: .uint8
            case .soft: .float32
            }
        }

        func rowShape(classes: Int) -> [Int] { self == .hard ? [] : [classes] }
    }

    let kind: Kind
    let writer: NumPyWriter
    let classes: Int

    /// The kind of the version `reference` resolves to; projectors give soft labels.
    static func kind(of reference: LabelSetReference, in tx: LabelDB.Transaction) throws -> Kind {
        guard try tx.labelSet(named: reference.name) != nil else {
            _ = try tx.load(reference)   // a projector, or the unknown-label-set error
            return .soft
        }
        let (set, version) = try tx.resolve(reference)
        try tx.requirePerSample(set, for: "export --labels-out (use `labels export --views-out`)")
        switch set.versions[version - 1].kind {
        case .hard: return .hard
        case .multi: return .multi
        case .soft: return .soft
        }
    }

    func append(_ label: Label?) throws {
        switch kind {
        case .hard:
            var top = Int32(label.flatMap { $0.hard ?? $0.top1?.classIndex } ?? -1).littleEndian
            try withUnsafeBytes(of: &top) { try writer.append($0) }
        case .multi:
            var row = [UInt8](repeating: 0, count: classes)
            for c in label?.multi ?? label?.hard.map({ [$0] }) ?? [] where c < classes { row[c] = 1 }
            try row.withUnsafeBytes { try writer.append($0) }
        case .soft:
            try writer.append(label?.distribution(classCount: classes) ?? [Float](repeating: 0, count: classes))
        }
    }
}

/// A variable-length column of an .npz: NAME (uint8 bytes, concatenated) and NAME_offsets
/// (uint64, rows + 1; row i is bytes[offsets[i]:offsets[i+1]]).
struct ByteColumn {
    let bytes: NumPyWriter
    let offsets: NumPyWriter
    var end: UInt64 = 0

    init(_ npz: NpzWriter, name: String) throws {
        bytes = try npz.member(name, dtype: .uint8, rowShape: [])
        offsets = try npz.member(name + "_offsets", dtype: .uint64, rowShape: [])
        var zero = UInt64(0)
        try withUnsafeBytes(of: &zero) { try offsets.append($0) }
    }

    mutating func append(_ row: [UInt8]) throws {
        try row.withUnsafeBytes { try bytes.append($0) }
        end += UInt64(row.count)
        var little = end.littleEndian
        try withUnsafeBytes(of: &little) { try offsets.append($0) }
    }

    func finish() throws {
        try bytes.finish()
        try offsets.finish()
    }
}
