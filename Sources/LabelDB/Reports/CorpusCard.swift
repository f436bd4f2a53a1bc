import Foundation

/// The corpus card (issue 15): a nutrition label for a labelled corpus, computed from the store
/// under one clearance. Every figure counts only what the clearance sees; figures the store
/// keeps over all rows (import fidelity, projector fit statistics, bytes on disk) appear only
/// where the clearance sees every row they cover, as everywhere else in the library.
public struct CorpusCard: Sendable {
    /// Counts in equal-width bins over [lower, upper] (the last bin includes upper).
    public struct Histogram: Sendable, Equatable {
        public var lower: Double
        public var upper: Double
        public var counts: [Int]
        /// When the counts come from a seeded sample of the values: its size.
        public var sampled: Int?
    }

    /// A value and how often it occurs.
    public struct ValueCount: Sendable, Equatable {
        public var value: String
        public var count: Int
    }

    /// One metadata field over the visible samples.
    public struct Field: Sendable, Equatable {
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
        public var samples: Int
        public var dimension: Int
        public var elementType: String
        public var classes: [String]
        /// The file's size; nil when the clearance does not see every row (the size counts them).
        public var bytesOnDisk: Int?
        public var fields: [Field]
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
    }

    /// Two sources compared.
    public struct Pair: Sendable, Equatable {
        public var a: String, b: String
        public var count: Int
        public var agreement: Double
        public var kappa: Double?
    }

    /// A pair of classes two sources confuse.
    public struct Confusion: Sendable, Equatable {
        public var a: String, b: String
        public var classA: Int, classB: Int
        public var count: Int
    }

    /// Samples under one taint label, or one clearance's view.
    public struct TaintCount: Sendable, Equatable {
        public var secrecy: [String]
        public var integrity: [String]
        public var samples: Int
    }

    /// One provenance record, for the timeline.
    public struct Activity: Sendable, Equatable {
        public var id: UInt64
        public var activity: String
        public var agent: String
        public var timeMilliseconds: Int64
        public var used: [String]
        public var generated: [String]
    }

    public var clearance: String
    public var composition: Composition
    public var labelSources: [LabelSource]
    /// Pairwise agreement of the sources (empty for fewer than two), and why it is missing.
    public var pairs: [Pair]
    public var confusions: [Confusion]
    public var agreementNote: String?
    /// Samples per taint label, most first.
    public var taintLabels: [TaintCount]
    /// Per secrecy set seen (public first): the samples a clearance of exactly those tags sees.
    public var clearanceViews: [TaintCount]
    /// The provenance timeline, oldest first (at most the last 1,000 records), and the log.
    public var activities: [Activity]
    public var provenanceRecords: Int
    public var provenanceHead: String
    public var provenanceVerifies: Bool
    /// Embedding health.
    public var norms: Histogram
    public var exactDuplicates: Int
    public var nearDuplicateQueries: Int
    public var nearDuplicates: Int
    public var unlabelled: Int
}
