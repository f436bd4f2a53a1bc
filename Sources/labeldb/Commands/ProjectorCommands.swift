import ArgumentParser
import Foundation
import LabelDB

/// `labeldb heads …`: base heads W0.
struct HeadsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "heads", abstract: "Base heads W0 (d × classes), e.g. text embeddings of the class names.",
        subcommands: [HeadsImportCommand.self, HeadsListCommand.self])
}

/// `labeldb heads import STORE NAME W0.npy`
struct HeadsImportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "import", abstract: "Store a base head from a d × classes float32 .npy.")
    @OptionGroup var target: StoreArgument
    @Argument(help: "The head's name.") var name: String
    @Argument(help: "W0: a dim × classes .npy of floats.") var matrix: String
    @Flag(help: "Overwrite a head of the same name.") var replace = false
    /// The head's taint label (e.g. class-name embeddings from a licensed model), and the privileges held.
    @OptionGroup var taint: TaintOptions

    func run() throws {
        let label = try taint.label(), privileges = try taint.privileges(), parameters = try taint.parameters()
        let array = try NumPyArray.read(matrix)
        guard array.shape.count == 2 else { throw InputError(file: matrix, reason: "expected a 2-D array (dim × classes), found shape \(array.shape)") }
        let values = try array.floats(file: matrix)
        let (store, clearance) = try target.openCleared(readOnly: false)
        defer { store.close() }
        let used = try ProvenanceEntity.file(matrix, rows: array.shape[0])
        try store.write(clearance: clearance) { tx in
            try tx.importHead(name, values: values, rows: array.shape[0], columns: array.shape[1], replace: replace, taint: label, privileges: privileges)
            tx.describe(ProvenanceRecord(activity: "head import", agent: defaultAgent(), used: [used], generated: [ProvenanceEntity(kind: "head", name: name)],
                                         parameters: parameters))
        }
        print("stored head \(name): \(array.shape[0]) × \(array.shape[1])")
    }
}

/// `labeldb heads list STORE`
struct HeadsListCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List base heads.")
    @OptionGroup var target: StoreArgument

    func run() throws {
        // Every shard of a corpus holds the same heads (a split copies them).
        let (corpus, clearance) = try target.openCorpusCleared()
        defer { corpus.close() }
        for name in try corpus.shards[0].read(clearance: clearance, { try $0.headNames() }) { print(name) }
    }
}

/// `labeldb projector …`
struct ProjectorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "projector",
        abstract: "Label projectors: fit low-rank heads from a soft label set and regenerate labels on read.",
        subcommands: [ProjectorFitCommand.self, ProjectorListCommand.self, ProjectorShowCommand.self, ProjectorCheckCommand.self])
}

/// `labeldb projector fit STORE NAME --from SET[@VERSION] --rank R …`
struct ProjectorFitCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fit",
        abstract: "Fit a new projector version: p(x) = softmax(s·x·W0 + x·A·B + b).",
        discussion: """
            Closed form (reduced-rank ridge regression of the centred log-probabilities) refined by \
            minibatch Adam on cross-entropy. With --max-kl (and --top1), every sample of the label \
            set whose regenerated label breaks the bound gets a stored correction.
            """)
    @OptionGroup var target: StoreArgument
    @Argument(help: "The projector's name.") var name: String
    @Option(help: "The soft label set to fit: SET or SET@VERSION.") var from: String
    @Option(help: "Rank r of the correction A·B; with --budget, the ranks to try (comma list, may repeat).") var rank: [String] = []
    @Option(help: "A base head W0 (see `labeldb heads`).") var head: String?
    @Option(help: "Fraction of rows held out to measure generalisation.") var holdout: Double = 0
    @Option(help: "Seed of the split and of the minibatch order.") var seed: UInt64 = 0
    @Option(help: "Refinement: exactly this many epochs, no early stopping (default: a step budget).") var epochs: Int?
    @Option(help: "Refinement: at most this many gradient steps, stopping early when a 5% validation split stops improving.") var maxSteps: Int = 4_000
    @Option(help: "Refinement: validation checks without improvement before stopping.") var patience: Int = 8
    @Flag(help: "Also fit the softmax temperature T.") var fitTemperature = false
    @Option(help: "Error bound: max KL(teacher ‖ read label) in nats for every fitted sample.") var maxKl: Double?
    @Flag(help: "The bound also requires the teacher's top-1 class.") var top1 = false
    @Option(help: "Choose the rank whose parameters plus corrections take the fewest bytes, at most BYTES (needs --max-kl; ranks from --rank, else powers of two from 8).") var budget: Int?
    @Option(help: "With --budget: fit each candidate rank on a seeded sample of at most this many rows.") var searchRows: Int = 50_000
    @Option(help: "Who fits it.") var agent: String?
    @Flag(help: "No progress on stderr.") var quiet = false
    @Option(help: "Output format: text or json.") var format: OutputFormat = .text

    func run() throws {
        let reference = try LabelSetReference(parsing: from)
        if top1 && maxKl == nil { throw UsageError(description: "--top1 needs --max-kl") }
        if budget != nil && maxKl == nil { throw UsageError(description: "--budget needs --max-kl: without a bound there are no corrections to trade against the rank") }
        let ranks = try rank.flatMap { $0.split(separator: ",", omittingEmptySubsequences: false) }.map { text -> Int in
            guard let value = Int(text) else { throw UsageError(description: "--rank: '\(text)' is not an integer") }
            return value
        }
        if ranks.isEmpty && budget == nil { throw UsageError(description: "--rank is required (or --budget, to search ranks)") }
        if ranks.count > 1 && budget == nil { throw UsageError(description: "several --rank values need --budget to choose among them") }
        var options = ProjectorFitOptions(rank: ranks.first ?? 1)
        options.holdout = holdout
        options.seed = seed
        options.epochs = epochs
        options.maxSteps = maxSteps
        options.patience = patience
        options.fitTemperature = fitTemperature
        let showProgress = !quiet && isatty(STDERR_FILENO) != 0
        let progress: (String, Double) -> Void = { step, fraction in
            if showProgress { FileHandle.standardError.write(Data("\rfitting: \(step) (\(Int(fraction * 100))%)        ".utf8)) }
        }
        let fitted = FileManager.default.fileExists(atPath: target.store + "/" + CorpusManifest.fileName)
            ? try fitCorpus(reference, options: options, ranks: ranks, progress: progress)
            : try fitStore(reference, options: options, ranks: ranks, progress: progress)
        if showProgress { FileHandle.standardError.write(Data("\n".utf8)) }
        switch format {
        case .json: printJSON(.object(projectorVersionJSON(fitted.info, name: name, labelSet: fitted.set, classes: fitted.classes)))
        case .text: print(projectorText(fitted.info, name: name, labelSet: fitted.set, classes: fitted.classes))
        }
    }

    /// The budget `--budget` and `--rank` ask for, if any.
    func rankBudget(_ ranks: [Int], dimension: Int, classes: Int) -> RankBudget? {
        var rankBudget = budget.map { RankBudget(bytes: $0, ranks: ranks.isEmpty ? RankBudget.defaultRanks(dimension: dimension, classes: classes) : ranks) }
        rankBudget?.sampleRows = searchRows
        return rankBudget
    }

    /// Fits in one store.
    func fitStore(_ reference: LabelSetReference, options: ProjectorFitOptions, ranks: [Int], progress: @escaping (String, Double) -> Void
    ) throws -> (info: ProjectorVersion, set: LabelSet?, classes: Int) {
        let (store, clearance) = try target.openCleared(readOnly: false)
        defer { store.close() }
        let info = try store.fitProjector(
            name, from: reference, options: options, head: head, maxKL: maxKl, requireTop1: top1,
            budget: rankBudget(ranks, dimension: store.schema.dimension, classes: store.schema.classes.count),
            agent: agent ?? defaultAgent(), clearance: clearance, progress: progress)
        let set = try store.read(clearance: clearance) { try $0.labelSet(named: info.sourceSet) }
        return (info, set, store.schema.classes.count)
    }

    /// Fits across a sharded corpus's shards and records the version in each and in the
    /// manifest (``CorpusWriter/fitProjector(_:from:options:head:maxKL:requireTop1:budget:agent:clearance:progress:afterShardCommit:)``).
    func fitCorpus(_ reference: LabelSetReference, options: ProjectorFitOptions, ranks: [Int], progress: @escaping (String, Double) -> Void
    ) throws -> (info: ProjectorVersion, set: LabelSet?, classes: Int) {
        let clearance = try Clearance(parsing: target.clearance)
        let info: ProjectorVersion
        do {
            let writer = try CorpusWriter(opening: target.store)
            defer { writer.close() }
            try writer.validate(clearance)
            let manifest = writer.manifest
            // A test stops the writer between shards this way, as a crash would (SIGKILL: no cleanup).
            let killAfter = ProcessInfo.processInfo.environment["LABELDB_TEST_KILL_AFTER_SHARD"].flatMap(Int.init)
            info = try writer.fitProjector(
                name, from: reference, options: options, head: head, maxKL: maxKl, requireTop1: top1,
                budget: rankBudget(ranks, dimension: manifest.dimension, classes: manifest.classes.count),
                agent: agent ?? defaultAgent(), clearance: clearance, progress: progress, afterShardCommit: { shard in
                    if shard == killAfter { kill(getpid(), SIGKILL) }
                })
        }
        let corpus = try Corpus(opening: target.store)
        defer { corpus.close() }
        let set = try corpus.labelSets(clearance: clearance).first { $0.name == info.sourceSet }
        return (info, set, corpus.schema.classes.count)
    }
}

/// `labeldb projector list STORE`
struct ProjectorListCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List projectors.")
    @OptionGroup var target: StoreArgument
    @Option(help: "Output format: text or json (one object per line).") var format: OutputFormat = .text

    func run() throws {
        // Every shard of a corpus holds the same projectors and version records.
        let (corpus, clearance) = try target.openCorpusCleared()
        defer { corpus.close() }
        for projector in try corpus.shards[0].read(clearance: clearance, { try $0.projectors() }) {
            let v = projector.versions.last!
            switch format {
            case .json:
                printJSON(projectorSummaryJSON(projector))
            case .text:
                let usable = v.statisticsRedacted ? "  (fitted on data this clearance does not admit)" : ""
                print("\(projector.name)  v\(projector.latest)  rank \(v.options.rank)  from \(v.sourceSet)@\(v.sourceVersion)\(v.head.map { "  head \($0)" } ?? "")  taint \(v.statisticsRedacted ? "hidden" : "\(v.taintLabel)")\(usable)")
            }
        }
    }
}

/// `labeldb projector show STORE NAME[@VERSION]`
struct ProjectorShowCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "show", abstract: "Show a projector version: source, fit figures, bound, bytes.")
    @OptionGroup var target: StoreArgument
    @Argument(help: "NAME or NAME@VERSION.") var projector: String
    @Option(help: "Output format: text or json.") var format: OutputFormat = .text

    func run() throws {
        let reference = try ProjectorReference(parsing: projector)
        let (corpus, clearance) = try target.openCorpusCleared()
        defer { corpus.close() }
        let store = corpus.shards[0]
        let loaded = try store.read(clearance: clearance) { try $0.load(reference) }
        // Its source set's counts, over a corpus's shards.
        let set = try corpus.labelSets(clearance: clearance).first { $0.name == loaded.version.sourceSet }
        switch format {
        case .json: printJSON(.object(projectorVersionJSON(loaded.version, name: loaded.projector.name, labelSet: set, classes: store.schema.classes.count)))
        case .text: print(projectorText(loaded.version, name: loaded.projector.name, labelSet: set, classes: store.schema.classes.count))
        }
    }
}

/// `labeldb projector check STORE NAME[@VERSION] [--format json]`
struct ProjectorCheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check", abstract: "Recompute a projector's labels for every fitted sample and check its bound.",
        discussion: """
            Regenerates the label of every sample the version was fitted on (the source label \
            set version's soft labels visible under --clearance) and compares it with the stored \
            one: mean and max KL, top-1 misses, and the samples that break the claimed bound \
            (max KL, and the teacher's top-1 with --top1). Samples whose embedding changed after \
            the fit are counted as stale, not checked. Exit 1 when the bound is broken.
            """)
    @OptionGroup var target: StoreArgument
    @Argument(help: "NAME or NAME@VERSION.") var projector: String
    @Option(help: "Output format: text or json.") var format: OutputFormat = .text

    func run() throws {
        let reference = try ProjectorReference(parsing: projector)
        let (corpus, clearance) = try target.openCorpusCleared()
        defer { corpus.close() }
        let check = try corpus.checkProjector(reference, clearance: clearance)
        switch format {
        case .json:
            printJSON(projectorCheckJSON(check))
        case .text:
            print(String(format: "%@: %d fitted samples checked (%d corrected), %d stale, %d unfitted; mean KL %.4g, max KL %.4g%@; %d top-1 misses",
                         projector, check.checked, check.corrected, check.stale, check.unfitted, check.meanKL, check.maxKL,
                         check.maxKLSample.map { " (sample \($0))" } ?? "", check.top1Misses))
            if let bound = check.boundMaxKL {
                let claim = "KL ≤ \(bound)\(check.requireTop1 ? " and the teacher's top-1" : "")"
                print(check.boundHolds ? "bound holds: \(claim) for every checked sample"
                      : "bound broken: \(check.violations.count) samples exceed \(claim) (first: \(check.violations.prefix(10).map(String.init).joined(separator: ", ")))")
            } else {
                print("no bound claimed (fitted without --max-kl)")
            }
        }
        if check.boundMaxKL != nil && !check.boundHolds {
            throw CheckFailed(description: "projector \(projector) breaks its bound on \(check.violations.count) of \(check.checked) fitted samples")
        }
    }
}

func projectorText(_ v: ProjectorVersion, name: String, labelSet: LabelSet?, classes: Int) -> String {
    let json = projectorVersionJSON(v, name: name, labelSet: labelSet, classes: classes)
    let r = v.report
    var lines = ["projector \(name)@\(v.version): rank \(v.options.rank)\(v.head.map { ", head \($0)" } ?? ""), fitted on \(v.sourceSet)@\(v.sourceVersion) (\(r.trainRows) rows, \(r.holdoutRows) held out) in \(String(format: "%.1f", r.seconds)) s"]
    lines.append(String(format: "  train: mean KL %.4g, max KL %.4g, top-1 agreement %.2f%%", r.trainMeanKL, r.trainMaxKL, r.trainTop1 * 100))
    if let steps = r.steps, let reason = r.stopReason {
        lines.append("  refinement: \(steps) steps, stopped by \(reason.replacingOccurrences(of: "_", with: " "))" + String(format: "; closed form alone: mean KL %.4g", r.closedFormMeanKL))
    }
    if r.holdoutRows > 0 {
        lines.append(String(format: "  held out: mean KL %.4g, max KL %.4g, top-1 agreement %.2f%%", r.holdoutMeanKL, r.holdoutMaxKL, r.holdoutTop1 * 100))
    }
    if let maxKL = v.maxKL {
        lines.append("  bound: KL ≤ \(maxKL)\(v.requireTop1 ? " and the teacher's top-1" : ""): \(v.corrections) corrections, \(v.correctionBytes) bytes")
    }
    if let search = r.rankSearch {
        let tried = search.candidates.map { "r\($0.rank) \($0.totalBytes)" }.joined(separator: ", ")
        lines.append("  rank search (budget \(search.budgetBytes) bytes, \(search.sampleRows) rows each): \(tried)")
    }
    let f16 = json["ratio_to_dense_f16"]?.doubleValue ?? 0
    let stored = json["ratio_to_stored"]?.doubleValue
    lines.append("  size: \(v.parameterBytes + v.correctionBytes) bytes = \(String(format: "%.4f", f16 * 100))% of dense f16 labels" + (stored.map { String(format: ", %.3f%% of the stored label set", $0 * 100) } ?? ""))
    return lines.joined(separator: "\n")
}
