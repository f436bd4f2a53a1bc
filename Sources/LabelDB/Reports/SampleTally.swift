import Foundation

/// What the corpus card takes from one sample: copied out of its read transaction, so a
/// corpus's shards can hand it to the merge from their own threads.
struct CardSample: Sendable {
    var id: UInt64
    var payloadCount: Int
    var taint: TaintLabel
    var embedding: [Float]
    /// xxh3-64 of the embedding as stored (exact duplicates share it).
    var embeddingHash: UInt64
    var metadataJSON: [UInt8]

    init(_ view: SampleView) {
        id = view.id
        payloadCount = view.payload.count
        taint = view.taint
        embedding = view.embedding()
        embeddingHash = Checksum.xxh3(view.embeddingBytes)
        metadataJSON = Array(view.metadataJSON)
    }
}

/// The corpus card's pass over the samples: metadata fields, payload sizes, taint labels,
/// embedding norms, exact duplicates, and a seeded sample of queries for near duplicates.
struct SampleTally {
    static let sketchCapacity = 1000
    static let reservoirSize = 10_000
    static let nearDuplicateQueries = 256
    static let maximumFields = 200

    let dimension: Int
    var count = 0
    var payloadSizes = [Int](repeating: 0, count: 1)
    var fields: [String: FieldTally] = [:]
    /// Field names past ``maximumFields`` (at most 10,000 are remembered).
    var fieldsNotShown = Set<String>()
    var taints: [TaintLabel: Int] = [:]
    var norms: [Float] = []
    var hashes = Set<UInt64>()
    var duplicates = 0
    var queries: [(id: UInt64, embedding: [Float])] = []
    var rng = SplitMix64(seed: 0x0CA2D)

    init(dimension: Int) { self.dimension = dimension }

    mutating func add(_ view: CardSample) {
        count += 1
        let bin = view.payloadCount == 0 ? 0 : Int.bitWidth - view.payloadCount.leadingZeroBitCount
        if payloadSizes.count <= bin { payloadSizes += [Int](repeating: 0, count: bin + 1 - payloadSizes.count) }
        payloadSizes[bin] += 1
        taints[view.taint, default: 0] += 1
        let embedding = view.embedding
        // In double: components near 1e20 square past Float's range.
        norms.append(Float(embedding.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()))
        if !hashes.insert(view.embeddingHash).inserted { duplicates += 1 }
        // Reservoir sampling: every sample equally likely to be a query.
        if queries.count < Self.nearDuplicateQueries {
            queries.append((view.id, embedding))
        } else {
            let slot = Int(rng.next() % UInt64(count))
            if slot < Self.nearDuplicateQueries { queries[slot] = (view.id, embedding) }
        }
        if !view.metadataJSON.isEmpty, case .object(let object)? = try? JSONValue.parse(view.metadataJSON) {
            for (name, value) in object {
                // Metadata with ever new member names would grow without bound: past the cap,
                // new names are only counted.
                guard fields[name] != nil || fields.count < Self.maximumFields else {
                    if fieldsNotShown.count < 10_000 { fieldsNotShown.insert(name) }
                    continue
                }
                fields[name, default: FieldTally()].add(value, rng: &rng)
            }
        }
    }

    func fieldSummaries() -> [CorpusCard.Field] {
        fields.keys.sorted().map { fields[$0]!.summary(name: $0) }
    }

    func normHistogram() -> CorpusCard.Histogram {
        var tally = HistogramTally(lower: Double(norms.min() ?? 0), upper: Double(norms.max() ?? 0))
        for n in norms { tally.add(Double(n)) }
        return tally.histogram()
    }

    /// Samples per taint label, most first (ties by label).
    func taintCounts() -> [CorpusCard.TaintCount] {
        taints.map { CorpusCard.TaintCount(secrecy: $0.key.secrecy.sorted, integrity: $0.key.integrity.sorted, samples: $0.value) }
            .sorted { ($0.samples, $1.secrecy.joined(separator: ","), $1.integrity.joined(separator: ",")) > ($1.samples, $0.secrecy.joined(separator: ","), $0.integrity.joined(separator: ",")) }
    }

    /// For public and every secrecy set seen: the samples a clearance of exactly those tags
    /// (no integrity required) sees, among the samples this card sees.
    func clearanceViews() -> [CorpusCard.TaintCount] {
        var sets = Set(taints.keys.map(\.secrecy))
        sets.insert(.tags([]))
        return sets.sorted { ($0.sorted.count, $0.description) < ($1.sorted.count, $1.description) }.map { secrecy in
            let seen = taints.filter { $0.key.secrecy.isSubset(of: secrecy) }.reduce(0) { $0 + $1.value }
            return CorpusCard.TaintCount(secrecy: secrecy.sorted, integrity: [], samples: seen)
        }
    }
}

/// One metadata field: presence, a Misra–Gries sketch of its values, and for numbers a
/// reservoir for the histogram.
struct FieldTally {
    var present = 0
    var sketch: [String: Int] = [:]
    var approximate = false
    var numeric = true
    var reservoir: [Double] = []

    mutating func add(_ value: JSONValue, rng: inout SplitMix64) {
        present += 1
        let text: String
        switch value {
        case .string(let s): text = s; numeric = false
        case .int(let i): text = "\(i)"; keep(Double(i), rng: &rng)
        case .double(let d): text = value.serialized(); keep(d, rng: &rng)
        default: text = value.serialized(); numeric = false
        }
        if let n = sketch[text] {
            sketch[text] = n + 1
        } else if sketch.count < SampleTally.sketchCapacity {
            sketch[text] = 1
        } else {
            // Misra–Gries: no room, so every count (and this value's 1) drops by one.
            approximate = true
            sketch = sketch.compactMapValues { $0 > 1 ? $0 - 1 : nil }
        }
    }

    mutating func keep(_ x: Double, rng: inout SplitMix64) {
        if reservoir.count < SampleTally.reservoirSize {
            reservoir.append(x)
        } else {
            let slot = Int(rng.next() % UInt64(present))
            if slot < SampleTally.reservoirSize { reservoir[slot] = x }
        }
    }

    func summary(name: String) -> CorpusCard.Field {
        let top = sketch.sorted { ($0.value, $1.key) > ($1.value, $0.key) }.prefix(10).map { CorpusCard.ValueCount(value: $0.key, count: $0.value) }
        var histogram: CorpusCard.Histogram?
        if numeric, !reservoir.isEmpty {
            var tally = HistogramTally(lower: reservoir.min()!, upper: reservoir.max()!)
            for x in reservoir { tally.add(x) }
            histogram = tally.histogram(sampled: present > reservoir.count ? reservoir.count : nil)
        }
        return CorpusCard.Field(name: name, present: present, topValues: Array(top), approximate: approximate, numeric: histogram)
    }
}
