import Foundation
import LabelDB

// Sharded corpora (format-spec/corpus.md) through the C API: the manifest, routing, one shard
// opened for reading, and label imports routed across the shards. Python's labeldb.Corpus and
// labeldb.ray sit on these; nothing outside Swift parses the manifest or computes a route.

@_cdecl("ldb_corpus_manifest")
public func ldbCorpusManifest(_ path: UnsafePointer<CChar>?, _ json: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    guarded {
        give(try CorpusManifest.read(from: try string(path, "path")).document, json)
    }
}

@_cdecl("ldb_corpus_route")
public func ldbCorpusRoute(
    _ path: UnsafePointer<CChar>?, _ idsPointer: UnsafePointer<UInt64>?, _ count: Int, _ shards: UnsafeMutablePointer<Int32>?
) -> Int32 {
    guarded {
        let manifest = try CorpusManifest.read(from: try string(path, "path"))
        let ids = try buffer(idsPointer, count, "ids")
        guard let shards else { throw APIError.badInput("ldb_corpus_route: shards is NULL") }
        for (i, id) in ids.enumerated() { shards[i] = manifest.shard(of: id).map(Int32.init) ?? -1 }
    }
}

@_cdecl("ldb_open_shard")
public func ldbOpenShard(
    _ path: UnsafePointer<CChar>?, _ shard: Int, _ pinJSON: UnsafePointer<CChar>?, _ out: UnsafeMutablePointer<OpaquePointer?>?
) -> Int32 {
    guarded {
        guard let out else { throw APIError.badInput("ldb_open_shard: out is NULL") }
        out.pointee = nil
        // The pin: {"label_sets": {…}, "projectors": {…}} (a manifest's members), or the label
        // sets' map alone.
        var pinned: [String: Int]? = nil, pinnedProjectors: [String: Int]? = nil
        if pinJSON != nil {
            func versions(_ object: [String: JSONValue]) throws -> [String: Int] {
                try object.mapValues { value in
                    guard case .int(let v) = value, v >= 1, let version = Int(exactly: v) else {
                        throw APIError.badInput("ldb_open_shard: a pin maps label sets and projectors to versions ≥ 1")
                    }
                    return version
                }
            }
            let pin = try options(pinJSON)
            if let sets = pin["label_sets"], sets.objectValue == nil, pin.keys.contains("projectors") {
                throw APIError.badInput("ldb_open_shard: the pin's label_sets must be an object")
            }
            if case .object(let sets)? = pin["label_sets"] {
                try pin.only(["label_sets", "projectors"], call: "ldb_open_shard")
                pinned = try versions(sets)
                if let projectors = pin["projectors"] {
                    guard case .object(let members) = projectors else { throw APIError.badInput("ldb_open_shard: the pin's projectors must be an object") }
                    pinnedProjectors = try versions(members)
                }
            } else {
                pinned = try versions(pin)
            }
        }
        let store = try Corpus.openShard(shard, of: try string(path, "path"), pinned: pinned, pinnedProjectors: pinnedProjectors)
        out.pointee = OpaquePointer(Unmanaged.passRetained(StoreHandle(store, writerPath: nil)).toOpaque())
    }
}

@_cdecl("ldb_corpus_import_labels")
public func ldbCorpusImportLabels(
    _ path: UnsafePointer<CChar>?, _ nameText: UnsafePointer<CChar>?, _ idsPointer: UnsafePointer<UInt64>?, _ count: Int,
    _ softPointer: UnsafePointer<Float>?, _ hardPointer: UnsafePointer<Int64>?,
    _ k: Int, _ classesPointer: UnsafePointer<Int32>?, _ probabilitiesPointer: UnsafePointer<Float>?, _ leftoverPointer: UnsafePointer<Float>?,
    _ optionsJSON: UnsafePointer<CChar>?, _ json: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?
) -> Int32 {
    guarded {
        let directory = try string(path, "path"), name = try string(nameText, "name")
        let o = try options(optionsJSON)
        try o.only((["codec", "agent", "secrecy", "integrity", "privilege", "normalize", "logits", "temperature", "clearance", "provenance"] as Set<String>).union(sessionOptions),
                   call: "ldb_corpus_import_labels")
        let c = try CorpusManifest.read(from: directory).classes.count
        guard count >= 0, k >= 0, k <= 65_536, count <= Int.max / max(c, k, 1) else { throw APIError.badInput("ldb_corpus_import_labels: \(count) rows is out of range") }
        let given = [softPointer != nil, hardPointer != nil, k > 0].filter { $0 }.count
        guard given == 1 else { throw APIError.badInput("ldb_corpus_import_labels: give exactly one of soft, hard or compact (k > 0) labels (\(given) given)") }
        let values: LabelValues
        if softPointer != nil {
            values = .soft(try softRows(softPointer, count: count, classes: c, options: o, call: "ldb_corpus_import_labels"))
        } else if hardPointer != nil {
            values = .hard(try buffer(hardPointer, count, "hard").map { Int(truncatingIfNeeded: $0) })
        } else {
            values = .topK(try topKRows(count: count, k: k, classesPointer, probabilitiesPointer, leftoverPointer))
        }
        let ids = Array(try buffer(idsPointer, count, "ids")), clearance = try Clearance(parsing: try o.text("clearance") ?? "all")
        let agent = try o.text("agent") ?? "python", codec = try o.text("codec").map { try SoftLabelCodec(parsing: $0) }
        let provenance = ProvenanceRecord(activity: "label import", agent: agent, parameters: try parameters(o))
        if let (session, shard, checkOnly) = try sessionWrite(o, call: "ldb_corpus_import_labels") {
            let part = try CorpusWriter.importLabels(
                values, ids: ids, into: name, shard: shard, of: directory, session: session, codec: codec, agent: agent, source: try o.taint(),
                privileges: try o.privileges(), normalize: try o.flag("normalize") ?? false, clearance: clearance, provenance: provenance, checkOnly: checkOnly)
            var document = versionJSON(part)
            document["shard"] = .int(Int64(shard))
            return give(.object(document), json)
        }
        let writer = try CorpusWriter(opening: directory)
        defer { writer.close() }
        try writer.validate(clearance)
        let parts = try writer.importLabels(
            values, ids: ids, into: name, codec: codec, agent: agent, source: try o.taint(), privileges: try o.privileges(),
            normalize: try o.flag("normalize") ?? false, clearance: clearance, provenance: provenance)
        var document = versionJSON(LabelSetVersion.combined(parts))
        document["shards"] = .int(Int64(parts.count))
        give(.object(document), json)
    }
}

/// The options that make a corpus write one shard's part of a write session (K-13).
private let sessionOptions: Set<String> = ["session", "shard", "check"]

/// A shard write's session, shard and whether it only checks; nil for a whole-corpus write.
private func sessionWrite(_ o: [String: JSONValue], call: String) throws -> (session: String, shard: Int, checkOnly: Bool)? {
    guard let session = try o.text("session") else {
        guard o["shard"] == nil, o["check"] == nil else { throw APIError.badInput("\(call): shard and check go with a session") }
        return nil
    }
    guard let shard = try o.integer("shard") else { throw APIError.badInput("\(call): a session write names its shard") }
    return (session, shard, try o.flag("check") ?? false)
}

@_cdecl("ldb_corpus_put")
public func ldbCorpusPut(
    _ path: UnsafePointer<CChar>?, _ idsPointer: UnsafePointer<UInt64>?, _ count: Int, _ embeddingsPointer: UnsafePointer<Float>?,
    _ metadataOffsets: UnsafePointer<UInt64>?, _ metadataBytes: UnsafePointer<UInt8>?,
    _ payloadOffsets: UnsafePointer<UInt64>?, _ payloadBytes: UnsafePointer<UInt8>?,
    _ optionsJSON: UnsafePointer<CChar>?, _ summaryJSON: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?
) -> Int32 {
    guarded {
        let o = try options(optionsJSON)
        try o.only((["mode", "secrecy", "integrity", "privilege", "clearance", "agent", "provenance"] as Set<String>).union(sessionOptions), call: "ldb_corpus_put")
        let directory = try string(path, "path")
        let (batch, mode, privileges) = try sampleBatch(count: count, dimension: try CorpusManifest.read(from: directory).dimension, idsPointer, embeddingsPointer,
                                                        metadataOffsets, metadataBytes, payloadOffsets, payloadBytes, options: o, call: "ldb_corpus_put")
        let clearance = try Clearance(parsing: try o.text("clearance") ?? "all")
        let provenance = ProvenanceRecord(activity: "import", agent: try o.text("agent") ?? "python", parameters: try parameters(o))
        if let (session, shard, checkOnly) = try sessionWrite(o, call: "ldb_corpus_put") {
            let summary = try CorpusWriter.importSamples(batch, shard: shard, of: directory, session: session, mode: mode, privileges: privileges,
                                                         clearance: clearance, provenance: provenance, checkOnly: checkOnly)
            return give(["inserted": .int(Int64(summary.inserted)), "replaced": .int(Int64(summary.replaced)), "shard": .int(Int64(shard))], summaryJSON)
        }
        let writer = try CorpusWriter(opening: directory)
        defer { writer.close() }
        try writer.validate(clearance)
        let summary = try writer.importSamples(batch, mode: mode, privileges: privileges, clearance: clearance, provenance: provenance)
        give(["inserted": .int(Int64(summary.inserted)), "replaced": .int(Int64(summary.replaced)), "shards": .int(Int64(writer.manifest.shards.count))], summaryJSON)
    }
}

/// The provenance parameters of a corpus write: `corpus` and the caller's `provenance` object
/// (e.g. the job that produced the rows), values as text.
private func parameters(_ o: [String: JSONValue]) throws -> [String: String] {
    var parameters: [String: String] = ["corpus": "true"]
    if let described = o["provenance"]?.objectValue {
        for (key, value) in described { parameters[key] = value.stringValue ?? value.serialized() }
    }
    return parameters
}

@_cdecl("ldb_create_corpus")
public func ldbCreateCorpus(_ path: UnsafePointer<CChar>?, _ schemaJSON: UnsafePointer<CChar>?, _ shards: Int) -> Int32 {
    guarded {
        let spec = try options(schemaJSON)
        try spec.only(["dimension", "classes", "element"], call: "ldb_create_corpus")
        guard let dimension = try spec.integer("dimension") else { throw APIError.badInput("ldb_create_corpus: the schema needs a dimension") }
        let classes = try spec.strings("classes")
        guard let element = Schema.ElementType(rawValue: try spec.text("element") ?? "f32") else { throw APIError.badInput("ldb_create_corpus: element must be f32 or f16") }
        try CorpusManifest.create(at: try string(path, "path"), schema: try Schema(dimension: dimension, elementType: element, classes: classes), shards: shards)
    }
}

@_cdecl("ldb_corpus_fit_projector")
public func ldbCorpusFitProjector(
    _ path: UnsafePointer<CChar>?, _ nameText: UnsafePointer<CChar>?, _ optionsJSON: UnsafePointer<CChar>?,
    _ json: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?
) -> Int32 {
    guarded { try fitCorpus(path, nameText, optionsJSON, json, parts: nil, call: "ldb_corpus_fit_projector") }
}

/// An executor of fit passes as C gives one: a function and its context (see labeldb.h).
public typealias FitExecutorFunction = @convention(c) (
    UnsafeMutableRawPointer?, Int32, UnsafePointer<UInt8>?, Int, UnsafeMutablePointer<UnsafePointer<UInt8>?>?, UnsafeMutablePointer<Int>?
) -> Int32

@_cdecl("ldb_corpus_fit_projector_parts")
public func ldbCorpusFitProjectorParts(
    _ path: UnsafePointer<CChar>?, _ nameText: UnsafePointer<CChar>?, _ optionsJSON: UnsafePointer<CChar>?,
    _ executor: FitExecutorFunction?, _ context: UnsafeMutableRawPointer?, _ json: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?
) -> Int32 {
    guarded {
        guard let executor else { throw APIError.badInput("ldb_corpus_fit_projector_parts: the executor is NULL") }
        let box = UncheckedSendable(context)
        try fitCorpus(path, nameText, optionsJSON, json, parts: { shard, request in
            var reply: UnsafePointer<UInt8>? = nil
            var length = 0
            let status = request.withUnsafeBufferPointer { executor(box.value, Int32(shard), $0.baseAddress, $0.count, &reply, &length) }
            guard status == 0 else { throw APIError.badInput("the executor failed for shard \(shard) (it returned \(status))") }
            guard length >= 0, length == 0 || reply != nil else { throw APIError.badInput("the executor gave no reply for shard \(shard)") }
            return length == 0 ? [] : Array(UnsafeBufferPointer(start: reply, count: length))
        }, call: "ldb_corpus_fit_projector_parts")
    }
}

/// A value crossing threads that C keeps valid (the executor's context).
private struct UncheckedSendable<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}

/// `labeldb projector fit CORPUS` for the C API, its passes run by `parts` when given.
private func fitCorpus(
    _ path: UnsafePointer<CChar>?, _ nameText: UnsafePointer<CChar>?, _ optionsJSON: UnsafePointer<CChar>?,
    _ json: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?, parts: FitPartExecutor?, call: String
) throws {
    let directory = try string(path, "path"), name = try string(nameText, "name")
    let version: ProjectorVersion, request: FitRequest
    do {
        let writer = try CorpusWriter(opening: directory)
        defer { writer.close() }
        let manifest = writer.manifest
        request = try FitRequest(try options(optionsJSON), schema: try Schema(dimension: manifest.dimension, elementType: manifest.elementType, classes: manifest.classes),
                                 call: call)
        try writer.validate(request.clearance)
        version = try writer.fitProjector(
            name, from: request.source, options: request.options, head: request.head, maxKL: request.maxKL, requireTop1: request.requireTop1,
            budget: request.budget, agent: request.agent, clearance: request.clearance, parts: parts)
    }
    let corpus = try Corpus(opening: directory)
    defer { corpus.close() }
    let set = try corpus.labelSets(clearance: request.clearance).first { $0.name == version.sourceSet }
    give(.object(projectorVersionJSON(version, name: name, labelSet: set, classes: corpus.schema.classes.count)), json)
}

// MARK: Fit passes served where a shard is (corpus.md K-17)

@_cdecl("ldb_fit_part_open")
public func ldbFitPartOpen(_ path: UnsafePointer<CChar>?, _ shard: Int32, _ optionsJSON: UnsafePointer<CChar>?, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    guarded {
        guard let out else { throw APIError.badInput("ldb_fit_part_open: out is NULL") }
        out.pointee = nil
        let spec = try options(optionsJSON)
        try spec.only(["clearance"], call: "ldb_fit_part_open")
        let clearance = try Clearance(parsing: try spec.text("clearance") ?? "public")
        let server = try FitPartServer(corpus: try string(path, "path"), shard: Int(shard), clearance: clearance)
        out.pointee = OpaquePointer(Unmanaged.passRetained(FitPartHandle(server)).toOpaque())
    }
}

/// A fit-part server held across calls, refused in a forked child (LMDB).
final class FitPartHandle {
    let server: FitPartServer
    let pid = getpid()
    init(_ server: FitPartServer) { self.server = server }
}

@_cdecl("ldb_fit_part_serve")
public func ldbFitPartServe(
    _ pointer: OpaquePointer?, _ request: UnsafePointer<UInt8>?, _ length: Int, _ reply: UnsafeMutablePointer<UnsafeMutablePointer<UInt8>?>?,
    _ replyLength: UnsafeMutablePointer<Int>?
) -> Int32 {
    guarded {
        guard let pointer else { throw APIError.badInput("ldb_fit_part_serve: the handle is NULL") }
        guard let reply, let replyLength else { throw APIError.badInput("ldb_fit_part_serve: reply or reply_length is NULL") }
        guard length >= 0, length == 0 || request != nil else { throw APIError.badInput("ldb_fit_part_serve: the request is NULL") }
        reply.pointee = nil
        replyLength.pointee = 0
        let handle = Unmanaged<FitPartHandle>.fromOpaque(UnsafeRawPointer(pointer)).takeUnretainedValue()
        guard handle.pid == getpid() else { throw APIError.badInput("ldb_fit_part_serve: the handle was opened in process \(handle.pid), before a fork; open it again") }
        let bytes = try handle.server.serve(length == 0 ? [] : Array(UnsafeBufferPointer(start: request, count: length)))
        let out = malloc(max(bytes.count, 1))!.assumingMemoryBound(to: UInt8.self)
        bytes.withUnsafeBufferPointer { out.update(from: $0.baseAddress!, count: bytes.count) }
        reply.pointee = out
        replyLength.pointee = bytes.count
    }
}

@_cdecl("ldb_fit_part_close")
public func ldbFitPartClose(_ pointer: OpaquePointer?) {
    guard let pointer else { return }
    let handle = Unmanaged<FitPartHandle>.fromOpaque(UnsafeRawPointer(pointer)).takeRetainedValue()
    if handle.pid == getpid() { handle.server.close() }
}

// MARK: Write sessions (corpus.md K-13)

/// The corpus's one writer held open across calls, for a write session whose shard writes run
/// elsewhere (other processes, e.g. Ray tasks).
final class CorpusWriterHandle {
    let writer: CorpusWriter
    let pid = getpid()

    init(_ writer: CorpusWriter) { self.writer = writer }
}

private func writerHandle(_ pointer: OpaquePointer?) throws -> CorpusWriterHandle {
    guard let pointer else { throw APIError.badInput("the corpus writer handle is NULL") }
    let handle = Unmanaged<CorpusWriterHandle>.fromOpaque(UnsafeRawPointer(pointer)).takeUnretainedValue()
    guard handle.pid == getpid() else {
        throw APIError.badInput("the corpus writer was opened in process \(handle.pid) and used in process \(getpid()) after fork(); open it in this process")
    }
    return handle
}

@_cdecl("ldb_corpus_writer_open")
public func ldbCorpusWriterOpen(_ path: UnsafePointer<CChar>?, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    guarded {
        guard let out else { throw APIError.badInput("ldb_corpus_writer_open: out is NULL") }
        out.pointee = nil
        let writer = try CorpusWriter(opening: try string(path, "path"))
        out.pointee = OpaquePointer(Unmanaged.passRetained(CorpusWriterHandle(writer)).toOpaque())
    }
}

@_cdecl("ldb_corpus_writer_begin")
public func ldbCorpusWriterBegin(
    _ pointer: OpaquePointer?, _ labelSet: UnsafePointer<CChar>?, _ json: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?
) -> Int32 {
    guarded {
        let session = try writerHandle(pointer).writer.beginSession(labelSet: labelSet.map { String(cString: $0) })
        give(session.document, json)
    }
}

@_cdecl("ldb_corpus_writer_commit")
public func ldbCorpusWriterCommit(_ pointer: OpaquePointer?, _ json: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    guarded {
        let writer = try writerHandle(pointer).writer
        let parts = try writer.commitSession()
        var document: [String: JSONValue] = parts.isEmpty ? [:] : versionJSON(LabelSetVersion.combined(parts))
        document["generation"] = .int(Int64(writer.manifest.generation))
        document["shards"] = .int(Int64(writer.manifest.shards.count))
        give(.object(document), json)
    }
}

@_cdecl("ldb_corpus_writer_abandon")
public func ldbCorpusWriterAbandon(_ pointer: OpaquePointer?) -> Int32 {
    guarded { try writerHandle(pointer).writer.abandonSession() }
}

@_cdecl("ldb_corpus_writer_close")
public func ldbCorpusWriterClose(_ pointer: OpaquePointer?) -> Int32 {
    guarded {
        guard let pointer else { return }
        let handle = try writerHandle(pointer)
        handle.writer.close()
        Unmanaged<CorpusWriterHandle>.fromOpaque(UnsafeRawPointer(pointer)).release()
    }
}

@_cdecl("ldb_corpus_provenance")
public func ldbCorpusProvenance(_ path: UnsafePointer<CChar>?, _ optionsJSON: UnsafePointer<CChar>?, _ json: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    guarded {
        let o = try options(optionsJSON)
        try o.only(["clearance"], call: "ldb_corpus_provenance")
        let corpus = try Corpus(opening: try string(path, "path"))
        defer { corpus.close() }
        let clearance = try Clearance(parsing: try o.text("clearance") ?? "public")
        try corpus.validate(clearance)
        give(try corpus.provenanceDocument(clearance: clearance).document, json)
    }
}
