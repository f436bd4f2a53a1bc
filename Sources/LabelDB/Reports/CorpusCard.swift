import Foundation

/// The corpus card (issue 15): a nutrition label for a labelled corpus, computed from the store
/// under one clearance. Every figure counts only what the clearance sees; figures the store
/// keeps over all rows (import fidelity, projector fit statistics, bytes on disk) appear only
/// where the clearance sees every row they cover, as everywhere else in the library.
public struct CorpusCard: Sendable {
    /// Counts in equal-width bins over [lower, upper] (the last bin includes upper).
    public struct Histogram: Sendable, Equatable {
        /// The left edge of the first bin.
        public var lower: Double
        /// The right edge of the last bin.
        public var upper: Double
        /// Values per bin.
        public var counts: [Int]
        /// When the counts come from a seeded sample of the values: its size.
        public var sampled: Int?
    }

    /// A value and how often it occurs.
    public struct ValueCount: Sendable, Equatable {
        /// The value: a string as is, anything else as JSON text.
        public var value: String
        /// Samples with it (an estimate when the field is approximate).
        public var count: Int
    }

    /// One metadata field over the visible samples.
    public struct Field: Sendable, Equatable {
        /// The metadata member's name.
        public var name: String
        /// Samples whose metadata has the field.
        public var present: Int
        /// The most frequent values, most frequent first (ties by value).
        public var topValues: [ValueCount]
        /// True when the field had more distinct values than the sketch keeps: the top values
        /// and their counts are then estimates (Misra–Gries, counts may be low by at most
        /// present ÷ capacity).
        public var approximate: Bool
        /// For a field whose values are all numbers: their histogram.
        public var numeric: Histogram?
    }

    /// What is in the store.
    public struct Composition: Sendable {
        /// Samples the clearance sees.
        public var samples: Int
        /// The embedding dimension.
        public var dimension: Int
        /// The embedding element type (`f32`, `f16`).
        public var elementType: String
        /// The class names, in index order.
        public var classes: [String]
        /// The file's size; nil when the clearance does not see every row (the size counts them).
        public var bytesOnDisk: Int?
        /// Every metadata field seen, by name (the first 200 names met).
        public var fields: [Field]
        /// Further field names, not described (counted up to 10,000).
        public var fieldsNotShown: Int
        /// Payload sizes: bin i counts payloads of [2^(i−1), 2^i) bytes, bin 0 empty payloads.
        public var payloadSizes: [Int]
    }

    /// One label set (its latest version) or projector (regenerated), over the visible samples.
    public struct LabelSource: Sendable {
        /// `NAME@VERSION`.
        public var name: String
        /// `label_set` or `projector`.
        public var kind: String
        /// Visible samples it labels with a top-1 class.
        public var labelled: Int
        /// Per class, the samples whose top-1 class it is.
        public var classCounts: [Int]
        /// Top-1 confidence over [0, 1].
        public var confidence: Histogram
        /// Entropy in nats over [0, ln C].
        public var entropy: Histogram
        /// The set's codec (label sets with soft labels).
        public var codec: String?
        /// Every version of the set (statistics redacted as the clearance requires).
        public var versions: [LabelSetVersion]
        /// The projector's latest version (statistics redacted as the clearance requires).
        public var projector: ProjectorVersion?
        /// Its taint label: the source label of the set's latest version, or the projector's.
        public var taint: TaintLabel
        /// A projector's source label set (for its bytes against the stored labels), when it
        /// still exists.
        public var fittedOn: LabelSet? = nil
    }

    /// Two sources compared.
    public struct Pair: Sendable, Equatable {
        /// The first source, `NAME@VERSION`.
        public var a: String
        /// The second source, `NAME@VERSION`.
        public var b: String
        /// Visible samples both label (0: none in common).
        public var count: Int
        /// The share of them with equal top-1 classes.
        public var agreement: Double
        /// Cohen's κ, nil when undefined.
        public var kappa: Double?
    }

    /// A pair of classes two sources confuse.
    public struct Confusion: Sendable, Equatable {
        /// The first source, `NAME@VERSION`.
        public var a: String
        /// The second source, `NAME@VERSION`.
        public var b: String
        /// The class the first source gives.
        public var classA: Int
        /// The class the second source gives instead.
        public var classB: Int
        /// Samples labelled so.
        public var count: Int
    }

    /// Samples under one taint label, or one clearance's view.
    public struct TaintCount: Sendable, Equatable {
        /// Secrecy tags, sorted.
        public var secrecy: [String]
        /// Integrity tags, sorted.
        public var integrity: [String]
        /// Samples.
        public var samples: Int
    }

    /// One provenance record, for the timeline.
    public struct Activity: Sendable, Equatable {
        /// The record's number in the log.
        public var id: UInt64
        /// What happened (`import`, `label import`, `projector fit`, …).
        public var activity: String
        /// Who did it.
        public var agent: String
        /// When, in milliseconds since 1970 (UTC).
        public var timeMilliseconds: Int64
        /// What it used and generated, as `NAME@V` (or names and files).
        public var used: [String]
        /// What it generated, likewise.
        public var generated: [String]
        /// Its parameters (filters, privileges used, codecs, …).
        public var parameters: [String: String]
    }

    /// A tag some label source's taint label carries, and which sources carry it.
    public struct SourceTag: Sendable, Equatable {
        /// The tag.
        public var tag: String
        /// `secrecy` or `integrity`.
        public var kind: String
        /// The sources (`NAME@VERSION`) whose taint label carries it.
        public var sources: [String]
    }

    /// Every tag the label sources' taint labels carry (secrecy tags first, then integrity; by
    /// tag), with the sources carrying it: how much of what was derived is licensed, personal,
    /// or vouched for.
    public var sourceTags: [SourceTag] {
        var out: [SourceTag] = []
        for kind in ["secrecy", "integrity"] {
            let tagged = labelSources.map { ($0.name, kind == "secrecy" ? $0.taint.secrecy.sorted : $0.taint.integrity.sorted) }
            for tag in Set(tagged.flatMap(\.1)).sorted() {
                out.append(SourceTag(tag: tag, kind: kind, sources: tagged.filter { $0.1.contains(tag) }.map(\.0)))
            }
        }
        return out
    }

    /// The clearance the card was made under (`all`, `public`, or its text).
    public var clearance: String
    /// What is in the store.
    public var composition: Composition
    /// Every label source described.
    public var labelSources: [LabelSource]
    /// Pairwise agreement of the sources (empty when not computed: see ``agreementNote``).
    public var pairs: [Pair]
    /// The most frequent disagreements over all pairs (at most 20).
    public var confusions: [Confusion]
    /// Why agreement is not shown, when it is not.
    public var agreementNote: String?
    /// Samples per taint label, most first.
    public var taintLabels: [TaintCount]
    /// Per secrecy set seen (public first): the samples a clearance of exactly those tags sees.
    public var clearanceViews: [TaintCount]
    /// The provenance timeline, oldest first (at most the last 1,000 records), and the log.
    public var activities: [Activity]
    /// Records in the log.
    public var provenanceRecords: Int
    /// The log's head hash.
    public var provenanceHead: String
    /// True when the hash chain verifies end to end.
    public var provenanceVerifies: Bool
    /// The embeddings' Euclidean norms.
    public var norms: Histogram
    /// Samples whose embedding bytes equal an earlier sample's.
    public var exactDuplicates: Int
    /// Near duplicates, estimated: of `nearDuplicateQueries` seeded sampled samples, how many
    /// have another visible sample at cosine ≥ 0.99.
    public var nearDuplicateQueries: Int
    /// How many of those queries found one.
    public var nearDuplicates: Int
    /// Visible samples no described source labels.
    public var unlabelled: Int
}
