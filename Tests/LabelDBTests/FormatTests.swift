import Foundation
import Testing
@testable import LabelDB

/// Golden files: stores written by earlier format versions, kept in Tests/LabelDBTests/Fixtures.
@Suite("Format versions")
struct FormatTests {
    /// A copy of a fixture store in a fresh directory (tests must not change the fixture).
    func fixture(_ name: String) throws -> (TemporaryDirectory, String) {
        let source = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/\(name)/data.mdb")
        let dir = TemporaryDirectory("golden")
        try FileManager.default.createDirectory(atPath: dir.file("store"), withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: source.path, toPath: dir.file("store/data.mdb"))
        return (dir, dir.file("store"))
    }

    /// The samples the format-1 fixture was written with (see Fixtures/README.md).
    var goldenSamples: [Sample] {
        let ids: [UInt64] = [3, 1, 4, 15, 92]
        return ids.enumerated().map { i, id in
            Sample(id: id, embedding: (0..<4).map { Float(i * 4 + $0) / 8 },
                   metadata: ["n": .int(Int64(i)), "source": "golden"], payload: Array("payload \(i)".utf8))
        }.sorted { $0.id < $1.id }
    }

    @Test("R-4/R-5/R-7: a format-1 store opens read-only as is, and is migrated when opened for writing")
    func formatOneMigrates() throws {
        let (dir, path) = try fixture("format-v1")
        _ = dir
        let readOnly = try Store(opening: path, options: .init(readOnly: true))
        #expect(readOnly.formatVersion == 1)
        #expect(try readOnly.read(clearance: .all) { try $0.samples() } == goldenSamples)
        #expect(try readOnly.read(clearance: .all) { try $0.labelSets() }.isEmpty)
        #expect(try readOnly.read(clearance: .all) { try $0.verify() }.isClean)
        readOnly.close()

        let writable = try Store(opening: path)
        #expect(try writable.read(clearance: .all) { try $0.samples() } == goldenSamples)
        try writable.write(clearance: .all) { tx in try tx.importLabels(.hard([0, 1, 2, 0, 1]), ids: goldenSamples.map(\.id), into: "h", agent: "test") }
        writable.close()
        let reopened = try Store(opening: path, options: .init(readOnly: true))
        defer { reopened.close() }
        #expect(reopened.formatVersion == Store.currentFormatVersion)
        #expect(try reopened.read(clearance: .all) { try $0.label(of: 92, in: LabelSetReference(name: "h")) }?.hard == 1)
    }

    @Test("R-4: a store whose read version is newer than this code cannot be opened")
    func newerReadVersionRefused() throws {
        let dir = TemporaryDirectory()
        let store = try makeStore(dir)
        try store.write(clearance: .all) { tx in
            var record = SchemaRecord(writeVersion: 9, readVersion: 9, schema: store.schema)
            record.writeVersion = 9
            try tx.put(.meta, name: MetaKey.schema, bytes: record.encoded())
        }
        store.close()
        #expect(throws: StoreError.incompatibleFormat(path: dir.file("store"), readVersion: 9, writeVersion: 9, supported: Store.currentFormatVersion)) {
            _ = try Store(opening: dir.file("store"))
        }
    }

    @Test("R-5: a store whose write version is newer opens read-only")
    func newerWriteVersionReadOnly() throws {
        let dir = TemporaryDirectory()
        let store = try makeStore(dir)
        try store.write(clearance: .all) { tx in
            try tx.put(Sample(id: 1, embedding: Array(repeating: 0.5, count: 8)))
            let record = SchemaRecord(writeVersion: UInt16(Store.currentFormatVersion + 1), readVersion: 1, schema: store.schema)
            try tx.put(.meta, name: MetaKey.schema, bytes: record.encoded())
        }
        store.close()
        let reopened = try Store(opening: dir.file("store"))
        defer { reopened.close() }
        #expect(reopened.isReadOnly)
        #expect(try reopened.read(clearance: .all) { try $0.count() } == 1)
        #expect(throws: StoreError.readOnly(path: dir.file("store"))) { try reopened.write(clearance: .all) { _ in } }
    }

    @Test("R-6: a damaged schema record is reported, not trusted")
    func damagedSchema() throws {
        let dir = TemporaryDirectory()
        let store = try makeStore(dir)
        try store.write(clearance: .all) { tx in
            var bytes = SchemaRecord(writeVersion: 2, readVersion: 1, schema: store.schema).encoded()
            bytes[20] ^= 0x01
            try tx.put(.meta, name: MetaKey.schema, bytes: bytes)
        }
        store.close()
        #expect(throws: StoreError.self) { _ = try Store(opening: dir.file("store")) }
    }

    @Test("R-7/R-38: a format-4 store reads under clearances as written, and migrating records its partition count")
    func formatFourMigrates() throws {
        let (dir, path) = try fixture("format-v4")
        _ = dir
        let licensedClearance = Clearance(allowedSecrecy: .tags(["licensed:getty", "teacher-licence"]))
        func check(_ store: Store) throws {
            #expect(try store.read(clearance: .all) { try $0.ids() } == [1, 3, 4, 15, 65, 92])
            #expect(try store.read(clearance: .public) { try $0.ids() } == [1, 3, 4, 15])
            #expect(try store.read(clearance: licensedClearance) { try $0.count() } == 5)
            // teacher@2 relabelled 1 and 3 from a licensed source: the public reader keeps v1 (R-36).
            let teacher = LabelSetReference(name: "teacher")
            #expect(try store.read(clearance: .public) { try $0.label(of: 1, in: teacher)?.version } == 1)
            #expect(try store.read(clearance: licensedClearance) { try $0.label(of: 1, in: teacher)?.version } == 2)
            #expect(try store.read(clearance: .all) { try $0.projectors().map(\.name) } == ["p"])
            // A format-4 head has no taint label: it reads as public.
            #expect(try store.read(clearance: .public) { try $0.head(named: "zs") } == (0..<12).map { Float(Double($0) * 0.1) })
            #expect(try store.read(clearance: .all) { try $0.verify() }.isClean)
        }
        let readOnly = try Store(opening: path, options: .init(readOnly: true))
        #expect(readOnly.formatVersion == 4)
        try check(readOnly)
        readOnly.close()

        let writable = try Store(opening: path)
        try check(writable)
        #expect(try writable.read(clearance: .all) { try $0.recordedPartitionCount() } == 2)
        writable.close()
        let reopened = try Store(opening: path)
        defer { reopened.close() }
        #expect(reopened.formatVersion == Store.currentFormatVersion)
        try check(reopened)
        // The count follows later writes.
        try reopened.write(clearance: .all) { tx in try tx.relabel([4], TaintChange(addSecrecy: ["pii"]), agent: "t") }
        #expect(try reopened.read(clearance: .all) { try $0.recordedPartitionCount() } == 3)
        #expect(try reopened.read(clearance: .all) { try $0.verify() }.isClean)
    }

    /// The samples whose top-1 class in `set` (SET or SET@V) is `c`, ascending.
    static func top1(_ store: Store, _ set: String, _ c: Int, _ clearance: Clearance = .all) throws -> [UInt64] {
        try store.read(clearance: clearance) { try $0.samples(withTop1: c, in: LabelSetReference(parsing: set)) }
    }

    /// The answers Fixtures/README.md records for the format-5 and format-6 golden stores (the same
    /// content), from the binaries that wrote them.
    static func checkGoldenAnswers(_ store: Store) throws {
        #expect(try top1(store, "human", 2) == [4, 65, 92])
        #expect(try top1(store, "human@1", 2) == [4, 65])
        #expect(try top1(store, "human@1", 0) == [3])
        #expect(try top1(store, "teacher", 2) == [1, 3])
        #expect(try top1(store, "teacher", 2, .public).isEmpty)
        #expect(try top1(store, "teacher", 0, .public) == [3, 4])
        #expect(try top1(store, "compact", 1) == [3])
        #expect(try store.read(clearance: .all) { try $0.verify() }.isClean)
    }

    @Test("R-7: a format-5 store answers top-1 filters read-only by scanning, and migrating builds the class postings")
    func formatFiveMigrates() throws {
        let (dir, path) = try fixture("format-v5")
        _ = dir
        let check = Self.checkGoldenAnswers
        let readOnly = try Store(opening: path, options: .init(readOnly: true))
        #expect(readOnly.formatVersion == 5)
        #expect(try readOnly.read(clearance: .all) { try $0.packedLabels } == false)
        try check(readOnly)
        readOnly.close()

        let migrated = try Store(opening: path)
        #expect(migrated.formatVersion == Store.currentFormatVersion)
        let (built, index, postings) = try migrated.read(clearance: .all) { tx in
            (try tx.packedLabels, try tx.entries(.labelIndex) + tx.entries(.labels), try tx.entries(.labelPostings))
        }
        #expect(built && index == 0 && postings > 0)
        try check(migrated)
        // Postings follow later writes: a delete removes the sample's, an import adds its own.
        try migrated.write(clearance: .all) { tx in
            _ = try tx.delete([92])
            try tx.importLabels(.hard([0]), ids: [4], into: "human", agent: "t")
        }
        #expect(try Self.top1(migrated, "human", 2) == [65])
        #expect(try Self.top1(migrated, "human@2", 2) == [4, 65])
        #expect(try Self.top1(migrated, "human", 0) == [3, 4])
        #expect(try migrated.read(clearance: .all) { try $0.verify() }.isClean)
        migrated.close()
        let reopened = try Store(opening: path)
        defer { reopened.close() }
        #expect(reopened.formatVersion == Store.currentFormatVersion)
        #expect(try Self.top1(reopened, "human", 0) == [3, 4])
    }

    @Test("R-54: a format-6 store reads read-only, migrates to 7 recording fitted samples, and then drops as R-54 says")
    func formatSixMigrates() throws {
        let (dir, path) = try fixture("format-v6")
        _ = dir
        let check = Self.checkGoldenAnswers
        // Projector p's statuses and labels, for every sample, under two clearances.
        func regenerated(_ store: Store) throws -> [String] {
            try [Clearance.all, try Clearance(parsing: "secrecy=pii,licensed:getty;integrity=")].flatMap { clearance in
                try store.read(clearance: clearance) { tx in
                    try tx.regenerate(try tx.ids(), with: try tx.load(ProjectorReference(name: "p"))).map { "\($0.id) \($0.status) \($0.probabilities)" }
                }
            }
        }
        let readOnly = try Store(opening: path, options: .init(readOnly: true))
        #expect(readOnly.formatVersion == 6)
        try check(readOnly)
        let statuses = try regenerated(readOnly)
        #expect(statuses.contains { $0.contains("regenerated") || $0.contains("corrected") })
        readOnly.close()
        let before = fileBytes(path + "/data.mdb")

        let migrated = try Store(opening: path)
        defer { migrated.close() }
        #expect(migrated.formatVersion == Store.currentFormatVersion)
        try check(migrated)
        // The migration recorded p's fitted samples: reads give what format 6 gave, and keep
        // giving it once the source set is gone.
        #expect(try migrated.read(clearance: .all) { try $0.entries(.projectorFitted) } > 0)
        #expect(try regenerated(migrated) == statuses)
        // The migration rewrote the schema record.
        #expect(fileBytes(path + "/data.mdb") != before)
        // Dropping human@1: ids 4 and 92 were relabelled at 2 (their v1 rows go); the other four stay, read by human@2.
        let dropped = try migrated.write(clearance: .all) { try $0.dropLabelVersion("human", version: 1) }
        #expect(dropped.rows == 2)   // ids 4 and 92, which human@2 relabelled
        #expect(try Self.top1(migrated, "human", 2) == [4, 65, 92])
        #expect(try Self.top1(migrated, "human", 0) == [3])
        #expect(throws: LabelError.droppedVersion(set: "human", version: 1)) { try Self.top1(migrated, "human@1", 2) }
        try migrated.write(clearance: .all) { _ = try $0.dropLabelSet("teacher") }
        #expect(try regenerated(migrated) == statuses)
        #expect(try migrated.read(clearance: .all) { try $0.verify() }.isClean)
    }

    @Test("§10.7: a format-7 store reads read-only, migrates to 8 untouched, and then takes per-view sets")
    func formatSevenMigrates() throws {
        let (dir, path) = try fixture("format-v7")
        _ = dir
        // Every label of every set, as text, under two clearances.
        func everyLabel(_ store: Store) throws -> [String] {
            try [Clearance.all, .public].flatMap { clearance in
                try store.read(clearance: clearance) { tx in
                    try tx.labelSets().flatMap { set in
                        try (1...set.latest).flatMap { version in
                            var out: [String] = []
                            try tx.forEachLabel(in: LabelSetReference(name: set.name, version: version)) { id, label in
                                out.append("\(set.name)@\(version) \(id) \(label)")
                                return true
                            }
                            return out
                        }
                    }
                }
            }
        }
        let readOnly = try Store(opening: path, options: .init(readOnly: true))
        #expect(readOnly.formatVersion == 7)
        try Self.checkGoldenAnswers(readOnly)
        let labels = try everyLabel(readOnly)
        #expect(labels.count > 20)
        readOnly.close()

        let migrated = try Store(opening: path)
        defer { migrated.close() }
        #expect(migrated.formatVersion == 8)
        try Self.checkGoldenAnswers(migrated)
        #expect(try everyLabel(migrated) == labels)
        #expect(try migrated.read(clearance: .all) { try $0.labelSets() }.allSatisfy { !$0.perView })
        // A per-view set beside the migrated per-sample ones.
        let view = AugmentedView(view: 0, crop: [0, 0, 1, 1])
        try migrated.write(clearance: .all) { tx in _ = try tx.importLabels(.hard([2]), ids: [3], into: "views", views: [view], agent: "fkd") }
        #expect(try migrated.read(clearance: .all) { try $0.label(of: 3, in: LabelSetReference(name: "views")) }?.views?.map(\.parameters) == [view])
        #expect(try everyLabel(migrated).filter { !$0.hasPrefix("views@") } == labels)
        try Self.checkGoldenAnswers(migrated)   // verify included
        // The schema record now asks for a format-8 reader, which knows per-view rows.
        let schema = try migrated.read(clearance: .all) { tx in try tx.withValue(.meta, name: MetaKey.schema) { try SchemaRecord.decode($0!) } }
        #expect(schema.writeVersion == 8 && schema.readVersion == 8)
    }
}
