/// Errors of the label layer: bad label input, unknown label sets or versions.
public enum LabelError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A codec string that does not parse, or does not fit the store's classes.
    case invalidCodec(String)
    /// A later import asked for another codec than the one the label set was created with.
    case codecMismatch(set: String, existing: String, requested: String)
    /// No label set of that name.
    case unknownLabelSet(String)
    /// The label set has no such version.
    case unknownVersion(set: String, version: Int, latest: Int)
    /// The version was dropped (`labels drop SET@V`).
    case droppedVersion(set: String, version: Int)
    /// The latest version of a set cannot be dropped: it is the set's current state.
    case latestVersionKept(set: String, version: Int)
    /// A `SET@VERSION` reference that does not parse.
    case invalidReference(String)
    /// A label row that is wrong: which row (0-based) and why.
    case invalidLabel(row: Int, reason: String)
    /// A labelled id that is not a stored (visible) sample.
    case unknownSample(UInt64)
    /// The label set name is empty or contains '@' or a control character.
    case invalidName(String)
    /// An import with views into a per-sample set (`perView` false), or without views into a
    /// per-view set (`perView` true).
    case viewLayout(set: String, perView: Bool)
    /// An operation that reads one label per sample was given a per-view set.
    case perViewSet(set: String, operation: String)
    /// The rows an import would write for 4,096 consecutive slots exceed a label block's 4 GiB.
    case blockTooLarge(set: String, block: UInt64, bytes: Int)

    public var description: String {
        switch self {
        case .invalidCodec(let reason): "invalid codec \(reason)"
        case .codecMismatch(let set, let existing, let requested):
            "label set `\(set)` uses codec \(existing); an import with codec \(requested) is not allowed"
        case .unknownLabelSet(let name): "no label set named `\(name)`"
        case .droppedVersion(let set, let version): "version \(version) of label set `\(set)` was dropped"
        case .latestVersionKept(let set, let version):
            "\(set)@\(version) is the latest version, the set's current state: drop the whole set, or import a new version first"
        case .unknownVersion(let set, let version, let latest):
            "label set `\(set)` has no version \(version) (versions 1…\(latest))"
        case .invalidReference(let text): "'\(text)' is not a label set reference (NAME or NAME@VERSION)"
        case .invalidLabel(let row, let reason): "row \(row): \(reason)"
        case .unknownSample(let id): "id \(id) is not a sample in the store"
        case .invalidName(let name): "'\(name)' is not a valid label set name (non-empty, no '@', no control characters)"
        case .viewLayout(let set, true):
            "label set `\(set)` holds labels per augmented view: every import into it needs views (--views), one row per view"
        case .viewLayout(let set, false):
            "label set `\(set)` holds one label per sample, not labels per augmented view (views go in a per-view set of their own)"
        case .blockTooLarge(let set, let block, let bytes):
            "the rows of label set `\(set)` for slots \(block * 4096)…\(block * 4096 + 4095) would take \(bytes) bytes, more than a label block holds (4 GiB): import fewer views per sample, or into a set with a smaller codec"
        case .perViewSet(let set, let operation):
            "label set `\(set)` holds labels per augmented view; \(operation) reads one label per sample (read views with `get --labels`, `labels export --views-out` or the view read API)"
        }
    }
}

/// A label set named with an optional version: `teacher` (the latest) or `teacher@3`.
public struct LabelSetReference: Hashable, Sendable, CustomStringConvertible {
    /// The label set's name.
    public var name: String
    /// The version, or nil for the latest.
    public var version: Int?

    /// Creates a reference.
    public init(name: String, version: Int? = nil) {
        self.name = name
        self.version = version
    }

    /// Parses `NAME` or `NAME@VERSION`.
    public init(parsing text: String) throws {
        let parts = text.split(separator: "@", omittingEmptySubsequences: false)
        guard parts.count <= 2, !parts[0].isEmpty else { throw LabelError.invalidReference(text) }
        name = String(parts[0])
        if parts.count == 2 {
            guard let v = Int(parts[1]), v >= 1 else { throw LabelError.invalidReference(text) }
            version = v
        }
    }

    public var description: String { version.map { "\(name)@\($0)" } ?? name }
}
