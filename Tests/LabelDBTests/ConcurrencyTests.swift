import Foundation
import Testing
@testable import LabelDB

@Suite("Concurrency and map growth")
struct ConcurrencyTests {
    @Test("readers on many threads see whole batches while one thread writes")
    func threadsReadWhileOneWrites() async throws {
        let dir = TemporaryDirectory()
        let store = try makeStore(dir)
        defer { store.close() }
        let batches = 40, batchSize = 100
        let writer = Task.detached {
            for b in 0..<batches {
                let ids = (0..<batchSize).map { UInt64(b * batchSize + $0) }
                try store.write(clearance: .all) { tx in try tx.put(SampleBatch(randomSamples(count: batchSize, dimension: 8, seed: UInt64(b), ids: ids))) }
            }
        }
        let readers = (0..<4).map { r in
            Task.detached { () -> Int in
                var snapshots = 0
                var rng = SeededGenerator(seed: UInt64(r))
                while snapshots < 30 || !writer.isCancelled && snapshots < 2000 {
                    let consistent = try store.read(clearance: .all) { tx -> Bool in
                        let count = try tx.count()
                        let ids = try tx.ids()
                        guard count % batchSize == 0, ids.count == count else { return false }
                        if count > 0 {
                            let id = UInt64.random(in: 0..<UInt64(count), using: &rng)
                            guard try tx.sample(id)?.id == id else { return false }
                        }
                        return true
                    }
                    #expect(consistent)
                    snapshots += 1
                    if try store.read(clearance: .all, { try $0.count() }) == batches * batchSize && snapshots >= 30 { break }
                }
                return snapshots
            }
        }
        try await writer.value
        for reader in readers { #expect(try await reader.value >= 30) }
        #expect(try store.read(clearance: .all) { try $0.verify() }.isClean)
    }

    @Test("a second process reads consistent snapshots while this one writes")
    func secondProcessReads() throws {
        let dir = TemporaryDirectory()
        let store = try makeStore(dir)
        let path = dir.file("store")
        let batchSize = 200
        let done = ManagedAtomicFlag()
        let writer = Thread {
            for b in 0..<60 {
                let ids = (0..<batchSize).map { UInt64(b * batchSize + $0) }
                _ = try? store.write(clearance: .all) { tx in try tx.put(SampleBatch(randomSamples(count: batchSize, dimension: 8, seed: UInt64(b), ids: ids))) }
                usleep(2000)
            }
            done.set()
        }
        writer.start()
        var runs = 0
        repeat {
            let result = try runCLI(["verify", path, "--format", "json"])
            #expect(result.status == 0, "\(result.stdout) \(result.stderr)")
            let checked = try JSONValue.parse(result.stdout.trimmingCharacters(in: .whitespacesAndNewlines))["samples_checked"]?.doubleValue ?? -1
            #expect(Int(checked) % batchSize == 0)
            runs += 1
        } while !done.isSet || runs < 3
        store.close()
        #expect(runs >= 3)
    }

    @Test("the map grows from a tiny initial size, replaying the write")
    func mapGrowth() throws {
        let dir = TemporaryDirectory()
        var options = Store.Options()
        options.initialMapSize = 256 * 1024
        let store = try makeStore(dir, dimension: 64, options: options)
        defer { store.close() }
        let samples = randomSamples(count: 3000, dimension: 64, seed: 9)
        var attempts = 0
        try store.write(clearance: .all) { tx in
            attempts += 1
            try tx.put(SampleBatch(samples))
        }
        #expect(attempts > 1)
        #expect(store.mapSize > 256 * 1024)
        #expect(try store.read(clearance: .all) { try $0.samples() } == samples.sorted { $0.id < $1.id })
    }

    @Test("a process adopts the larger map another process set")
    func adoptsResizedMap() throws {
        let dir = TemporaryDirectory()
        var options = Store.Options()
        options.initialMapSize = 256 * 1024
        let store = try makeStore(dir, dimension: 64, options: options)
        defer { store.close() }
        let samples = randomSamples(count: 3000, dimension: 64, seed: 10, ids: Array(1...3000))
        try writeImportFiles(dir, samples: samples, dimension: 64)
        let result = try runCLI(["import", dir.file("store"), "--embeddings", dir.file("emb.npy"), "--ids", dir.file("ids.npy"), "--payloads", dir.file("payloads.jsonl")])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(try store.read(clearance: .all) { try $0.count() } == 3000)
        #expect(try store.read(clearance: .all) { try $0.sample(1234) }?.payload == samples[1233].payload)
        try store.write(clearance: .all) { tx in try tx.delete(1) }
        #expect(try store.read(clearance: .all) { try $0.count() } == 2999)
    }

    @Test("a read-only store refuses writes while other processes read and write")
    func readOnlyRefusesWrites() throws {
        let dir = TemporaryDirectory()
        try makeStore(dir).close()
        let reader = try Store(opening: dir.file("store"), options: .init(readOnly: true))
        defer { reader.close() }
        #expect(throws: StoreError.readOnly(path: dir.file("store"))) {
            try reader.write(clearance: .all) { tx in try tx.put(Sample(id: 1, embedding: Array(repeating: 0, count: 8))) }
        }
        let samples = randomSamples(count: 10, dimension: 8, seed: 12, ids: Array(1...10))
        try writeImportFiles(dir, samples: samples, dimension: 8)
        #expect(try runCLI(["import", dir.file("store"), "--embeddings", dir.file("emb.npy"), "--ids", dir.file("ids.npy")]).status == 0)
        #expect(try reader.read(clearance: .all) { try $0.count() } == 10)
    }

    @Test("two handles on one directory share one environment")
    func sharedEnvironment() throws {
        let dir = TemporaryDirectory()
        let first = try makeStore(dir)
        let second = try Store(opening: dir.file("store"))
        #expect(first.env === second.env)
        try first.write(clearance: .all) { tx in try tx.put(Sample(id: 5, embedding: Array(repeating: 1, count: 8))) }
        first.close()
        #expect(try second.read(clearance: .all) { try $0.contains(5) })
        second.close()
    }
}

/// A flag set once by one thread and read by another.
final class ManagedAtomicFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    func set() { lock.withLock { value = true } }
    var isSet: Bool { lock.withLock { value } }
}
