// labeldb-datagen: writes a seeded synthetic corpus in the files `labeldb import` reads.
//
//   labeldb-datagen OUT_DIR [--count N] [--dim D] [--classes C] [--seed S] [--payload-bytes MIN-MAX] [--taint yes] [--views V]
//
// Embeddings are a Gaussian mixture: C cluster centres ~ N(0, 1), each sample = its centre +
// N(0, 0.5²) noise. Ids are random unique u64 values (not in row order). Metadata carries the
// cluster as "cluster", a source and a split; payloads are random bytes, base64 in JSONL.
// teacher.npy holds a teacher's soft labels (N × C): softmax(8 · cosine(x, centre_c)), and
// clusters.npy the cluster of each row (a noisy "human" hard label set), annotators.npy the
// clusters with 6% of labels flipped (label errors to find), head.npy a zero-shot base head
// (dim × C, the normalised centres). With `--taint yes`, metadata lines carry per-row
// taint labels: "books" rows the secrecy tag licensed:books, a tenth of "forums" rows pii, and a
// third of all rows the integrity tag human-reviewed. views.jsonl, view-ids.npy, view-classes.npy
// and view-probs.npy hold a teacher's top-3 labels of V random crops of every sample (FKD-style,
// default V = 4): a crop covering a fraction a of the image sees the teacher's distribution
// sharpened or flattened by a (small crops are less sure), one line and row per view.
import Foundation
import LabelDB

func gaussian(_ rng: inout SplitMix64) -> Float {
    // Box–Muller; one of the pair is enough here.
    let u1 = max(Double.random(in: 0..<1, using: &rng), 1e-300)
    let u2 = Double.random(in: 0..<1, using: &rng)
    return Float((-2 * log(u1)).squareRoot() * cos(2 * .pi * u2))
}

var args = Array(CommandLine.arguments.dropFirst())
guard let out = args.first, !out.hasPrefix("-") else {
    FileHandle.standardError.write(Data("usage: labeldb-datagen OUT_DIR [--count N] [--dim D] [--classes C] [--seed S] [--payload-bytes MIN-MAX]\n".utf8))
    exit(2)
}
args.removeFirst()
var options: [String: String] = [:]
while args.count >= 2, args[0].hasPrefix("--") {
    options[String(args[0].dropFirst(2))] = args[1]
    args.removeFirst(2)
}
let count = Int(options["count"] ?? "") ?? 1000
let dim = Int(options["dim"] ?? "") ?? 64
let classCount = Int(options["classes"] ?? "") ?? 10
let seed = UInt64(options["seed"] ?? "") ?? 20261125
let payloadRange = (options["payload-bytes"] ?? "200-800").split(separator: "-").compactMap { Int($0) }
let (minPayload, maxPayload) = payloadRange.count == 2 ? (payloadRange[0], payloadRange[1]) : (200, 800)
let withTaint = options["taint"] == "yes"

try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
var rng = SplitMix64(seed: seed)

let classNames = (0..<classCount).map { "class_\($0)" }
try (classNames.joined(separator: "\n") + "\n").write(toFile: out + "/classes.txt", atomically: false, encoding: .utf8)

let centres = (0..<classCount * dim).map { _ in gaussian(&rng) }
var embeddings = [Float](repeating: 0, count: count * dim)
var clusters = [Int](repeating: 0, count: count)
for row in 0..<count {
    let c = Int.random(in: 0..<classCount, using: &rng)
    clusters[row] = c
    for j in 0..<dim { embeddings[row * dim + j] = centres[c * dim + j] + 0.5 * gaussian(&rng) }
}
try NumPyArray.write(embeddings, shape: [count, dim], to: out + "/embeddings.npy")

var seen = Set<UInt64>()
var ids: [UInt64] = []
while ids.count < count {
    let id = rng.next()
    if seen.insert(id).inserted { ids.append(id) }
}
try NumPyArray.write(ids, to: out + "/ids.npy")
try NumPyArray.write(clusters.map { Int32($0) }, shape: [count], to: out + "/clusters.npy")

// The teacher: a soft, not always correct, view of which centre a sample is nearest to.
var teacher = [Float](repeating: 0, count: count * classCount)
let centreNorms = (0..<classCount).map { c in (0..<dim).reduce(Float(0)) { $0 + centres[c * dim + $1] * centres[c * dim + $1] }.squareRoot() }
for row in 0..<count {
    let x = embeddings[(row * dim)..<((row + 1) * dim)]
    let norm = x.reduce(Float(0)) { $0 + $1 * $1 }.squareRoot()
    var logits = (0..<classCount).map { c -> Float in
        var dot: Float = 0
        for j in 0..<dim { dot += x[x.startIndex + j] * centres[c * dim + j] }
        return 8 * dot / max(norm * centreNorms[c], 1e-12)
    }
    let m = logits.max()!
    logits = logits.map { exp($0 - m) }
    let sum = logits.reduce(0, +)
    for c in 0..<classCount { teacher[row * classCount + c] = logits[c] / sum }
}
try NumPyArray.write(teacher, shape: [count, classCount], to: out + "/teacher.npy")

// Annotators: the clusters with 6% of labels flipped to another class, the label errors
// `labels issues` should find (its own generator, so the files above do not change).
var annotatorRNG = SplitMix64(seed: seed ^ 0xA770_7A70)
let annotators = clusters.map { c -> Int32 in
    guard classCount > 1, Int.random(in: 0..<100, using: &annotatorRNG) < 6 else { return Int32(c) }
    return Int32((c + Int.random(in: 1..<classCount, using: &annotatorRNG)) % classCount)
}
try NumPyArray.write(annotators, shape: [count], to: out + "/annotators.npy")

// A zero-shot base head W0 (dim × classes): the normalised class centres, standing in for text
// embeddings of the class names from the same encoder.
var head = [Float](repeating: 0, count: dim * classCount)
for c in 0..<classCount { for j in 0..<dim { head[j * classCount + c] = centres[c * dim + j] / centreNorms[c] } }
try NumPyArray.write(head, shape: [dim, classCount], to: out + "/head.npy")

let sources = ["web", "books", "news", "code", "forums"]
var meta = ""
var payloads = ""
for row in 0..<count {
    let source = sources[Int.random(in: 0..<sources.count, using: &rng)]
    var object: [String: JSONValue] = [
        "cluster": .int(Int64(clusters[row])),
        "source": .string(source),
        "split": .string(Int.random(in: 0..<10, using: &rng) == 0 ? "val" : "train"),
    ]
    if withTaint {
        var secrecy: [JSONValue] = []
        if source == "books" { secrecy.append("licensed:books") }
        if source == "forums", Int.random(in: 0..<10, using: &rng) == 0 { secrecy.append("pii") }
        let reviewed = Int.random(in: 0..<3, using: &rng) == 0
        object["taint"] = ["secrecy": .array(secrecy), "integrity": reviewed ? ["human-reviewed"] : []]
    }
    meta += JSONValue.object(object).serialized() + "\n"
    let bytes = (0..<Int.random(in: minPayload...maxPayload, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
    payloads += JSONValue.object(["base64": .string(Data(bytes).base64EncodedString())]).serialized() + "\n"
}
try meta.write(toFile: out + "/meta.jsonl", atomically: false, encoding: .utf8)
try payloads.write(toFile: out + "/payloads.jsonl", atomically: false, encoding: .utf8)
print("wrote \(count) samples (\(dim)-d, \(classCount) classes) to \(out)")

// Views: V random resized crops per sample (FKD), each with the teacher's top-3 on that crop.
// Their own generator, so the files above do not change.
let viewCount = Int(options["views"] ?? "") ?? 4
var viewRNG = SplitMix64(seed: seed ^ 0x5EED_F1E3)
var viewLines = "", viewIDs: [UInt64] = [], viewClasses: [Int32] = [], viewProbs: [Float] = []
for row in 0..<count {
    for v in 0..<viewCount {
        let side = 0.35 + Float(Int.random(in: 0..<650, using: &viewRNG)) / 1000
        let x0 = Float(Int.random(in: 0...Int((1 - side) * 1000), using: &viewRNG)) / 1000
        let y0 = Float(Int.random(in: 0...Int((1 - side) * 1000), using: &viewRNG)) / 1000
        let flip = Bool.random(using: &viewRNG)
        let view = JSONValue.object(["view": .int(Int64(v)), "crop": .array([x0, y0, min(x0 + side, 1), min(y0 + side, 1)].map { .double(Double("\($0)")!) }),
                                     "flip": .bool(flip), "epoch": .int(Int64(v)), "seed": .int(Int64(Int.random(in: 0..<(1 << 31), using: &viewRNG)))])
        viewLines += view.serialized() + "\n"
        viewIDs.append(ids[row])
        // Smaller crops are less sure: the teacher's row raised to the power (crop area)^½.
        let power = (side * side).squareRoot()
        let p = (0..<classCount).map { pow(teacher[row * classCount + $0], power) }
        let total = p.reduce(0, +)
        let top = (0..<classCount).sorted { p[$0] > p[$1] || (p[$0] == p[$1] && $0 < $1) }.prefix(min(3, classCount))
        for c in top { viewClasses.append(Int32(c)); viewProbs.append(p[c] / total) }
    }
}
let keptClasses = min(3, classCount)
try viewLines.write(toFile: out + "/views.jsonl", atomically: false, encoding: .utf8)
try NumPyArray.write(viewIDs, to: out + "/view-ids.npy")
try NumPyArray.write(viewClasses, shape: [viewIDs.count, keptClasses], to: out + "/view-classes.npy")
try NumPyArray.write(viewProbs, shape: [viewIDs.count, keptClasses], to: out + "/view-probs.npy")
