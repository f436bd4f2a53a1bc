import ArgumentParser
import Foundation
import LabelDB

// Commands that compare several label sets (issue 13): agreement, consensus, label errors.

/// `labeldb labels agree STORE A[@V] B[@V] [C …] [--where EXPR] [--format json]`
struct LabelsAgreeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "agree", abstract: "How far label sets agree: top-1 agreement, Cohen's κ, JS divergence, confusion; Fleiss' κ for three or more.",
        discussion: """
            Each pair is compared over the samples both label (with a top-1 class) that --clearance \
            sees and --where selects: top-1 agreement, Cohen's κ, the mean Jensen–Shannon \
            divergence in nats (hard labels one-hot, multi-labels uniform), and the confusion of \
            top-1 classes (rows: the first set). With three or more sets, Fleiss' κ over the \
            samples all label. A projector may stand in for a set (labels regenerated on read).
            """)
    @OptionGroup var target: StoreArgument
    @Argument(help: "Two or more label sets (SET or SET@VERSION) or projectors.") var sets: [String]
    @Option(help: "Only samples matching this filter (the `labeldb query` grammar).") var `where`: String?
    @Option(help: "Output format: text or json (one line per pair, then one for Fleiss' κ).") var format: OutputFormat = .text

    func run() throws {
        let references = try sets.map { try LabelSetReference(parsing: $0) }
        let filter = try parseWhere(`where`)
        let (corpus, clearance) = try target.openCorpusCleared()
        defer { corpus.close() }
        let result = try corpus.agreement(of: references, where: filter, clearance: clearance)
        let classes = corpus.schema.classes
        for pair in result.pairs {
            switch format {
            case .json:
                printJSON(agreementPairJSON(pair))
            case .text:
                print("\(pair.a) vs \(pair.b): \(pair.count) samples, top-1 agreement \(String(format: "%.2f%%", pair.agreement * 100)), κ \(pair.kappa.map { String(format: "%.3f", $0) } ?? "undefined"), JS divergence \(String(format: "%.4g", pair.jsDivergence)) nats")
                let confused = pair.confusion.enumerated().flatMap { i, row in row.enumerated().filter { $0.offset != i && $0.element > 0 }.map { (i, $0.offset, $0.element) } }
                    .sorted { $0.2 > $1.2 }.prefix(5)
                if !confused.isEmpty { print("  most confused: " + confused.map { "\(classes[$0.0]) → \(classes[$0.1]) \($0.2)" }.joined(separator: ", ")) }
            }
        }
        guard result.sets.count >= 3 else { return }
        switch format {
        case .json:
            printJSON(agreementFleissJSON(result)!)
        case .text:
            print("all \(result.sets.count) sets: \(result.fleissCount) samples, Fleiss' κ \(result.fleissKappa.map { String(format: "%.3f", $0) } ?? "undefined")")
        }
    }
}

/// `labeldb labels consensus STORE OUT --from A,B[,C…] [--method mean|vote|dawid-skene] [--weights A=W,…] [--reference SET | --reference-tag TAG --reference-set SET] [--codec C] [--agent NAME] [--format json]`
struct LabelsConsensusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "consensus", abstract: "Write a new version of a label set: the consensus of several label sets, one soft label per sample.",
        discussion: """
            Every sample --clearance sees that at least one source labels gets a soft label: \
            mean (the default) averages the sources' distributions (hard labels one-hot) weighted \
            by --weights; vote takes the weighted fractions of their top-1 votes (a tie goes to the \
            class whose voters were surest); dawid-skene fits each source's confusion matrix by EM \
            from the top-1 votes and writes the posterior (it reports the iterations and each \
            source's estimated accuracy, and writes nothing when it does not converge). With \
            --reference SET (or --reference-tag TAG --reference-set SET: the samples whose taint \
            label carries integrity tag TAG), mean and vote also weight each source's label of a \
            class by the source's accuracy on the reference samples it gave that class (smoothed: \
            (hits + 1) / (count + 2)), and print that table. The version's source label carries \
            the secrecy of every source row used (and of every reference row); its provenance \
            names every source version, the reference, the method and the weights.
            """)
    @OptionGroup var target: StoreArgument
    @Argument(help: "The label set to write (a new version of it).") var out: String
    @Option(help: "The sources: label sets (SET or SET@VERSION) or projectors; comma-separated, repeatable.") var from: [String]
    @Option(help: "mean, vote or dawid-skene.") var method: String = "mean"
    @Option(help: "NAME=WEIGHT per source, as named in --from (default 1); comma-separated, repeatable. Not used by dawid-skene.") var weights: [String] = []
    @Option(help: "dawid-skene: stop when the log-likelihood per sample moves by less than this (nats) in an iteration.") var tolerance: Double = 1e-6
    @Option(help: "dawid-skene: give up (and write nothing) after this many iterations.") var maxIterations: Int = 500
    @Option(help: "mean, vote: a trusted label set; each source's labels of a class are weighted by its accuracy on the samples this set labels.") var reference: String?
    @Option(help: "mean, vote: the reference samples are those whose taint label carries this integrity tag, with labels from --reference-set.") var referenceTag: String?
    @Option(help: "The label set --reference-tag's samples take their reference labels from.") var referenceSet: String?
    @Option(help: "The codec, for a new label set (default dense:f16).") var codec: String?
    @Option(help: "Who produced the labels (default consensus:METHOD).") var agent: String?
    @Option(help: "Output format: text or json.") var format: OutputFormat = .text

    func run() throws {
        guard let methodValue = ConsensusMethod(rawValue: method) else { throw UsageError(description: "--method must be mean, vote or dawid-skene") }
        let names = from.flatMap { $0.split(separator: ",").map(String.init) }
        let references = try names.map { try LabelSetReference(parsing: $0) }
        var weightValues = [Double](repeating: 1, count: names.count)
        for item in weights.flatMap({ $0.split(separator: ",") }) {
            let parts = item.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, let w = Double(parts[1]), w.isFinite, w >= 0 else { throw UsageError(description: "--weights takes NAME=WEIGHT (a number ≥ 0), not '\(item)'") }
            guard let index = names.firstIndex(of: parts[0]) else { throw UsageError(description: "--weights names \(parts[0]), which is not among --from") }
            weightValues[index] = w
        }
        if methodValue == .dawidSkene && !weights.isEmpty { throw UsageError(description: "--weights is not used by dawid-skene (it estimates each source's reliability)") }
        guard tolerance > 0, tolerance.isFinite, maxIterations >= 2 else { throw UsageError(description: "--tolerance must be > 0 and --max-iterations ≥ 2 (convergence compares two iterations)") }
        let codecValue = try codec.map { try SoftLabelCodec(parsing: $0) }
        let referenceValue = try ConsensusReference(set: reference, tag: referenceTag, tagSet: referenceSet)
        let name = agent ?? "consensus:\(method)", weightList = weights.isEmpty ? nil : weightValues
        let report: ConsensusReport, classes: [String]
        if FileManager.default.fileExists(atPath: target.store + "/" + CorpusManifest.fileName) {
            (report, classes) = try target.withCorpusWriter { writer, corpus, clearance in
                (try writer.consensus(reading: corpus, into: out, from: references, method: methodValue, weights: weightList, reference: referenceValue,
                                      codec: codecValue, agent: name, tolerance: tolerance, maxIterations: maxIterations, clearance: clearance),
                 corpus.schema.classes)
            }
        } else {
            let (store, clearance) = try target.openCleared(readOnly: false)
            defer { store.close() }
            classes = store.schema.classes
            report = try store.write(clearance: clearance) { tx -> ConsensusReport in
                try tx.consensus(into: out, from: references, method: methodValue, weights: weightList, reference: referenceValue, codec: codecValue, agent: name,
                                 tolerance: tolerance, maxIterations: maxIterations)
            }
        }
        switch format {
        case .json:
            printJSON(consensusJSON(report, name: out, method: methodValue))
        case .text:
            print("label set \(out) version \(report.version.version): \(report.version.rows) consensus labels (\(method)) of \(report.sources.joined(separator: ", "))")
            if let iterations = report.iterations, let accuracy = report.sourceAccuracy {
                print("  dawid-skene: \(iterations) iterations; estimated accuracy " + zip(report.sources, accuracy).map { String(format: "%@ %.3f", $0, $1) }.joined(separator: ", "))
            }
            if let learned = report.referenceAccuracy { printReferenceAccuracy(learned, sources: report.sources, classes: classes) }
        }
    }
}

/// The per-class accuracy table of a reference-weighted consensus: per source, the classes it
/// gave reference samples (at most 12 shown, the least accurate first).
private func printReferenceAccuracy(_ learned: ReferenceAccuracy, sources: [String], classes: [String]) {
    print("  reference \(learned.reference): \(learned.samples) samples; each source's accuracy when it says a class (hits/count):")
    for (s, source) in sources.enumerated() {
        let seen = classes.indices.filter { learned.counts[s][$0] > 0 }
            .sorted { (learned.accuracy(source: s, classIndex: $0)!, $0) < (learned.accuracy(source: s, classIndex: $1)!, $1) }
        let shown = seen.prefix(12).map { "\(classes[$0]) \(String(format: "%.2f", learned.accuracy(source: s, classIndex: $0)!)) (\(learned.hits[s][$0])/\(learned.counts[s][$0]))" }
        print("    \(source): " + (shown.isEmpty ? "no reference sample" : shown.joined(separator: ", ")) + (seen.count > 12 ? ", … \(seen.count - 12) more classes" : ""))
    }
}

/// `labeldb labels issues STORE --given HARD[@V] --probs SOFT[@V] [--filter F] [--write-set NAME] [--where EXPR] [--limit N] [--format json]`
struct LabelsIssuesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "issues", abstract: "Likely label errors, by confident learning (as cleanlab 2.9's find_label_issues).",
        discussion: """
            Compares the given hard labels with predicted probabilities (a soft label set, or a \
            projector regenerating on read) over the samples both label that --clearance sees \
            and --where selects. Per class, the threshold is the mean probability the samples \
            given that class put on it; the confident joint counts, per given class, the classes \
            samples confidently belong to, calibrated to the label counts; the filter then flags \
            samples: prune-by-noise-rate (the default) takes, per given class k and other class \
            j, the joint's count of samples with the largest p(j) − p(k); prune-by-class takes the \
            least self-confident beyond the joint's diagonal; both takes samples flagged by both. \
            A sample whose given class is the most probable is never flagged. Flagged samples are \
            printed least self-confident first; --write-set writes their suggested classes (the \
            most probable) as a new version of a hard label set, for review.
            """)
    @OptionGroup var target: StoreArgument
    @Option(help: "The given labels: a hard label set (SET or SET@VERSION).") var given: String
    @Option(help: "The predicted probabilities: a soft label set or a projector (SET or SET@VERSION).") var probs: String
    @Option(help: "prune-by-noise-rate, prune-by-class or both.") var filter: String = LabelIssueFilter.pruneByNoiseRate.rawValue
    @Option(help: "Write the suggested classes of the flagged samples as a new version of this hard label set.") var writeSet: String?
    @Option(help: "Only samples matching this filter (the `labeldb query` grammar).") var `where`: String?
    @Option(help: "Print only the first N flagged samples (the count, and --write-set, cover all).") var limit: Int?
    @Option(help: "Who produced the written set (default labeldb:issues).") var agent: String = "labeldb:issues"
    @Option(help: "Output format: text or json (one line per flagged sample).") var format: OutputFormat = .text

    func run() throws {
        guard let filterValue = LabelIssueFilter(rawValue: filter) else {
            throw UsageError(description: "--filter must be prune-by-noise-rate, prune-by-class or both, not '\(filter)'")
        }
        if let limit, limit < 0 { throw UsageError(description: "--limit must be ≥ 0") }
        let givenReference = try LabelSetReference(parsing: given), probsReference = try LabelSetReference(parsing: probs)
        let expression = try parseWhere(`where`)
        let classes: [String]
        var written: LabelSetVersion?
        let result: LabelIssues
        if let writeSet, FileManager.default.fileExists(atPath: target.store + "/" + CorpusManifest.fileName) {
            (result, written, classes) = try target.withCorpusWriter { writer, corpus, clearance in
                let result = try corpus.labelIssues(given: givenReference, probs: probsReference, filter: filterValue, where: expression, clearance: clearance)
                return (result, try writer.writeSuggestions(of: result, into: writeSet, agent: agent, clearance: clearance), corpus.schema.classes)
            }
        } else if let writeSet {
            let (store, clearance) = try target.openCleared(readOnly: false)
            defer { store.close() }
            classes = store.schema.classes
            result = try store.write(clearance: clearance) { tx in
                let result = try tx.labelIssues(given: givenReference, probs: probsReference, filter: filterValue, where: expression)
                written = try tx.writeSuggestions(of: result, into: writeSet, agent: agent)
                return result
            }
        } else {
            let (corpus, clearance) = try target.openCorpusCleared()
            defer { corpus.close() }
            classes = corpus.schema.classes
            result = try corpus.labelIssues(given: givenReference, probs: probsReference, filter: filterValue, where: expression, clearance: clearance)
        }
        let shown = result.issues.prefix(limit ?? .max)
        switch format {
        case .json:
            for issue in shown { printJSON(labelIssueJSON(issue)) }
            if let written, let writeSet { printError("wrote label set \(writeSet) version \(written.version): \(written.rows) suggested labels") }
        case .text:
            printIssues(result, shown: shown, classes: classes, filter: filterValue)
            if let written, let writeSet { print("wrote label set \(writeSet) version \(written.version): \(written.rows) suggested labels") }
        }
    }

    private func printIssues(_ result: LabelIssues, shown: ArraySlice<LabelIssue>, classes: [String], filter: LabelIssueFilter) {
        print("\(result.issues.count) of \(result.examined) samples flagged (\(filter.rawValue)) in \(result.given) against \(result.probs); the confident joint estimates \(result.estimatedErrors) label errors")
        guard !shown.isEmpty else { return }
        print("rank\tid\tgiven → suggested\tself-confidence\tmargin")
        for issue in shown {
            print("\(issue.rank)\t\(issue.id)\t\(classes[issue.given]) → \(classes[issue.suggested])\t\(String(format: "%.4f", issue.selfConfidence))\t\(String(format: "%.4f", issue.margin))")
        }
        if shown.count < result.issues.count { print("… \(result.issues.count - shown.count) more (--limit)") }
    }
}
