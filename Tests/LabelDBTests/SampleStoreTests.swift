import Foundation
import Testing
@testable import LabelDB

@Suite("Samples")
struct SampleStoreTests {
    @Test("every field round-trips, and survives close and reopen")
    func roundTripAndReopen() throws {
        let dir = TemporaryDirectory()
        let samples = randomSamples(count: 300, dimension: 8, seed: 1)
        do {
            let store = try makeStore(dir)
            try store.write(clearance: .all) { tx in try tx.put(SampleBatch(samples), mode: .insert) }
            for sample in samples {
                #expect(try store.read(clearance: .all) { try $0.sample(sample.id) } == sample)
            }
            store.close()
        }
        let reopened = try Store(opening: dir.file("store"))
        defer { reopened.close() }
        #expect(reopened.schema.classes == ["cat", "dog", "bird"])
        #expect(try reopened.read(clearance: .all) { try $0.count() } == 300)
        let scanned = try reopened.read(clearance: .all) { try $0.samples() }
        #expect(scanned == samples.sorted { $0.id < $1.id })
        #expect(try reopened.read(clearance: .all) { try $0.verify() }.isClean)
    }

    @Test("payloads of 16 MiB and empty payloads are stored")
    func largeAndEmptyPayloads() throws {
        let dir = TemporaryDirectory()
        let store = try makeStore(dir)
        defer { store.close() }
        var big = [UInt8](repeating: 0, count: 16 << 20)
        for i in stride(from: 0, to: big.count, by: 4093) { big[i] = UInt8(truncatingIfNeeded: i) }
        let samples = [
            Sample(id: 1, embedding: Array(repeating: 0.5, count: 8), payload: big),
            Sample(id: 2, embedding: Array(repeating: -0.5, count: 8), payload: []),
        ]
        try store.write(clearance: .all) { tx in try tx.put(SampleBatch(samples)) }
        #expect(try store.read(clearance: .all) { try $0.sample(1) } == samples[0])
        #expect(try store.read(clearance: .all) { try $0.sample(2) } == samples[1])
    }

    @Test("put replaces, delete removes and frees the slot for reuse")
    func replaceAndDelete() throws {
        let dir = TemporaryDirectory()
        let store = try makeStore(dir)
        defer { store.close() }
        let samples = randomSamples(count: 50, dimension: 8, seed: 2, ids: Array(1...50))
        try store.write(clearance: .all) { tx in try tx.put(SampleBatch(samples)) }
        var changed = samples[10]
        changed.embedding = Array(repeating: 3, count: 8)
        changed.metadata = ["fixed": true]
        try store.write(clearance: .all) { tx in try tx.put(changed) }
        #expect(try store.read(clearance: .all) { try $0.sample(11) } == changed)

        #expect(throws: StoreError.idExists(11)) {
            try store.write(clearance: .all) { tx in try tx.put(SampleBatch([changed]), mode: .insert) }
        }
        #expect(try store.write(clearance: .all) { tx in try tx.delete([5, 6, 999]) } == 2)
        #expect(try store.read(clearance: .all) { try $0.contains(5) } == false)
        #expect(try store.read(clearance: .all) { try $0.count() } == 48)
        let newcomer = Sample(id: 1000, embedding: Array(repeating: 1, count: 8))
        try store.write(clearance: .all) { tx in try tx.put(newcomer) }
        #expect(try store.read(clearance: .all) { try $0.sample(1000) } == newcomer)
        #expect(try store.read(clearance: .all) { try $0.verify() }.isClean)
        // The freed slot was reused: no new slot was allocated.
        #expect(try store.read(clearance: .all) { try $0.nextSlot() } == 50)
    }

    @Test("ordered scan with a start id and a limit")
    func orderedScan() throws {
        let dir = TemporaryDirectory()
        let store = try makeStore(dir)
        defer { store.close() }
        let ids: [UInt64] = [900, 3, 77, 12, 5000, 41]
        try store.write(clearance: .all) { tx in try tx.put(SampleBatch(randomSamples(count: 6, dimension: 8, seed: 3, ids: ids))) }
        let page = try store.read(clearance: .all) { try $0.samples(from: 13, limit: 3) }
        #expect(page.map(\.id) == [41, 77, 900])
        #expect(try store.read(clearance: .all) { try $0.ids() } == ids.sorted())
    }

    @Test("f16 stores round embeddings to half precision")
    func halfPrecision() throws {
        let dir = TemporaryDirectory()
        let store = try makeStore(dir, elementType: .f16)
        defer { store.close() }
        let sample = randomSamples(count: 1, dimension: 8, seed: 4)[0]
        try store.write(clearance: .all) { tx in try tx.put(sample) }
        let read = try #require(try store.read(clearance: .all) { try $0.sample(sample.id) })
        #expect(read.embedding == sample.embedding.map { Float(Float16($0)) })
        #expect(throws: StoreError.self) {
            try store.write(clearance: .all) { tx in try tx.put(Sample(id: 9, embedding: Array(repeating: 70000, count: 8))) }
        }
    }

    @Test("the embedding scan yields every live row exactly once")
    func embeddingScan() throws {
        let dir = TemporaryDirectory()
        let store = try Store.create(at: dir.file("store"), schema: Schema(dimension: 4, classes: [], rowsPerBlock: 16))
        defer { store.close() }
        let samples = randomSamples(count: 100, dimension: 4, seed: 5, ids: Array(1...100))
        try store.write(clearance: .all) { tx in try tx.put(SampleBatch(samples)) }
        try store.write(clearance: .all) { tx in _ = try tx.delete([3, 50]) }
        var seen: [UInt64: [Float]] = [:]
        try store.read(clearance: .all) { tx in
            try tx.forEachEmbeddingBlock { rows in
                for r in 0..<rows.rowCount where rows.isLive(r) {
                    seen[rows.id(at: r)] = Array(rows.floats[(r * 4)..<(r * 4 + 4)])
                }
            }
        }
        #expect(seen.count == 98)
        for sample in samples where sample.id != 3 && sample.id != 50 {
            #expect(seen[sample.id] == sample.embedding)
        }
    }
}
