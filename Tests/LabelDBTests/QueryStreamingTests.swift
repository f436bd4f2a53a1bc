import Foundation
import Testing
@testable import LabelDB

/// Runs `labeldb` with `arguments` (output discarded) and returns its peak resident set in bytes,
/// from `wait4` (a child process: other tests running in this process cannot disturb it).
private func peakMemoryOfCLI(_ arguments: [String]) throws -> (status: Int32, bytes: Int) {
    var pid: pid_t = 0
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    let argv = ([labeldbBinary] + arguments).map { strdup($0) } + [nil]
    defer { argv.forEach { free($0) } }
    guard posix_spawn(&pid, labeldbBinary, &actions, nil, argv, environ) == 0 else { throw CheckFailedInTest("cannot spawn labeldb") }
    var status: Int32 = 0
    var usage = rusage()
    guard wait4(pid, &status, 0, &usage) == pid else { throw CheckFailedInTest("wait4 failed") }
    return ((status >> 8) & 0xFF, usage.ru_maxrss * 1024)
}

private struct CheckFailedInTest: Error {
    let reason: String
    init(_ reason: String) { self.reason = reason }
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

    @Test("a query streaming a million rows runs in the memory of one returning ten")
    func millionRows() throws {
        let dir = TemporaryDirectory("query-million")
        let store = try Store.create(at: dir.file("store"), schema: Schema(dimension: 2, classes: ["a", "b"]))
        let total = 1_000_000, chunk = 200_000
        for start in stride(from: 0, to: total, by: chunk) {
            let ids = (UInt64(start)..<UInt64(start + chunk)).map { $0 }
            try store.write(clearance: .all) { tx in try tx.put(SampleBatch(ids: ids, embeddings: [Float](repeating: 1, count: 2 * chunk))) }
        }
        try store.read(clearance: .all) { tx in
            var seen = 0
            var checksum: UInt64 = 0
            let plan = try tx.query(try QueryExpression(parsing: "id >= 10 and not meta.kind = 'x'")) { id in
                seen += 1
                checksum &+= id
            }
            #expect(seen == total - 10 && plan.matched == total - 10)
            #expect(checksum == UInt64((10..<total).reduce(0, +)))
        }
        store.close()
        // The same scan returning a million rows or ten, in a process of its own: if results were
        // held, the first would need at least 8 MB more (the ids alone; JSON rows far more).
        let path = dir.file("store")
        let all = try peakMemoryOfCLI(["query", path, "id >= 0", "--format", "json", "--ids-out", dir.file("all.npy")])
        let few = try peakMemoryOfCLI(["query", path, "id >= 999990", "--format", "json", "--ids-out", dir.file("few.npy")])
        #expect(all.status == 0 && few.status == 0)
        #expect(try NumPyArray.read(dir.file("all.npy")).shape == [total])
        #expect(all.bytes - few.bytes < 4 << 20, "a million rows took \(all.bytes - few.bytes) bytes more than ten")
    }
}
