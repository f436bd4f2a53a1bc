import ArgumentParser
import Foundation
import LabelDB

/// Exit codes, the same for every command (README, "Exit codes").
enum ExitStatus {
    /// Success.
    static let success: Int32 = 0
    /// A check failed or a requested item does not exist.
    static let checkFailed: Int32 = 1
    /// Bad input or usage; nothing was written.
    static let badInput: Int32 = 2
    /// A store or I/O error.
    static let storeError: Int32 = 3

    /// True for the errors LabelDB and this tool raise (as opposed to ArgumentParser's own).
    static func isOurs(_ error: any Error) -> Bool {
        error is StoreError || error is InputError || error is LMDBError || error is LabelError || error is ProjectorError
            || error is CheckFailed || error is UsageError || error is RecordDecodingError || error is JSONParseError || error is QueryError || error is QueryParseError || error is TaintError || error is SessionError || error is AgreementError || error is CorpusError || error is ConsensusError || error is LabelIssuesError
    }

    /// The command-line flag that answers a library error, named here since the library's
    /// messages name no flags (they serve the C API and Python too).
    static func flagHint(for error: any Error) -> String? {
        switch error {
        case TaintError.missingPrivilege(let tag, _): "pass --privilege \(tag)"
        case TaintError.clearanceTooNarrow: "pass --clearance all"
        case StoreError.idExists: "pass --replace to overwrite"
        case LabelError.invalidLabel(_, let reason) where reason.contains("normalize"): "--normalize rescales such rows"
        default: nil
        }
    }

    /// The message for `error`. A sample that is absent and one the clearance hides read the same,
    /// on purpose; the message names the clearance, so a user can tell that a wider one might see it.
    static func message(for error: any Error, clearance: String?) -> String {
        if case StoreError.sampleNotFound(let id) = error, let clearance { return "sample \(id) not found under clearance \(clearance)" }
        return "\(error)"
    }

    /// The exit code an error maps to (the library's ``ErrorClass``, plus this tool's own errors).
    static func code(for error: any Error) -> Int32 {
        switch error {
        case is UsageError: badInput
        case is CheckFailed: checkFailed
        default: ErrorClass(error).rawValue
        }
    }
}

/// A check the command makes failed (exit 1); the message says what.
struct CheckFailed: Error, CustomStringConvertible {
    let description: String
}

/// The command line asked for something impossible (exit 2).
struct UsageError: Error, CustomStringConvertible {
    let description: String
}

/// `--format text|json`.
enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
    case text, json
}

/// Options every command that opens a store shares: the store, and the clearance the command
/// reads and writes under.
struct StoreArgument: ParsableArguments {
    @Argument(help: "The store directory.")
    var store: String

    @Option(help: ArgumentHelp(
        "What this command may see: 'public' (the default: samples with no secrecy tags), 'all', or 'secrecy=a,b;integrity=c' (the secrecy tags you are cleared for; the integrity tags you require).",
        valueName: "clearance"))
    var clearance: String = "public"

    func open(readOnly: Bool) throws -> Store {
        if FileManager.default.fileExists(atPath: store + "/" + CorpusManifest.fileName) {
            throw UsageError(description: readOnly
                ? "\(store) is a sharded corpus; this command reads one store (a corpus is read by \(Self.corpusCommands)); pass one of its shards"
                : "\(store) is a sharded corpus; this command writes one store (a corpus is written by import, labels import, labels consensus, labels issues --write-set and projector fit)")
        }
        if !readOnly { try CorpusManifest.refuseDirectWrite(to: store) }
        return try Store(opening: store, options: Store.Options(readOnly: readOnly))
    }

    /// The commands that accept a sharded corpus where they accept a store.
    static let corpusCommands = "get, info, verify, scan, query, knn, export, audit, import, labels list/show/export/import/diff/agree/issues/consensus, provenance export, card, heads list and projector fit/list/show/check"

    /// Opens the store or sharded corpus for reading, with the parsed clearance checked against
    /// the tag registry (every shard has the same one).
    func openCorpusCleared() throws -> (corpus: Corpus, clearance: Clearance) {
        let corpus = try Corpus(opening: store)
        do {
            let parsed = try Clearance(parsing: clearance)
            try corpus.validate(parsed)
            return (corpus, parsed)
        } catch {
            corpus.close()
            throw error
        }
    }

    /// Runs `body` with the corpus's writer and a reader of the corpus, under the parsed clearance
    /// (checked against the registry): the writer first, so its lock keeps the corpus as the
    /// reader reads it while a write is prepared from what it reads.
    func withCorpusWriter<T>(_ body: (CorpusWriter, Corpus, Clearance) throws -> T) throws -> T {
        let writer = try CorpusWriter(opening: store)
        defer { writer.close() }
        let parsed = try Clearance(parsing: clearance)
        try writer.validate(parsed)
        let corpus = try Corpus(opening: store)
        defer { corpus.close() }
        return try body(writer, corpus, parsed)
    }

    /// Opens the store with the parsed clearance, checked against the store's tag registry (an
    /// unknown tag is an error, not silently a narrower or wider clearance); the store is closed
    /// again when the clearance is refused.
    func openCleared(readOnly: Bool) throws -> (store: Store, clearance: Clearance) {
        let store = try open(readOnly: readOnly)
        do {
            let parsed = try Clearance(parsing: clearance)
            try store.read(clearance: .all) { try $0.validate(parsed) }
            return (store, parsed)
        } catch {
            store.close()
            throw error
        }
    }
}

/// A `--where` filter (the `labeldb query` grammar), nil when none is given; a parse error is a
/// usage error naming the option.
func parseWhere(_ text: String?) throws -> QueryExpression? {
    do { return try text.map { try QueryExpression(parsing: $0) } } catch let error as QueryParseError {
        throw UsageError(description: "--where \(error)")
    }
}

/// The `--clearance` text of a command that opens a store, or nil for one that opens none.
func clearanceInUse(_ command: ParsableCommand) -> String? {
    Mirror(reflecting: command).children.lazy.compactMap { ($0.value as? OptionGroup<StoreArgument>)?.wrappedValue.clearance }.first
}

/// The taint label a write gives what it writes, and the privileges it holds: `--secrecy`,
/// `--integrity` and `--privilege`, each a comma list that may repeat. Writing data with an
/// integrity tag vouches for it, so every `--integrity` tag needs its `--privilege`.
struct TaintOptions: ParsableArguments {
    @Option(help: "Secrecy tags (whose data this is: e.g. licensed:getty,pii); comma-separated, repeatable.")
    var secrecy: [String] = []

    @Option(help: "Integrity tags (what vouches for it: e.g. human-reviewed); each needs --privilege; comma-separated, repeatable.")
    var integrity: [String] = []

    @Option(help: "A tag you hold the privilege for (comma-separated, repeatable).")
    var privilege: [String] = []

    /// The label given.
    func label() throws -> TaintLabel { try TaintLabel(secrecyLists: secrecy, integrityLists: integrity) }

    /// The privileges given.
    func privileges() throws -> Set<String> { try TaintTags.parse(lists: privilege) }

    /// The options as provenance parameters (`secrecy`, `integrity`, `privileges`, sorted lists).
    func parameters() throws -> [String: String] {
        let label = try label()
        return ["secrecy": label.secrecy.sorted.joined(separator: ","), "integrity": label.integrity.sorted.joined(separator: ","),
                "privileges": try privileges().sorted().joined(separator: ",")]
    }
}

/// A command that writes output files: when it fails, the files it created are removed (a full
/// disk must not leave half-written or empty files that look like a result).
protocol WritesOutputFiles {
    /// The output paths the command was given.
    var outputPaths: [String] { get }
}

/// Prints one JSON value on its own line.
func printJSON(_ value: JSONValue) {
    print(value.serialized())
}


/// Writes to standard error.
func printError(_ text: String) {
    FileHandle.standardError.write(Data((text + "\n").utf8))
}

/// A one-line progress bar on standard error, shown only when it is a terminal.
final class ProgressBar {
    private let total: Int
    private let label: String
    private let enabled: Bool
    private var lastDraw = Date.distantPast

    init(total: Int, label: String, quiet: Bool) {
        self.total = total
        self.label = label
        self.enabled = !quiet && isatty(STDERR_FILENO) != 0 && total > 0
    }

    func update(_ done: Int) {
        guard enabled, Date().timeIntervalSince(lastDraw) > 0.1 || done == total else { return }
        lastDraw = Date()
        let fraction = Double(min(done, total)) / Double(total)
        let width = 30
        let filled = Int(fraction * Double(width))
        let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
        FileHandle.standardError.write(Data("\r\(label) [\(bar)] \(done)/\(total) (\(Int(fraction * 100))%)".utf8))
    }

    func finish() {
        guard enabled else { return }
        FileHandle.standardError.write(Data("\n".utf8))
    }
}

/// Buffered line output to a file, for JSONL exports.
final class LineWriter {
    private let handle: FileHandle
    private let path: String
    private var buffer: [UInt8] = []

    init(path: String) throws {
        guard FileManager.default.createFile(atPath: path, contents: nil), let handle = FileHandle(forWritingAtPath: path) else {
            throw InputError(file: path, reason: "cannot create the file")
        }
        self.handle = handle
        self.path = path
    }

    func write(_ line: JSONValue) throws {
        line.write(into: &buffer)
        buffer.append(0x0A)
        if buffer.count >= 1 << 20 { try flush() }
    }

    func flush() throws {
        do { try handle.write(contentsOf: buffer) } catch {
            throw StoreError.io(path: path, reason: "write failed: \(error.localizedDescription)")
        }
        buffer.removeAll(keepingCapacity: true)
    }

    func close() throws {
        try flush()
        try? handle.close()
    }
}

/// The agent recorded when a command is not given `--agent`: the user running it.
func defaultAgent() -> String {
    ProcessInfo.processInfo.environment["USER"].map { "user:\($0)" } ?? "unknown"
}
