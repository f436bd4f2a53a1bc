// labeldb-bench: LabelDB's benchmarks. Build in release:
//
//   swift build -c release --product labeldb-bench
//   .build/release/labeldb-bench store [--count N] [--dim D] [--dir DIR]
//   .build/release/labeldb-bench labels [--count N] [--dir DIR]
//   .build/release/labeldb-bench projector [--count N] [--ranks 8,16,32,64,128] [--epochs E|default] [--teacher-codec C] [--dir DIR]
//       [--cli .build/release/labeldb [--budget BYTES] [--reuse yes]]   (fits as child processes: peak RssAnon and RSS)
//   .build/release/labeldb-bench knn [--count N] [--dim D] [--dir DIR]
//   .build/release/labeldb-bench peers [--data /tmp/peers-data] [--dir DIR]
//   .build/release/labeldb-bench batch-read [--data /tmp/peers-data] [--dir DIR]
//   .build/release/labeldb-bench regeneration [--rows N]
//   .build/release/labeldb-bench flow [--count N] [--dim D] [--dir DIR]
//   .build/release/labeldb-bench filter [--count N] [--dir DIR]
//   .build/release/labeldb-bench convergence [--counts 1000,10000] [--epochs 1000]
//   .build/release/labeldb-bench teachers [--count N] [--dir DIR]
//   .build/release/labeldb-bench views [--count N] [--views V] [--batches B] [--dir DIR] [--keep yes]
//
// Each prints one JSON object of results; every ratio's baseline is measured in the same run.
import Foundation
import LabelDB

var args = Array(CommandLine.arguments.dropFirst())
let command = args.isEmpty ? "" : args.removeFirst()
var options: [String: String] = [:]
while args.count >= 2, args[0].hasPrefix("--") {
    options[String(args[0].dropFirst(2))] = args[1]
    args.removeFirst(2)
}

do {
    switch command {
    case "store":
        var bench = StoreBenchmark()
        if let n = options["count"].flatMap(Int.init) { bench.count = n }
        if let d = options["dim"].flatMap(Int.init) { bench.dimension = d }
        if let dir = options["dir"] { bench.directory = dir }
        try bench.run()
    case "get-loop":
        // For profilers: point gets on an existing store, nothing else.
        let store = try Store(opening: (options["dir"] ?? "/tmp/labeldb-bench") + "/store", options: .init(readOnly: true))
        var sink = 0
        try store.read(clearance: .all) { tx in
            let ids = try tx.ids()
            var rng = SplitMix64(seed: 1)
            for _ in 0..<(Int(options["count"] ?? "") ?? 2_000_000) {
                _ = try tx.withSample(ids[Int(rng.next() % UInt64(ids.count))]) { sink &+= $0.payload.count }
            }
        }
        print(sink)
    case "regeneration":
        var bench = RegenerationBenchmark()
        if let n = options["rows"].flatMap(Int.init) { bench.rows = n }
        try bench.run()
    case "batch-read":
        var bench = BatchReadBenchmark()
        if let data = options["data"] { bench.data = data }
        if let dir = options["dir"] { bench.directory = dir }
        try bench.run()
    case "labels":
        var bench = LabelBenchmark()
        if let n = options["count"].flatMap(Int.init) { bench.count = n }
        if let dir = options["dir"] { bench.directory = dir }
        try bench.run()
    case "projector":
        var bench = ProjectorBenchmark()
        if let n = options["count"].flatMap(Int.init) { bench.count = n }
        if let dir = options["dir"] { bench.directory = dir }
        if let ranks = options["ranks"] { bench.ranks = ranks.split(separator: ",").compactMap { Int($0) } }
        if let epochs = options["epochs"].flatMap(Int.init) { bench.epochs = epochs }
        if let codec = options["teacher-codec"] { bench.teacherCodec = codec }
        if options["epochs"] == "default" { bench.epochs = nil }
        bench.cli = options["cli"]
        bench.budget = options["budget"].flatMap(Int.init)
        bench.reuse = options["reuse"] == "yes"
        try bench.run()
    case "knn":
        var bench = KNNBenchmark()
        if let n = options["count"].flatMap(Int.init) { bench.count = n }
        if let d = options["dim"].flatMap(Int.init) { bench.dimension = d }
        if let dir = options["dir"] { bench.directory = dir }
        try bench.run()
    case "flow":
        var bench = FlowBenchmark()
        if let n = options["count"].flatMap(Int.init) { bench.count = n }
        if let d = options["dim"].flatMap(Int.init) { bench.dimension = d }
        if let dir = options["dir"] { bench.directory = dir }
        try bench.run()
    case "filter":
        var bench = FilterBenchmark()
        if let n = options["count"].flatMap(Int.init) { bench.count = n }
        if let dir = options["dir"] { bench.directory = dir }
        try bench.run()
    case "convergence":
        var bench = ConvergenceBenchmark()
        if let counts = options["counts"] { bench.counts = counts.split(separator: ",").compactMap { Int($0) } }
        if let epochs = options["epochs"].flatMap(Int.init) { bench.epochs = epochs }
        try bench.run()
    case "views":
        var bench = ViewBenchmark()
        if let n = options["count"].flatMap(Int.init) { bench.count = n }
        if let v = options["views"].flatMap(Int.init) { bench.views = v }
        if let b = options["batches"].flatMap(Int.init) { bench.batches = b }
        if let dir = options["dir"] { bench.directory = dir }
        bench.keep = options["keep"] == "yes"
        try bench.run()
    case "teachers":
        var bench = TeacherBenchmark()
        if let n = options["count"].flatMap(Int.init) { bench.count = n }
        if let dir = options["dir"] { bench.directory = dir }
        try bench.run()
    case "peers":
        var bench = PeersBenchmark()
        if let data = options["data"] { bench.data = data }
        if let dir = options["dir"] { bench.directory = dir }
        try bench.run()
    default:
        FileHandle.standardError.write(Data("usage: labeldb-bench store|labels|projector|knn|flow|filter|teachers|views|peers [--count N] [--dim D] [--dir DIR] [--data DIR]\n".utf8))
        exit(2)
    }
} catch {
    FileHandle.standardError.write(Data("labeldb-bench: \(error)\n".utf8))
    exit(3)
}
