import ArgumentParser
import Foundation
import LabelDB

/// `labeldb shard SRC DEST --shards N [--by hash|range] [--clearance all] [--format json]`
struct ShardCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "shard", abstract: "Split a store into a sharded corpus (N stores and a manifest, corpus.json), or re-shard a corpus.",
        discussion: """
            Each sample goes to exactly one shard: by hash (xxh3-64 of the id's 8 big-endian bytes, \
            seed 0, modulo N) or by range (N half-open id ranges holding about equal numbers of the \
            stored samples, the first from 0, the last to 2^64 − 1). Every shard keeps the whole \
            store's label sets, versions, projectors, tag registry and provenance log, and its own \
            samples' rows, byte for byte; the read commands accept the corpus directory where they \
            accept a store. DEST must not exist, or be empty; on failure it is left as it was. \
            SRC may be a corpus (--by defaults to its rule): to a multiple of its shard count by \
            its own rule, re-sharding splits each shard further; to any other count or rule it \
            merges shards, copying each sample with its labels, corrections and taint. \
            format-spec/corpus.md describes the manifest.
            """)

    @OptionGroup var target: StoreArgument

    @Argument(help: "The corpus directory to create (must not exist, or be empty).")
    var destination: String

    @Option(help: "The number of shards.")
    var shards: Int

    @Option(help: "hash (the default for a store) or range (the default for a corpus is its own rule).")
    var by: String?

    @Option(help: "Who ran the split, for each shard's provenance log (default: user:$USER).")
    var agent: String?

    @Option(help: "Output format: text or json.")
    var format: OutputFormat = .text

    func run() throws {
        let given = try by.map { text in
            guard let rule = SplitRule(rawValue: text) else { throw UsageError(description: "--by must be hash or range, not '\(text)'") }
            return rule
        }
        guard shards >= 1 else { throw UsageError(description: "--shards must be at least 1") }
        let clearance = try Clearance(parsing: target.clearance)
        let manifest = FileManager.default.fileExists(atPath: target.store + "/" + CorpusManifest.fileName)
            ? try CorpusManifest.reshard(corpus: target.store, into: destination, shards: shards, rule: given, clearance: clearance, agent: agent ?? defaultAgent())
            : try CorpusManifest.split(store: target.store, into: destination, shards: shards, rule: given ?? .hash, clearance: clearance, agent: agent ?? defaultAgent())
        let rule = manifest.ruleName
        let counts = try manifest.shards.map { name in
            let store = try Store(opening: destination + "/" + name, options: Store.Options(readOnly: true))
            defer { store.close() }
            return try store.read(clearance: .all) { try $0.count() }
        }
        switch format {
        case .json:
            printJSON(["corpus": .string(destination), "rule": .string(rule),
                       "shards": .array(zip(manifest.shards, counts).map { ["path": .string($0), "samples": .int(Int64($1))] })])
        case .text:
            print("sharded \(target.store) into \(destination): \(shards) shards by \(rule), samples per shard \(counts.map(String.init).joined(separator: ", "))")
        }
    }
}
