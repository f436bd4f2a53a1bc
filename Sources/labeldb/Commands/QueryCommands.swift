import ArgumentParser
import Foundation
import LabelDB

/// `labeldb knn STORE --query Q.npy --k K [--metric cosine|l2] [--format json]`
struct KNNCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "knn", abstract: "Exact k nearest neighbours of each query vector (cosine or L2), computed with BLAS.")
    @OptionGroup var target: StoreArgument
    @Option(help: "Query vectors: a 2-D .npy (queries × dim) or 1-D (one query).") var query: String
    @Option(help: "Neighbours per query.") var k: Int = 10
    @Option(help: "cosine or l2 (similarity is the negative distance).") var metric: String = "cosine"
    @Option(help: "Output format: text or json (one object per query, in query order).") var format: OutputFormat = .text

    func run() throws {
        guard let metricValue = NeighborMetric(rawValue: metric) else { throw UsageError(description: "--metric must be cosine or l2") }
        guard k >= 1 else { throw UsageError(description: "--k must be at least 1") }
        let array = try NumPyArray.read(query)
        let store = try target.open(readOnly: true)
        defer { store.close() }
        let d = store.schema.dimension
        guard (array.shape.count == 1 && array.shape[0] == d) || (array.shape.count == 2 && array.shape[1] == d) else {
            throw InputError(file: query, reason: "expected queries × \(d) (or one vector of \(d)), found shape \(array.shape)")
        }
        let values = try array.floats(file: query)
        for (i, v) in values.enumerated() where !v.isFinite {
            throw InputError(file: query, location: "row \(i / d), column \(i % d)", reason: "\(v) (queries must be finite)")
        }
        let count = values.count / d
        let hits = try store.read { tx in try tx.nearestNeighbors(of: values, queries: count, k: k, metric: metricValue) }
        for (i, neighbors) in hits.enumerated() {
            switch format {
            case .json:
                printJSON(["query": .int(Int64(i)), "neighbors": .array(neighbors.map { ["id": .uint($0.id), "similarity": jsonNumber($0.similarity)] })])
            case .text:
                print("query \(i): " + neighbors.map { "\($0.id) (\(String(format: "%.4f", $0.similarity)))" }.joined(separator: ", "))
            }
        }
    }
}
