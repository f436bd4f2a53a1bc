import CLabelDB
import Foundation
import LabelDB

// Stores: open, create, close, information, verification, projector fits.

private let versionText: [CChar] = Array("LabelDB format \(Store.currentFormatVersion)".utf8CString)

@_cdecl("ldb_last_error")
public func ldbLastError() -> UnsafePointer<CChar>? {
    LastError.current.message.withUnsafeBufferPointer { $0.baseAddress }
}

@_cdecl("ldb_last_error_refused")
public func ldbLastErrorRefused() -> Int32 { LastError.current.refused ? 1 : 0 }

@_cdecl("ldb_version")
public func ldbVersion() -> UnsafePointer<CChar>? { versionText.withUnsafeBufferPointer { $0.baseAddress } }

@_cdecl("ldb_free")
public func ldbFree(_ pointer: UnsafeMutableRawPointer?) { free(pointer) }

@_cdecl("ldb_open")
public func ldbOpen(_ path: UnsafePointer<CChar>?, _ flags: Int32, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    guarded {
        guard let out else { throw APIError.badInput("ldb_open: out is NULL") }
        out.pointee = nil
        guard flags & ~Int32(LDB_WRITE) == 0 else { throw APIError.badInput("ldb_open: unknown flags \(flags)") }
        let directory = try string(path, "path")
        let write = flags & Int32(LDB_WRITE) != 0
        if write { try CorpusManifest.refuseDirectWrite(to: directory) }
        if write { try WriterRegistry.claim(directory) }
        let store: Store
        do { store = try Store(opening: directory, options: Store.Options(readOnly: !write)) } catch {
            if write { WriterRegistry.release(directory) }
            throw error
        }
        out.pointee = OpaquePointer(Unmanaged.passRetained(StoreHandle(store, writerPath: write ? directory : nil)).toOpaque())
    }
}

@_cdecl("ldb_create")
public func ldbCreate(_ path: UnsafePointer<CChar>?, _ schemaJSON: UnsafePointer<CChar>?, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    guarded {
        guard let out else { throw APIError.badInput("ldb_create: out is NULL") }
        out.pointee = nil
        let spec = try options(schemaJSON)
        try spec.only(["dimension", "classes", "element"], call: "ldb_create")
        guard let dimension = try spec.integer("dimension") else { throw APIError.badInput("ldb_create: the schema needs a dimension") }
        let classes: [String]
        if let count = try? spec.integer("classes") {
            guard (1...Schema.maxClasses).contains(count) else { throw APIError.badInput("ldb_create: classes must be 1…\(Schema.maxClasses), not \(count)") }
            classes = (0..<count).map(String.init)
        } else {
            classes = try spec.strings("classes")
            guard !classes.isEmpty else { throw APIError.badInput("ldb_create: the schema needs at least one class") }
        }
        let elementName = try spec.text("element") ?? "f32"
        guard let element = Schema.ElementType(rawValue: elementName) else { throw APIError.badInput("ldb_create: element must be f32 or f16, not '\(elementName)'") }
        let schema = try Schema(dimension: dimension, elementType: element, classes: classes)
        let directory = try string(path, "path")
        let store = try Store.create(at: directory, schema: schema)
        do { try WriterRegistry.claim(directory) } catch { store.close(); throw error }
        out.pointee = OpaquePointer(Unmanaged.passRetained(StoreHandle(store, writerPath: directory)).toOpaque())
    }
}

@_cdecl("ldb_close")
public func ldbClose(_ pointer: OpaquePointer?) -> Int32 {
    guarded {
        guard pointer != nil else { return }
        let handle = try storeHandle(pointer)
        try handle.markClosed()
        handle.store.close()
        if let path = handle.writerPath { WriterRegistry.release(path) }
        Unmanaged<StoreHandle>.fromOpaque(UnsafeRawPointer(pointer!)).release()
    }
}

@_cdecl("ldb_info")
public func ldbInfo(_ pointer: OpaquePointer?, _ json: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    guarded {
        try storeHandle(pointer).use { store in
            // Counts as the public sees them: info needs no clearance (ldb_count gives a cleared one).
            let (count, tags) = try store.read(clearance: .public) { (try $0.count(), try $0.registeredTags()) }
            give(storeInfoJSON(store, count: count, tags: tags), json)
        }
    }
}

@_cdecl("ldb_verify")
public func ldbVerify(_ pointer: OpaquePointer?, _ clearanceText: UnsafePointer<CChar>?, _ json: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    guarded {
        try storeHandle(pointer).use { store in
            let clearance = try Clearance(parsing: try string(clearanceText, "clearance"))
            let report = try store.read(clearance: clearance) { tx in
                try tx.validate(clearance)
                return try tx.verify()
            }
            give(verificationJSON(report), json)
        }
    }
}

@_cdecl("ldb_fit_projector")
public func ldbFitProjector(
    _ pointer: OpaquePointer?, _ nameText: UnsafePointer<CChar>?, _ optionsJSON: UnsafePointer<CChar>?,
    _ json: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?
) -> Int32 {
    guarded {
        try storeHandle(pointer).use { store in try fitProjector(store, nameText, optionsJSON, json) }
    }
}

private func fitProjector(
    _ store: Store, _ nameText: UnsafePointer<CChar>?, _ optionsJSON: UnsafePointer<CChar>?,
    _ json: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?
) throws {
    guard !store.isWritingOnThisThread else { throw SessionError.writeInProgress }
    let name = try string(nameText, "name")
    let request = try FitRequest(try options(optionsJSON), schema: store.schema, call: "ldb_fit_projector")
    try store.read(clearance: request.clearance) { try $0.validate(request.clearance) }
    let version = try store.fitProjector(
        name, from: request.source, options: request.options, head: request.head, maxKL: request.maxKL, requireTop1: request.requireTop1,
        budget: request.budget, agent: request.agent, clearance: request.clearance)
    let set = try store.read(clearance: request.clearance) { try $0.labelSet(named: version.sourceSet) }
    give(.object(projectorVersionJSON(version, name: name, labelSet: set, classes: store.schema.classes.count)), json)
}

/// A projector fit as the C API's options ask for it (`ldb_fit_projector`, `ldb_corpus_fit_projector`).
struct FitRequest {
    var source: LabelSetReference
    var options: ProjectorFitOptions
    var budget: RankBudget?
    var head: String?
    var maxKL: Double?
    var requireTop1: Bool
    var agent: String
    var clearance: Clearance

    init(_ o: [String: JSONValue], schema: Schema, call: String) throws {
        try o.only(["from", "rank", "head", "max_kl", "top1", "epochs", "max_steps", "patience", "holdout", "seed", "agent", "clearance", "fit_temperature",
                    "budget", "search_rows"], call: call)
        guard let from = try o.text("from") else { throw APIError.badInput("\(call): option 'from' (the label set) is required") }
        // `rank`: one rank, or with `budget` the candidates (default: powers of two from 8).
        let ranks = try o.integers("rank")
        budget = try o.integer("budget").map { bytes in
            var budget = RankBudget(bytes: bytes, ranks: ranks.isEmpty ? RankBudget.defaultRanks(dimension: schema.dimension, classes: schema.classes.count) : ranks)
            if let rows = try o.integer("search_rows") { budget.sampleRows = rows }
            return budget
        }
        guard budget != nil || ranks.count <= 1 else { throw APIError.badInput("\(call): several ranks need a 'budget' to choose among them") }
        var fit = ProjectorFitOptions(rank: ranks.first ?? 16)
        if let epochs = try o.integer("epochs") { fit.epochs = epochs }
        if let steps = try o.integer("max_steps") { fit.maxSteps = steps }
        if let patience = try o.integer("patience") { fit.patience = patience }
        if let holdout = try o.number("holdout") { fit.holdout = holdout }
        if let seed = try o.integer("seed") { fit.seed = UInt64(max(seed, 0)) }
        if let temperature = try o.flag("fit_temperature") { fit.fitTemperature = temperature }
        source = try LabelSetReference(parsing: from)
        options = fit
        head = try o.text("head")
        maxKL = try o.number("max_kl")
        requireTop1 = try o.flag("top1") ?? false
        agent = try o.text("agent") ?? "python"
        clearance = try Clearance(parsing: try o.text("clearance") ?? "all")
    }
}

@_cdecl("ldb_backup")
public func ldbBackup(_ pointer: OpaquePointer?, _ destination: UnsafePointer<CChar>?, _ clearanceText: UnsafePointer<CChar>?) -> Int32 {
    guarded {
        try storeHandle(pointer).use { store in
            let clearance = try Clearance(parsing: try string(clearanceText, "clearance"))
            try store.backup(to: try string(destination, "destination"), clearance: clearance)
        }
    }
}
