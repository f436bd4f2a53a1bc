import Foundation
import Testing
@testable import LabelDB

@Suite("Provenance log")
struct ProvenanceTests {
    /// A store with three writes: an import described by the caller, a label import, a plain put.
    func prepared() throws -> (TemporaryDirectory, Store) {
        let dir = TemporaryDirectory()
        let store = try makeStore(dir)
        try "embeddings".write(toFile: dir.file("x.bin"), atomically: false, encoding: .utf8)
        try store.write(clearance: .all) { tx in
            try tx.put(SampleBatch(randomSamples(count: 10, dimension: 8, seed: 1, ids: Array(1...10))))
            tx.describe(ProvenanceRecord(activity: "import", agent: "alice", used: [try .file(dir.file("x.bin"), rows: 10)]))
        }
        try store.write(clearance: .all) { tx in try tx.importLabels(.hard(Array(repeating: 1, count: 10)), ids: Array(1...10), into: "h", agent: "teamA") }
        try store.write(clearance: .all) { tx in try tx.put(Sample(id: 11, embedding: Array(repeating: 0, count: 8))) }
        return (dir, store)
    }

    @Test("every write appends a record; samples and label versions point to theirs")
    func recordsAndPointers() throws {
        let (dir, store) = try prepared()
        _ = dir
        defer { store.close() }
        let records = try store.read(clearance: .all) { try $0.provenanceRecords() }
        #expect(records.map(\.id) == [1, 2, 3])
        #expect(records.map(\.record.activity) == ["import", "write", "write"])
        #expect(records[0].record.agent == "alice")
        #expect(records[0].record.used.first?.hash == Checksum.xxh3_128Hex(Array("embeddings".utf8)))
        #expect(records[1].record.parameters["label_rows_written"] == "10")
        #expect(try store.read(clearance: .all) { try $0.withSample(3) { $0.provenance } } == 1)
        #expect(try store.read(clearance: .all) { try $0.withSample(11) { $0.provenance } } == 3)
        #expect(try store.read(clearance: .all) { try $0.labelSet(named: "h") }?.versions.first?.provenance == 2)
        // A write that changes nothing leaves no record.
        try store.write(clearance: .all) { _ in }
        #expect(try store.read(clearance: .all) { try $0.provenanceRecords() }.count == 3)
        let report = try store.read(clearance: .all) { try $0.verifyProvenanceLog() }
        #expect(report.firstBad == nil && report.records == 3 && report.head.count == 32)
    }

    @Test("the hash chain catches an edited, a re-hashed, a deleted and a reordered record")
    func chainCatchesTampering() throws {
        for attack in ["edit", "edit-valid-json", "rehash", "delete", "swap"] {
            let (dir, store) = try prepared()
            _ = dir
            let entries = try store.read(clearance: .all) { tx in try (1...3).map { id in try tx.withValue(.provenance, key: UInt64(id)) { Array($0!) } } }
            try store.write(clearance: .all) { tx in
                switch attack {
                case "edit":
                    var bytes = entries[1]
                    bytes[bytes.count - 3] ^= 0x01
                    try tx.put(.provenance, key: BigEndianKey.u64(2), bytes: bytes)
                case "edit-valid-json":
                    // The JSON stays valid and the own hash is left as it was: only that hash can tell.
                    var bytes = entries[1]
                    let range = try #require(Data(bytes).range(of: Data("\"library\"".utf8)))
                    bytes.replaceSubrange(range, with: Array("\"LIBRARY\"".utf8))
                    try tx.put(.provenance, key: BigEndianKey.u64(2), bytes: bytes)
                case "rehash":
                    // A careful forger recomputes the record's own hash; the next record still names the old one.
                    // (The edit keeps the JSON valid: the agent "library" becomes "LIBRARY".)
                    var body = Array(entries[1][16...])
                    let range = try #require(Data(body).range(of: Data("\"library\"".utf8)))
                    body.replaceSubrange(range, with: Array("\"LIBRARY\"".utf8))
                    try tx.put(.provenance, key: BigEndianKey.u64(2), bytes: Checksum.xxh3_128(body) + body)
                case "delete":
                    try tx.delete(.provenance, key: UInt64(2))
                default:
                    try tx.put(.provenance, key: BigEndianKey.u64(2), bytes: entries[2])
                    try tx.put(.provenance, key: BigEndianKey.u64(3), bytes: entries[1])
                }
                tx.changeSummary = [:]   // the tampering itself must not append a record
            }
            let report = try store.read(clearance: .all) { try $0.verifyProvenanceLog() }
            let expectedBad: UInt64 = attack == "rehash" ? 3 : 2
            #expect(report.firstBad?.id == expectedBad, "\(attack): \(String(describing: report.firstBad))")
            // `verify` reports the same record.
            let verified = try store.read(clearance: .all) { try $0.verify() }
            #expect(verified.problems.map(\.table) == ["provenance"] && verified.problems.first?.key == "\(expectedBad)")
            if attack == "edit" {
                #expect(throws: StoreError.self) { _ = try store.read(clearance: .all) { try $0.provenanceRecord(2) } }
                // Samples and labels still read.
                #expect(try store.read(clearance: .all) { try $0.sample(1) } != nil)
            }
            store.close()
        }
    }

    @Test("audit explains a sample's labels back to the input files; PROV-JSON export has the PROV structure")
    func auditAndExport() throws {
        let dir = TemporaryDirectory("audit")
        try "a\nb\nc\n".write(toFile: dir.file("classes.txt"), atomically: false, encoding: .utf8)
        let store = dir.file("store")
        #expect(try runCLI(["init", store, "--dim", "8", "--classes", dir.file("classes.txt")]).status == 0)
        let samples = randomSamples(count: 6, dimension: 8, seed: 4, ids: Array(1...6))
        try writeImportFiles(dir, samples: samples, dimension: 8)
        #expect(try runCLI(["import", store, "--embeddings", dir.file("emb.npy"), "--ids", dir.file("ids.npy"), "--agent", "alice"]).status == 0)
        try NumPyArray.write([Int32]([0, 1, 2, 0, 1, 2]), shape: [6], to: dir.file("h.npy"))
        #expect(try runCLI(["labels", "import", store, "humans", "--hard", dir.file("h.npy"), "--agent", "teamA"]).status == 0)

        let audit = try JSONValue.parse(try runCLI(["audit", store, "2", "--format", "json"]).stdout)
        #expect(audit["sample_lineage"]?.arrayValue?.first?["agent"] == .string("alice"))
        let labelLineage = try #require(audit["labels"]?["humans"]?["lineage"]?.arrayValue)
        #expect(labelLineage.first?["activity"] == .string("label import"))
        #expect(labelLineage.first?["used"]?.arrayValue?.first?["xxh3_128"]?.stringValue?.count == 32)
        #expect(audit["labels"]?["humans"]?["top"]?.arrayValue?.first?["name"] == .string("b"))

        let verify = try runCLI(["audit", store, "--verify-log", "--format", "json"])
        #expect(verify.status == 0)
        #expect(try JSONValue.parse(verify.stdout)["records"] == .int(2))

        #expect(try runCLI(["provenance", "export", store, "--out", dir.file("prov.json")]).status == 0)
        let prov = try JSONValue.parse(Array(FileManager.default.contents(atPath: dir.file("prov.json"))!))
        for key in ["prefix", "entity", "activity", "agent", "used", "wasGeneratedBy", "wasAssociatedWith"] {
            #expect(prov[key]?.objectValue != nil, "missing \(key)")
        }
        let entities = Set(prov["entity"]?.objectValue?.keys.map { $0 } ?? [])
        let activities = Set(prov["activity"]?.objectValue?.keys.map { $0 } ?? [])
        let agents = Set(prov["agent"]?.objectValue?.keys.map { $0 } ?? [])
        #expect(activities.count == 2)
        for relation in prov["used"]?.objectValue?.values.map({ $0 }) ?? [] {
            #expect(activities.contains(relation["prov:activity"]?.stringValue ?? "") && entities.contains(relation["prov:entity"]?.stringValue ?? ""))
        }
        for relation in prov["wasGeneratedBy"]?.objectValue?.values.map({ $0 }) ?? [] {
            #expect(activities.contains(relation["prov:activity"]?.stringValue ?? "") && entities.contains(relation["prov:entity"]?.stringValue ?? ""))
        }
        for relation in prov["wasAssociatedWith"]?.objectValue?.values.map({ $0 }) ?? [] {
            #expect(activities.contains(relation["prov:activity"]?.stringValue ?? "") && agents.contains(relation["prov:agent"]?.stringValue ?? ""))
        }
    }
}
