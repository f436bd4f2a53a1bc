import Foundation
import Testing
@testable import LabelDB

/// The anonymous (heap) memory of this process in bytes, from /proc/self/status: mapped store
/// pages are file-backed and do not count.
private func anonymousMemory() -> Int {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
          let line = status.split(separator: "\n").first(where: { $0.hasPrefix("RssAnon:") }),
          let kilobytes = Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") else { return 0 }
    return kilobytes * 1024
}

@Suite("Query streaming and regenerated labels")
struct QueryStreamingTests {
    @Test("labels from a projector in filters equal regenerating each sample; descending streams the reverse")
    func projectorLabels() throws {
        let dir = TemporaryDirectory("query-regen")
        let problem = ProjectorProblem(n: 300, rank: 2, headScale: 0, seed: 5)
        let store = try Store.create(at: dir.file("store"), schema: Schema(dimension: problem.d, classes: (0..<problem.c).map { "k\($0)" }))
        let ids = (1...UInt64(problem.n)).map { $0 }
        try store.write(clearance: .all) { tx in
            try tx.put(SampleBatch(ids: ids, embeddings: problem.x))
            try tx.importLabels(.soft(problem.p), ids: ids, into: "teacher", agent: "t", normalize: true)
        }
        var options = ProjectorFitOptions(rank: 2)
        options.epochs = 0
        try store.fitProjector("p", from: LabelSetReference(name: "teacher"), options: options, clearance: .all)
        try store.read(clearance: .all) { tx in
            let regenerated = try tx.regenerate(ids, with: tx.load(ProjectorReference(name: "p")))
            let expected = regenerated.filter { argmax($0.probabilities) == 1 && $0.probabilities[1] < 0.8 }.map(\.id)
            var got: [UInt64] = []
            var shown: [[Float]] = []
            try tx.query(try QueryExpression(parsing: "label(p).top1 = 'k1' and label(p).confidence < 0.8"), labels: [LabelSetReference(name: "p")]) { id, labels in
                got.append(id)
                shown.append(labels[0]!.soft!)
            }
            #expect(got == expected)
            #expect(shown == regenerated.filter { expected.contains($0.id) }.map(\.probabilities))
            var descending: [UInt64] = []
            try tx.query(try QueryExpression(parsing: "id >= 0"), descending: true) { descending.append($0) }
            #expect(descending == ids.reversed())
        }
    }

    @Test(".npy outputs of unknown length are valid, including empty ones")
    func streamedNumPy() throws {
        let dir = TemporaryDirectory("npy-stream")
        for rows in [0, 1, 1000] {
            let writer = try NumPyWriter(path: dir.file("x.npy"), dtype: .float32, rowShape: [3])
            for r in 0..<rows { try writer.append([Float(r), 1, 2]) }
            try writer.finish()
            let array = try NumPyArray.read(dir.file("x.npy"))
            #expect(array.shape == [rows, 3])
            #expect(try array.floats() == (0..<rows).flatMap { [Float($0), 1, 2] })
        }
    }

    @Test("a query streaming a million rows keeps its heap flat")
    func millionRows() throws {
        let dir = TemporaryDirectory("query-million")
        let store = try Store.create(at: dir.file("store"), schema: Schema(dimension: 2, classes: ["a", "b"]))
        let total = 1_000_000, chunk = 200_000
        for start in stride(from: 0, to: total, by: chunk) {
            let ids = (UInt64(start)..<UInt64(start + chunk)).map { $0 }
            try store.write(clearance: .all) { tx in try tx.put(SampleBatch(ids: ids, embeddings: [Float](repeating: 1, count: 2 * chunk))) }
        }
        try store.read(clearance: .all) { tx in
            let filter = try QueryExpression(parsing: "id >= 10 and not meta.kind = 'x'")
            var seen = 0
            var checksum: UInt64 = 0
            let before = anonymousMemory()
            var peak = before
            let plan = try tx.query(filter) { id in
                seen += 1
                checksum &+= id
                if seen % 100_000 == 0 { peak = max(peak, anonymousMemory()) }
            }
            #expect(seen == total - 10 && plan.matched == total - 10)
            #expect(checksum == UInt64((10..<total).reduce(0, +)))
            // The ids alone would take 8 MB; the rows with metadata far more. Streaming holds one batch.
            #expect(peak - before < 4 << 20, "heap grew by \(peak - before) bytes")
        }
    }
}
