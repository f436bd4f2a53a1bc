/// The four outcomes every shell reports the same way: the CLI's exit codes, the C API's return
/// codes and the Python package's exception classes (README, "Exit codes").
public enum ErrorClass: Int32, Sendable {
    /// Success.
    case ok = 0
    /// A check failed or a requested item does not exist (or is hidden by the clearance).
    case notFound = 1
    /// Bad input or usage, or a refusal; nothing was written.
    case badInput = 2
    /// A store or I/O error: damaged bytes, LMDB, the file system.
    case storeError = 3

    /// The class of an error LabelDB raised; errors it does not know are store errors.
    public init(_ error: any Error) {
        switch error {
        case let error as StoreError:
            switch error {
            case .sampleNotFound: self = .notFound
            case .invalidSchema, .invalidSample, .duplicateID, .idExists, .idHeldByHiddenSample, .alreadyExists: self = .badInput
            default: self = .storeError
            }
        case let error as LabelError:
            switch error {
            case .unknownLabelSet, .unknownVersion, .droppedVersion: self = .notFound
            default: self = .badInput
            }
        case let error as ProjectorError:
            switch error {
            case .unknownProjector, .unknownVersion, .unknownHead, .notCleared, .notClearedHead: self = .notFound
            default: self = .badInput
            }
        case let error as CorpusError:
            switch error {
            case .damaged, .busy, .shardsDisagree: self = .storeError
            case .notACorpus, .invalid, .noSession, .wrongShard, .directShardWrite: self = .badInput
            }
        case is InputError, is JSONParseError, is QueryError, is QueryParseError, is TaintError, is SessionError, is AgreementError, is ConsensusError, is LabelIssuesError: self = .badInput
        default: self = .storeError
        }
    }

    /// True for a refusal: the clearance does not see enough for the operation, or the writer
    /// lacks the privilege to declassify or endorse (a kind of bad input).
    public static func isRefusal(_ error: any Error) -> Bool {
        switch error as? TaintError {
        case .clearanceTooNarrow?, .missingPrivilege?: true
        default: false
        }
    }
}
