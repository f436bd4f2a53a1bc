/// Malformed input: a file that is not what it claims, with where the problem is.
///
/// For example: `meta.jsonl line 17: not a JSON object`.
public struct InputError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The file (or argument) at fault.
    public let file: String
    /// Where in it, e.g. "line 17" or "row 3, column 5"; nil for the whole file.
    public let location: String?
    /// What is wrong.
    public let reason: String

    /// Creates an input error.
    public init(file: String, location: String? = nil, reason: String) {
        self.file = file
        self.location = location
        self.reason = reason
    }

    public var description: String {
        location.map { "\(file) \($0): \(reason)" } ?? "\(file): \(reason)"
    }
}
