import Foundation
import Testing
@testable import LabelDB

/// The library's batch read (issue 12 §1): every column equals what the single-row reads give,
/// in the caller's order, under the clearance, and a bad request writes no buffer.
@Suite struct BatchReadTests {
    /// A store of 40 samples: a soft set (topk:2:f16) in two versions, a hard set, a secret sample
    /// (pii) and a projector.
    func fixture(_ dir: TemporaryDirectory) throws -> (Store, [Sample]) {
        let store = try makeStore(dir, dimension: 6)
        var samples = randomSamples(count: 40, dimension: 6, seed: 11)
        samples[5].taint = TaintLabel(secrecy: ["pii"], integrity: [])
        let ids = samples.map(\.id)
        var rng = SeededGenerator(seed: 3)
        func soft(_ n: Int) -> [Float] {
            (0..<n).flatMap { _ -> [Float] in
                let v = (0..<3).map { _ in Float.random(in: 0.05...1, using: &rng) }
                let t = v.reduce(0, +)
                return v.map { $0 / t }
            }
        }
        try store.write(clearance: .all) { tx in
            _ = try tx.put(SampleBatch(samples))
            try tx.importLabels(.soft(soft(40)), ids: ids, into: "teacher", codec: .topKF16(2), agent: "t1")
            try tx.importLabels(.soft(soft(10)), ids: Array(ids.prefix(10)), into: "teacher", agent: "t2")
            try tx.importLabels(.hard((0..<40).map { $0 % 3 }), ids: ids, into: "gold", agent: "g")
        }
        try store.fitProjector("p", from: LabelSetReference(name: "teacher"), options: quickFitOptions, clearance: .all)
        return (store, samples)
    }

    /// Runs a batch read into fresh arrays.
    func read(_ tx: Transaction, _ ids: [UInt64], _ request: BatchRequest, k: Int = 2) throws -> (found: [UInt8], embeddings: [Float], hard: [Int32], version: [Int32], classes: [Int32], probabilities: [Float], leftover: [Float], dense: [Float], regen: [Float], status: [UInt8], meta: [UInt64], arena: BatchArena) {
        let n = ids.count, d = 6, c = 3
        var found = [UInt8](repeating: 9, count: n), embeddings = [Float](repeating: 9, count: n * d)
        var hard = [Int32](repeating: 9, count: n), version = [Int32](repeating: 9, count: n)
        var classes = [Int32](repeating: 9, count: n * k), probabilities = [Float](repeating: 9, count: n * k)
        var leftover = [Float](repeating: 9, count: n), dense = [Float](repeating: 9, count: n * c)
        var regen = [Float](repeating: 9, count: n * c), status = [UInt8](repeating: 9, count: n), meta = [UInt64](repeating: 9, count: n + 1)
        let arena = BatchArena()
        try found.withUnsafeMutableBufferPointer { f in try embeddings.withUnsafeMutableBufferPointer { e in
            try hard.withUnsafeMutableBufferPointer { h in try version.withUnsafeMutableBufferPointer { v in
                try classes.withUnsafeMutableBufferPointer { cl in try probabilities.withUnsafeMutableBufferPointer { p in
                    try leftover.withUnsafeMutableBufferPointer { l in try dense.withUnsafeMutableBufferPointer { dn in
                        try regen.withUnsafeMutableBufferPointer { r in try status.withUnsafeMutableBufferPointer { s in
                            try meta.withUnsafeMutableBufferPointer { m in
                                var buffers = BatchBuffers()
                                buffers.found = f.baseAddress
                                buffers.embeddings = e.baseAddress
                                buffers.metadataOffsets = m.baseAddress
                                buffers.labels = request.labels.map { reference in
                                    var out = LabelBuffers()
                                    if reference.name == "gold" { out.hard = h.baseAddress; out.version = v.baseAddress }
                                    if reference.name == "teacher" {
                                        out.topClasses = cl.baseAddress; out.topProbabilities = p.baseAddress
                                        out.leftover = l.baseAddress; out.dense = dn.baseAddress
                                    }
                                    return out
                                }
                                buffers.regenerated = request.regenerate.map { _ in
                                    var out = RegeneratedBuffers()
                                    out.probabilities = r.baseAddress
                                    out.status = s.baseAddress
                                    return out
                                }
                                try ids.withUnsafeBufferPointer { _ = try tx.readBatch($0, request, into: buffers, arena: arena) }
                            }
                        } }
                    } }
                } }
            } }
        } }
        return (found, embeddings, hard, version, classes, probabilities, leftover, dense, regen, status, meta, arena)
    }

    @Test("every column equals the single-row reads, in the caller's order, repeats included")
    func columns() throws {
        let dir = TemporaryDirectory()
        let (store, samples) = try fixture(dir)
        defer { store.close() }
        let order: [UInt64] = [samples[7].id, samples[0].id, 12345, samples[7].id, samples[5].id, samples[30].id]
        try store.read(clearance: .all) { tx in
            var request = BatchRequest()
            request.metadata = true
            request.labels = [LabelSetReference(name: "gold"), LabelSetReference(name: "teacher")]
            request.soft = .compact(k: 2)
            request.regenerate = [ProjectorReference(name: "p")]
            let r = try read(tx, order, request)
            #expect(r.found == [1, 1, 0, 1, 1, 1])
            let loaded = try tx.load(ProjectorReference(name: "p"))
            for (i, id) in order.enumerated() {
                guard let sample = try tx.sample(id) else {
                    #expect(r.embeddings[(i * 6)..<(i * 6 + 6)].allSatisfy { $0 == 0 } && r.hard[i] == -1 && r.classes[(2 * i)..<(2 * i + 2)] == [-1, -1])
                    #expect(r.meta[i + 1] == r.meta[i] && r.status[i] == 0)
                    continue
                }
                #expect(Array(r.embeddings[(i * 6)..<(i * 6 + 6)]) == sample.embedding)
                let json = Array(r.arena.metadata[Int(r.meta[i])..<Int(r.meta[i + 1])])
                #expect(try JSONValue.parse(json).objectValue == sample.metadata)
                let gold = try tx.label(of: id, in: LabelSetReference(name: "gold"))
                #expect(r.hard[i] == Int32(gold!.hard!) && r.version[i] == 1)
                let teacher = try tx.label(of: id, in: LabelSetReference(name: "teacher"))!.soft!
                let top = teacher.indices.sorted { teacher[$0] > teacher[$1] }.prefix(2)
                #expect(r.classes[(2 * i)..<(2 * i + 2)].map(Int.init) == Array(top))
                for (j, c) in top.enumerated() { #expect(abs(r.probabilities[2 * i + j] - teacher[c]) <= 1e-6) }
                #expect(abs(r.leftover[i] + r.probabilities[2 * i] + r.probabilities[2 * i + 1] - 1) < 1e-6)
                let regenerated = try tx.regenerate([id], with: loaded)[0]
                #expect(Array(r.regen[(3 * i)..<(3 * i + 3)]) == regenerated.probabilities)
                #expect(r.status[i] == regenerated.status.code)
            }
        }
    }

    @Test("a clearance that does not see a sample reads it as absent; SET@V reads that version")
    func clearanceAndVersions() throws {
        let dir = TemporaryDirectory()
        let (store, samples) = try fixture(dir)
        defer { store.close() }
        try store.read(clearance: .public) { tx in
            var request = BatchRequest()
            request.labels = [LabelSetReference(name: "gold")]
            let r = try read(tx, [samples[5].id, samples[6].id], request)
            #expect(r.found == [0, 1] && r.hard[0] == -1 && r.version[0] == 0)
        }
        try store.read(clearance: .all) { tx in
            var request = BatchRequest()
            request.labels = [LabelSetReference(name: "teacher", version: 1)]
            request.soft = .dense
            let r = try read(tx, [samples[0].id], request)
            let v1 = try tx.label(of: samples[0].id, in: LabelSetReference(name: "teacher", version: 1))!.soft!
            #expect(Array(r.dense[0..<3]) == v1)
        }
    }

    @Test("a bad request (unknown set, a column without its buffer, K = 0) throws a clear error")
    func badRequests() throws {
        let dir = TemporaryDirectory()
        let (store, samples) = try fixture(dir)
        defer { store.close() }
        try store.read(clearance: .all) { tx in
            var unknown = BatchRequest()
            unknown.labels = [LabelSetReference(name: "nope")]
            #expect(throws: LabelError.self) { _ = try read(tx, [samples[0].id], unknown) }
            var noBuffer = BatchRequest()
            noBuffer.payloads = true
            #expect(throws: InputError.self) { _ = try read(tx, [samples[0].id], noBuffer) }
            var adaptiveK = BatchRequest()
            adaptiveK.labels = [LabelSetReference(name: "teacher")]
            adaptiveK.soft = .compact(k: 0)
            #expect(throws: InputError.self) { _ = try read(tx, [samples[0].id], adaptiveK) }
        }
    }
}
