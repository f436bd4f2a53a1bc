import CLMDB
import Foundation
import LabelDB

/// Monotonic seconds.
func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

/// Times `body`, returning seconds.
func time(_ body: () throws -> Void) rethrows -> Double {
    let start = now()
    try body()
    return now() - start
}

func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    return sorted[sorted.count / 2]
}

/// Reads every byte of the store's files once so reads run with a warm page cache.
func warm(_ directory: String) {
    for name in ["data.mdb"] {
        guard let handle = FileHandle(forReadingAtPath: directory + "/" + name) else { continue }
        while let chunk = try? handle.read(upToCount: 1 << 24), !chunk.isEmpty {}
        try? handle.close()
    }
}


/// What a child process used: its standard output, exit status, wall time, and the peaks of its
/// anonymous memory (RssAnon: the heap, what the program allocated) and of its whole resident set
/// (VmRSS, which also counts the pages of files it maps, such as an LMDB store).
struct ChildRun {
    var status: Int32
    var stdout: String
    var seconds: Double
    var peakAnonMB: Double
    var peakRSSMB: Double

    /// Runs `executable` with `arguments`, polling `/proc/PID/status` every 0.1 s.
    static func measure(_ executable: String, _ arguments: [String]) throws -> ChildRun {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        // Standard output goes to a file: a pipe nobody drains while polling could fill and stall it.
        let outputPath = NSTemporaryDirectory() + "labeldb-bench-child-\(getpid()).out"
        _ = FileManager.default.createFile(atPath: outputPath, contents: nil)
        defer { try? FileManager.default.removeItem(atPath: outputPath) }
        let output = try FileHandle(forWritingTo: URL(fileURLWithPath: outputPath))
        process.standardOutput = output
        let start = now()
        try process.run()
        var anon = 0.0, rss = 0.0
        while process.isRunning {
            if let text = try? String(contentsOfFile: "/proc/\(process.processIdentifier)/status", encoding: .utf8) {
                anon = max(anon, kilobytes("RssAnon:", in: text) / 1024)
                rss = max(rss, kilobytes("VmRSS:", in: text) / 1024)
            }
            usleep(100_000)
        }
        process.waitUntilExit()
        let seconds = now() - start
        try output.close()
        let stdout = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
        return ChildRun(status: process.terminationStatus, stdout: stdout, seconds: seconds, peakAnonMB: anon, peakRSSMB: rss)
    }

    private static func kilobytes(_ field: String, in status: String) -> Double {
        guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix(field) }) else { return 0 }
        return Double(line.split(separator: " ").dropFirst().first ?? "0") ?? 0
    }
}

/// Peak resident set size in MB (from /proc/self/status VmHWM).
func peakRSSMegabytes() -> Double {
    guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
          let line = text.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }) else { return 0 }
    let kb = Double(line.split(separator: " ").dropFirst().first ?? "0") ?? 0
    return kb / 1024
}

/// Raw LMDB through its C API, for baselines. Nothing here is used by the library.
enum RawLMDB {
    static func check(_ rc: Int32, _ what: String) {
        if rc != 0 { fatalError("\(what): \(String(cString: mdb_strerror(rc)))") }
    }

    /// Opens an environment with LabelDB's table names.
    static func open(_ path: String, readOnly: Bool, tables: [String] = ["samples", "embeddings"]) -> (OpaquePointer, [String: MDB_dbi]) {
        var env: OpaquePointer?
        check(mdb_env_create(&env), "mdb_env_create")
        check(mdb_env_set_maxdbs(env, 32), "maxdbs")
        check(mdb_env_set_mapsize(env, 1 << 40), "mapsize")
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        check(mdb_env_open(env, path, UInt32(MDB_NOTLS) | (readOnly ? UInt32(MDB_RDONLY) : 0), 0o644), "mdb_env_open")
        var txn: OpaquePointer?
        check(mdb_txn_begin(env, nil, readOnly ? UInt32(MDB_RDONLY) : 0, &txn), "begin")
        var dbis: [String: MDB_dbi] = [:]
        for name in tables {
            var dbi: MDB_dbi = 0
            check(mdb_dbi_open(txn, name, readOnly ? 0 : UInt32(MDB_CREATE), &dbi), "dbi_open \(name)")
            dbis[name] = dbi
        }
        check(mdb_txn_commit(txn), "commit")
        return (env!, dbis)
    }

    /// The two `mdb_get` calls of a point get on LabelDB's keys: the sample record, then its
    /// embedding block (found from the one field read without checking, the slot at offset 16).
    static func sampleAndBlock(_ txn: OpaquePointer?, _ dbis: [String: MDB_dbi], id: UInt64, rowsPerBlock: UInt64) -> (record: MDB_val, block: MDB_val, slot: UInt64) {
        var keyBytes = id.bigEndian
        var value = MDB_val(), block = MDB_val()
        withUnsafeMutableBytes(of: &keyBytes) { kb in
            var key = MDB_val(mv_size: 8, mv_data: kb.baseAddress)
            check(mdb_get(txn, dbis["samples"]!, &key, &value), "get")
        }
        let slot = value.mv_data.loadUnaligned(fromByteOffset: 16, as: UInt64.self)
        var blockBytes = (slot / rowsPerBlock).bigEndian
        withUnsafeMutableBytes(of: &blockBytes) { kb in
            var key = MDB_val(mv_size: 8, mv_data: kb.baseAddress)
            check(mdb_get(txn, dbis["embeddings"]!, &key, &block), "get")
        }
        return (value, block, slot)
    }

    /// Every key and value of `table`, copied out.
    static func dump(_ env: OpaquePointer, _ dbi: MDB_dbi) -> [(key: [UInt8], value: [UInt8])] {
        var txn: OpaquePointer?
        check(mdb_txn_begin(env, nil, UInt32(MDB_RDONLY), &txn), "begin")
        defer { mdb_txn_abort(txn) }
        var cursor: OpaquePointer?
        check(mdb_cursor_open(txn, dbi, &cursor), "cursor")
        defer { mdb_cursor_close(cursor) }
        var key = MDB_val(), value = MDB_val()
        var out: [(key: [UInt8], value: [UInt8])] = []
        var rc = mdb_cursor_get(cursor, &key, &value, MDB_FIRST)
        while rc == 0 {
            out.append((Array(UnsafeRawBufferPointer(start: key.mv_data, count: key.mv_size)),
                        Array(UnsafeRawBufferPointer(start: value.mv_data, count: value.mv_size))))
            rc = mdb_cursor_get(cursor, &key, &value, MDB_NEXT)
        }
        return out
    }
}

/// Prints a JSON object of results on one line.
func emit(_ object: [String: JSONValue]) {
    print(JSONValue.object(object).serialized())
}

extension Double {
    var json: JSONValue { .double(self) }
}
extension Int {
    var json: JSONValue { .int(Int64(self)) }
}
