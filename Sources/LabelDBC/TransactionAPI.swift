import CLabelDB
import Foundation
import LabelDB

// Transactions and everything that reads.

@_cdecl("ldb_txn_begin")
public func ldbTxnBegin(_ pointer: OpaquePointer?, _ clearanceText: UnsafePointer<CChar>?, _ write: Int32, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    guarded {
        guard let out else { throw APIError.badInput("ldb_txn_begin: out is NULL") }
        out.pointee = nil
        let owner = try storeHandle(pointer)
        try owner.use { _ in try begin(owner, clearanceText, write, out) }
    }
}

private func begin(_ owner: StoreHandle, _ clearanceText: UnsafePointer<CChar>?, _ write: Int32, _ out: UnsafeMutablePointer<OpaquePointer?>) throws {
    let clearance = try Clearance(parsing: try string(clearanceText, "clearance"))
    let handle: TransactionHandle
    if write != 0 {
        let session = try WriteSession(store: owner.store, clearance: clearance)
        handle = TransactionHandle(owner: owner, read: nil, write: session)
    } else {
        handle = TransactionHandle(owner: owner, read: try ReadSession(store: owner.store, clearance: clearance), write: nil)
    }
    // A clearance naming a tag the store has never seen is a typo, not an empty view.
    do { try handle.run { try $0.validate(clearance) } } catch {
        handle.write?.abort()
        handle.read?.end()
        throw error
    }
    owner.transactionBegan()
    out.pointee = OpaquePointer(Unmanaged.passRetained(handle).toOpaque())
}

/// Ends a transaction handle and frees it. A write transaction ends only on its own thread (LMDB
/// ties it there), and no transaction ends while a call on it runs: both are refused, and the
/// handle stays valid.
private func finish(_ pointer: OpaquePointer?, commit: Bool) throws {
    guard let pointer else { return }
    let handle = try transactionHandle(pointer)
    if let write = handle.write, write.isOpen, !write.isOnOwnThread {
        throw APIError.badInput("a write transaction must be committed or aborted on the thread that began it")
    }
    // The end runs as a call, so it is refused while another call on the handle runs; once it
    // ran, the handle is freed whether or not the commit succeeded.
    var failure: (any Error)?
    try handle.call {
        do {
            if let write = handle.write {
                if commit { try write.commit() } else { write.abort() }
            }
            handle.read?.end()
        } catch { failure = error }
    }
    handle.owner.transactionEnded()
    Unmanaged<TransactionHandle>.fromOpaque(UnsafeRawPointer(pointer)).release()
    if let failure { throw failure }
}

@_cdecl("ldb_txn_commit")
public func ldbTxnCommit(_ pointer: OpaquePointer?) -> Int32 {
    guarded {
        guard pointer != nil else { throw APIError.badInput("ldb_txn_commit: the transaction handle is NULL") }
        try finish(pointer, commit: true)
    }
}

@_cdecl("ldb_txn_abort")
public func ldbTxnAbort(_ pointer: OpaquePointer?) {
    _ = guarded { try finish(pointer, commit: false) }
}

@_cdecl("ldb_count")
public func ldbCount(_ pointer: OpaquePointer?, _ count: UnsafeMutablePointer<UInt64>?) -> Int32 {
    guarded {
        guard let count else { throw APIError.badInput("ldb_count: count is NULL") }
        count.pointee = UInt64(try transactionHandle(pointer).run { try $0.count() })
    }
}

/// Hands an id array to C (malloc'd; the caller frees it with ldb_free).
private func give(_ ids: [UInt64], _ out: UnsafeMutablePointer<UnsafeMutablePointer<UInt64>?>?, _ count: UnsafeMutablePointer<Int>?) throws {
    guard let out, let count else { throw APIError.badInput("the ids and count outputs must not be NULL") }
    let memory = malloc(max(ids.count, 1) * MemoryLayout<UInt64>.stride)!.assumingMemoryBound(to: UInt64.self)
    ids.withUnsafeBufferPointer { memory.update(from: $0.baseAddress!, count: ids.count) }
    out.pointee = memory
    count.pointee = ids.count
}

@_cdecl("ldb_ids")
public func ldbIDs(_ pointer: OpaquePointer?, _ ids: UnsafeMutablePointer<UnsafeMutablePointer<UInt64>?>?, _ count: UnsafeMutablePointer<Int>?) -> Int32 {
    guarded { try give(try transactionHandle(pointer).run { try $0.ids() }, ids, count) }
}

@_cdecl("ldb_get_many")
public func ldbGetMany(_ pointer: OpaquePointer?, _ idsPointer: UnsafePointer<UInt64>?, _ count: Int, _ batchPointer: UnsafeMutablePointer<ldb_batch>?) -> Int32 {
    guarded {
        let handle = try transactionHandle(pointer)
        guard let batchPointer else { throw APIError.badInput("ldb_get_many: batch is NULL") }
        let ids = try buffer(idsPointer, count, "ids")
        var batch = batchPointer.pointee
        let (request, buffers) = try BatchTranslation.translate(batch, rows: count)
        let found = try handle.run { tx in try tx.readBatch(ids, request, into: buffers, arena: handle.arena) }
        batch.found_count = found
        // The arena's arrays stay put until the next batch read on this transaction.
        handle.taintJSON = Array(JSONValue.array(handle.arena.taintLabels.map(\.json)).serialized().utf8CString)
        batch.metadata_size = handle.arena.metadata.count
        batch.payload_size = handle.arena.payloads.count
        batch.metadata_bytes = handle.arena.metadata.withUnsafeBufferPointer { UnsafePointer($0.baseAddress) }
        batch.payload_bytes = handle.arena.payloads.withUnsafeBufferPointer { UnsafePointer($0.baseAddress) }
        batch.taint_json = handle.taintJSON.withUnsafeBufferPointer { UnsafePointer($0.baseAddress) }
        batchPointer.pointee = batch
    }
}

@_cdecl("ldb_hard_labels")
public func ldbHardLabels(
    _ pointer: OpaquePointer?, _ setText: UnsafePointer<CChar>?, _ ids: UnsafeMutablePointer<UnsafeMutablePointer<UInt64>?>?,
    _ classes: UnsafeMutablePointer<UnsafeMutablePointer<Int32>?>?, _ count: UnsafeMutablePointer<Int>?
) -> Int32 {
    guarded {
        let handle = try transactionHandle(pointer)
        guard let classes else { throw APIError.badInput("ldb_hard_labels: the classes output must not be NULL") }
        let reference = try LabelSetReference(parsing: try string(setText, "set"))
        var rows: [(id: UInt64, class: Int32)] = []
        _ = try handle.run { tx in
            try tx.forEachHardLabelBlock(in: reference, ids: true) { blockIDs, blockClasses in
                for (id, c) in zip(blockIDs!, blockClasses) { rows.append((id, c)) }
                return true
            }
        }
        // Blocks come in storage (slot) order; callers get ids ascending, as everywhere else.
        rows.sort { $0.id < $1.id }
        try give(rows.map(\.id), ids, count)
        let memory = malloc(max(rows.count, 1) * MemoryLayout<Int32>.stride)!.assumingMemoryBound(to: Int32.self)
        for (i, row) in rows.enumerated() { memory[i] = row.class }
        classes.pointee = memory
    }
}

@_cdecl("ldb_query")
public func ldbQuery(
    _ pointer: OpaquePointer?, _ filterText: UnsafePointer<CChar>?, _ optionsJSON: UnsafePointer<CChar>?,
    _ ids: UnsafeMutablePointer<UnsafeMutablePointer<UInt64>?>?, _ count: UnsafeMutablePointer<Int>?
) -> Int32 {
    guarded {
        let handle = try transactionHandle(pointer)
        let o = try options(optionsJSON)
        try o.only(["order", "descending", "limit", "offset"], call: "ldb_query")
        let text = filterText.map { String(cString: $0) } ?? ""
        let filter = text.isEmpty ? nil : try QueryExpression(parsing: text)
        let order: QueryOrder
        switch try o.text("order") ?? "id" {
        case "id": order = .id
        case let spec where spec.hasPrefix("confidence:"): order = .confidence(try LabelSetReference(parsing: String(spec.dropFirst("confidence:".count))))
        case let spec where spec.hasPrefix("margin:"): order = .margin(try LabelSetReference(parsing: String(spec.dropFirst("margin:".count))))
        case let spec where spec.hasPrefix("entropy:"): order = .entropy(try LabelSetReference(parsing: String(spec.dropFirst("entropy:".count))))
        case let spec: throw APIError.badInput("ldb_query: order must be 'id', 'confidence:SET', 'margin:SET' or 'entropy:SET', not '\(spec)'")
        }
        let limit = try o.integer("limit") ?? Int.max, offset = try o.integer("offset") ?? 0
        guard limit >= 0, offset >= 0 else { throw APIError.badInput("ldb_query: limit and offset must be ≥ 0") }
        var matches: [UInt64] = []
        _ = try handle.run { tx in
            try tx.query(filter, order: order, descending: try o.flag("descending") ?? false, limit: limit, offset: offset) { matches.append($0) }
        }
        try give(matches, ids, count)
    }
}

@_cdecl("ldb_knn")
public func ldbKNN(
    _ pointer: OpaquePointer?, _ queriesPointer: UnsafePointer<Float>?, _ queryCount: Int, _ k: Int, _ optionsJSON: UnsafePointer<CChar>?,
    _ idsOut: UnsafeMutablePointer<UInt64>?, _ similaritiesOut: UnsafeMutablePointer<Float>?, _ json: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?
) -> Int32 {
    guarded {
        let handle = try transactionHandle(pointer)
        let request = try KNNRequest(queriesPointer, queryCount, k, outputs: idsOut, similaritiesOut, options: try options(optionsJSON), schema: handle.schema,
                                     call: "ldb_knn")
        let classes = handle.schema.classes
        let (lists, documents) = try handle.run { tx -> ([[Neighbor]], [JSONValue]?) in
            let include = try request.filter.map { try tx.matcher(for: $0) }
            if let labels = request.labels {
                let results = try tx.knnLabels(of: request.queries, queries: queryCount, k: k, from: labels, metric: request.metric, mode: request.mode,
                                               lambda: request.lambda, include: include)
                return (results.map(\.neighbors), results.enumerated().map { knnLabelJSON($1, query: $0, classes: classes) })
            }
            return (try tx.nearestNeighbors(of: request.queries, queries: queryCount, k: k, metric: request.metric, include: include), nil)
        }
        try request.deliver(lists, idsOut, similaritiesOut, documents, json)
    }
}

@_cdecl("ldb_corpus_knn")
public func ldbCorpusKNN(
    _ path: UnsafePointer<CChar>?, _ queriesPointer: UnsafePointer<Float>?, _ queryCount: Int, _ k: Int, _ optionsJSON: UnsafePointer<CChar>?,
    _ idsOut: UnsafeMutablePointer<UInt64>?, _ similaritiesOut: UnsafeMutablePointer<Float>?, _ json: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?
) -> Int32 {
    guarded {
        let corpus = try Corpus(opening: try string(path, "path"))
        defer { corpus.close() }
        var o = try options(optionsJSON)
        let clearance = try Clearance(parsing: try o.text("clearance") ?? "public")
        o.removeValue(forKey: "clearance")
        try corpus.validate(clearance)
        let request = try KNNRequest(queriesPointer, queryCount, k, outputs: idsOut, similaritiesOut, options: o, schema: corpus.schema, call: "ldb_corpus_knn")
        if let labels = request.labels {
            let results = try corpus.knnLabels(of: request.queries, queries: queryCount, k: k, from: labels, metric: request.metric, mode: request.mode,
                                               lambda: request.lambda, where: request.filter, clearance: clearance)
            let classes = corpus.schema.classes
            try request.deliver(results.map(\.neighbors), idsOut, similaritiesOut, results.enumerated().map { knnLabelJSON($1, query: $0, classes: classes) }, json)
        } else {
            let lists = try corpus.nearestNeighbors(of: request.queries, queries: queryCount, k: k, metric: request.metric, where: request.filter, clearance: clearance)
            try request.deliver(lists, idsOut, similaritiesOut, nil, json)
        }
    }
}

/// A kNN call's queries and options, checked (ldb_knn, ldb_corpus_knn).
private struct KNNRequest {
    let queries: [Float]
    let k: Int
    let labels: LabelSetReference?
    let metric: NeighborMetric
    let mode: KNNFlowMode
    let lambda: Float
    let filter: QueryExpression?

    init(_ pointer: UnsafePointer<Float>?, _ count: Int, _ k: Int, outputs idsOut: UnsafeMutablePointer<UInt64>?, _ similaritiesOut: UnsafeMutablePointer<Float>?,
         options o: [String: JSONValue], schema: Schema, call: String) throws {
        let d = schema.dimension
        guard k >= 1, k <= 100_000 else { throw APIError.badInput("\(call): k must be 1…100000, not \(k)") }
        guard count >= 0, count <= Int.max / max(d * k, 1) else { throw APIError.badInput("\(call): query count \(count) is too large") }
        queries = Array(try buffer(pointer, count * d, "queries"))
        if let bad = queries.firstIndex(where: { !$0.isFinite }) {
            throw APIError.badInput("\(call): query \(bad / d), element \(bad % d) is \(queries[bad]) (queries must be finite)")
        }
        guard idsOut != nil, similaritiesOut != nil else { throw APIError.badInput("\(call): ids and similarities must not be NULL") }
        try o.only(["labels", "flow", "lambda", "metric", "where"], call: call)
        guard let metric = NeighborMetric(rawValue: try o.text("metric") ?? "cosine") else { throw APIError.badInput("\(call): metric must be cosine or l2") }
        guard let mode = KNNFlowMode(rawValue: try o.text("flow") ?? "permissive") else { throw APIError.badInput("\(call): flow must be permissive or conservative") }
        let lambda = Float(try o.number("lambda") ?? 0.1)
        guard lambda >= 0, lambda.isFinite else { throw APIError.badInput("\(call): lambda must be a number ≥ 0") }
        self.k = k
        self.metric = metric
        self.mode = mode
        self.lambda = lambda
        filter = try o.text("where").map { try QueryExpression(parsing: $0) }
        labels = try o.text("labels").map { try LabelSetReference(parsing: $0) }
    }

    /// Fills the [queries, k] id and similarity arrays (0 and -inf past a query's last
    /// neighbour) and, with labels, hands over the kNN labels' JSON.
    func deliver(_ lists: [[Neighbor]], _ idsOut: UnsafeMutablePointer<UInt64>?, _ similaritiesOut: UnsafeMutablePointer<Float>?,
                 _ documents: [JSONValue]?, _ json: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) throws {
        // safe: init refused NULL outputs.
        let idsOut = idsOut!, similaritiesOut = similaritiesOut!
        for (q, neighbors) in lists.enumerated() {
            for j in 0..<k {
                idsOut[q * k + j] = j < neighbors.count ? neighbors[j].id : 0
                similaritiesOut[q * k + j] = j < neighbors.count ? neighbors[j].similarity : -.infinity
            }
        }
        if let documents { give(documents, json) } else { json?.pointee = nil }
    }
}

@_cdecl("ldb_label_sets")
public func ldbLabelSets(_ pointer: OpaquePointer?, _ json: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    guarded {
        let sets = try transactionHandle(pointer).run { try $0.labelSets() }
        give(sets.map { set -> JSONValue in
            var summary = labelSetSummaryJSON(set).objectValue ?? [:]
            summary["versions"] = .array(set.versions.map { .object(versionJSON($0)) })
            return .object(summary)
        }, json)
    }
}

@_cdecl("ldb_projectors")
public func ldbProjectors(_ pointer: OpaquePointer?, _ json: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    guarded {
        let handle = try transactionHandle(pointer)
        let classes = handle.schema.classes.count
        let documents = try handle.run { tx in
            try tx.projectors().map { projector -> JSONValue in
                var summary = projectorSummaryJSON(projector).objectValue ?? [:]
                let set = try tx.labelSet(named: projector.versions.last?.sourceSet ?? "")
                summary["versions"] = .array(projector.versions.map { .object(projectorVersionJSON($0, name: projector.name, labelSet: set, classes: classes)) })
                return .object(summary)
            }
        }
        give(documents, json)
    }
}

@_cdecl("ldb_provenance")
public func ldbProvenance(_ pointer: OpaquePointer?, _ json: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    guarded {
        let (records, report) = try transactionHandle(pointer).run { (try $0.provenanceRecords(), try $0.verifyProvenanceLog()) }
        give(["log": provenanceLogJSON(report), "prov": provJSON(records)], json)
    }
}

@_cdecl("ldb_audit")
public func ldbAudit(_ pointer: OpaquePointer?, _ id: UInt64, _ json: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    guarded { give(try transactionHandle(pointer).run { try $0.auditJSON(id) }, json) }
}

@_cdecl("ldb_agreement")
public func ldbAgreement(_ pointer: OpaquePointer?, _ optionsJSON: UnsafePointer<CChar>?, _ json: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    guarded {
        let o = try options(optionsJSON)
        try o.only(["sets", "where"], call: "ldb_agreement")
        let references = try o.strings("sets").map { try LabelSetReference(parsing: $0) }
        let filter = try o.text("where").flatMap { $0.isEmpty ? nil : try QueryExpression(parsing: $0) }
        let result = try transactionHandle(pointer).run { try $0.agreement(of: references, where: filter) }
        give(["pairs": .array(result.pairs.map(agreementPairJSON)), "fleiss": agreementFleissJSON(result) ?? .null], json)
    }
}

@_cdecl("ldb_corpus_card")
public func ldbCorpusCard(_ pointer: OpaquePointer?, _ optionsJSON: UnsafePointer<CChar>?, _ json: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    guarded {
        let o = try options(optionsJSON)
        try o.only(["labels", "html", "title"], call: "ldb_corpus_card")
        let references = try (o["labels"] == nil || o["labels"] == .null ? [] : try o.strings("labels")).map { try LabelSetReference(parsing: $0) }
        let handle = try transactionHandle(pointer)
        let card = try handle.run { try $0.corpusCard(labels: references.isEmpty ? nil : references) }
        if let path = try o.text("html") {
            do { try corpusCardHTML(card, title: try o.text("title") ?? "corpus").write(toFile: path, atomically: false, encoding: .utf8) } catch {
                throw APIError.badInput("ldb_corpus_card: cannot write \(path): \(error.localizedDescription)")
            }
        }
        give(corpusCardJSON(card), json)
    }
}

@_cdecl("ldb_check_projector")
public func ldbCheckProjector(_ pointer: OpaquePointer?, _ nameText: UnsafePointer<CChar>?, _ json: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    guarded {
        guard let nameText else { throw APIError.badInput("ldb_check_projector: the projector name is NULL") }
        let reference = try ProjectorReference(parsing: String(cString: nameText))
        give(projectorCheckJSON(try transactionHandle(pointer).run { try $0.checkProjector(reference) }), json)
    }
}

@_cdecl("ldb_read_views")
public func ldbReadViews(
    _ pointer: OpaquePointer?, _ setText: UnsafePointer<CChar>?, _ idsPointer: UnsafePointer<UInt64>?, _ count: Int,
    _ optionsJSON: UnsafePointer<CChar>?, _ out: UnsafeMutablePointer<UnsafeMutablePointer<ldb_views>?>?
) -> Int32 {
    guarded {
        let handle = try transactionHandle(pointer)
        guard let out else { throw APIError.badInput("ldb_read_views: the output must not be NULL") }
        let reference = try LabelSetReference(parsing: try string(setText, "set"))
        let o = try options(optionsJSON)
        try o.only(["epoch", "soft", "k"], call: "ldb_read_views")
        let form: SoftLabelForm
        switch try o.text("soft") ?? "compact" {
        case "compact": form = .compact(k: try o.integer("k"))
        case "dense": form = .dense
        case "none": form = .none
        case let other: throw APIError.badInput("ldb_read_views: soft must be 'compact', 'dense' or 'none', not '\(other)'")
        }
        let ids = Array(try buffer(idsPointer, max(count, 0), "ids"))
        let epoch = try o.integer("epoch")
        out.pointee = nil
        let batch = try handle.run { tx in try tx.readViews(ids, from: reference, epoch: epoch, soft: form) }
        out.pointee = ViewColumns.allocate(batch, dense: form == .dense)
    }
}

@_cdecl("ldb_views_free")
public func ldbViewsFree(_ views: UnsafeMutablePointer<ldb_views>?) {
    guard let views else { return }
    let v = views.pointee
    for column in [UnsafeMutableRawPointer(v.offsets), UnsafeMutableRawPointer(v.versions), UnsafeMutableRawPointer(v.view),
                   UnsafeMutableRawPointer(v.crop), UnsafeMutableRawPointer(v.flip), UnsafeMutableRawPointer(v.epoch),
                   UnsafeMutableRawPointer(v.seed), UnsafeMutableRawPointer(v.hard), UnsafeMutableRawPointer(v.dense),
                   UnsafeMutableRawPointer(v.top_classes), UnsafeMutableRawPointer(v.top_probabilities),
                   UnsafeMutableRawPointer(v.leftover), UnsafeMutableRawPointer(v.extra_offsets), UnsafeMutableRawPointer(v.extra_bytes)] {
        free(column)
    }
    free(views)
}

/// A ``ViewBatch`` copied into `malloc`ed C columns (ldb_views), which ldb_views_free releases.
/// Every column the request asked for is a valid pointer, even when no view was read.
private enum ViewColumns {
    static func allocate(_ batch: ViewBatch, dense: Bool) -> UnsafeMutablePointer<ldb_views> {
        let views = malloc(MemoryLayout<ldb_views>.stride)!.assumingMemoryBound(to: ldb_views.self)
        var extraOffsets: [UInt64] = [0], extraBytes: [UInt8] = []
        for extra in batch.extras {
            extraBytes.append(contentsOf: (extra ?? "").utf8)
            extraOffsets.append(UInt64(extraBytes.count))
        }
        views.initialize(to: ldb_views(
            samples: batch.versions.count, views: batch.viewCount, classes: batch.classCount, k: batch.k,
            offsets: copy(batch.offsets.map { UInt64($0) }), versions: copy(batch.versions), view: copy(batch.views),
            crop: copy(batch.crops), flip: copy(batch.flips), epoch: copy(batch.epochs), seed: copy(batch.seeds),
            hard: copy(batch.hard), dense: dense ? copy(batch.dense) : nil,
            top_classes: batch.k > 0 ? copy(batch.topClasses) : nil, top_probabilities: batch.k > 0 ? copy(batch.topProbabilities) : nil,
            leftover: batch.k > 0 ? copy(batch.leftover) : nil, extra_offsets: copy(extraOffsets), extra_bytes: copy(extraBytes)))
        return views
    }

    /// A `malloc`ed copy (at least one element, so an empty column is still a valid pointer).
    static func copy<T>(_ values: [T]) -> UnsafeMutablePointer<T> {
        let memory = malloc(max(values.count, 1) * MemoryLayout<T>.stride)!.assumingMemoryBound(to: T.self)
        values.withUnsafeBufferPointer { if let base = $0.baseAddress { memory.update(from: base, count: values.count) } }
        return memory
    }
}
