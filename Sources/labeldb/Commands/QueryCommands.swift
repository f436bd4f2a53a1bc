import ArgumentParser
import Foundation
import LabelDB

/// `labeldb knn STORE --query Q.npy --k K [--metric cosine|l2] [--where EXPR] [--labels SET [--lambda L] [--flow permissive|conservative]] [--format json]`
struct KNNCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "knn", abstract: "Exact k nearest neighbours of each query vector (cosine or L2), computed with BLAS; with --labels, a kNN soft label and its flow labels.",
        discussion: """
            With --labels SET, each query gets a soft label from its k nearest visible samples \
            that have a label in SET: the average of their distributions weighted by max(cosine, 0) \
            (for --metric l2, by 1 / (1 + distance)), renormalised, uniform when every weight is 0. \
            It carries two flow labels: conservative_label, the join of the k neighbours' labels \
            and the set's source; and label, the permissive one: the least restrictive context \
            (secrecy tags S ⊆ the conservative ones, searched depth-first) whose own k nearest \
            regenerate an output with the same top-1 class and total-variation distance ≤ --lambda; \
            the output returned (probs, neighbors, witness) is the one regenerated under that \
            context. --flow conservative skips the search.
            """)
    @OptionGroup var target: StoreArgument
    @Option(help: "Query vectors: a 2-D .npy (queries × dim) or 1-D (one query).") var query: String
    @Option(help: "Neighbours per query.") var k: Int = 10
    @Option(help: "cosine or l2 (similarity is the negative distance).") var metric: String = "cosine"
    @Option(help: "Only samples matching this filter (the `labeldb query` grammar) are candidates.") var `where`: String?
    @Option(help: "Generate a soft label per query from the neighbours' labels in this label set (SET or SET@VERSION), or from a projector's labels, regenerated on read.") var labels: String?
    @Option(help: "λ: the largest total-variation distance at which a context's output counts as the same answer.") var lambda: Float = 0.1
    @Option(help: "permissive (default) or conservative: how the generated label's flow label is computed.") var flow: String = "permissive"
    @Option(help: "Output format: text or json (one object per query, in query order).") var format: OutputFormat = .text

    func run() throws {
        guard let metricValue = NeighborMetric(rawValue: metric) else { throw UsageError(description: "--metric must be cosine or l2") }
        guard let mode = KNNFlowMode(rawValue: flow) else { throw UsageError(description: "--flow must be permissive or conservative") }
        guard k >= 1 else { throw UsageError(description: "--k must be at least 1") }
        guard lambda >= 0, lambda.isFinite else { throw UsageError(description: "--lambda must be a number ≥ 0") }
        let reference = try labels.map { try LabelSetReference(parsing: $0) }
        let array = try NumPyArray.read(query)
        let (corpus, clearance) = try target.openCorpusCleared()
        defer { corpus.close() }
        let store = corpus.shards[0]
        let d = store.schema.dimension
        guard (array.shape.count == 1 && array.shape[0] == d) || (array.shape.count == 2 && array.shape[1] == d) else {
            throw InputError(file: query, reason: "expected queries × \(d) (or one vector of \(d)), found shape \(array.shape)")
        }
        let values = try array.floats(file: query)
        for (i, v) in values.enumerated() where !v.isFinite {
            throw InputError(file: query, location: "row \(i / d), column \(i % d)", reason: "\(v) (queries must be finite)")
        }
        let count = values.count / d
        let filter = try parseWhere(`where`)
        if let reference {
            let classes = store.schema.classes
            let results = try corpus.knnLabels(of: values, queries: count, k: k, from: reference, metric: metricValue, mode: mode, lambda: lambda,
                                               where: filter, clearance: clearance)
            for (i, result) in results.enumerated() {
                switch format {
                case .json:
                    printJSON(knnLabelJSON(result, query: i, classes: classes))
                case .text:
                    print("query \(i): \(topClassesText(topClassesJSON(result.probabilities, classes: classes))); label \(result.label); conservative \(result.conservativeLabel); witness \(result.witness.map(String.init).joined(separator: ","))")
                }
            }
            return
        }
        let hits = try corpus.nearestNeighbors(of: values, queries: count, k: k, metric: metricValue, where: filter, clearance: clearance)
        for (i, neighbors) in hits.enumerated() {
            switch format {
            case .json:
                printJSON(["query": .int(Int64(i)), "neighbors": .array(neighbors.map { ["id": .uint($0.id), "similarity": jsonNumber($0.similarity)] })])
            case .text:
                print("query \(i): " + neighbors.map { "\($0.id) (\(String(format: "%.4f", $0.similarity)))" }.joined(separator: ", "))
            }
        }
    }
}

/// `labeldb query STORE EXPR [--labels SET] [--order-by id|confidence|margin|entropy] [--desc] [--limit N] [--offset N] [--explain] [--format json]`
struct QueryCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "query",
        abstract: "Samples matching a filter, streamed in order.",
        discussion: """
            Grammar:
              expr       := or
              or         := and ('or' and)*
              and        := not ('and' not)*
              not        := 'not' not | primary
              primary    := '(' expr ')' | 'tagged(' STRING ')' | 'flows_to(' STRING ')' | label '.has(' class ')'
                          | label '.source_tagged(' STRING ')' | 'agree(' REF ',' REF ')' | operand OP value
              operand    := 'id' | 'meta.' FIELD | label '.top1' | label '.confidence' | label '.prob(' class ')'
                          | label '.version' | label '.agent' | label '.views'
                          | label '.any_view.top1' | label '.any_view.confidence' | label '.any_view.prob(' class ')'
              label      := 'label(' REF ')'     REF := NAME ['@' VERSION]; a label set, or a projector (regenerated on read)
              OP         := = | != | < | <= | > | >=
              value      := 'STRING' | NUMBER | label '.top1'    class: 'NAME', an index, or label '.top1'
            Strings use single quotes ('' for a quote); keywords are lower case. tagged('T') matches \
            samples whose taint label names T; flows_to('secrecy=a,b;integrity=c') those whose taint \
            label flows to that one. label(SET).agent is who produced the sample's row (the agent of \
            the import that wrote it); label(SET).source_tagged('T') matches rows whose source (the \
            import's --secrecy/--integrity, or a projector's own label) names T, which finds e.g. \
            labels a human-reviewed source produced although the row's joined label lost that \
            integrity tag. label(A).top1 = label(B).top1 (or agree(A, B), or !=) compares two label \
            sets' top-1 classes, and label(A).prob(label(B).top1) reads A's probability of B's class; \
            a sample one of them does not label matches neither = nor !=. A per-view set (labels per \
            augmented view) answers only label(SET).views (its number of views; 0 without a row) and \
            label(SET).any_view.top1 / .confidence / .prob(C), true when any view meets the \
            comparison. Every query runs under --clearance: rows it does not \
            admit are not examined, returned or counted, and every JSON row carries its "taint". A \
            top-level label(SET).top1 = C is answered from the class index, a top-level tagged('T') \
            from the taint partitions; otherwise every sample is scanned. --explain says which. \
            Default order: ascending id. --order-by confidence, margin or entropy sorts by that \
            score of the first --labels source (ties by id; samples it does not label come last, \
            either direction): e.g. --order-by margin lists the labels closest to flipping first. In \
            id order rows stream in constant memory; ordered by a score, memory grows with \
            --offset + --limit. Labels from projectors are regenerated \
            in batches of 256.
            """)
    @OptionGroup var target: StoreArgument
    @Argument(help: "The filter (use `id >= 0` for everything).") var expression: String
    @Option(help: "Include these label sets' (or projectors') top-1 class and confidence in each row; repeatable.") var labels: [String] = []
    @Option(help: "id, or a score of the first --labels source: confidence (top-1 probability), margin (top-1 minus top-2) or entropy (nats). Unlabelled samples come last.") var orderBy: String = "id"
    @Flag(help: "Descending order.") var desc = false
    @Option(help: "At most this many rows.") var limit: Int = .max
    @Option(help: "Skip this many rows first.") var offset: Int = 0
    @Flag(help: "Print the plan (index, taint partition or scan) to standard error.") var explain = false
    @Option(help: "JSON columns, comma-separated: id (always), taint, labels, metadata, embedding, payload_bytes. Default: id,taint,labels.") var columns: String = "id,taint,labels"
    @Option(help: "Also write the matching ids as a .npy (<u8), streamed.") var idsOut: String?
    @Option(help: "Also write the matching embeddings as a .npy (rows × dim <f4), streamed.") var embeddingsOut: String?
    @Option(help: "Also write the first --labels source's distributions as a .npy (rows × classes <f4; zeros where a row has no label), streamed.") var labelsOut: String?
    @Option(help: "Output format: text (one id per line) or json (one object per line).") var format: OutputFormat = .text

    func run() throws {
        let filter: QueryExpression
        do { filter = try QueryExpression(parsing: expression) } catch let error as QueryParseError {
            throw UsageError(description: "query \(error)\n  \(expression)\n  \(String(repeating: " ", count: max(error.column - 1, 0)))^")
        }
        let references = try labels.map { try LabelSetReference(parsing: $0) }
        let order: QueryOrder
        switch orderBy {
        case "id": order = .id
        case "confidence", "margin", "entropy":
            guard let first = references.first else { throw UsageError(description: "--order-by \(orderBy) needs --labels SET") }
            order = orderBy == "confidence" ? .confidence(first) : orderBy == "margin" ? .margin(first) : .entropy(first)
        default: throw UsageError(description: "--order-by must be id, confidence, margin or entropy")
        }
        guard limit >= 0, offset >= 0 else { throw UsageError(description: "--limit and --offset must not be negative") }
        let known: Set<String> = ["id", "taint", "labels", "metadata", "embedding", "payload_bytes"]
        let wanted = Set(columns.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) })
        if let bad = wanted.subtracting(known).sorted().first {
            throw UsageError(description: "--columns: unknown column '\(bad)' (known: \(known.sorted().joined(separator: ", ")))")
        }
        if labelsOut != nil && references.isEmpty { throw UsageError(description: "--labels-out needs --labels SET") }
        let (corpus, clearance) = try target.openCorpusCleared()
        defer { corpus.close() }
        let classes = corpus.schema.classes
        let d = corpus.schema.dimension
        let idWriter = try idsOut.map { try NumPyWriter(path: $0, dtype: .uint64, rowShape: []) }
        let embeddingWriter = try embeddingsOut.map { try NumPyWriter(path: $0, dtype: .float32, rowShape: [d]) }
        let labelWriter = try labelsOut.map { try NumPyWriter(path: $0, dtype: .float32, rowShape: [classes.count]) }
        let rows = QueryRows(command: self, references: references, wanted: wanted, embeddings: embeddingWriter != nil, distributions: labelWriter != nil)
        // A corpus's shards each return their first offset + limit rows, and the merge skips
        // and cuts; a store skips in the query itself, without building the skipped rows.
        let (limit, desc) = (limit, desc)
        let (shardOffset, shardLimit, offset) = !corpus.isSharded ? (self.offset, limit, 0)
            : (0, limit == .max || self.offset > Int.max - limit ? Int.max : self.offset + limit, self.offset)
        let plans = PlanLog()
        var skipped = 0, emitted = 0
        guard limit > 0 || explain else { return try finish([idWriter, embeddingWriter, labelWriter]) }
        try corpus.merge(clearance: clearance, by: { $0.rank.precedes($1.rank, order: order, descending: desc) }, produce: { shard, tx, emit in
            var stopped = false
            let plan = try tx.queryRanked(filter, order: order, descending: desc, limit: shardLimit, offset: shardOffset, labels: references) { rank, rowLabels in
                guard !stopped else { return }
                stopped = try !emit(try rows.row(rank, rowLabels, tx: tx))
            }
            plans.record(shard, plan)
        }, consume: { row in
            if skipped < offset { skipped += 1; return true }
            guard emitted < limit else { return false }
            emitted += 1
            if let idWriter {
                var little = row.rank.id.littleEndian
                try withUnsafeBytes(of: &little) { try idWriter.append($0) }
            }
            if let embedding = row.embedding { try embeddingWriter?.append(embedding) }
            if let distribution = row.distribution { try labelWriter?.append(distribution) }
            print(row.line)
            return emitted < limit
        })
        try finish([idWriter, embeddingWriter, labelWriter])
        if explain { printError(plans.description(names: corpus.manifest?.shards)) }
    }

    private func finish(_ writers: [NumPyWriter?]) throws {
        for writer in writers { try writer?.finish() }
    }
}

/// How `labeldb query` turns a matching sample into its output: the line (an id, or a JSON
/// object of the wanted columns) and, for the `--*-out` files, its embedding and distribution.
/// Built in the shard's own read transaction, so a corpus's rows arrive at the merge finished.
struct QueryRows: Sendable {
    let store: String
    let format: OutputFormat
    let references: [LabelSetReference]
    let wanted: Set<String>
    let embeddings: Bool
    let distributions: Bool

    init(command: QueryCommand, references: [LabelSetReference], wanted: Set<String>, embeddings: Bool, distributions: Bool) {
        store = command.target.store
        format = command.format
        self.references = references
        self.wanted = wanted
        self.embeddings = embeddings
        self.distributions = distributions
    }

    /// One matching sample's output.
    struct Row: Sendable {
        let rank: QueryRank
        let line: String
        let embedding: [Float]?
        let distribution: [Float]?
    }

    func row(_ rank: QueryRank, _ rowLabels: [Label?], tx: LabelDB.Transaction) throws -> Row {
        let id = rank.id
        let classes = tx.store.schema.classes
        var row: [String: JSONValue] = ["id": .uint(id)]
        var embedding: [Float]? = nil
        let needsSample = wanted.contains("taint") || wanted.contains("metadata") || wanted.contains("embedding")
            || wanted.contains("payload_bytes") || embeddings
        if needsSample {
            // The query found this id among the samples; a lookup that cannot is damage.
            let found: Void? = try tx.withSample(id) { view in
                if wanted.contains("taint") { row["taint"] = view.taint.json }
                if wanted.contains("metadata") { row["metadata"] = .object(try view.metadata()) }
                if wanted.contains("payload_bytes") { row["payload_bytes"] = .int(Int64(view.payload.count)) }
                if wanted.contains("embedding") || embeddings { embedding = view.embedding() }
                if wanted.contains("embedding") { row["embedding"] = .array((embedding ?? []).map(jsonNumber)) }
            }
            guard found != nil else {
                throw StoreError.corruptRecord(store: store, table: "samples", key: "\(id)", detail: "found by the query but not by a lookup; run verify")
            }
        }
        if wanted.contains("labels") && !references.isEmpty {
            var labelsJSON: [String: JSONValue] = [:]
            for (reference, label) in zip(references, rowLabels) {
                guard let label, let top = label.hard.map({ ($0, Float(1)) }) ?? label.top1.map({ ($0.classIndex, $0.confidence) }) else { continue }
                labelsJSON[reference.name] = ["class": .int(Int64(top.0)), "top1": .string(classes[top.0]), "confidence": jsonNumber(top.1), "taint": label.taint.json]
            }
            row["labels"] = .object(labelsJSON)
        }
        let distribution = distributions ? rowLabels.first??.distribution(classCount: classes.count) ?? [Float](repeating: 0, count: classes.count) : nil
        let line = format == .text ? "\(id)" : JSONValue.object(row).serialized()
        return Row(rank: rank, line: line, embedding: embeddings ? embedding : nil, distribution: distribution)
    }
}

/// The plans of a query's shards, recorded from their threads, for `--explain`.
final class PlanLog: @unchecked Sendable {
    private let lock = NSLock()
    private var plans: [Int: QueryPlan] = [:]

    func record(_ shard: Int, _ plan: QueryPlan) {
        lock.withLock { plans[shard] = plan }
    }

    /// One plan for a store; one line per shard, named, for a corpus.
    func description(names: [String]?) -> String {
        lock.withLock {
            guard let names else { return plans[0]?.description ?? "" }
            return names.enumerated().map { "\($0.element): \(plans[$0.offset]?.description ?? "not run")" }.joined(separator: "\n")
        }
    }
}

extension QueryCommand: WritesOutputFiles {
    var outputPaths: [String] { [idsOut, embeddingsOut, labelsOut].compactMap { $0 } }
}
