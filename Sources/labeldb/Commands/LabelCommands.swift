import ArgumentParser
import Foundation
import LabelDB

/// `labeldb labels …`: label sets.
struct LabelsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "labels",
        abstract: "Label sets: import, list, show, export and diff versioned hard, multi and soft labels.",
        subcommands: [LabelsImportCommand.self, LabelsListCommand.self, LabelsShowCommand.self, LabelsExportCommand.self, LabelsDiffCommand.self, LabelsDropCommand.self, LabelsAgreeCommand.self, LabelsConsensusCommand.self, LabelsIssuesCommand.self])
}

/// `labeldb labels import STORE SET (--soft P.npy | --logits Z.npy [--temperature T] | --hard Y.npy | --multi Y.jsonl) …`
struct LabelsImportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import",
        abstract: "Import one new version of a label set.",
        discussion: """
            Rows align with --ids, or with the store's ids in ascending order. Soft rows must be \
            probabilities that sum to 1 (within 1e-3; --normalize rescales). Codecs: dense:f32, \
            dense:f16, topk:K:f16, topk:K:u8, adaptive:EPS; a label set keeps the codec of its first \
            soft import. --codec auto:MAXKL picks the smallest codec whose max KL on these labels is \
            at most MAXKL nats, and says which. --dry-run measures every codec on the labels \
            (bytes per label, mean and max KL, top-1 agreement; at most 20,000 rows, a seeded \
            sample beyond) and writes nothing. A first soft import warns when its codec is \
            dominated: another is no larger and no less exact on a sample of the rows. --multi \
            lines are JSON arrays of class names or indices.
            """)

    @OptionGroup var target: StoreArgument
    @Argument(help: "The label set name.") var set: String
    @Option(help: "Soft labels: N × classes probabilities (.npy).") var soft: String?
    @Option(help: "Logits: N × classes (.npy), turned into probabilities by softmax(z / T).") var logits: String?
    @Option(help: "Softmax temperature for --logits.") var temperature: Double = 1
    @Option(help: "Hard labels: N class indices (.npy, integer).") var hard: String?
    @Option(help: "Multi-labels: JSONL, one array of class names or indices per row.") var multi: String?
    @Option(help: "Compact soft labels: N × K class indices (.npy, <u2/<u4/<i4/<i8), most probable first; with --topk-probs.") var topkClasses: String?
    @Option(help: "Compact soft labels: N × K probabilities (.npy, <f2/<f4), aligned with --topk-classes.") var topkProbs: String?
    @Option(help: "Compact soft labels: the N leftover masses (.npy, <f2/<f4); 1 − Σ probabilities when absent.") var leftover: String?
    @Option(help: "Ids the rows belong to (.npy, <u8 or <i8).") var ids: String?
    @Option(help: "Views, for a per-view label set: JSONL, one line per label row: {\"view\": N, \"crop\": [x0, y0, x1, y1], \"flip\": B, \"epoch\": E, \"seed\": S, …}; ids repeat once per view.") var views: String?
    @Option(help: "Soft-label codec (fixed at the label set's first soft import; default dense:f16), or auto:MAXKL.") var codec: String?
    @Flag(help: "Measure every codec on these soft labels and print the table; write nothing.") var dryRun = false
    @Option(help: "Who produced the labels, e.g. resnet50@2024-03.") var agent: String?
    @Flag(help: "Rescale soft rows that do not sum to 1 instead of rejecting them.") var normalize = false
    /// The label source's taint label (e.g. a teacher trained on licensed data), and the privileges held.
    @OptionGroup var taint: TaintOptions
    @Option(help: "Output format: text or json.") var format: OutputFormat = .text

    func run() throws {
        let sourceTaint = try taint.label()
        let privileges = try taint.privileges()
        let taintParameters = try taint.parameters()
        let sources = [soft, logits, hard, multi, topkClasses].compactMap { $0 }
        guard sources.count == 1 else { throw UsageError(description: "give exactly one of --soft, --logits, --hard, --multi, --topk-classes") }
        guard (topkClasses == nil) == (topkProbs == nil) else { throw UsageError(description: "--topk-classes and --topk-probs go together") }
        guard leftover == nil || topkClasses != nil else { throw UsageError(description: "--leftover goes with --topk-classes and --topk-probs") }
        let autoBound = try parseAutoBound()
        var codecValue = autoBound == nil ? try codec.map { try SoftLabelCodec(parsing: $0) } : nil
        if FileManager.default.fileExists(atPath: target.store + "/" + CorpusManifest.fileName) {
            guard !dryRun, autoBound == nil else { throw UsageError(description: "--dry-run and --codec auto measure on one store: run them on a shard of the corpus") }
            return try importIntoCorpus(codec: codecValue, source: sourceTaint, privileges: privileges, taintParameters: taintParameters)
        }
        let (store, clearance) = try target.openCleared(readOnly: dryRun)
        defer { store.close() }
        let classCount = store.schema.classes.count
        let (values, rows) = try readValues(schema: store.schema)
        let idList = try ids.map { try readIDs($0) }
        if let idList, idList.count != rows {
            throw InputError(file: ids!, reason: "\(idList.count) ids for \(rows) label rows")
        }
        let viewList = try views.map { try readViews($0, rows: rows) }
        if dryRun || autoBound != nil {
            guard values.kind == .soft else { throw UsageError(description: "--dry-run and --codec auto apply to soft labels (--soft, --logits, --topk-classes)") }
        }
        let existingCodec = try store.read(clearance: clearance) { tx in
            let ids = try rowIDs(idList, rows: rows, in: tx)   // before measuring codecs, which takes a while
            if dryRun { try checkIDs(ids, in: tx) }
            return try tx.labelSet(named: set)?.codec
        }
        if dryRun { return try printTrials(values, rows: rows, store: store, existing: existingCodec) }
        var autoTrial: CodecTrial? = nil
        if let autoBound {
            autoTrial = try chooseCodec(values, rows: rows, classCount: classCount, maxKL: autoBound, existing: existingCodec)
            codecValue = autoTrial?.codec
        }
        let name = agent ?? defaultAgent()
        let source = sources[0]
        let used = try [source, topkProbs, leftover, ids, views].compactMap { $0 }.map { try ProvenanceEntity.file($0, rows: rows) }
        let info = try store.write(clearance: clearance) { tx -> LabelSetVersion in
            let rowIDs = try rowIDs(idList, rows: rows, in: tx)
            let info = try tx.importLabels(values, ids: rowIDs, into: set, codec: codecValue, views: viewList, agent: name, source: sourceTaint, privileges: privileges, normalize: normalize)
            tx.describe(ProvenanceRecord(
                activity: "label import", agent: name, used: used,
                generated: [ProvenanceEntity(kind: "label_set", name: set, version: info.version, rows: info.rows)],
                parameters: taintParameters.merging(["kind": info.kind.rawValue, "codec": codecValue?.description ?? codec ?? "", "codec_requested": autoBound != nil ? codec! : "",
                                                     "temperature": logits != nil ? "\(temperature)" : ""]) { $1 }))
            return info
        }
        let labelSet = try store.read(clearance: clearance) { try $0.labelSet(named: set) }!
        let dominated = existingCodec == nil && values.kind == .soft ? try dominance(values, rows: rows, classCount: classCount, chosen: labelSet.codec) : nil
        switch format {
        case .json:
            var object = versionJSON(info)
            object["name"] = .string(set)
            object["codec"] = labelSet.codec.map { .string($0.description) } ?? .null
            if let autoTrial { object["auto_chose"] = .string(autoTrial.codec.description) }
            if let dominated { object["dominated_by"] = .object(trialJSON(dominated)) }
            printJSON(.object(object))
        case .text:
            if let autoTrial, let autoBound { print("codec auto:\(autoBound) chose \(autoTrial.codec): the smallest with max KL ≤ \(autoBound) on these labels") }
            let labelled = info.statisticsRedacted ? "labelled count hidden under this clearance" : "\(info.labelled) samples labelled"
            let written = info.views.map { "\($0) \(info.kind.rawValue) view labels of \(info.rows) samples" } ?? "\(info.rows) \(info.kind.rawValue) labels"
            print("label set \(set) version \(info.version): \(written) from \(info.agent); \(labelled)")
            if let f = info.fidelity, let codec = labelSet.codec { print(fidelityText(f, codec: codec)) }
        }
        if let dominated, let codec = labelSet.codec {
            printError("warning: \(codec) is dominated on these labels by \(dominated.codec) (\(fidelityText(dominated.fidelity, codec: dominated.codec))); the set keeps \(codec) (see --dry-run)")
        }
    }
}

extension LabelsImportCommand {
    /// The import into a sharded corpus: rows routed to their ids' shards, one version number
    /// for all, visible once the manifest records it (``CorpusWriter``).
    func importIntoCorpus(codec: SoftLabelCodec?, source: TaintLabel, privileges: Set<String>, taintParameters: [String: String]) throws {
        let writer = try CorpusWriter(opening: target.store)
        defer { writer.close() }
        let clearance = try Clearance(parsing: target.clearance)
        try writer.validate(clearance)
        let manifest = writer.manifest
        let (values, rows) = try readValues(schema: try Schema(dimension: manifest.dimension, elementType: manifest.elementType, classes: manifest.classes))
        guard let idsPath = ids else { throw UsageError(description: "an import into a sharded corpus needs --ids: rows are routed to shards by id") }
        let idList = try readIDs(idsPath)
        guard idList.count == rows else { throw InputError(file: idsPath, reason: "\(idList.count) ids for \(rows) label rows") }
        let viewList = try views.map { try readViews($0, rows: rows) }
        let name = agent ?? defaultAgent()
        let used = try [[soft, logits, hard, multi, topkClasses].compactMap { $0 }[0], topkProbs, leftover, ids, views].compactMap { $0 }.map { try ProvenanceEntity.file($0, rows: rows) }
        let record = ProvenanceRecord(activity: "label import", agent: name, used: used, parameters: taintParameters.merging([
            "kind": values.kind.rawValue, "codec": codec?.description ?? "", "temperature": logits != nil ? "\(temperature)" : "", "corpus": "true"]) { $1 })
        // A test stops the writer between shards this way, as a crash would (SIGKILL: no cleanup).
        let killAfter = ProcessInfo.processInfo.environment["LABELDB_TEST_KILL_AFTER_SHARD"].flatMap(Int.init)
        let parts = try writer.importLabels(values, ids: idList, into: set, codec: codec, views: viewList, agent: name, source: source, privileges: privileges,
                                            normalize: normalize, clearance: clearance, provenance: record) { shard in
            if shard == killAfter { kill(getpid(), SIGKILL) }
        }
        let info = LabelSetVersion.combined(parts)
        switch format {
        case .json:
            var object = versionJSON(info)
            object["name"] = .string(set)
            object["shards"] = .int(Int64(parts.count))
            printJSON(.object(object))
        case .text:
            let written = info.views.map { "\($0) \(info.kind.rawValue) view labels of \(info.rows) samples" } ?? "\(info.rows) \(info.kind.rawValue) labels"
            let labelled = info.statisticsRedacted ? "labelled count hidden under this clearance" : "\(info.labelled) samples labelled"
            print("label set \(set) version \(info.version): \(written) from \(info.agent) across \(parts.count) shards; \(labelled)")
        }
    }

    /// The label rows the options give (--soft, --logits, --topk-classes, --hard or --multi),
    /// checked against the schema's classes, and their count.
    func readValues(schema: Schema) throws -> (values: LabelValues, rows: Int) {
        let classCount = schema.classes.count
        let values: LabelValues
        let rows: Int
        if let path = soft ?? logits {
            let array = try NumPyArray.read(path)
            guard array.shape.count == 2 else { throw InputError(file: path, reason: "expected a 2-D array (rows × \(classCount) classes), found shape \(array.shape)") }
            guard array.shape[1] == classCount else {
                throw InputError(file: path, reason: "rows have \(array.shape[1]) columns; the store has \(classCount) classes")
            }
            rows = array.shape[0]
            var p = try array.floats(file: path)
            if logits != nil {
                // The temperature is used as a Float: it must stay a positive, normal one.
                guard temperature > 0, Float(temperature).isNormal else {
                    throw UsageError(description: "--temperature \(temperature) must be a positive number from \(Float.leastNormalMagnitude) to \(Float.greatestFiniteMagnitude)")
                }
                try softmaxRows(&p, columns: classCount, temperature: Float(temperature), file: path)
            }
            values = .soft(p)
        } else if let classesPath = topkClasses, let probsPath = topkProbs {
            let top = try readTopK(classes: classesPath, probabilities: probsPath, leftover: leftover)
            rows = top.rows
            values = .topK(top.values)
        } else if let path = hard {
            let array = try NumPyArray.read(path)
            guard array.shape.count == 1 else { throw InputError(file: path, reason: "expected a 1-D array of class indices, found shape \(array.shape)") }
            guard !array.dtype.isFloat else { throw InputError(file: path, reason: "hard labels must be integers, not \(array.dtype.rawValue)") }
            rows = array.count
            values = .hard(try array.integers(file: path).map { Int($0) })
        } else {
            let path = multi!
            let lines = try JSONLines.read(path)
            rows = lines.count
            values = .multi(try lines.enumerated().map { index, line in
                guard case .array(let items) = line else {
                    throw InputError(file: path, location: "line \(index + 1)", reason: "expected a JSON array of class names or indices")
                }
                return try items.map { item in
                    if let name = item.stringValue {
                        guard let c = schema.classIndex(named: name) else {
                            throw InputError(file: path, location: "line \(index + 1)", reason: "unknown class name '\(name)'")
                        }
                        return c
                    }
                    guard case .int(let c) = item else {
                        throw InputError(file: path, location: "line \(index + 1)", reason: "expected class names or integer indices")
                    }
                    return Int(c)
                }
            })
        }
        return (values, rows)
    }

    /// Rows measured by --dry-run (a seeded sample beyond), and by the dominance warning.
    static let dryRunRows = 20_000, dominanceRows = 2_000

    /// The ids the rows label: --ids, or the visible samples in ascending id order, one per row.
    func rowIDs(_ given: [UInt64]?, rows: Int, in tx: LabelDB.Transaction) throws -> [UInt64] {
        let ids = try given ?? tx.ids()
        guard ids.count == rows else {
            // Rows go to the visible samples, so a hidden sample (indistinguishable from an absent
            // one) is why counts differ as often as a wrong file: the message names the clearance.
            throw InputError(file: [soft, logits, hard, multi, topkClasses].compactMap { $0 }[0],
                             reason: "\(rows) label rows, but \(ids.count) samples are visible under clearance \(target.clearance); without --ids, row i labels the i-th visible sample in ascending id order")
        }
        return ids
    }

    /// What an import would refuse about its ids, checked by --dry-run: each once, each visible.
    func checkIDs(_ ids: [UInt64], in tx: LabelDB.Transaction) throws {
        var seen = Set<UInt64>()
        for (row, id) in ids.enumerated() {
            guard seen.insert(id).inserted else { throw LabelError.invalidLabel(row: row, reason: "id \(id) appears more than once") }
        }
        try requireVisible(ids, in: tx, clearance: target.clearance, or: "nothing would be imported")
    }

    /// The views file's views, one per label row (``AugmentedView/init(json:)``), read line by line.
    func readViews(_ path: String, rows: Int) throws -> [AugmentedView] {
        var views: [AugmentedView] = []
        views.reserveCapacity(rows)
        try JSONLines.forEach(path) { line, value in
            do { views.append(try AugmentedView(json: value)) } catch let error as ViewInputError {
                throw InputError(file: path, location: "line \(line)", reason: error.reason)
            }
        }
        guard views.count == rows else { throw InputError(file: path, reason: "\(views.count) views for \(rows) label rows (one line per row)") }
        return views
    }

    /// `--codec auto:MAXKL`'s bound, or nil for any other codec.
    func parseAutoBound() throws -> Double? {
        guard let codec, codec.hasPrefix("auto:") else { return nil }
        guard let bound = Double(codec.dropFirst(5)), bound.isFinite, bound >= 1e-6 else {
            throw UsageError(description: "--codec auto:MAXKL needs a number of nats ≥ 1e-6, not '\(codec)'")
        }
        return bound
    }

    /// --dry-run: every candidate codec measured on the labels, one line (or JSON object) each, smallest first.
    func printTrials(_ values: LabelValues, rows: Int, store: Store, existing: SoftLabelCodec?) throws {
        let c = store.schema.classes.count
        let sample = try CodecTrials.rows(values, rows: rows, classCount: c, normalize: normalize, sample: Self.dryRunRows)
        let candidates = CodecTrials.candidates(classCount: c, extra: [existing, try codec.flatMap { $0.hasPrefix("auto:") ? nil : try SoftLabelCodec(parsing: $0) }].compactMap { $0 })
        let trials = try CodecTrials.measure(candidates, rows: sample.rows, count: sample.count, classCount: c)
            .sorted { ($0.fidelity.bytesPerLabel, $0.fidelity.meanKL) < ($1.fidelity.bytesPerLabel, $1.fidelity.meanKL) }
        let measured = sample.count < rows ? "a seeded sample of \(sample.count) of \(rows) rows" : "all \(rows) rows"
        if format == .text { print("codecs measured on \(measured); nothing written" + (existing.map { "; label set \(set) keeps \($0)" } ?? "")) }
        for trial in trials {
            let dominated = CodecTrials.dominating(trial.codec, in: trials)
            switch format {
            case .json:
                var object = trialJSON(trial)
                object["rows_measured"] = .int(Int64(sample.count))
                object["dominated_by"] = dominated.map { .string($0.codec.description) } ?? .null
                object["set_codec"] = .bool(trial.codec == existing)
                printJSON(.object(object))
            case .text:
                print("  " + fidelityText(trial.fidelity, codec: trial.codec) + (dominated.map { " — dominated by \($0.codec)" } ?? "") + (trial.codec == existing ? " (this set's codec)" : ""))
            }
        }
    }

    /// --codec auto:MAXKL: the set's own codec when it meets the bound (else an error: a set keeps
    /// its codec), or the smallest candidate that does, measured on every row.
    func chooseCodec(_ values: LabelValues, rows: Int, classCount c: Int, maxKL: Double, existing: SoftLabelCodec?) throws -> CodecTrial {
        let all = try CodecTrials.rows(values, rows: rows, classCount: c, normalize: normalize)
        if let existing {
            let trial = try CodecTrials.measure([existing], rows: all.rows, count: all.count, classCount: c)[0]
            guard trial.fidelity.maxKL <= maxKL else {
                throw UsageError(description: "--codec auto:\(maxKL): label set \(set) keeps its codec \(existing), whose max KL on these labels is \(trial.fidelity.maxKL); import into a new label set to choose another")
            }
            return trial
        }
        // adaptive:MAXKL meets the bound by construction; a fixed codec is tried (smallest first,
        // abandoned at its first row over the bound) only while it would be smaller.
        let adaptive = try CodecTrials.measure([.adaptive(maxKL)], rows: all.rows, count: all.count, classCount: c)[0]
        let fixed = CodecTrials.candidates(classCount: c).compactMap { codec in codec.fixedSize(classCount: c).map { (codec, $0) } }.sorted { $0.1 < $1.1 }
        for (codec, size) in fixed where Double(size) < adaptive.fidelity.bytesPerLabel {
            let trial = try CodecTrials.measure([codec], rows: all.rows, count: all.count, classCount: c, stopAboveMaxKL: maxKL)[0]
            if trial.fidelity.maxKL <= maxKL { return trial }
        }
        return adaptive
    }

    /// The smallest codec dominating `chosen` on a sample of the rows, or nil.
    func dominance(_ values: LabelValues, rows: Int, classCount c: Int, chosen: SoftLabelCodec?) throws -> CodecTrial? {
        guard let chosen else { return nil }
        let sample = try CodecTrials.rows(values, rows: rows, classCount: c, normalize: normalize, sample: Self.dominanceRows)
        let trials = try CodecTrials.measure(CodecTrials.candidates(classCount: c, extra: [chosen]), rows: sample.rows, count: sample.count, classCount: c)
        return CodecTrials.dominating(chosen, in: trials)
    }
}

/// One codec's measured figures (cli.md, `labels import --dry-run`).
func trialJSON(_ trial: CodecTrial) -> [String: JSONValue] {
    ["codec": .string(trial.codec.description), "bytes_per_label": .double(trial.fidelity.bytesPerLabel), "mean_kl": .double(trial.fidelity.meanKL),
     "max_kl": .double(trial.fidelity.maxKL), "top1_agreement": .double(trial.fidelity.top1Agreement)]
}

/// `labeldb labels drop STORE SET[@VERSION]`
struct LabelsDropCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "drop", abstract: "Drop a label set (every version's rows, postings and records), or one old version of it.",
        discussion: """
            Needs a clearance that sees every row of the set. Logged in the provenance log as \
            `label drop`. Projectors fitted on the set keep working with their bound: their \
            parameters, corrections and the list of samples they were fitted on are their own \
            (only `projector check`, which compares with the stored labels, needs the set); the \
            command names them. The bytes leave the file only when LMDB reuses the free \
            pages, or in a compacted copy (`labeldb backup`). SET@V drops one version that is not \
            the latest: it then reads as gone (labels show marks it dropped), and of its rows only \
            those later versions still read stay; later versions read exactly as before.
            """)
    @OptionGroup var target: StoreArgument
    @Argument(help: "SET, or SET@VERSION for one version.") var set: String
    @Option(help: "Who drops, for the provenance log (default: user:$USER).") var agent: String?
    @Option(help: "Output format: text or json.") var format: OutputFormat = .text

    func run() throws {
        let reference = try LabelSetReference(parsing: set)
        let (store, clearance) = try target.openCleared(readOnly: false)
        defer { store.close() }
        let dropped = try store.write(clearance: clearance) { tx -> LabelSetDrop in
            let dropped = try reference.version.map { try tx.dropLabelVersion(reference.name, version: $0) } ?? tx.dropLabelSet(reference.name)
            tx.describe(ProvenanceRecord(
                activity: "label drop", agent: agent ?? defaultAgent(),
                used: [ProvenanceEntity(kind: "label_set", name: reference.name, version: reference.version ?? dropped.versions)],
                parameters: ["rows": "\(dropped.rows)", "versions": "\(dropped.versions)", "dependent_projectors": dropped.dependentProjectors.joined(separator: ",")]))
            return dropped
        }
        switch format {
        case .json:
            printJSON(labelDropJSON(dropped))
        case .text:
            print(reference.version == nil
                  ? "dropped label set \(set): \(dropped.versions) versions, \(dropped.rows) label rows (\(dropped.blocks) blocks, \(dropped.postingChunks) posting chunks)"
                  : "dropped \(set): \(dropped.rows) label rows no remaining version reads were removed; later versions read as before")
            if !dropped.dependentProjectors.isEmpty {
                print("projectors \(dropped.dependentProjectors.joined(separator: ", ")) keep their fitted samples, corrections and bound; `projector check` needs the dropped labels and no longer runs for them")
            }
            print("the bytes stay in the store's free pages until reused; `labeldb backup` writes a compacted copy without them")
        }
    }
}

/// `labeldb labels list STORE`
struct LabelsListCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List label sets.")
    @OptionGroup var target: StoreArgument
    @Option(help: "Output format: text or json (one object per line).") var format: OutputFormat = .text

    func run() throws {
        let (corpus, clearance) = try target.openCorpusCleared()
        defer { corpus.close() }
        for set in try corpus.labelSets(clearance: clearance) {
            let latest = set.versions.last
            switch format {
            case .json:
                printJSON(labelSetSummaryJSON(set))
            case .text:
                let labelled = latest?.statisticsRedacted == true ? "counts hidden under this clearance" : "\(latest?.labelled ?? 0) labelled"
                print("\(set.name)  v\(set.latest)  \(set.codec?.description ?? "-")  \(labelled)\(set.perView ? " (per view)" : "")  (latest by \(latest?.agent ?? "-"))")
            }
        }
    }
}

/// `labeldb labels show STORE SET[@VERSION]`
struct LabelsShowCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "show", abstract: "Show a label set's versions, agents, codec, counts and fidelity.")
    @OptionGroup var target: StoreArgument
    @Argument(help: "SET or SET@VERSION.") var set: String
    @Option(help: "Output format: text or json.") var format: OutputFormat = .text

    func run() throws {
        let reference = try LabelSetReference(parsing: set)
        let (corpus, clearance) = try target.openCorpusCleared()
        defer { corpus.close() }
        let (resolved, version) = try corpus.shards[0].read(clearance: clearance) { tx in
            // A dropped version is shown (as dropped), not refused: show is how one finds out.
            guard let set = try tx.labelSet(named: reference.name), let v = reference.version, v >= 1, v <= set.latest else { return try tx.resolve(reference) }
            return (set, v)
        }
        // A corpus's counts are taken over its shards.
        let labelSet = corpus.isSharded ? try corpus.labelSets(clearance: clearance).first { $0.name == resolved.name } ?? resolved : resolved
        let shown = labelSet.versions.prefix(version)
        // Views per sample, counted from the rows the clearance sees (a dropped version has none to count).
        let viewCounts = labelSet.perView && !labelSet.versions[version - 1].isDropped
            ? try corpus.shards.map { shard in
                try shard.read(clearance: clearance) { try $0.viewCounts(in: LabelSetReference(name: labelSet.name, version: version)) }
            }.reduce((samples: 0, min: Int.max, total: 0, max: 0)) { a, b in
                (a.samples + b.samples, b.samples > 0 ? Swift.min(a.min, b.min) : a.min, a.total + b.total, Swift.max(a.max, b.max))
            } : nil
        switch format {
        case .json:
            var object: [String: JSONValue] = [
                "name": .string(labelSet.name), "version": .int(Int64(version)), "latest": .int(Int64(labelSet.latest)),
                "codec": labelSet.codec.map { .string($0.description) } ?? .null,
                "labelled": .int(Int64(shown.last?.labelled ?? 0)), "per_view": .bool(labelSet.perView),
                "versions": .array(shown.map { .object(versionJSON($0)) })]
            if let c = viewCounts {
                object["views_per_sample"] = ["samples": .int(Int64(c.samples)), "min": .int(Int64(c.min)), "max": .int(Int64(c.max)),
                                              "mean": .double(c.samples > 0 ? Double(c.total) / Double(c.samples) : 0), "views": .int(Int64(c.total))]
            }
            printJSON(.object(object))
        case .text:
            print("label set \(labelSet.name): version \(version) of \(labelSet.latest), codec \(labelSet.codec?.description ?? "-")\(labelSet.perView ? ", labels per view" : "")")
            if let c = viewCounts {
                let mean = c.samples > 0 ? String(format: "%.2f", Double(c.total) / Double(c.samples)) : "0"
                print("  views per sample: min \(c.min), mean \(mean), max \(c.max) (\(c.total) views of \(c.samples) samples)")
            }
            for v in shown {
                let time = ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: Double(v.timeMilliseconds) / 1000))
                let counts = v.statisticsRedacted ? "counts hidden under this clearance" : "\(v.rows) rows\(v.views.map { " (\($0) views)" } ?? ""), \(v.labelled) labelled"
                let source = v.sourceLabel == .public ? "" : ", source \(v.sourceLabel)"
                print("  v\(v.version)  \(time)  \(v.agent)  \(v.kind.rawValue): \(counts)\(source)\(v.isDropped ? " (dropped)" : "")")
                if let f = v.fidelity, let codec = labelSet.codec { print("      " + fidelityText(f, codec: codec)) }
            }
        }
    }
}

/// `labeldb labels export STORE (SET[@VERSION] | --regen NAME[@VERSION]) --out P.npy [--ids-out IDS.npy] [--hard-out Y.npy]`
struct LabelsExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Export decoded (or regenerated) labels, ascending id.",
        discussion: """
            With SET: one row per sample labelled in that version; --out writes N × classes float32 \
            (hard labels one-hot), --hard-out int32 top-1 classes (-1 for an empty multi-label). \
            With --regen: one row per stored sample, computed by the projector; fitted samples meet \
            its bound, samples imported after the fit or with replaced embeddings are counted apart. \
            To export several label sets, a filtered selection, or everything in one .npz, see \
            `labeldb export` (--labels-out, --where, --npz). A per-view set exports one row per \
            view, in (id, view) order; --views-out writes the views as the import's --views file.
            """)
    @OptionGroup var target: StoreArgument
    @Argument(help: "SET or SET@VERSION.") var set: String?
    @Option(help: "Regenerate with this projector (NAME or NAME@VERSION) instead of reading a label set.") var regen: String?
    @Option(help: "Decoded distributions: N × classes float32 .npy.") var out: String?
    @Option(help: "Top-1 class indices: N int32 .npy.") var hardOut: String?
    @Option(help: "The ids of the rows: N uint64 .npy.") var idsOut: String?
    @Option(help: "Per-view sets: the rows' views, JSONL in the format of `labels import --views`.") var viewsOut: String?

    func run() throws {
        guard out != nil || hardOut != nil || viewsOut != nil else { throw UsageError(description: "give --out, --hard-out or --views-out") }
        guard (set == nil) != (regen == nil) else { throw UsageError(description: "give a label set or --regen PROJECTOR, not both") }
        guard viewsOut == nil || regen == nil else { throw UsageError(description: "--views-out goes with a per-view label set, not --regen") }
        let (corpus, clearance) = try target.openCorpusCleared()
        defer { corpus.close() }
        let classCount = corpus.schema.classes.count
        let projector = try regen.map { try ProjectorReference(parsing: $0) }
        let labelReference = try set.map { try LabelSetReference(parsing: $0) }
        // The rows each shard will give (the .npy headers need the total up front), and whether the set is per view.
        var count = 0, perView = false
        for shard in corpus.shards {
            try shard.read(clearance: clearance) { tx in
                if let projector {
                    _ = try tx.load(projector)
                    count += try tx.count()
                } else if let labelReference {
                    perView = try tx.resolve(labelReference).set.perView
                    if perView {
                        count += try tx.viewCounts(in: labelReference).total
                    } else {
                        if viewsOut != nil { throw LabelError.viewLayout(set: labelReference.name, perView: false) }
                        try tx.forEachLabelInStorageOrder(in: labelReference) { _, _ in count += 1; return true }
                    }
                }
            }
        }
        // Rows are written as they come, so memory stays bounded by one batch (per shard).
        let viewsWriter = try viewsOut.map(LineWriter.init(path:))
        let probs = try out.map { try NumPyWriter(path: $0, dtype: .float32, shape: [count, classCount]) }
        let hard = try hardOut.map { try NumPyWriter(path: $0, dtype: .int32, shape: [count]) }
        let idsWriter = try idsOut.map { try NumPyWriter(path: $0, dtype: .uint64, shape: [count]) }
        var statuses: [RegenerationStatus: Int] = [:]
        try corpus.merge(clearance: clearance, by: { $0.id < $1.id }, produce: { _, tx, emit in
            try ExportedLabel.produce(tx, set: labelReference, projector: projector, classCount: classCount, emit)
        }, consume: { row in
            try probs?.append(row.distribution)
            var t = row.top.littleEndian
            try withUnsafeBytes(of: &t) { try hard?.append($0) }
            var rawID = row.id.littleEndian
            try withUnsafeBytes(of: &rawID) { try idsWriter?.append($0) }
            if let view = row.view { try viewsWriter?.write(view) }
            if let status = row.status { statuses[status, default: 0] += 1 }
            return true
        })
        try viewsWriter?.close()
        try probs?.finish()
        try hard?.finish()
        try idsWriter?.finish()
        if projector != nil {
            let parts = [RegenerationStatus.regenerated, .corrected, .unfitted, .stale].map { "\(statuses[$0] ?? 0) \($0.rawValue)" }
            print("exported \(count) labels regenerated by \(regen!): " + parts.joined(separator: ", ")
                  + ((statuses[.unfitted] ?? 0) + (statuses[.stale] ?? 0) > 0 ? " (no bound is claimed for unfitted and stale samples)" : ""))
        } else {
            print("exported \(count) \(perView ? "view labels" : "labels") of \(set!)")
        }
    }
}

/// One row of `labels export`: a sample's (or one of its views') decoded distribution and top-1
/// class, its view's parameters for a per-view set, its status when regenerated.
struct ExportedLabel: Sendable {
    let id: UInt64
    let distribution: [Float]
    let top: Int32
    let view: JSONValue?
    let status: RegenerationStatus?

    /// Every row one store (or shard) gives, ascending by id (a per-view row's views in view order).
    static func produce(_ tx: LabelDB.Transaction, set: LabelSetReference?, projector: ProjectorReference?, classCount: Int,
                        _ emit: (ExportedLabel) throws -> Bool) throws {
        if let projector {
            let loaded = try tx.load(projector)
            let ids = try tx.ids()
            for start in stride(from: 0, to: ids.count, by: 1024) {
                for label in try tx.regenerate(Array(ids[start..<min(start + 1024, ids.count)]), with: loaded) {
                    let top = label.probabilities.indices.max { label.probabilities[$0] < label.probabilities[$1] } ?? -1
                    guard try emit(ExportedLabel(id: label.id, distribution: label.probabilities, top: Int32(top), view: nil, status: label.status)) else { return }
                }
            }
            return
        }
        guard let set else { return }
        try tx.forEachLabel(in: set) { id, label in
            guard let views = label.views else {
                return try emit(ExportedLabel(id: id, distribution: label.distribution(classCount: classCount),
                                              top: Int32(label.hard ?? label.top1?.classIndex ?? -1), view: nil, status: nil))
            }
            // A per-view row: one output row per view, in view-number order.
            for view in views {
                guard try emit(ExportedLabel(id: id, distribution: view.label.distribution(classCount: classCount),
                                             top: Int32(view.hard ?? view.top1?.classIndex ?? -1), view: view.parameters.json, status: nil)) else { return false }
            }
            return true
        }
    }
}

/// `labeldb labels diff STORE A[@V] B[@V] [--ids-out IDS.npy] [--format json]`
struct LabelsDiffCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "diff", abstract: "Samples whose top-1 class differs between two label sets, or two versions of one.",
        discussion: """
            A and B are any two label sets or versions (SET or SET@VERSION each: teacher@1 \
            teacher@2, or teacher human). Compared over the samples both label, visible under \
            --clearance, by top-1 class (a hard label's class, a soft label's most probable one). \
            --ids-out writes the changed samples' ids (ascending) as a uint64 .npy.
            """)
    @OptionGroup var target: StoreArgument
    @Argument(help: "The first label set, SET or SET@VERSION.") var first: String
    @Argument(help: "The second label set, SET or SET@VERSION.") var second: String
    @Option(help: "Also write the ids whose top-1 class differs as a uint64 .npy.") var idsOut: String?
    @Option(help: "Output format: text or json.") var format: OutputFormat = .text

    func run() throws {
        let a = try LabelSetReference(parsing: first), b = try LabelSetReference(parsing: second)
        let (corpus, clearance) = try target.openCorpusCleared()
        defer { corpus.close() }
        let classes = corpus.schema.classes
        let diff = try corpus.labelDiff(a, b, clearance: clearance)
        if let idsOut { try NumPyArray.write(diff.changed.map(\.id), to: idsOut) }
        let name = { (c: Int) -> String in c >= 0 && c < classes.count ? classes[c] : "-" }
        switch format {
        case .json:
            printJSON(["changed": .array(diff.changed.map { ["id": .uint($0.id), "from": .int(Int64($0.from)), "to": .int(Int64($0.to))] }),
                       "counts": ["changed": .int(Int64(diff.changed.count)), "unchanged": .int(Int64(diff.unchanged)),
                                  "only_in_first": .int(Int64(diff.onlyInFirst)), "only_in_second": .int(Int64(diff.onlyInSecond))]])
        case .text:
            for c in diff.changed { print("\(c.id)\t\(name(c.from)) -> \(name(c.to))") }
            print("\(diff.changed.count) changed, \(diff.unchanged) unchanged, \(diff.onlyInFirst) only in \(first), \(diff.onlyInSecond) only in \(second)")
        }
    }
}

func fidelityText(_ f: Fidelity, codec: SoftLabelCodec) -> String {
    String(format: "%@: mean KL %.3g nats, max KL %.3g, top-1 agreement %.2f%%, %.1f bytes/label (%.2f%% of dense:f32)",
           codec.description, f.meanKL, f.maxKL, f.top1Agreement * 100, f.bytesPerLabel, f.ratioToDenseF32 * 100)
}

/// Reads compact soft labels: N × K classes, N × K probabilities, and optionally N leftovers.
func readTopK(classes classesPath: String, probabilities probsPath: String, leftover leftoverPath: String?) throws -> (values: TopKRows, rows: Int) {
    let classes = try NumPyArray.read(classesPath), probs = try NumPyArray.read(probsPath)
    guard classes.shape.count == 2 else { throw InputError(file: classesPath, reason: "expected a 2-D array (rows × K), found shape \(classes.shape)") }
    guard !classes.dtype.isFloat else { throw InputError(file: classesPath, reason: "classes must be integers, not \(classes.dtype.rawValue)") }
    guard probs.shape == classes.shape else {
        throw InputError(file: probsPath, reason: "shape \(probs.shape) differs from the classes' \(classes.shape) in \(classesPath)")
    }
    guard probs.dtype.isFloat else { throw InputError(file: probsPath, reason: "probabilities must be floats, not \(probs.dtype.rawValue)") }
    let rows = classes.shape[0], k = classes.shape[1]
    var rest: [Float]? = nil
    if let leftoverPath {
        let array = try NumPyArray.read(leftoverPath)
        guard array.shape == [rows], array.dtype.isFloat else {
            throw InputError(file: leftoverPath, reason: "expected \(rows) floats (one per row), found shape \(array.shape) of \(array.dtype.rawValue)")
        }
        rest = try array.floats(file: leftoverPath)
    }
    let values = TopKRows(k: k, classes: try classes.integers(file: classesPath, in: 0...Int64(Int32.max)).map { Int($0) },
                          probabilities: try probs.floats(file: probsPath), leftover: rest)
    return (values, rows)
}

/// Reads a 1-D ids file.
func readIDs(_ path: String) throws -> [UInt64] {
    let array = try NumPyArray.read(path)
    guard array.shape.count == 1 else { throw InputError(file: path, reason: "expected a 1-D array of ids, found shape \(array.shape)") }
    return try array.ids(file: path)
}

/// The same classes as text: `cat 0.81, dog 0.12, …`.
func topClassesText(_ top: JSONValue) -> String {
    (top.arrayValue ?? []).compactMap { entry -> String? in
        guard let name = entry["name"]?.stringValue, let p = entry["p"]?.doubleValue else { return nil }
        return String(format: "%@ %.4g", name, p)
    }.joined(separator: ", ")
}

extension LabelsExportCommand: WritesOutputFiles {
    var outputPaths: [String] { [out, hardOut, idsOut, viewsOut].compactMap { $0 } }
}

extension LabelsDiffCommand: WritesOutputFiles {
    var outputPaths: [String] { [idsOut].compactMap { $0 } }
}
