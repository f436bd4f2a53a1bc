import Foundation
import Testing
@testable import LabelDB

@Suite("Durability and corruption")
struct DurabilityTests {
    @Test("imports killed with SIGKILL at random moments are all or nothing; reported ones survive")
    func crashDuringImports() throws {
        let dir = TemporaryDirectory("crash")
        try makeStore(dir, dimension: 32).close()
        let store = dir.file("store")
        let rowsPerImport = 6000
        var rng = SeededGenerator(seed: 2026)
        var reported: [ClosedRange<UInt64>] = []
        var interrupted: [ClosedRange<UInt64>] = []
        var kills = 0
        // The same files serve every import; only the ids change.
        try NumPyArray.write((0..<rowsPerImport * 32).map { Float($0 % 97) / 97 }, shape: [rowsPerImport, 32], to: dir.file("emb.npy"))
        try String(repeating: "{\"text\":\"payload bytes for the crash test, long enough to matter............\"}\n", count: rowsPerImport)
            .write(toFile: dir.file("p.jsonl"), atomically: false, encoding: .utf8)
        var nextBase: UInt64 = 1
        for _ in 0..<12 {
            let deadline = Date().addingTimeInterval(Double.random(in: 0.02...0.6, using: &rng))
            var killed = false
            while !killed {
                let range = nextBase...(nextBase + UInt64(rowsPerImport) - 1)
                nextBase += 1_000_000
                try NumPyArray.write(Array(range), to: dir.file("ids.npy"))
                let process = Process()
                process.executableURL = URL(fileURLWithPath: labeldbBinary)
                process.arguments = ["import", store, "--embeddings", dir.file("emb.npy"), "--ids", dir.file("ids.npy"), "--payloads", dir.file("p.jsonl"), "--quiet"]
                process.standardOutput = FileHandle.nullDevice
                process.standardError = FileHandle.nullDevice
                try process.run()
                while process.isRunning && Date() < deadline { usleep(1000) }
                if process.isRunning {
                    kill(process.processIdentifier, SIGKILL)
                    process.waitUntilExit()
                    interrupted.append(range)
                    killed = true
                    kills += 1
                } else {
                    #expect(process.terminationStatus == 0)
                    reported.append(range)
                }
            }
            // After each kill, the store opens, verifies, and holds exactly what was reported
            // plus, possibly, the interrupted import in full (it may have committed just before the kill).
            let reopened = try Store(opening: store)
            try reopened.read(clearance: .all) { tx in
                #expect(try tx.verify().isClean)
                for range in reported {
                    #expect(try tx.contains(range.lowerBound) && tx.contains(range.upperBound))
                }
                var expected = reported.count * rowsPerImport
                for range in interrupted {
                    let first = try tx.contains(range.lowerBound), last = try tx.contains(range.upperBound)
                    #expect(first == last, "a partially committed import")
                    if first { expected += rowsPerImport }
                }
                #expect(try tx.count() == expected)
            }
            reopened.close()
        }
        #expect(kills == 12)
    }

    /// Finds `needle` in the store's data file and flips one byte of it.
    func flipByte(of needle: [UInt8], in store: String) throws {
        let path = store + "/data.mdb"
        var data = fileBytes(path)
        let range = try #require(data.range(of: Data(needle)))
        data[range.lowerBound + needle.count / 2] ^= 0x5A
        try data.write(to: URL(fileURLWithPath: path))
    }

    @Test("a flipped byte in a payload or an embedding is reported by get and verify")
    func flippedBytes() throws {
        let dir = TemporaryDirectory()
        var samples = randomSamples(count: 50, dimension: 8, seed: 21, ids: Array(1...50))
        samples[9].payload = Array("a payload that is easy to find in the data file".utf8)
        samples[19].embedding = [1.5, 2.5, 3.5, 4.5, 5.5, 6.5, 7.5, 8.5]
        let store = try makeStore(dir)
        try store.write(clearance: .all) { tx in try tx.put(SampleBatch(samples)) }
        store.close()

        try flipByte(of: samples[9].payload, in: dir.file("store"))
        let embeddingBytes = samples[19].embedding.withUnsafeBytes { Array($0) }
        try flipByte(of: embeddingBytes, in: dir.file("store"))

        let damaged = try Store(opening: dir.file("store"))
        defer { damaged.close() }
        #expect {
            try damaged.read(clearance: .all) { try $0.sample(10) }
        } throws: { error in
            guard case StoreError.checksumMismatch(_, "samples", "10", _, _) = error else { return false }
            return true
        }
        #expect {
            try damaged.read(clearance: .all) { try $0.sample(20) }
        } throws: { error in
            guard case StoreError.checksumMismatch(_, "embeddings", let key, _, _) = error else { return false }
            return key.contains("sample 20")
        }
        #expect(try damaged.read(clearance: .all) { try $0.sample(11) } == samples[10])
        let report = try damaged.read(clearance: .all) { try $0.verify() }
        #expect(report.problems.count == 2, "\(report.problems)")
        #expect(report.problems.contains { $0.table == "samples" && $0.key == "10" })
        #expect(report.problems.contains { $0.table == "embeddings" && $0.key.contains("sample 20") })

        let cli = try runCLI(["verify", dir.file("store")])
        #expect(cli.status == 1)
        #expect(cli.stdout.contains("key 10"))
        #expect(try runCLI(["get", dir.file("store"), "10"]).status == 3)
    }

    @Test("random damage across the whole data file never crashes verify")
    func randomDamageNeverCrashes() throws {
        // Flipping bytes inside values only (LMDB trusts its own page structure, which a
        // checksum cannot protect): every value byte of payloads, metadata and blocks.
        let dir = TemporaryDirectory()
        let samples = randomSamples(count: 200, dimension: 16, seed: 31)
        let store = try makeStore(dir, dimension: 16)
        try store.write(clearance: .all) { tx in try tx.put(SampleBatch(samples)) }
        store.close()
        var rng = SeededGenerator(seed: 77)
        let original = fileBytes(dir.file("store") + "/data.mdb")
        for _ in 0..<10 {
            let victim = samples.randomElement(using: &rng)!
            var data = original
            let needle = victim.embedding.withUnsafeBytes { Data($0) }
            guard let range = data.range(of: needle) else { continue }
            let offset = range.lowerBound + Int.random(in: 0..<needle.count, using: &rng)
            data[offset] ^= UInt8.random(in: 1...255, using: &rng)
            try data.write(to: URL(fileURLWithPath: dir.file("store") + "/data.mdb"))
            let s = try Store(opening: dir.file("store"))
            let report = try s.read(clearance: .all) { try $0.verify() }
            #expect(report.problems.count == 1)
            s.close()
        }
    }
}
