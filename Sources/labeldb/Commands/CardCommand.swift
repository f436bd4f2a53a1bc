import ArgumentParser
import Foundation
import LabelDB

/// `labeldb card STORE [--out card.html] [--labels SET,…] [--format json]`
struct CardCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "card", abstract: "The corpus card: composition, labels, agreement, flow labels, provenance and embedding health.",
        discussion: """
            Writes one self-contained HTML page to --out (inline SVG charts, no script, font or \
            address outside the file) and, with --format json, prints the same figures as one \
            JSON object (format-spec/cli.md). Everything counts only what --clearance sees; \
            statistics the store keeps over all rows are shown only to a clearance that sees \
            them all. --labels names the label sets and projectors to describe (default: every \
            one the clearance may read). Progress goes to standard error when it is a terminal.
            """)
    @OptionGroup var target: StoreArgument
    @Option(help: "The HTML file to write.") var out: String?
    @Option(help: "Label sets or projectors to describe (SET or SET@VERSION); comma-separated, repeatable.") var labels: [String] = []
    @Option(help: "Output format: text (a summary) or json (every figure).") var format: OutputFormat = .text
    @Flag(help: "No progress on stderr.") var quiet = false

    func run() throws {
        guard out != nil || format == .json else { throw UsageError(description: "give --out card.html, --format json, or both") }
        let references = try labels.flatMap { $0.split(separator: ",").map(String.init) }.map { try LabelSetReference(parsing: $0) }
        // Fail before a long computation, not after: an output that cannot be created.
        if let out, !FileManager.default.createFile(atPath: out, contents: nil) {
            throw InputError(file: out, reason: "cannot write: the file cannot be created")
        }
        let (corpus, clearance) = try target.openCorpusCleared()
        defer { corpus.close() }
        var bar: (step: String, progress: ProgressBar)?
        let card = try corpus.card(labels: references.isEmpty ? nil : references, clearance: clearance,
                                   progress: quiet || isatty(STDERR_FILENO) == 0 ? nil : { step, done, total in
            if bar?.step != step {
                bar?.progress.finish()
                bar = (step, ProgressBar(total: max(total, 1), label: "card: \(step)", quiet: false))
            }
            bar?.progress.update(total == 0 ? 1 : done)
        })
        bar?.progress.finish()
        if let out {
            do { try corpusCardHTML(card, title: corpus.path).write(toFile: out, atomically: false, encoding: .utf8) } catch {
                throw InputError(file: out, reason: "cannot write: \(error.localizedDescription)")
            }
        }
        switch format {
        case .json: printJSON(corpusCardJSON(card))
        case .text:
            print("corpus card of \(card.composition.samples) samples, \(card.labelSources.count) label sources, \(card.provenanceRecords) provenance records, under clearance \(card.clearance)")
            if let out { print("wrote \(out)") }
        }
    }
}

extension CardCommand: WritesOutputFiles {
    var outputPaths: [String] { out.map { [$0] } ?? [] }
}
