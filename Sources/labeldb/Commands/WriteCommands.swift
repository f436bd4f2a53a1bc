import ArgumentParser
import Foundation
import LabelDB

/// `labeldb delete STORE --ids IDS.npy`
struct DeleteCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "delete",
        abstract: "Delete samples by id, all or nothing.",
        discussion: """
            Every listed id must be stored (exit 1 and nothing deleted otherwise), unless --missing-ok. \
            Deleted bytes stay in LMDB's free pages until reused; `labeldb backup` writes a copy without them.
            """)

    @OptionGroup var target: StoreArgument

    @Option(help: "The ids to delete: a 1-D .npy of <u8 or <i8.")
    var ids: String

    @Flag(help: "Skip ids that are not stored instead of failing.")
    var missingOk = false

    func run() throws {
        let list = try readIDs(ids)
        let (store, clearance) = try target.openCleared(readOnly: false)
        defer { store.close() }
        let deleted = try store.write(clearance: clearance) { tx -> Int in
            if !missingOk { try requireVisible(list, in: tx, clearance: target.clearance, or: "nothing deleted") }
            let deleted = try tx.delete(list)
            tx.describe(ProvenanceRecord(activity: "delete", agent: defaultAgent(), used: [try .file(ids, rows: list.count)],
                                         parameters: ["deleted": "\(deleted)"]))
            return deleted
        }
        print("deleted \(deleted) samples")
    }
}

/// `labeldb backup STORE DEST`
struct BackupCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backup",
        abstract: "Write a consistent, compacted copy of the store, while it stays in use.",
        discussion: "The copy has no free pages, so it is also how bytes of deleted samples leave the file.")

    @OptionGroup var target: StoreArgument

    @Argument(help: "The destination directory (must not exist, or be empty).")
    var destination: String

    func run() throws {
        let (store, clearance) = try target.openCleared(readOnly: true)
        defer { store.close() }
        try store.backup(to: destination, clearance: clearance)
        print("backed up \(target.store) to \(destination)")
    }
}

/// `labeldb relabel STORE --ids IDS.npy [--add-secrecy T] [--remove-secrecy T] [--add-integrity T] [--remove-integrity T] [--privilege T]`
struct RelabelCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "relabel",
        abstract: "Change samples' taint labels, all or nothing.",
        discussion: """
            Adding secrecy or removing integrity makes data more restricted and needs no privilege. \
            Removing secrecy (declassify) and adding integrity (endorse) need --privilege TAG for \
            each tag. Every id must be stored and visible under --clearance. The change is logged \
            in the provenance log as relabel, declassify or endorse, with the privileges used; \
            projectors fitted on the samples take on added secrecy at once.
            """)

    @OptionGroup var target: StoreArgument

    @Option(help: "The ids to relabel: a 1-D .npy of <u8 or <i8.")
    var ids: String

    @Option(help: "Secrecy tags to add (comma-separated, repeatable).") var addSecrecy: [String] = []
    @Option(help: "Secrecy tags to remove: declassify (needs --privilege for each).") var removeSecrecy: [String] = []
    @Option(help: "Integrity tags to add: endorse (needs --privilege for each).") var addIntegrity: [String] = []
    @Option(help: "Integrity tags to remove.") var removeIntegrity: [String] = []
    @Option(help: "A tag you hold the privilege for (comma-separated, repeatable).") var privilege: [String] = []
    @Option(help: "Who relabels, for the provenance log (default: user:$USER).") var agent: String?

    func run() throws {
        let change = TaintChange(addSecrecy: try TaintTags.parse(lists: addSecrecy), removeSecrecy: try TaintTags.parse(lists: removeSecrecy),
                                 addIntegrity: try TaintTags.parse(lists: addIntegrity), removeIntegrity: try TaintTags.parse(lists: removeIntegrity))
        let privileges = try TaintTags.parse(lists: privilege)
        guard change != TaintChange() else { throw UsageError(description: "give at least one of --add-secrecy, --remove-secrecy, --add-integrity, --remove-integrity") }
        let list = try readIDs(ids)
        let (store, clearance) = try target.openCleared(readOnly: false)
        defer { store.close() }
        let changed = try store.write(clearance: clearance) { tx -> Int in
            try requireVisible(list, in: tx, clearance: target.clearance, or: "nothing relabelled")
            let changed = try tx.relabel(list, change, privileges: privileges, agent: agent ?? defaultAgent())
            tx.describe(ProvenanceRecord(activity: change.activity, agent: agent ?? defaultAgent(), used: [try .file(ids, rows: list.count)]))
            return changed
        }
        print("\(change.activity): \(changed) samples")
    }
}

/// Throws ``CheckFailed`` (exit 1) naming up to ten of `ids` that are not stored or not visible
/// under the transaction's clearance (the two are indistinguishable on purpose; the message names
/// the clearance, `clearance` as the user gave it).
func requireVisible(_ ids: [UInt64], in tx: LabelDB.Transaction, clearance: String, or consequence: String) throws {
    let missing = try ids.filter { try !tx.contains($0) }
    guard missing.isEmpty else {
        let shown = missing.prefix(10).map(String.init).joined(separator: ", ")
        throw CheckFailed(description: "\(missing.count) ids not found under clearance \(clearance) (\(shown)\(missing.count > 10 ? ", …" : "")); \(consequence)")
    }
}
