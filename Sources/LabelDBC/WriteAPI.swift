import CLabelDB
import Foundation
import LabelDB

// Writes: samples, deletes, label imports. Each runs in the write session at once; its inputs are
// copied first, so the session can replay it if the map must grow.

/// `count` variable-size rows given as count + 1 offsets into `bytes`, checked: offsets start at
/// 0, never decrease, and stay inside what the caller says it passed (the last offset).
func rows(_ offsetsPointer: UnsafePointer<UInt64>?, _ bytesPointer: UnsafePointer<UInt8>?, count: Int, what: String) throws -> [[UInt8]]? {
    guard let offsetsPointer else {
        guard bytesPointer == nil else { throw APIError.badInput("\(what): bytes given without offsets") }
        return nil
    }
    let offsets = UnsafeBufferPointer(start: offsetsPointer, count: count + 1)
    guard offsets[0] == 0 else { throw APIError.badInput("\(what): the first offset must be 0, not \(offsets[0])") }
    for i in 0..<count where offsets[i + 1] < offsets[i] {
        throw APIError.badInput("\(what): offsets decrease at row \(i) (\(offsets[i]) then \(offsets[i + 1]))")
    }
    // An offset past Int.max cannot describe memory the caller has: refused, not trapped on.
    guard let total = Int(exactly: offsets[count]) else { throw APIError.badInput("\(what): the last offset \(offsets[count]) is out of range") }
    let bytes = try buffer(bytesPointer, total, "\(what) bytes")
    return (0..<count).map { i in Array(UnsafeBufferPointer(rebasing: bytes[Int(offsets[i])..<Int(offsets[i + 1])])) }
}

@_cdecl("ldb_put")
public func ldbPut(
    _ pointer: OpaquePointer?, _ idsPointer: UnsafePointer<UInt64>?, _ count: Int, _ embeddingsPointer: UnsafePointer<Float>?,
    _ metadataOffsets: UnsafePointer<UInt64>?, _ metadataBytes: UnsafePointer<UInt8>?,
    _ payloadOffsets: UnsafePointer<UInt64>?, _ payloadBytes: UnsafePointer<UInt8>?,
    _ optionsJSON: UnsafePointer<CChar>?, _ summaryJSON: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?
) -> Int32 {
    guarded {
        let handle = try transactionHandle(pointer)
        try handle.writing { session in
            let o = try options(optionsJSON)
            try o.only(["mode", "secrecy", "integrity", "privilege"], call: "ldb_put")
            let (batch, mode, privileges) = try sampleBatch(count: count, dimension: handle.schema.dimension, idsPointer, embeddingsPointer,
                                                            metadataOffsets, metadataBytes, payloadOffsets, payloadBytes, options: o, call: "ldb_put")
            let summary = try session.run { tx in try tx.put(batch, mode: mode, privileges: privileges) }
            give(["inserted": .int(Int64(summary.inserted)), "replaced": .int(Int64(summary.replaced))], summaryJSON)
        }
    }
}

/// A put's batch, mode and privileges from the caller's columns (ids, count × d embeddings,
/// metadata and payloads as offsets into bytes) and options (`mode`, `secrecy`, `integrity`,
/// `privilege`; a metadata object's "taint" member adds tags to its row's label).
func sampleBatch(
    count: Int, dimension d: Int, _ idsPointer: UnsafePointer<UInt64>?, _ embeddingsPointer: UnsafePointer<Float>?,
    _ metadataOffsets: UnsafePointer<UInt64>?, _ metadataBytes: UnsafePointer<UInt8>?,
    _ payloadOffsets: UnsafePointer<UInt64>?, _ payloadBytes: UnsafePointer<UInt8>?, options o: [String: JSONValue], call: String
) throws -> (batch: SampleBatch, mode: PutMode, privileges: Set<String>) {
    guard count >= 0, count <= Int.max / max(d, 1) else { throw APIError.badInput("\(call): count \(count) is out of range") }
    let mode: PutMode
    switch try o.text("mode") ?? "replace" {
    case "replace": mode = .replace
    case "insert": mode = .insert
    case let other: throw APIError.badInput("\(call): mode must be replace or insert, not '\(other)'")
    }
    let base = try o.taint(), privileges = try o.privileges()
    let ids = Array(try buffer(idsPointer, count, "ids"))
    let embeddings = Array(try buffer(embeddingsPointer, count * d, "embeddings"))
    var metadata = try rows(metadataOffsets, metadataBytes, count: count, what: "metadata").map { texts in
        try texts.enumerated().map { row, bytes -> [String: JSONValue] in
            let value: JSONValue
            do { value = try JSONValue.parse(bytes) } catch { throw InputError(file: "metadata", location: "row \(row)", reason: "\(error)") }
            guard let object = value.objectValue else { throw InputError(file: "metadata", location: "row \(row)", reason: "not a JSON object") }
            return object
        }
    }
    var taints: [TaintLabel]? = base == .public ? nil : Array(repeating: base, count: count)
    if metadata != nil, let rowTaints = try SampleBatch.takeTaintMembers(&metadata!, base: base, file: "metadata", location: { "row \($0)" }) {
        taints = rowTaints
    }
    let payloads = try rows(payloadOffsets, payloadBytes, count: count, what: "payloads")
    return (SampleBatch(ids: ids, embeddings: embeddings, metadata: metadata, payloads: payloads, taints: taints), mode, privileges)
}

@_cdecl("ldb_delete")
public func ldbDelete(_ pointer: OpaquePointer?, _ idsPointer: UnsafePointer<UInt64>?, _ count: Int, _ deleted: UnsafeMutablePointer<UInt64>?) -> Int32 {
    guarded {
        let handle = try transactionHandle(pointer)
        try handle.writing { session in
            let ids = Array(try buffer(idsPointer, count, "ids"))
            let removed = try session.run { tx in try tx.delete(ids) }
            deleted?.pointee = UInt64(removed)
        }
    }
}

/// The tail both label imports share: the options every import takes (codec, agent, taint,
/// privileges, normalize), the import as a session step, and its version document.
private func importLabels(
    _ values: LabelValues, ids: [UInt64], into name: String, views: [AugmentedView]? = nil, options o: [String: JSONValue], session: WriteSession,
    json: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?
) throws {
    let codec = try o.text("codec").map { try SoftLabelCodec(parsing: $0) }
    let source = try o.taint(), privileges = try o.privileges()
    let agent = try o.text("agent") ?? "python", normalize = try o.flag("normalize") ?? false
    let version = try session.run { tx in
        try tx.importLabels(values, ids: ids, into: name, codec: codec, views: views, agent: agent, source: source, privileges: privileges, normalize: normalize)
    }
    give(.object(versionJSON(version)), json)
}

@_cdecl("ldb_import_view_labels")
public func ldbImportViewLabels(
    _ pointer: OpaquePointer?, _ nameText: UnsafePointer<CChar>?, _ idsPointer: UnsafePointer<UInt64>?, _ count: Int,
    _ viewsPointer: UnsafePointer<ldb_view_params>?, _ softPointer: UnsafePointer<Float>?, _ hardPointer: UnsafePointer<Int64>?,
    _ k: Int, _ classesPointer: UnsafePointer<Int32>?, _ probabilitiesPointer: UnsafePointer<Float>?, _ leftoverPointer: UnsafePointer<Float>?,
    _ optionsJSON: UnsafePointer<CChar>?, _ json: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?
) -> Int32 {
    guarded {
        let handle = try transactionHandle(pointer)
        try handle.writing { session in
            let name = try string(nameText, "name")
            let c = handle.schema.classes.count
            guard count >= 0, k >= 0, k <= 65_536, count <= Int.max / max(c, k, 4) else { throw APIError.badInput("ldb_import_view_labels: \(count) rows is out of range") }
            let o = try options(optionsJSON)
            try o.only(["codec", "agent", "secrecy", "integrity", "privilege", "normalize"], call: "ldb_import_view_labels")
            guard let params = viewsPointer?.pointee else { throw APIError.badInput("ldb_import_view_labels: views is NULL") }
            let given = [softPointer != nil, hardPointer != nil, k > 0].filter { $0 }.count
            guard given == 1 else { throw APIError.badInput("ldb_import_view_labels: give exactly one of soft, hard or compact (k > 0) labels (\(given) given)") }
            let ids = Array(try buffer(idsPointer, count, "ids"))
            let values: LabelValues
            if softPointer != nil {
                values = .soft(Array(try buffer(softPointer, count * c, "soft")))
            } else if hardPointer != nil {
                values = .hard(try buffer(hardPointer, count, "hard").map { Int(truncatingIfNeeded: $0) })
            } else {
                values = .topK(try topKRows(count: count, k: k, classesPointer, probabilitiesPointer, leftoverPointer))
            }
            try importLabels(values, ids: ids, into: name, views: try viewParameters(params, count: count), options: o, session: session, json: json)
        }
    }
}

/// Soft rows from the caller's `count × classes` floats: probabilities, or logits (option
/// `logits`) turned into probabilities by softmax(z / `temperature`).
func softRows(_ pointer: UnsafePointer<Float>?, count: Int, classes c: Int, options o: [String: JSONValue], call: String) throws -> [Float] {
    var soft = Array(try buffer(pointer, count * c, "soft"))
    if try o.flag("logits") ?? false {
        let temperature = Float(try o.number("temperature") ?? 1)
        guard temperature > 0, temperature.isNormal else { throw APIError.badInput("\(call): temperature must be a positive number") }
        try softmaxRows(&soft, columns: c, temperature: temperature, file: "logits")
    }
    return soft
}

/// Compact rows from the caller's columns: `count × k` classes and probabilities, and `count`
/// leftovers or NULL.
func topKRows(count: Int, k: Int, _ classes: UnsafePointer<Int32>?, _ probabilities: UnsafePointer<Float>?, _ leftover: UnsafePointer<Float>?) throws -> TopKRows {
    TopKRows(k: k, classes: try buffer(classes, count * k, "classes").map(Int.init),
             probabilities: Array(try buffer(probabilities, count * k, "probabilities")),
             leftover: leftover == nil ? nil : Array(try buffer(leftover, count, "leftover")))
}

/// The views of a per-view import from the caller's columns (their values checked by the import).
private func viewParameters(_ p: ldb_view_params, count: Int) throws -> [AugmentedView] {
    let numbers = try buffer(p.view, count, "views.view"), crops = try buffer(p.crop, count * 4, "views.crop")
    let flips = p.flip.map { UnsafeBufferPointer(start: $0, count: count) }
    let epochs = p.epoch.map { UnsafeBufferPointer(start: $0, count: count) }
    let seeds = p.seed.map { UnsafeBufferPointer(start: $0, count: count) }
    let extras: [String?] = try rows(p.extra_offsets, p.extra_bytes, count: count, what: "views.extra")?.enumerated().map { i, bytes in
        guard !bytes.isEmpty else { return nil }
        guard let text = String(validating: bytes, as: UTF8.self) else { throw APIError.badInput("views.extra of row \(i) is not valid UTF-8") }
        return text
    } ?? Array(repeating: nil, count: count)
    return (0..<count).map { (i: Int) -> AugmentedView in
        let crop = SIMD4<Float>(crops[4 * i], crops[4 * i + 1], crops[4 * i + 2], crops[4 * i + 3])
        let flip: UInt8 = flips?[i] ?? 0, epoch: UInt16 = epochs?[i] ?? 0, seed: UInt32 = seeds?[i] ?? 0
        return AugmentedView(view: Int(numbers[i]), crop: crop, flip: flip != 0, epoch: Int(epoch), seed: Int(seed), extra: extras[i])
    }
}

@_cdecl("ldb_import_labels")
public func ldbImportLabels(
    _ pointer: OpaquePointer?, _ nameText: UnsafePointer<CChar>?, _ idsPointer: UnsafePointer<UInt64>?, _ count: Int,
    _ softPointer: UnsafePointer<Float>?, _ hardPointer: UnsafePointer<Int64>?,
    _ multiOffsets: UnsafePointer<UInt64>?, _ multiClasses: UnsafePointer<Int64>?,
    _ optionsJSON: UnsafePointer<CChar>?, _ json: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?
) -> Int32 {
    guarded {
        let handle = try transactionHandle(pointer)
        try handle.writing { session in
            let name = try string(nameText, "name")
            let c = handle.schema.classes.count
            guard count >= 0, count <= Int.max / max(c, 1) else { throw APIError.badInput("ldb_import_labels: count \(count) is out of range") }
            let o = try options(optionsJSON)
            try o.only(["codec", "agent", "secrecy", "integrity", "privilege", "normalize", "logits", "temperature"], call: "ldb_import_labels")
            let given = [softPointer != nil, hardPointer != nil, multiOffsets != nil].filter { $0 }.count
            guard given == 1 else { throw APIError.badInput("ldb_import_labels: give exactly one of soft, hard or multi labels (\(given) given)") }
            let ids = Array(try buffer(idsPointer, count, "ids"))
            let values: LabelValues
            if softPointer != nil {
                values = .soft(try softRows(softPointer, count: count, classes: c, options: o, call: "ldb_import_labels"))
            } else if hardPointer != nil {
                values = .hard(try buffer(hardPointer, count, "hard").map { Int(truncatingIfNeeded: $0) })
            } else {
                let offsets = UnsafeBufferPointer(start: multiOffsets!, count: count + 1)
                guard let total = Int(exactly: offsets[count]) else { throw APIError.badInput("ldb_import_labels: the last multi offset \(offsets[count]) is out of range") }
                let classes = try buffer(multiClasses, total, "multi classes")
                values = .multi(try (0..<count).map { i in
                    guard offsets[i] <= offsets[i + 1], offsets[i + 1] <= offsets[count] else { throw APIError.badInput("ldb_import_labels: multi offsets decrease at row \(i)") }
                    return classes[Int(offsets[i])..<Int(offsets[i + 1])].map { Int(truncatingIfNeeded: $0) }
                })
            }
            try importLabels(values, ids: ids, into: name, options: o, session: session, json: json)
        }
    }
}

@_cdecl("ldb_relabel")
public func ldbRelabel(
    _ pointer: OpaquePointer?, _ idsPointer: UnsafePointer<UInt64>?, _ count: Int, _ optionsJSON: UnsafePointer<CChar>?,
    _ changed: UnsafeMutablePointer<UInt64>?
) -> Int32 {
    guarded {
        let handle = try transactionHandle(pointer)
        try handle.writing { session in
            let o = try options(optionsJSON)
            try o.only(["add_secrecy", "remove_secrecy", "add_integrity", "remove_integrity", "privilege", "agent"], call: "ldb_relabel")
            let change = TaintChange(
                addSecrecy: try TaintTags.parse(lists: o.strings("add_secrecy")), removeSecrecy: try TaintTags.parse(lists: o.strings("remove_secrecy")),
                addIntegrity: try TaintTags.parse(lists: o.strings("add_integrity")), removeIntegrity: try TaintTags.parse(lists: o.strings("remove_integrity")))
            guard change != TaintChange() else { throw APIError.badInput("ldb_relabel: give at least one of add_secrecy, remove_secrecy, add_integrity, remove_integrity") }
            let ids = Array(try buffer(idsPointer, count, "ids"))
            let privileges = try o.privileges(), agent = try o.text("agent") ?? "python"
            let n = try session.run { tx in try tx.relabel(ids, change, privileges: privileges, agent: agent) }
            changed?.pointee = UInt64(n)
        }
    }
}

@_cdecl("ldb_import_head")
public func ldbImportHead(
    _ pointer: OpaquePointer?, _ nameText: UnsafePointer<CChar>?, _ valuesPointer: UnsafePointer<Float>?,
    _ rows: Int, _ columns: Int, _ optionsJSON: UnsafePointer<CChar>?
) -> Int32 {
    guarded {
        let handle = try transactionHandle(pointer)
        try handle.writing { session in
            let name = try string(nameText, "name")
            guard rows >= 0, columns >= 0, rows <= Int.max / max(columns, 1) else { throw APIError.badInput("ldb_import_head: shape \(rows) × \(columns) is out of range") }
            let values = Array(try buffer(valuesPointer, rows * columns, "values"))
            let o = try options(optionsJSON)
            try o.only(["replace", "secrecy", "integrity", "privilege"], call: "ldb_import_head")
            let replace = try o.flag("replace") ?? false, taint = try o.taint(), privileges = try o.privileges()
            try session.run { tx in
                try tx.importHead(name, values: values, rows: rows, columns: columns, replace: replace, taint: taint, privileges: privileges)
            }
        }
    }
}

@_cdecl("ldb_import_topk_labels")
public func ldbImportTopKLabels(
    _ pointer: OpaquePointer?, _ nameText: UnsafePointer<CChar>?, _ idsPointer: UnsafePointer<UInt64>?, _ count: Int, _ k: Int,
    _ classesPointer: UnsafePointer<Int32>?, _ probabilitiesPointer: UnsafePointer<Float>?, _ leftoverPointer: UnsafePointer<Float>?,
    _ optionsJSON: UnsafePointer<CChar>?, _ json: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?
) -> Int32 {
    guarded {
        let handle = try transactionHandle(pointer)
        try handle.writing { session in
            let name = try string(nameText, "name")
            guard count >= 0, k >= 1, k <= 65_536, count <= Int.max / k else { throw APIError.badInput("ldb_import_topk_labels: \(count) rows × K = \(k) is out of range") }
            let o = try options(optionsJSON)
            try o.only(["codec", "agent", "secrecy", "integrity", "privilege", "normalize"], call: "ldb_import_topk_labels")
            let ids = Array(try buffer(idsPointer, count, "ids"))
            let rows = try topKRows(count: count, k: k, classesPointer, probabilitiesPointer, leftoverPointer)
            try importLabels(.topK(rows), ids: ids, into: name, options: o, session: session, json: json)
        }
    }
}

@_cdecl("ldb_consensus")
public func ldbConsensus(
    _ pointer: OpaquePointer?, _ nameText: UnsafePointer<CChar>?, _ optionsJSON: UnsafePointer<CChar>?, _ json: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?
) -> Int32 {
    guarded {
        guard let nameText else { throw APIError.badInput("ldb_consensus: the label set name is NULL") }
        let name = String(cString: nameText)
        let handle = try transactionHandle(pointer)
        try handle.writing { session in
            let request = try ConsensusArguments(try options(optionsJSON), call: "ldb_consensus")
            let report = try session.run { tx in
                try tx.consensus(into: name, from: request.references, method: request.method, weights: request.weights, reference: request.reference,
                                 codec: request.codec, agent: request.agent, tolerance: request.tolerance, maxIterations: request.maxIterations)
            }
            give(consensusJSON(report, name: name, method: request.method), json)
        }
    }
}

@_cdecl("ldb_corpus_consensus")
public func ldbCorpusConsensus(
    _ path: UnsafePointer<CChar>?, _ nameText: UnsafePointer<CChar>?, _ optionsJSON: UnsafePointer<CChar>?, _ json: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?
) -> Int32 {
    guarded {
        let directory = try string(path, "path"), name = try string(nameText, "the label set name")
        var o = try options(optionsJSON)
        let clearance = try Clearance(parsing: try o.text("clearance") ?? "all")
        o.removeValue(forKey: "clearance")
        let request = try ConsensusArguments(o, call: "ldb_corpus_consensus")
        // The corpus's writer first: its lock keeps the corpus as read while the rows are.
        let writer = try CorpusWriter(opening: directory)
        defer { writer.close() }
        try writer.validate(clearance)
        let corpus = try Corpus(opening: directory)
        defer { corpus.close() }
        let report = try writer.consensus(reading: corpus, into: name, from: request.references, method: request.method, weights: request.weights,
                                          reference: request.reference, codec: request.codec, agent: request.agent, tolerance: request.tolerance,
                                          maxIterations: request.maxIterations, clearance: clearance)
        give(consensusJSON(report, name: name, method: request.method), json)
    }
}

/// The options of a consensus call (ldb_consensus, ldb_corpus_consensus), checked.
private struct ConsensusArguments {
    let references: [LabelSetReference]
    let method: ConsensusMethod
    let weights: [Double]?
    let reference: ConsensusReference?
    let codec: SoftLabelCodec?
    let agent: String
    let tolerance: Double
    let maxIterations: Int

    init(_ o: [String: JSONValue], call: String) throws {
        try o.only(["sources", "method", "weights", "reference", "reference_tag", "reference_set", "codec", "agent", "tolerance", "max_iterations"], call: call)
        let names = try o.strings("sources")
        references = try names.map { try LabelSetReference(parsing: $0) }
        guard let method = ConsensusMethod(rawValue: try o.text("method") ?? "mean") else {
            throw APIError.badInput("\(call): method must be mean, vote or dawid-skene")
        }
        self.method = method
        var weights: [Double]? = nil
        if let given = o["weights"], given != .null {
            weights = [Double](repeating: 1, count: names.count)
            guard let object = given.objectValue else { throw APIError.badInput("option 'weights' must be an object: source → number") }
            for (key, value) in object {
                guard let index = names.firstIndex(of: key), let w = value.doubleValue else {
                    throw APIError.badInput("\(call): weights name \(key), which is not a source, or is not a number")
                }
                weights![index] = w
            }
        }
        self.weights = weights
        codec = try o.text("codec").map { try SoftLabelCodec(parsing: $0) }
        reference = try ConsensusReference(set: try o.text("reference"), tag: try o.text("reference_tag"), tagSet: try o.text("reference_set"))
        agent = try o.text("agent") ?? "python"
        tolerance = try o.number("tolerance") ?? 1e-6
        maxIterations = try o.integer("max_iterations") ?? 500
    }
}

@_cdecl("ldb_label_issues")
public func ldbLabelIssues(_ pointer: OpaquePointer?, _ optionsJSON: UnsafePointer<CChar>?, _ json: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    guarded {
        let o = try options(optionsJSON)
        try o.only(["given", "probs", "filter", "where", "write_set", "agent"], call: "ldb_label_issues")
        guard let givenText = try o.text("given"), let probsText = try o.text("probs") else {
            throw APIError.badInput("ldb_label_issues: options 'given' and 'probs' are required")
        }
        let given = try LabelSetReference(parsing: givenText), probs = try LabelSetReference(parsing: probsText)
        guard let filter = LabelIssueFilter(rawValue: try o.text("filter") ?? LabelIssueFilter.pruneByNoiseRate.rawValue) else {
            throw APIError.badInput("ldb_label_issues: filter must be prune-by-noise-rate, prune-by-class or both")
        }
        let expression = try o.text("where").flatMap { $0.isEmpty ? nil : try QueryExpression(parsing: $0) }
        let handle = try transactionHandle(pointer)
        var document: JSONValue = [:]
        func report(_ result: LabelIssues, _ written: LabelSetVersion?) -> JSONValue {
            return ["given": .string(result.given), "probs": .string(result.probs), "examined": .int(Int64(result.examined)),
                    "estimated_errors": .int(Int64(result.estimatedErrors)), "issues": .array(result.issues.map(labelIssueJSON)),
                    "written": written.map(versionJSON).map(JSONValue.object) ?? .null]
        }
        if let writeSet = try o.text("write_set") {
            let agent = try o.text("agent") ?? "python"
            try handle.writing { session in
                document = try session.run { tx in
                    let result = try tx.labelIssues(given: given, probs: probs, filter: filter, where: expression)
                    return report(result, try tx.writeSuggestions(of: result, into: writeSet, agent: agent))
                }
            }
        } else {
            document = report(try handle.run { try $0.labelIssues(given: given, probs: probs, filter: filter, where: expression) }, nil)
        }
        give(document, json)
    }
}

@_cdecl("ldb_drop_labels")
public func ldbDropLabels(_ pointer: OpaquePointer?, _ nameText: UnsafePointer<CChar>?, _ json: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    guarded {
        guard let nameText else { throw APIError.badInput("ldb_drop_labels: the label set name is NULL") }
        let reference = try LabelSetReference(parsing: String(cString: nameText))
        try transactionHandle(pointer).writing { session in
            let dropped = try session.run { tx in
                let dropped = try reference.version.map { try tx.dropLabelVersion(reference.name, version: $0) } ?? tx.dropLabelSet(reference.name)
                tx.describe(ProvenanceRecord(
                    activity: "label drop", agent: "python", used: [ProvenanceEntity(kind: "label_set", name: reference.name, version: reference.version ?? dropped.versions)],
                    parameters: ["rows": "\(dropped.rows)", "versions": "\(dropped.versions)", "dependent_projectors": dropped.dependentProjectors.joined(separator: ",")]))
                return dropped
            }
            give(labelDropJSON(dropped), json)
        }
    }
}
