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
        let array = try NumPyArray.read(ids)
        guard array.shape.count == 1 else {
            throw InputError(file: ids, reason: "expected a 1-D array of ids, found shape \(array.shape)")
        }
        let list = try array.ids(file: ids)
        let store = try target.open(readOnly: false)
        let clearance = try target.clearance(in: store)
        defer { store.close() }
        let deleted = try store.write(clearance: clearance) { tx -> Int in
            if !missingOk {
                let missing = try list.filter { try !tx.contains($0) }
                if !missing.isEmpty {
                    let shown = missing.prefix(10).map(String.init).joined(separator: ", ")
                    throw CheckFailed(description: "\(missing.count) ids not found (\(shown)\(missing.count > 10 ? ", …" : "")); nothing deleted")
                }
            }
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
        let store = try target.open(readOnly: true)
        let clearance = try target.clearance(in: store)
        defer { store.close() }
        try store.backup(to: destination)
        print("backed up \(target.store) to \(destination)")
    }
}
