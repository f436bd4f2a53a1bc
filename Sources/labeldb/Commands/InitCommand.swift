import ArgumentParser
import Foundation
import LabelDB

/// `labeldb init STORE --dim D --classes CLASSES.txt [--dtype f32|f16]`
struct InitCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "init", abstract: "Create a new, empty store.")

    @Argument(help: "The store directory to create (must not exist, or be empty).")
    var store: String

    @Option(help: "Embedding dimension.")
    var dim: Int

    @Option(help: "A text file with one class name per line, in class-index order.")
    var classes: String

    @Option(help: "Embedding element type: f32 or f16.")
    var dtype: String = "f32"

    @Option(help: "Create an empty sharded corpus of this many shards (routed by hash) instead of a store.")
    var shards: Int?

    @Option(help: "Output format: text or json.")
    var format: OutputFormat = .text

    func run() throws {
        guard let elementType = Schema.ElementType(rawValue: dtype) else {
            throw UsageError(description: "--dtype must be f32 or f16, not '\(dtype)'")
        }
        let names = try readClassNames(classes)
        let schema = try Schema(dimension: dim, elementType: elementType, classes: names)
        if let shards {
            guard shards >= 1 else { throw UsageError(description: "--shards must be at least 1") }
            let manifest = try CorpusManifest.create(at: store, schema: schema, shards: shards)
            switch format {
            case .json:
                printJSON(["corpus": .string(store), "dim": .int(Int64(dim)), "dtype": .string(dtype), "classes": .array(names.map { .string($0) }),
                           "shards": .array(manifest.shards.map { .string($0) })])
            case .text:
                print("created \(store): a corpus of \(shards) shards, \(dim)-d \(dtype) embeddings, \(names.count) classes")
            }
            return
        }
        let created = try Store.create(at: store, schema: schema)
        defer { created.close() }
        switch format {
        case .json:
            printJSON(["store": .string(store), "dim": .int(Int64(dim)), "dtype": .string(dtype),
                       "classes": .array(names.map { .string($0) }), "format_version": .int(Int64(created.formatVersion))])
        case .text:
            print("created \(store): \(dim)-d \(dtype) embeddings, \(names.count) classes")
        }
    }
}

/// Reads a class list: one name per line; a final newline is optional; blank lines are errors.
func readClassNames(_ path: String) throws -> [String] {
    let data = try InputFile.contents(path)
    guard let text = String(data: data, encoding: .utf8) else {
        throw InputError(file: path, reason: "not UTF-8 text")
    }
    var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map { $0.hasSuffix("\r") ? String($0.dropLast()) : String($0) }
    if lines.last == "" { lines.removeLast() }
    guard !lines.isEmpty else { throw InputError(file: path, reason: "no class names") }
    for (index, line) in lines.enumerated() where line.trimmingCharacters(in: .whitespaces).isEmpty {
        throw InputError(file: path, location: "line \(index + 1)", reason: "empty class name")
    }
    return lines
}
