import Foundation

/// A projector named with an optional version: `hello` (the latest) or `hello@2`.
public typealias ProjectorReference = LabelSetReference

/// How a regenerated label relates to the projector's error bound.
public enum RegenerationStatus: String, Sendable, Codable {
    /// The sample was in the fitted label set and its regenerated label meets the bound.
    case regenerated
    /// The regenerated label would have broken the bound, so the stored correction was returned.
    case corrected
    /// The sample was not in the fitted label set (imported later, or unlabelled there): no
    /// bound is claimed.
    case unfitted
    /// The sample's embedding was written after the fit: its correction no longer applies and
    /// no bound is claimed until a refit.
    case stale
}

/// One regenerated label.
public struct RegeneratedLabel: Sendable, Equatable {
    /// The sample id.
    public var id: UInt64
    /// The distribution over the store's classes.
    public var probabilities: [Float]
    /// Whether the bound holds, and how.
    public var status: RegenerationStatus
    /// Its taint label: the projector's joined with the sample's (conservative propagation).
    public var taint: TaintLabel = .public
}

/// A projector version ready to regenerate labels: its parameters, decoded once, and W0 + A·B
/// formed once when it has a head.
public struct LoadedProjector: Sendable {
    /// The projector.
    public let projector: Projector
    /// The version loaded.
    public let version: ProjectorVersion
    /// The parameters.
    public let model: ProjectorModel
    let weights: [Float]?
    /// The label set version the projector was fitted on, or nil when it was dropped (or a
    /// later set took its name): no sample can then be told fitted, so none reads as such.
    let sourceSet: LabelSet?
    /// The taint label regenerated labels carry before their sample's is joined in: the
    /// version's, joined with the base head's as it is now (the output depends on it).
    let taint: TaintLabel
    /// True when the base head's content differs from the one the version was fitted with: no
    /// row then meets the bound, so fitted rows read `stale` (R-39).
    public let headChanged: Bool
    /// True when the store records the samples the version was fitted on (format 7): fitted
    /// status is read from those records, not from the source label set (R-22).
    let fittedRecorded: Bool
}

/// A base head W0 as stored: its values, its taint label, and the hash of its content.
struct BaseHead {
    /// d × C values, row-major.
    var values: [Float]
    /// Whose data it was made from, and what vouches for it (format 5; public before).
    var taint: TaintLabel
    /// xxh3-64 of the values' little-endian bytes: what a projector version records of it.
    var contentHash: UInt64

    /// The hash as projector version records write it (16 hex digits).
    var contentHashHex: String { String(contentHash, radix: 16).leftPadded(to: 16) }

    /// Decodes a stored head value (format-spec/storage.md §11.1): its values and taint label id.
    static func decode(key: [UInt8], _ bytes: UnsafeRawBufferPointer, schema: Schema) throws -> (values: [Float], taintID: UInt32) {
        let d = schema.dimension, c = schema.classes.count
        // Format 5 adds the taint label id after d and C; earlier heads have none (label 0). d and
        // C are the schema's, so the two lengths cannot be confused.
        let withTaint = bytes.count == 20 + 4 * d * c
        let (header, floats) = try key.withUnsafeBytes { try ProjectorCodec.decodeFloats(key: $0, bytes, headerCount: withTaint ? 3 : 2) }
        guard Int(header[0]) == d, Int(header[1]) == c, floats.count == d * c else {
            throw RecordDecodingError(detail: "head is \(header[0]) × \(header[1]), the schema needs \(d) × \(c)")
        }
        return (floats, withTaint ? header[2] : 0)
    }

    static func contentHash(_ values: [Float]) -> UInt64 {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(values.count * 4)
        for v in values { withUnsafeBytes(of: v.bitPattern.littleEndian) { bytes.append(contentsOf: $0) } }
        return Checksum.xxh3(bytes)
    }
}

extension Transaction {
    // MARK: Heads

    /// The base head `name` (d × C, row-major), or nil when there is none or the clearance does
    /// not admit its taint label.
    public func head(named name: String) throws -> [Float]? {
        guard let head = try baseHead(named: name), clearance.admits(head.taint) else { return nil }
        return head.values
    }

    /// The stored head `name` whatever the clearance (callers check its taint), or nil.
    func baseHead(named name: String) throws -> BaseHead? {
        let key = Array(name.utf8)
        let stored: (values: [Float], taintID: UInt32)? = try withValue(.heads, key: key) { bytes in
            guard let bytes else { return nil }
            do { return try BaseHead.decode(key: key, bytes, schema: store.schema) } catch { throw contextualize(error, table: .heads, key: name) }
        }
        guard let stored else { return nil }
        guard let taint = try internedLabel(stored.taintID) else {
            throw StoreError.corruptRecord(store: store.path, table: Table.heads.rawValue, key: name, detail: "unknown taint label id \(stored.taintID)")
        }
        return BaseHead(values: stored.values, taint: taint, contentHash: BaseHead.contentHash(stored.values))
    }

    /// The names of every base head.
    public func headNames() throws -> [String] {
        try names(in: .heads)
    }

    // MARK: Projectors

    /// Every projector, by name.
    public func projectors() throws -> [Projector] {
        try names(in: .projectors).compactMap { try projector(named: $0) }
    }

    /// The projector `name`, or nil.
    public func projector(named name: String) throws -> Projector? {
        let key = Array(name.utf8)
        guard let record = try projectorRecord(key: key) else { return nil }
        var versions = try versionRecords(ProjectorVersion.self, in: .projectorVersions, id: record.id, latest: record.latest, name: name)
        if let committed = store.committedProjectorVersions {
            // Read as a corpus's shard: only what the manifest has committed exists.
            guard let cap = committed[name] else { return nil }
            versions = Array(versions.prefix(cap))
        }
        for v in versions.indices where !clearance.admits(versions[v].taintLabel) { versions[v].redactStatistics() }
        return Projector(name: name, id: record.id, versions: versions)
    }

    func projectorRecord(key: [UInt8]) throws -> ProjectorRecord? {
        try withValue(.projectors, key: key) { bytes in
            guard let bytes else { return nil }
            do { return try key.withUnsafeBytes { try LabelRecord.decodeJSON(ProjectorRecord.self, key: $0, bytes) } } catch {
                throw contextualize(error, table: .projectors, key: String(decoding: key, as: UTF8.self))
            }
        }
    }

    /// Loads a projector version for regeneration.
    ///
    /// - Throws: ``ProjectorError/unknownProjector(_:)``, ``ProjectorError/unknownVersion(name:version:latest:)``.
    public func load(_ reference: ProjectorReference) throws -> LoadedProjector {
        if let cached = snapshotCache?.projectors[reference] { return cached }
        let loaded = try loadProjector(reference)
        snapshotCache?.projectors[reference] = loaded
        return loaded
    }

    private func loadProjector(_ reference: ProjectorReference) throws -> LoadedProjector {
        guard let projector = try projector(named: reference.name) else { throw ProjectorError.unknownProjector(reference.name) }
        let v = reference.version ?? projector.latest
        guard v >= 1, v <= projector.latest else { throw ProjectorError.unknownVersion(name: projector.name, version: v, latest: projector.latest) }
        let info = projector.versions[v - 1]
        // A projector fitted on data the clearance does not admit cannot be used (nor can its
        // corrections, which are that data's labels).
        guard !info.statisticsRedacted else { throw ProjectorError.notCleared(name: projector.name, version: v) }
        let key = ProjectorCodec.versionKey(id: projector.id, version: v)
        let model: ProjectorModel = try withValue(.projectorParameters, key: key) { bytes in
            guard let bytes else {
                throw StoreError.corruptRecord(store: store.path, table: Table.projectorParameters.rawValue, key: "\(projector.name)@\(v)", detail: "missing")
            }
            do { return try ProjectorCodec.decodeParameters(key: key, bytes, schema: store.schema) } catch {
                throw contextualize(error, table: .projectorParameters, key: "\(projector.name)@\(v)")
            }
        }
        var weights: [Float]? = nil
        var taint = info.taintLabel
        var headChanged = false
        if let headName = info.head {
            guard let head = try baseHead(named: headName) else { throw ProjectorError.unknownHead(headName) }
            guard clearance.admits(head.taint) else { throw ProjectorError.notCleared(name: projector.name, version: v) }
            weights = model.combinedWeights(head: head.values)
            taint = taint.join(head.taint)
            // Versions fitted before format 5 recorded no hash: their head cannot be checked.
            headChanged = info.headHash.map { $0 != head.contentHashHex } ?? false
        }
        let source = try fittedSource(of: info)
        return LoadedProjector(projector: projector, version: info, model: model, weights: weights, sourceSet: source, taint: taint, headChanged: headChanged,
                               fittedRecorded: try recordsFittedSamples)
    }

    /// The label set a projector version was fitted on, or nil when it was dropped. The set of
    /// that name is the one only if the version fitted on exists, is not dropped and — when
    /// `recreated` is checked: a set can be dropped and created again under its name from format
    /// 7 on — is older than the fit.
    func fittedSource(of version: ProjectorVersion, checkingRecreated recreated: Bool = true) throws -> LabelSet? {
        try labelSet(named: version.sourceSet).flatMap { set in
            // The version number comes from disk: out of range is no source, not a trap.
            guard version.sourceVersion >= 1, version.sourceVersion <= set.latest else { return nil }
            let fitted = set.versions[version.sourceVersion - 1]
            return !fitted.isDropped && (!recreated || fitted.timeMilliseconds <= version.timeMilliseconds) ? set : nil
        }
    }

    /// Regenerates the labels of `ids` (in the order given) in one batch of matrix products,
    /// then applies the bound: stored corrections for fitted samples, and the status of each.
    ///
    /// - Throws: ``StoreError/sampleNotFound(_:)`` for an id that is not stored.
    public func regenerate(_ ids: [UInt64], with loaded: LoadedProjector) throws -> [RegeneratedLabel] {
        let d = loaded.model.dimension, c = loaded.model.classes
        var x = [Float](repeating: 0, count: ids.count * d)
        var sequences = [UInt64](repeating: 0, count: ids.count)
        var slots = [UInt64](repeating: 0, count: ids.count)
        var taints: [TaintLabel] = []
        taints.reserveCapacity(ids.count)
        try x.withUnsafeMutableBufferPointer { out in
            for (i, id) in ids.enumerated() {
                guard let (sequence, slot, taint) = try withSample(id, { view -> (UInt64, UInt64, TaintLabel) in
                    ElementEncoding.load(view.embeddingBytes, count: d, as: view.elementType, into: out.baseAddress! + i * d)
                    return (view.embeddingSequence, view.slot, view.taint)
                }) else { throw StoreError.sampleNotFound(id) }
                sequences[i] = sequence
                slots[i] = slot
                taints.append(taint)
            }
        }
        var probabilities = [Float](repeating: 0, count: ids.count * c)
        x.withUnsafeBufferPointer { xv in
            probabilities.withUnsafeMutableBufferPointer { out in
                loaded.model.regenerate(xv.baseAddress!, rows: ids.count, weights: loaded.weights, into: out.baseAddress!)
            }
        }
        var results: [RegeneratedLabel] = []
        results.reserveCapacity(ids.count)
        var fittedCache: [UInt64: [UInt8]] = [:]
        for (i, id) in ids.enumerated() {
            var row = Array(probabilities[(i * c)..<((i + 1) * c)])
            let status: RegenerationStatus
            // Fitted means the fit could have used this sample's soft label: the row the clearance
            // sees, and one whose label flows to the projector's (the join of everything the fit
            // used). A row hidden from the reader, or one the fit's clearance did not admit, was
            // not fitted, so no bound is claimed for it (R-22).
            if try isFitted(id, slot: slots[i], loaded: loaded, cache: &fittedCache) {
                if sequences[i] > loaded.version.sequence || loaded.headChanged {
                    status = .stale
                } else if let corrected = try correction(for: id, loaded: loaded) {
                    row = corrected
                    status = .corrected
                } else {
                    status = .regenerated
                }
            } else {
                status = .unfitted
            }
            results.append(RegeneratedLabel(id: id, probabilities: row, status: status, taint: loaded.taint.join(taints[i])))
        }
        return results
    }

    /// Whether the version was fitted on sample `id` (in `slot`): from its fitted-sample records
    /// (format 7), else from the source set as the clearance sees it (R-22).
    private func isFitted(_ id: UInt64, slot: UInt64, loaded: LoadedProjector, cache: inout [UInt64: [UInt8]]) throws -> Bool {
        if loaded.fittedRecorded {
            return try wasFitted(projector: loaded.projector.id, version: loaded.version.version, slot: slot, cache: &cache)
        }
        guard let source = loaded.sourceSet, let softTaint = try visibleSoftLabelTaint(id, set: source, version: loaded.version.sourceVersion) else { return false }
        return softTaint.flows(to: loaded.version.taintLabel)
    }

    func correction(for id: UInt64, loaded: LoadedProjector) throws -> [Float]? {
        let key = ProjectorCodec.correctionKey(id: loaded.projector.id, version: loaded.version.version, sample: id)
        let c = loaded.model.classes
        return try withValue(.projectorCorrections, key: key) { bytes in
            guard let bytes else { return nil }
            do {
                let (codecByte, encoded) = try key.withUnsafeBytes { try ProjectorCodec.decodeCorrection(key: $0, bytes) }
                let codec = try CorrectionCodec.codec(codecByte)
                var out = [Float](repeating: 0, count: c)
                try out.withUnsafeMutableBufferPointer { try codec.decode(encoded, into: $0) }
                return out
            } catch { throw contextualize(error, table: .projectorCorrections, key: "\(loaded.projector.name)@\(loaded.version.version) sample \(id)") }
        }
    }
}

/// The codecs corrections are stored in (storage.md §11.5).
enum CorrectionCodec {
    /// The decoder of codec byte `byte`. An adaptive row records its own K, so the decoder needs
    /// no parameter: the KL it was encoded for is the encoder's business.
    static func codec(_ byte: UInt8) throws -> SoftLabelCodec {
        switch byte {
        case 1: .adaptive(1e-6)
        case 2: .denseF16
        case 3: .denseF32
        default: throw RecordDecodingError(detail: "unknown correction codec \(byte)")
        }
    }

    /// Encodes the teacher label so that its decoded form meets the bound; the cheapest codec that
    /// does: adaptive top-K at the bound's own KL (the fewest classes that stay within it), then
    /// dense f16, then dense f32.
    static func encode(_ p: UnsafeBufferPointer<Float>, maxKL: Double, requireTop1: Bool) -> (UInt8, [UInt8]) {
        let top = argmax(p)
        var decoded = [Float](repeating: 0, count: p.count)
        let encoders: [(UInt8, SoftLabelCodec)] = [(1, .adaptive(max(maxKL, 1e-6))), (2, .denseF16), (3, .denseF32)]
        func meetsBound(_ byte: UInt8, _ bytes: [UInt8]) -> Bool {
            bytes.withUnsafeBytes { raw in
                decoded.withUnsafeMutableBufferPointer { out -> Bool in
                    guard (try? codec(byte).decode(raw, into: out)) != nil else { return false }
                    return klDivergence(p, UnsafeBufferPointer(out)) <= maxKL && (!requireTop1 || argmax(UnsafeBufferPointer(out)) == top)
                }
            }
        }
        // The smallest encoding that meets the bound (a diffuse row can need more adaptive bytes
        // than dense f16 takes); dense f32 always does.
        var best: (UInt8, [UInt8])? = nil
        for (byte, encoder) in encoders {
            var bytes: [UInt8] = []
            encoder.encode(p, into: &bytes)
            if let best, best.1.count <= bytes.count { continue }
            if meetsBound(byte, bytes) || byte == 3 {
                best = (byte, bytes)
            } else if byte == 1, requireTop1, raiseFirstEntry(&bytes), meetsBound(byte, bytes) {
                // Two near-equal top classes rounded to one f16 lost the top-1: the first entry
                // (the teacher's top class), raised one f16 step above the rest, restores it.
                best = (byte, bytes)
            }
        }
        return best!
    }

    /// Sets an adaptive row's first (most probable) entry to the next f16 above every other
    /// entry's when it does not already lead; false when it leads, or the row has a single entry
    /// or no room above.
    private static func raiseFirstEntry(_ bytes: inout [UInt8]) -> Bool {
        // Layout (storage.md §10.4): K u16, leftover f16, then K × (class u16, probability f16).
        let k = Int(bytes[0]) | Int(bytes[1]) << 8
        guard k >= 2, bytes.count == 4 + 4 * k else { return false }
        func value(_ i: Int) -> Float16 { Float16(bitPattern: UInt16(bytes[4 + 4 * i + 2]) | UInt16(bytes[4 + 4 * i + 3]) << 8) }
        let highest = (1..<k).map(value).max()!
        let raised = highest.nextUp
        // Only a tie (or a rounding that put another entry above) is repaired; never lowered.
        guard value(0) <= highest, raised.isFinite else { return false }
        bytes[4 + 2] = UInt8(raised.bitPattern & 0xFF)
        bytes[4 + 3] = UInt8(raised.bitPattern >> 8)
        return true
    }
}

extension WriteTransaction {
    /// Stores base head `name` (d × C, row-major floats) with its taint label, which every
    /// projector fitted with it joins into its own (R-39).
    ///
    /// - Parameters:
    ///   - taint: whose data the head was made from and what vouches for it.
    ///   - privileges: the integrity tags the writer may vouch for; every integrity tag of
    ///     `taint` must be among them.
    /// - Throws: ``ProjectorError/headShape(name:rows:columns:dimension:classes:)``,
    ///   ``ProjectorError/headExists(_:)`` unless `replace`, ``ProjectorError/nonFinite(step:)``,
    ///   ``TaintError/missingPrivilege(tag:action:)``; replacing a head the clearance does not
    ///   see is ``ProjectorError/notClearedHead(_:)``.
    public func importHead(_ name: String, values: [Float], rows: Int, columns: Int, replace: Bool = false,
                           taint: TaintLabel = .public, privileges: Set<String> = []) throws {
        try ProjectorNames.check(name)
        try TaintChange.checkEndorsement([taint], privileges: privileges)
        let d = store.schema.dimension, c = store.schema.classes.count
        guard rows == d, columns == c, values.count == d * c else {
            throw ProjectorError.headShape(name: name, rows: rows, columns: columns, dimension: d, classes: c)
        }
        guard values.allSatisfy(\.isFinite) else { throw ProjectorError.nonFinite(step: "head `\(name)` has a NaN or infinity") }
        let key = Array(name.utf8)
        if let existing = try baseHead(named: name) {
            guard replace else { throw ProjectorError.headExists(name) }
            guard clearance.admits(existing.taint) else { throw ProjectorError.notClearedHead(name) }
        }
        let taintID = try intern(taint)
        try put(.heads, key: key, bytes: ProjectorCodec.encodeFloats(key: key, header: [UInt32(d), UInt32(c), taintID], floats: [values]))
        noteChange("heads_written")
    }
}

enum ProjectorNames {
    static func check(_ name: String) throws {
        guard !name.isEmpty, !name.contains("@"), !name.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
            throw ProjectorError.invalidName(name)
        }
    }
}

extension Store {
    /// Fits a new version of projector `name` from a soft label set, and stores it.
    ///
    /// The fit reads its rows from one read transaction as it needs them (about 40 bytes a row
    /// stay in memory, not the teacher's rows × classes), and the result is written in one short
    /// write transaction. A fit can take minutes: writes go on meanwhile, but one that must grow
    /// the map waits until the fit ends (give a store that grows during long fits a map size with
    /// room). With `maxKL`, every sample of the label set whose regenerated label would
    /// break the bound (KL above it, or — with `requireTop1` — another top-1 class) gets a stored
    /// correction, so reads through the projector meet the bound for every fitted sample.
    ///
    /// With `budget` (which needs `maxKL`), the rank is chosen: each of the budget's ranks is
    /// fitted on a seeded sample, and the one whose parameters plus corrections take the fewest
    /// bytes is fitted on every row (`options.rank` is ignored); the search is in the report.
    ///
    /// - Throws: ``ProjectorError``, ``LabelError``; ``ProjectorError/overBudget(rank:bytes:budget:estimated:)``
    ///   when even the smallest total exceeds the budget. Nothing is written on failure.
    @discardableResult
    public func fitProjector(
        _ name: String, from reference: LabelSetReference, options: ProjectorFitOptions, head headName: String? = nil,
        maxKL: Double? = nil, requireTop1: Bool = false, budget: RankBudget? = nil, agent: String = "labeldb", clearance: Clearance,
        progress: ((String, Double) -> Void)? = nil
    ) throws -> ProjectorVersion {
        try ProjectorNames.check(name)
        if let maxKL { guard maxKL > 0, maxKL.isFinite else { throw ProjectorError.invalidOption("the KL bound (max KL) must be a positive number") } }
        // Read, fit and find corrections in one read transaction: the rows are read from it as
        // the fit needs them, so it sees one snapshot and holds about 40 bytes a row, not the
        // rows × classes of the teacher. Writers go on meanwhile, but LMDB keeps the pages this
        // snapshot sees, and a write that must grow the map waits for the fit to end (the map
        // cannot be resized under an open transaction).
        let fitted = try read(clearance: clearance) { tx in
            try tx.fitProjector(from: reference, options: options, head: headName, maxKL: maxKL, requireTop1: requireTop1, budget: budget, progress: progress)
        }
        return try write(clearance: clearance) { tx in
            try tx.recordProjectorVersion(name, fitted, maxKL: maxKL, requireTop1: requireTop1, budget: budget, agent: agent)
        }
    }
}

/// A fit's figures over every shard of a corpus, which each shard's version record states (its
/// own records hold only its part of the samples and corrections).
struct ProjectorTotals {
    var samples: Int
    var corrections: Int
    var correctionBytes: Int
}

extension WriteTransaction {
    /// Writes the next version of projector `name` from `fitted`: the samples it was fitted on,
    /// its corrections, its parameters and its version record, with a provenance record. With
    /// `totals` (a corpus's shard), the version record states those figures instead of this
    /// store's part. Returns the version record.
    func recordProjectorVersion(
        _ name: String, _ fitted: FittedProjector, maxKL: Double?, requireTop1: Bool, budget: RankBudget?, agent: String, totals: ProjectorTotals? = nil
    ) throws -> ProjectorVersion {
        let (set, version, model, corrections, options) = (fitted.set, fitted.version, fitted.model, fitted.corrections, fitted.options)
        let d = store.schema.dimension, c = store.schema.classes.count
        let key = Array(name.utf8)
        var record: ProjectorRecord
        if let existing = try projectorRecord(key: key) {
            record = existing
        } else {
            record = ProjectorRecord(id: try nextRecordID(in: .projectors, as: ProjectorRecord.self), latest: 0)
        }
        let newVersion = record.latest + 1
        // The samples fitted on, so reads know them whatever becomes of the label set (R-22).
        try putFitted(projector: record.id, version: newVersion, slots: fitted.slots)
        var correctionBytes = 0
        for correction in corrections {
            let ckey = ProjectorCodec.correctionKey(id: record.id, version: newVersion, sample: correction.id)
            let value = ProjectorCodec.encodeCorrection(key: ckey, codec: correction.codec, bytes: correction.bytes)
            correctionBytes += value.count + ckey.count
            try put(.projectorCorrections, key: ckey, bytes: value)
        }
        let vkey = ProjectorCodec.versionKey(id: record.id, version: newVersion)
        let params = ProjectorCodec.encodeFloats(
            key: vkey, header: [UInt32(d), UInt32(c), UInt32(model.rank)],
            floats: [[model.scale, model.temperature], model.a, model.b, model.bias])
        try put(.projectorParameters, key: vkey, bytes: params)
        let whole = totals ?? ProjectorTotals(samples: fitted.slots.count, corrections: corrections.count, correctionBytes: correctionBytes)
        let info = ProjectorVersion(
            version: newVersion, sourceSet: set.name, sourceVersion: version, head: fitted.headName, headHash: fitted.head?.contentHashHex, options: options, report: fitted.report,
            samples: whole.samples, maxKL: maxKL, requireTop1: requireTop1, corrections: whole.corrections,
            correctionBytes: whole.correctionBytes, parameterBytes: model.parameterBytes, sequence: fitted.sequence,
            timeMilliseconds: Int64(Date().timeIntervalSince1970 * 1000), agent: agent, provenance: try provenanceID(),
            taint: fitted.taint)
        describe(ProvenanceRecord(
            activity: "projector fit", agent: agent,
            used: [ProvenanceEntity(kind: "label_set", name: set.name, version: version)] + (fitted.headName.map { [ProvenanceEntity(kind: "head", name: $0)] } ?? []),
            generated: [ProvenanceEntity(kind: "projector", name: name, version: newVersion, rows: corrections.count)],
            parameters: ["rank": "\(options.rank)", "holdout": "\(options.holdout)", "seed": "\(options.seed)", "epochs": options.epochs.map(String.init) ?? "none", "max_steps": "\(options.maxSteps)", "patience": "\(options.patience)",
                         "max_kl": maxKL.map { "\($0)" } ?? "none", "top1": "\(requireTop1)", "corrections": "\(corrections.count)",
                         "budget": budget.map { "\($0.bytes)" } ?? "none"]))
        try put(.projectorVersions, key: vkey, bytes: LabelRecord.encodeJSON(info, key: vkey))
        record.latest = newVersion
        try put(.projectors, key: key, bytes: LabelRecord.encodeJSON(record, key: key))
        return info
    }
}

/// What a fit read and computed, ready to be written.
struct FittedProjector {
    /// The options the fit ran with (its rank chosen by a rank search, when there was one).
    var options: ProjectorFitOptions
    var set: LabelSet
    var version: Int
    var model: ProjectorModel
    var report: ProjectorFitReport
    var head: BaseHead?
    /// The base head's name, with `head`.
    var headName: String?
    /// The store's write sequence when the fit read it.
    var sequence: UInt64
    /// The join of every row's taint label and the head's.
    var taint: TaintLabel
    /// The slots of the samples fitted on.
    var slots: [UInt64]
    var corrections: [(id: UInt64, codec: UInt8, bytes: [UInt8])]
}

extension Transaction {
    /// Fits a projector to the soft labels of `reference` this transaction's clearance sees, and
    /// finds the corrections `maxKL` needs; reads rows on demand (``StoredFitRows``). With a
    /// budget, searches the rank first.
    func fitProjector(
        from reference: LabelSetReference, options: ProjectorFitOptions, head headName: String?, maxKL: Double?, requireTop1: Bool,
        budget: RankBudget?, progress: ((String, Double) -> Void)?
    ) throws -> FittedProjector {
        let (set, version) = try resolveFitSource(reference)
        var (ids, slots, taint) = try softLabelledSamples(set: set, version: version)
        guard !ids.isEmpty else { throw ProjectorError.noRows("label set `\(set.name)@\(version)` has no soft labels") }
        let head = try headName.map { try fitHead(named: $0) }
        // The projector depends on the head: it carries the head's label too.
        if let head { taint = taint.join(head.taint) }
        let rows = StoredFitRows(self, ids: ids, set: set, version: version)
        let (chosen, outcome) = try ProjectorFitter.fitForRecording(rows, head: head?.values, options: options, maxKL: maxKL, requireTop1: requireTop1,
                                                                     budget: budget, progress: progress)
        return FittedProjector(options: chosen, set: set, version: version, model: outcome.model, report: outcome.report, head: head, headName: headName,
                               sequence: try storedSequence(), taint: taint, slots: slots,
                               corrections: outcome.corrections.map { (ids[$0.row], $0.codec, $0.bytes) })
    }

    /// The soft label set version a fit reads: resolved, per sample, with a codec.
    func resolveFitSource(_ reference: LabelSetReference) throws -> (set: LabelSet, version: Int) {
        let (set, version) = try resolve(reference)
        // A view's label belongs to a crop whose embedding the store does not hold.
        try requirePerSample(set, for: "a projector fit")
        guard set.codec != nil else { throw ProjectorError.noSoftLabels(set.name) }
        return (set, version)
    }

    /// The samples with a soft label in `set@version` that the clearance sees (in id order),
    /// their slots, and the join of those labels' taint labels.
    func softLabelledSamples(set: LabelSet, version: Int) throws -> (ids: [UInt64], slots: [UInt64], taint: TaintLabel) {
        var ids: [UInt64] = [], slots: [UInt64] = []
        var taint = TaintLabel.bottom
        try forEachVisibleRow(set: set, version: version) { id, _, row, rowTaint in
            guard row.soft != nil else { return true }
            ids.append(id)
            taint = taint.join(rowTaint)
            return true
        }
        for id in ids {
            guard let sample = try visibleSample(id) else { throw StoreError.sampleNotFound(id) }
            slots.append(sample.slot)
        }
        return (ids, slots, taint)
    }

    /// Base head `name`, which the clearance must admit.
    func fitHead(named name: String) throws -> BaseHead {
        guard let head = try baseHead(named: name) else { throw ProjectorError.unknownHead(name) }
        guard clearance.admits(head.taint) else { throw ProjectorError.notClearedHead(name) }
        return head
    }
}

extension ProjectorFitter {
    /// Fits `data` and finds its corrections, choosing the rank first when given a budget (which
    /// needs `maxKL`). Returns the options used (with the rank chosen) and the outcome, whose
    /// report holds the rank search.
    static func fitForRecording(
        _ rows: some FitRows, head: [Float]?, options: ProjectorFitOptions, maxKL: Double?, requireTop1: Bool, budget: RankBudget?,
        progress: ((String, Double) -> Void)?
    ) throws -> (options: ProjectorFitOptions, outcome: Outcome) {
        var options = options
        guard let budget else {
            return (options, try fitWithCorrections(rows, head: head, options: options, maxKL: maxKL, requireTop1: requireTop1, progress: progress))
        }
        guard let maxKL else { throw ProjectorError.invalidOption("a byte budget needs a bound (max KL): without one there are no corrections to trade against the rank") }
        let found = try searchRank(rows, budget: budget, head: head, options: options, maxKL: maxKL, requireTop1: requireTop1, progress: progress)
        var search = found.search
        var outcome: Outcome
        if let exact = found.exact {
            guard exact.totalBytes <= budget.bytes else {
                throw ProjectorError.overBudget(rank: found.rank, bytes: exact.totalBytes, budget: budget.bytes, estimated: false)
            }
            (options.rank, outcome) = (found.rank, exact)
        } else {
            (options.rank, outcome) = try fitWithinBudget(rows, search: &search, head: head, options: options, maxKL: maxKL,
                                                          requireTop1: requireTop1, progress: progress)
        }
        outcome.report.rankSearch = search
        return (options, outcome)
    }
}
