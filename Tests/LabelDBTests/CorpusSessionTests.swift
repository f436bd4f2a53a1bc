import Foundation
import Testing
@testable import LabelDB

/// Write sessions (corpus.md K-13): the corpus's one writer lets other processes or threads write
/// each shard's part of one write at once, and commits it in the manifest. A session's writes must
/// equal the writer's own, stay invisible until the commit, and be refused outside their session.
@Suite("Corpus write sessions")
struct CorpusSessionTests {
    /// The rows of `CorpusImportTests.setUp`'s `teacher` import, split by shard.
    static func teacherParts(_ dir: TemporaryDirectory, _ manifest: CorpusManifest) throws -> [(ids: [UInt64], values: LabelValues)] {
        let ids = try NumPyArray.read(dir.file("ids.npy")).ids(), soft = try NumPyArray.read(dir.file("soft.npy")).floats()
        return manifest.shards.indices.map { shard in
            let rows = ids.indices.filter { manifest.shard(of: ids[$0]) == shard }
            return (rows.map { ids[$0] }, LabelValues.soft(soft).rows(rows, classCount: 3))
        }
    }

    /// Shard `shard`'s part of the `teacher` import as `importArguments` gives it to the CLI.
    static func writeTeacherPart(_ dir: TemporaryDirectory, _ part: (ids: [UInt64], values: LabelValues), shard: Int, session: String,
                                 checkOnly: Bool = false) throws -> LabelSetVersion {
        try CorpusWriter.importLabels(part.values, ids: part.ids, into: "teacher", shard: shard, of: dir.file("corpus"), session: session,
                                      agent: "t3", source: TaintLabel(secrecy: ["licensed:getty"], integrity: []), clearance: .all, checkOnly: checkOnly)
    }

    static func query(_ dir: TemporaryDirectory) throws -> String {
        try CorpusReadTests.observe(["query", dir.file("corpus"), "id >= 0", "--labels", "teacher", "--format", "json", "--clearance", "all"], files: [])
    }

    static func dataFiles(_ dir: TemporaryDirectory, _ manifest: CorpusManifest) -> [Data] {
        manifest.shards.map { fileBytes(dir.file("corpus/\($0)/data.mdb")) } + [fileBytes(dir.file("corpus/corpus.json"))]
    }

    @Test("shard parts written at once on threads equal the writer's own import; nothing shows before the commit")
    func parallelPartsEqualTheWriters() throws {
        let dir = TemporaryDirectory("session-labels")
        try CorpusImportTests.setUp(dir)
        let manifest = try CorpusManifest.read(from: dir.file("corpus"))
        let parts = try Self.teacherParts(dir, manifest), before = try Self.query(dir), files = Self.dataFiles(dir, manifest)
        let writer = try CorpusWriter(opening: dir.file("corpus"))
        defer { writer.close() }
        let session = try writer.beginSession(labelSet: "teacher")
        #expect(session.version == 3 && session.generation == manifest.generation)
        // Every part checked at once writes nothing.
        _ = try Parallel.map(parts.count) { try Self.writeTeacherPart(dir, parts[$0], shard: $0, session: session.id, checkOnly: true) }
        #expect(Self.dataFiles(dir, manifest) == files)
        let written = try Parallel.map(parts.count) { try Self.writeTeacherPart(dir, parts[$0], shard: $0, session: session.id) }
        #expect(written.map(\.version) == [3, 3, 3] && written.map(\.rows) == parts.map(\.ids.count))
        #expect(try Self.query(dir) == before, "a session's writes are invisible before its commit")
        let committed = try writer.commitSession()
        #expect(committed.map(\.rows).reduce(0, +) == parts.map(\.ids.count).reduce(0, +))
        #expect(try CorpusManifest.read(from: dir.file("corpus")).labelSets["teacher"] == 3)
        #expect(!FileManager.default.fileExists(atPath: dir.file("corpus/" + CorpusWriteSession.fileName)))
        let store = try runCLI(CorpusImportTests.importArguments(dir.file("store"), dir)[0])
        #expect(store.status == 0, "\(store.stderr)")
        try CorpusImportTests.sameReads(dir, sets: ["teacher"])
        let log = try runCLI(["audit", dir.file("corpus"), "--verify-log", "--clearance", "all"])
        #expect(log.status == 0 && !log.stdout.contains("after the manifest"), "\(log.stdout)")
    }

    @Test("a shard write outside its open session, of the wrong kind, or with a row of another shard is refused and writes nothing")
    func refusals() throws {
        let dir = TemporaryDirectory("session-refusals")
        try CorpusImportTests.setUp(dir)
        let manifest = try CorpusManifest.read(from: dir.file("corpus"))
        let parts = try Self.teacherParts(dir, manifest)
        var files = Self.dataFiles(dir, manifest)
        func refused(_ expected: (CorpusError) -> Bool, _ write: () throws -> Void) {
            do {
                try write()
                Issue.record("the write was not refused")
            } catch let error as CorpusError {
                #expect(expected(error), "\(error)")
            } catch {
                Issue.record("unexpected \(error)")
            }
            #expect(Self.dataFiles(dir, manifest) == files, "a refused write wrote")
        }
        func noSession(_ error: CorpusError) -> Bool { if case .noSession = error { true } else { false } }
        let fake = String(repeating: "ab", count: 16)
        refused(noSession) { _ = try Self.writeTeacherPart(dir, parts[0], shard: 0, session: fake) }
        let writer = try CorpusWriter(opening: dir.file("corpus"))
        var session = try writer.beginSession(labelSet: "teacher")
        refused(noSession) { _ = try Self.writeTeacherPart(dir, parts[0], shard: 0, session: fake) }
        refused({ if case .wrongShard(_, 1, 0) = $0 { true } else { false } }) { _ = try Self.writeTeacherPart(dir, parts[0], shard: 1, session: session.id) }
        refused(noSession) {
            _ = try CorpusWriter.importLabels(parts[0].values, ids: parts[0].ids, into: "other", shard: 0, of: dir.file("corpus"), session: session.id,
                                              agent: "t3", clearance: .all)
        }
        refused(noSession) {
            _ = try CorpusWriter.importSamples(SampleBatch(randomSamples(count: 1, dimension: 4, seed: 1, ids: [parts[0].ids[0]])), shard: 0,
                                               of: dir.file("corpus"), session: session.id, mode: .replace, clearance: .all)
        }
        // A commit with a shard's part missing is refused: the manifest does not move.
        _ = try Self.writeTeacherPart(dir, parts[0], shard: 0, session: session.id)
        files = Self.dataFiles(dir, manifest)
        #expect(throws: CorpusError.self) { try writer.commitSession() }
        #expect(try CorpusManifest.read(from: dir.file("corpus")).generation == manifest.generation)
        writer.abandonSession()
        refused(noSession) { _ = try Self.writeTeacherPart(dir, parts[1], shard: 1, session: session.id) }
        // A session whose writer died: the file is back, but nothing holds the lock.
        session = try writer.beginSession(labelSet: "teacher")
        let sessionFile = fileBytes(dir.file("corpus/" + CorpusWriteSession.fileName))
        writer.close()
        try sessionFile.write(to: URL(fileURLWithPath: dir.file("corpus/" + CorpusWriteSession.fileName)))
        refused({ if case .noSession(let why) = $0 { why.contains("gone") } else { false } }) {
            _ = try Self.writeTeacherPart(dir, parts[1], shard: 1, session: session.id)
        }
        // The next writer removes the dead session's file; the orphaned part of shard 0 stays
        // invisible and the next import replaces it.
        let next = try CorpusWriter(opening: dir.file("corpus"))
        #expect(!FileManager.default.fileExists(atPath: dir.file("corpus/" + CorpusWriteSession.fileName)))
        next.close()
        try CorpusImportTests.importIntoBoth(dir)
        try CorpusImportTests.sameReads(dir, sets: ["teacher", "fresh"])
    }

    @Test("a manifest written since the session began ends it: its shard writes and its commit are refused, and nothing is written")
    func staleGeneration() throws {
        let dir = TemporaryDirectory("session-generation")
        try CorpusImportTests.setUp(dir)
        let manifest = try CorpusManifest.read(from: dir.file("corpus"))
        let parts = try Self.teacherParts(dir, manifest)
        let writer = try CorpusWriter(opening: dir.file("corpus"))
        defer { writer.close() }
        let session = try writer.beginSession(labelSet: "teacher")
        _ = try Self.writeTeacherPart(dir, parts[0], shard: 0, session: session.id)
        try writer.commit(writer.manifest)
        let files = Self.dataFiles(dir, writer.manifest)
        #expect { try Self.writeTeacherPart(dir, parts[2], shard: 2, session: session.id) } throws: { error in
            if case CorpusError.noSession(let why) = error { why.contains("generation") } else { false }
        }
        #expect(Self.dataFiles(dir, writer.manifest) == files)
        #expect { try writer.commitSession() } throws: { error in
            if case CorpusError.noSession(let why) = error { why.contains("moved past generation") } else { false }
        }
        #expect(try CorpusManifest.read(from: dir.file("corpus")).labelSets["teacher"] == 2)
    }

    @Test("a part a late write of an abandoned session left does not count for the next session; the writer's own writes wait for the session")
    func lateWriteOfAnAbandonedSession() throws {
        let dir = TemporaryDirectory("session-late")
        try CorpusImportTests.setUp(dir)
        let manifest = try CorpusManifest.read(from: dir.file("corpus"))
        let parts = try Self.teacherParts(dir, manifest)
        let writer = try CorpusWriter(opening: dir.file("corpus"))
        defer { writer.close() }
        let first = try writer.beginSession(labelSet: "teacher")
        writer.abandonSession()
        let second = try writer.beginSession(labelSet: "teacher")
        #expect(first.version == second.version && first.id != second.id)
        // A write of the first session that passed its checks before the abandon and commits
        // after the second began: its record names the first session.
        let shard = try Store(opening: dir.file("corpus/" + manifest.shards[0]))
        try shard.write(clearance: .all) { tx in
            var record = ProvenanceRecord(activity: "label import", agent: "t3")
            record.parameters[CorpusWriter.sessionParameter] = first.id
            let request = LabelPartRequest(name: "teacher", version: 3, codec: nil, agent: "t3", source: .public, privileges: [], normalize: false,
                                           provenance: record, now: Date())
            _ = try request.write(parts[0].values, ids: parts[0].ids, views: nil, in: tx)
        }
        shard.close()
        for index in [1, 2] { _ = try Self.writeTeacherPart(dir, parts[index], shard: index, session: second.id) }
        #expect { try writer.commitSession() } throws: { error in
            if case CorpusError.noSession(let why) = error { why.contains("shard 0") } else { false }
        }
        #expect { try writer.importLabels(parts[0].values, ids: parts[0].ids, into: "teacher", agent: "t3", clearance: .all) } throws: { error in
            if case CorpusError.noSession(let why) = error { why.contains("is open on this writer") } else { false }
        }
        // Shard 0 written in the second session: the commit goes through.
        _ = try Self.writeTeacherPart(dir, parts[0], shard: 0, session: second.id)
        #expect(try writer.commitSession().count == 3)
        #expect(try CorpusManifest.read(from: dir.file("corpus")).labelSets["teacher"] == 3)
    }

    @Test("sample parts written at once in a session equal the writer's own sample import")
    func parallelSampleParts() throws {
        let dir = TemporaryDirectory("session-samples")
        let schema = try Schema(dimension: 4, classes: ["cat", "dog", "bird"])
        for name in ["a", "b"] { try CorpusManifest.create(at: dir.file(name), schema: schema, shards: 3) }
        let samples = randomSamples(count: 200, dimension: 4, seed: 31, ids: (0..<200).map { UInt64($0) * 977 + 5 })
        let manifest = try CorpusManifest.read(from: dir.file("a"))
        let whole = try CorpusWriter(opening: dir.file("a"))
        try whole.importSamples(SampleBatch(samples), mode: .insert, clearance: .all)
        whole.close()
        let writer = try CorpusWriter(opening: dir.file("b"))
        let session = try writer.beginSession()
        let summaries = try Parallel.map(3) { shard in
            try CorpusWriter.importSamples(SampleBatch(samples.filter { manifest.shard(of: $0.id) == shard }), shard: shard, of: dir.file("b"),
                                           session: session.id, mode: .insert, clearance: .all)
        }
        #expect(summaries.map(\.inserted).reduce(0, +) == 200)
        #expect(try writer.commitSession().isEmpty)
        writer.close()
        #expect(try CorpusManifest.read(from: dir.file("b")).generation == 2)
        for name in manifest.shards {
            let a = try Store(opening: dir.file("a/" + name), options: Store.Options(readOnly: true))
            let b = try Store(opening: dir.file("b/" + name), options: Store.Options(readOnly: true))
            #expect(try ShardTests.contents(a) == ShardTests.contents(b))
            a.close()
            b.close()
        }
    }
}
