import Foundation
import Testing
@testable import LabelDB

/// The CLI contract of the store issue: commands, JSON keys, exit codes, and bad input.
@Suite("CLI")
struct CLITests {
    /// A store at `dir/store` (8-d, classes a/b/c) holding 20 samples with ids 100…119.
    func prepared() throws -> (TemporaryDirectory, String, [Sample]) {
        let dir = TemporaryDirectory("cli")
        try "a\nb\nc\n".write(toFile: dir.file("classes.txt"), atomically: false, encoding: .utf8)
        let store = dir.file("store")
        #expect(try runCLI(["init", store, "--dim", "8", "--classes", dir.file("classes.txt")]).status == 0)
        let samples = randomSamples(count: 20, dimension: 8, seed: 11, ids: Array(100..<120))
        try writeImportFiles(dir, samples: samples, dimension: 8)
        let result = try runCLI(["import", store, "--embeddings", dir.file("emb.npy"), "--ids", dir.file("ids.npy"),
                                 "--meta", dir.file("meta.jsonl"), "--payloads", dir.file("payloads.jsonl"), "--quiet"])
        #expect(result.status == 0, "\(result.stderr)")
        return (dir, store, samples)
    }

    @Test("import, get --format json, info --format json, export round-trip the data")
    func roundTrip() throws {
        let (dir, store, samples) = try prepared()
        let get = try runCLI(["get", store, "105", "--format", "json"])
        #expect(get.status == 0)
        let object = try JSONValue.parse(get.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
        #expect(object["id"] == .int(105))
        #expect(object["metadata"] == .object(samples[5].metadata))
        #expect(object["payload_bytes"] == .int(Int64(samples[5].payload.count)))
        let embedding = try #require(object["embedding"].flatMap { if case .array(let a) = $0 { a } else { nil } })
        #expect(embedding.compactMap { $0.doubleValue.map(Float.init) } == samples[5].embedding)

        let info = try JSONValue.parse(try runCLI(["info", store, "--format", "json"]).stdout)
        #expect(info["count"] == .int(20))
        #expect(info["dim"] == .int(8))
        #expect(info["classes"] == .array(["a", "b", "c"]))
        #expect(info["format_version"] == .int(Int64(Store.currentFormatVersion)))
        #expect((info["bytes_on_disk"]?.doubleValue ?? 0) > 0)

        let export = try runCLI(["export", store, "--embeddings-out", dir.file("out.npy"), "--ids-out", dir.file("out-ids.npy"),
                                 "--meta-out", dir.file("out.jsonl"), "--payloads-out", dir.file("out-p.jsonl")])
        #expect(export.status == 0)
        #expect(try NumPyArray.read(dir.file("out-ids.npy")).ids() == Array(100..<120))
        #expect(try NumPyArray.read(dir.file("out.npy")).floats() == samples.flatMap(\.embedding))
        #expect(try JSONLines.readObjects(dir.file("out.jsonl")) == samples.map(\.metadata))
        #expect(try JSONLines.readPayloads(dir.file("out-p.jsonl")) == samples.map(\.payload))
    }

    @Test("without --ids, ids continue from the largest stored id")
    func automaticIDs() throws {
        let (dir, store, _) = try prepared()
        try NumPyArray.write([Float](repeating: 0.25, count: 16), shape: [2, 8], to: dir.file("two.npy"))
        #expect(try runCLI(["import", store, "--embeddings", dir.file("two.npy")]).status == 0)
        #expect(try runCLI(["get", store, "120"]).status == 0)
        #expect(try runCLI(["get", store, "121"]).status == 0)
        #expect(try runCLI(["get", store, "122"]).status == 1)
    }

    @Test("payload lines may be text, base64 or a path relative to the JSONL file")
    func payloadKinds() throws {
        let (dir, store, _) = try prepared()
        try Data([1, 2, 3, 250]).write(to: URL(fileURLWithPath: dir.file("blob.bin")))
        try "{\"text\":\"héllo\"}\n{\"base64\":\"AAEC\"}\n{\"path\":\"blob.bin\"}\n".write(toFile: dir.file("p.jsonl"), atomically: false, encoding: .utf8)
        try NumPyArray.write([Float](repeating: 1, count: 24), shape: [3, 8], to: dir.file("three.npy"))
        try NumPyArray.write([UInt64]([1, 2, 3]), to: dir.file("three-ids.npy"))
        #expect(try runCLI(["import", store, "--embeddings", dir.file("three.npy"), "--ids", dir.file("three-ids.npy"), "--payloads", dir.file("p.jsonl")]).status == 0)
        let s = try Store(opening: store, options: .init(readOnly: true))
        defer { s.close() }
        #expect(try s.read(clearance: .all) { try $0.sample(1) }?.payload == Array("héllo".utf8))
        #expect(try s.read(clearance: .all) { try $0.sample(2) }?.payload == [0, 1, 2])
        #expect(try s.read(clearance: .all) { try $0.sample(3) }?.payload == [1, 2, 3, 250])
    }

    /// Each case: the arguments after `import STORE`, the files to write first, the expected
    /// exit code and a fragment the error must contain. The store must be byte-for-byte unchanged.
    @Test("bad input is refused with a clear error and leaves the store exactly as it was")
    func badImports() throws {
        let (dir, store, samples) = try prepared()
        let before = fileBytes(store + "/data.mdb")
        let rows3 = [Float](repeating: 0.5, count: 24)
        try NumPyArray.write(rows3, shape: [3, 8], to: dir.file("ok3.npy"))
        try NumPyArray.write([Float](repeating: 0.5, count: 27), shape: [3, 9], to: dir.file("dim9.npy"))
        try NumPyArray.write(rows3, shape: [24], to: dir.file("rank1.npy"))
        var nan = rows3; nan[13] = .nan
        try NumPyArray.write(nan, shape: [3, 8], to: dir.file("nan.npy"))
        var inf = rows3; inf[20] = -.infinity
        try NumPyArray.write(inf, shape: [3, 8], to: dir.file("inf.npy"))
        try Data("not numpy at all".utf8).write(to: URL(fileURLWithPath: dir.file("magic.npy")))
        let good = fileBytes(dir.file("ok3.npy"))
        try good.prefix(good.count - 10).write(to: URL(fileURLWithPath: dir.file("truncated.npy")))
        var bigEndian = good
        bigEndian.replaceSubrange(bigEndian.range(of: Data("<f4".utf8))!, with: Data(">f4".utf8))
        try bigEndian.write(to: URL(fileURLWithPath: dir.file("bigendian.npy")))
        try [Int32](repeating: 1, count: 24).withUnsafeBytes { try NumPyArray.write(dtype: .int32, shape: [3, 8], data: $0, to: dir.file("ints.npy")) }
        try NumPyArray.write([UInt64]([1, 2]), to: dir.file("ids2.npy"))
        try NumPyArray.write([UInt64]([7, 8, 7]), to: dir.file("dupids.npy"))
        try NumPyArray.write([UInt64]([1, 2, 105]), to: dir.file("existing.npy"))
        try NumPyArray.write([UInt64]([1, 2, 3]), to: dir.file("ids3.npy"))
        try "{\"a\":1}\n{\"a\":2}\n".write(toFile: dir.file("meta2.jsonl"), atomically: false, encoding: .utf8)
        try "{\"a\":1}\n{\"a\": oops}\n{\"a\":3}\n".write(toFile: dir.file("badjson.jsonl"), atomically: false, encoding: .utf8)
        try "{\"a\":1}\n[1,2]\n{\"a\":3}\n".write(toFile: dir.file("notobject.jsonl"), atomically: false, encoding: .utf8)
        try "{\"text\":\"x\"}\n{\"base64\":\"***\"}\n{\"text\":\"z\"}\n".write(toFile: dir.file("badpayload.jsonl"), atomically: false, encoding: .utf8)
        try "{\"text\":\"x\"}\n{\"path\":\"missing.bin\"}\n{\"text\":\"z\"}\n".write(toFile: dir.file("missingpath.jsonl"), atomically: false, encoding: .utf8)

        let cases: [(args: [String], status: Int32, fragment: String)] = [
            (["--embeddings", dir.file("dim9.npy")], 2, "dimension is 8"),
            (["--embeddings", dir.file("rank1.npy")], 2, "2-D"),
            (["--embeddings", dir.file("nan.npy")], 2, "row 1, column 5: NaN"),
            (["--embeddings", dir.file("inf.npy")], 2, "row 2, column 4"),
            (["--embeddings", dir.file("magic.npy")], 2, "bad magic"),
            (["--embeddings", dir.file("truncated.npy")], 2, "truncated"),
            (["--embeddings", dir.file("bigendian.npy")], 2, "big-endian"),
            (["--embeddings", dir.file("ints.npy")], 2, "not supported for embeddings"),
            (["--embeddings", dir.file("missing.npy")], 2, "cannot open"),
            (["--embeddings", dir.file("ok3.npy"), "--ids", dir.file("ids2.npy")], 2, "2 ids for 3 embedding rows"),
            (["--embeddings", dir.file("ok3.npy"), "--ids", dir.file("dupids.npy")], 2, "id 7 appears more than once"),
            (["--embeddings", dir.file("ok3.npy"), "--ids", dir.file("existing.npy")], 2, "id 105 is already in the store"),
            (["--embeddings", dir.file("ok3.npy"), "--ids", dir.file("ids3.npy"), "--meta", dir.file("meta2.jsonl")], 2, "2 lines for 3 embedding rows"),
            (["--embeddings", dir.file("ok3.npy"), "--ids", dir.file("ids3.npy"), "--meta", dir.file("badjson.jsonl")], 2, "line 2: invalid JSON"),
            (["--embeddings", dir.file("ok3.npy"), "--ids", dir.file("ids3.npy"), "--meta", dir.file("notobject.jsonl")], 2, "line 2: not a JSON object"),
            (["--embeddings", dir.file("ok3.npy"), "--ids", dir.file("ids3.npy"), "--payloads", dir.file("badpayload.jsonl")], 2, "line 2: invalid base64"),
            (["--embeddings", dir.file("ok3.npy"), "--ids", dir.file("ids3.npy"), "--payloads", dir.file("missingpath.jsonl")], 2, "line 2: cannot read payload file"),
        ]
        for (args, status, fragment) in cases {
            let result = try runCLI(["import", store] + args)
            #expect(result.status == status, "\(args): \(result.stderr)")
            #expect(result.stderr.contains(fragment), "\(args): expected '\(fragment)' in: \(result.stderr)")
            #expect(fileBytes(store + "/data.mdb") == before, "\(args) changed the store")
        }
        // The store still holds exactly the original samples.
        let s = try Store(opening: store, options: .init(readOnly: true))
        defer { s.close() }
        #expect(try s.read(clearance: .all) { try $0.samples() } == samples)
    }

    @Test("missing, non-store and truncated stores, unknown ids, and usage errors get their exit codes")
    func otherErrors() throws {
        let (dir, store, _) = try prepared()
        #expect(try runCLI(["get", dir.file("nowhere"), "1"]).status == 3)
        #expect(try runCLI(["info", dir.path]).status == 3)
        let notFound = try runCLI(["get", store, "99999"])
        #expect(notFound.status == 1)
        #expect(notFound.stderr.contains("sample 99999 not found"))
        #expect(try runCLI(["get", store]).status == 2)
        #expect(try runCLI(["frobnicate"]).status == 2)
        #expect(try runCLI(["init", store, "--dim", "8", "--classes", dir.file("classes.txt")]).status == 2)
        #expect(try runCLI(["init", dir.file("s2"), "--dim", "0", "--classes", dir.file("classes.txt")]).status == 2)
        #expect(try runCLI(["--help"]).status == 0)

        try NumPyArray.write([UInt64]([100, 5555]), to: dir.file("del.npy"))
        let before = fileBytes(store + "/data.mdb")
        let refused = try runCLI(["delete", store, "--ids", dir.file("del.npy")])
        #expect(refused.status == 1)
        #expect(fileBytes(store + "/data.mdb") == before)
        #expect(try runCLI(["delete", store, "--ids", dir.file("del.npy"), "--missing-ok"]).status == 0)
        #expect(try runCLI(["get", store, "100"]).status == 1)

        // A truncated data file is an error, not a crash (LMDB would fault on the missing pages).
        let data = fileBytes(store + "/data.mdb")
        try data.prefix(data.count / 2).write(to: URL(fileURLWithPath: store + "/data.mdb"))
        let truncated = try runCLI(["verify", store])
        #expect(truncated.status == 3)
        #expect(truncated.stderr.contains("truncated"))
    }

    @Test("backup makes a compacted copy without deleted bytes")
    func backupCompacts() throws {
        let (dir, store, samples) = try prepared()
        try NumPyArray.write(samples.prefix(15).map(\.id), to: dir.file("del.npy"))
        #expect(try runCLI(["delete", store, "--ids", dir.file("del.npy")]).status == 0)
        #expect(try runCLI(["backup", store, dir.file("copy")]).status == 0)
        #expect(try runCLI(["verify", dir.file("copy")]).status == 0)
        let copy = try Store(opening: dir.file("copy"), options: .init(readOnly: true))
        defer { copy.close() }
        #expect(try copy.read(clearance: .all) { try $0.samples() } == Array(samples.suffix(5)))
        // A deleted payload's bytes are gone from the copy.
        let deletedPayload = Data(samples.first { $0.payload.count > 32 }!.payload.prefix(32))
        #expect(fileBytes(dir.file("copy") + "/data.mdb").range(of: deletedPayload) == nil)
        #expect(try runCLI(["backup", store, dir.file("copy")]).status == 2)
    }
}

/// numpy writes any transposed array in Fortran order; the CLI reads it as the array it is.
@Suite struct FortranOrderTests {
    @Test("a Fortran-order .npy (2-D and 3-D) reads as the same array in C order")
    func fortranOrder() throws {
        let dir = try TemporaryDirectory()
        // A 3 × 4 array whose element (r, c) is 10r + c, stored column-major.
        let columnMajor: [Float] = (0..<4).flatMap { c in (0..<3).map { r in Float(10 * r + c) } }
        try columnMajor.withUnsafeBytes { try NumPyArray.write(dtype: .float32, shape: [3, 4], data: $0, to: dir.file("f.npy")) }
        var bytes = fileBytes(dir.file("f.npy"))
        bytes.replaceSubrange(bytes.range(of: Data("False".utf8))!, with: Data("True ".utf8))
        try bytes.write(to: URL(fileURLWithPath: dir.file("f.npy")))
        let read = try NumPyArray.read(dir.file("f.npy"))
        #expect(read.shape == [3, 4])
        #expect(try read.floats() == (0..<3).flatMap { r in (0..<4).map { c in Float(10 * r + c) } })
        // 2 × 3 × 2, element (i, j, k) = 100i + 10j + k.
        var cube: [Float] = []
        for k in 0..<2 { for j in 0..<3 { for i in 0..<2 { cube.append(Float(100 * i + 10 * j + k)) } } }
        try cube.withUnsafeBytes { try NumPyArray.write(dtype: .float32, shape: [2, 3, 2], data: $0, to: dir.file("c.npy")) }
        var cubeBytes = fileBytes(dir.file("c.npy"))
        cubeBytes.replaceSubrange(cubeBytes.range(of: Data("False".utf8))!, with: Data("True ".utf8))
        try cubeBytes.write(to: URL(fileURLWithPath: dir.file("c.npy")))
        var expected: [Float] = []
        for i in 0..<2 { for j in 0..<3 { for k in 0..<2 { expected.append(Float(100 * i + 10 * j + k)) } } }
        #expect(try NumPyArray.read(dir.file("c.npy")).floats() == expected)
        // And the CLI imports the Fortran file's rows as they are.
        let store = try initCLIStore(dir, dimension: 4)
        let result = try runCLI(["import", store, "--embeddings", dir.file("f.npy")])
        #expect(result.status == 0, "\(result.stderr)")
        let got = try runCLI(["get", store, "1", "--format", "json"])
        let embedding = try JSONValue.parse(got.stdout)["embedding"]?.arrayValue?.compactMap(\.doubleValue)
        #expect(embedding == [10, 11, 12, 13])
    }
}
