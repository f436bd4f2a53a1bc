import ArgumentParser
import Foundation
import LabelDB

/// `labeldb`: the command-line tool over a LabelDB store.
struct LabelDBCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "labeldb",
        abstract: "An embedded database for labelled machine-learning corpora.",
        discussion: """
            Exit codes: 0 success; 1 a check failed or a requested item (sample, label set, \
            version) does not exist; \
            2 bad input or usage (nothing was written); 3 a store or I/O error.
            JSON output (--format json) follows format-spec/cli.md.
            """,
        subcommands: [
            InitCommand.self, ImportCommand.self, LabelsCommand.self, HeadsCommand.self, ProjectorCommand.self, GetCommand.self, InfoCommand.self, VerifyCommand.self,
            ScanCommand.self, ExportCommand.self, DeleteCommand.self, RelabelCommand.self, BackupCommand.self,
            AuditCommand.self, ProvenanceCommand.self, KNNCommand.self, QueryCommand.self, CardCommand.self, ShardCommand.self,
        ]
    )
}

// Parsing and running are handled here rather than by `main()` so that every failure maps to
// the documented exit codes (ArgumentParser's default for usage errors is 64).
var command: ParsableCommand
do {
    command = try LabelDBCommand.parseAsRoot()
} catch {
    // --help and --version arrive as "errors" whose exit code is success.
    if LabelDBCommand.exitCode(for: error) == .success {
        print(LabelDBCommand.fullMessage(for: error))
        exit(ExitStatus.success)
    }
    printError(LabelDBCommand.fullMessage(for: error))
    exit(ExitStatus.badInput)
}
// Output files that did not exist before the run are removed when it fails.
let outputsBefore = ((command as? WritesOutputFiles)?.outputPaths ?? []).filter { !FileManager.default.fileExists(atPath: $0) }
func removeOutputs() {
    for path in outputsBefore { try? FileManager.default.removeItem(atPath: path) }
}
do {
    try command.run()
} catch let exitCode as ExitCode {
    if exitCode.rawValue != 0 { removeOutputs() }
    exit(exitCode.rawValue)
} catch let error where ExitStatus.isOurs(error) {
    removeOutputs()
    printError("labeldb: \(ExitStatus.message(for: error, clearance: clearanceInUse(command)))" + (ExitStatus.flagHint(for: error).map { " (\($0))" } ?? ""))
    exit(ExitStatus.code(for: error))
} catch {
    // ArgumentParser's own outcomes: help for a command group run without a subcommand (or
    // `--help` at the root), or a usage error.
    let code = LabelDBCommand.exitCode(for: error)
    if code == .success {
        print(LabelDBCommand.fullMessage(for: error))
        exit(ExitStatus.success)
    }
    removeOutputs()
    printError(LabelDBCommand.fullMessage(for: error))
    // Usage errors are bad input; anything else unexpected is an I/O or store failure.
    exit(code == .validationFailure ? ExitStatus.badInput : ExitStatus.storeError)
}
