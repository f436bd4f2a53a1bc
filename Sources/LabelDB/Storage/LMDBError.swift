import CLMDB

/// An error reported by LMDB itself: a C return code from one of the `mdb_*` calls.
///
/// Every LMDB call goes through ``check(_:_:)``, so a failing call always surfaces as this type.
/// Named values let callers match the cases they can act on:
///
/// ```swift
/// do { try store.write(clearance: .all) { tx in … } }
/// catch LMDBError.mapFull { … }
/// ```
public struct LMDBError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The raw return code: a negative `MDB_*` code or a positive `errno` value.
    public let code: Int32
    /// The LMDB call that failed, e.g. `mdb_put`.
    public let call: String

    /// Creates an error for the return code `code` of `call`.
    public init(code: Int32, call: String = "") {
        self.code = code
        self.call = call
    }

    /// The database is full: the map needs to grow. The corresponding LMDB code is `MDB_MAP_FULL`.
    public static let mapFull = LMDBError(code: MDB_MAP_FULL)
    /// Another process grew the map beyond this one. The corresponding LMDB code is `MDB_MAP_RESIZED`.
    public static let mapResized = LMDBError(code: MDB_MAP_RESIZED)
    /// The key was not found. The corresponding LMDB code is `MDB_NOTFOUND`.
    public static let notFound = LMDBError(code: MDB_NOTFOUND)
    /// Too many open read transactions. The corresponding LMDB code is `MDB_READERS_FULL`.
    public static let readersFull = LMDBError(code: MDB_READERS_FULL)
    /// The file is not an LMDB file. The corresponding LMDB code is `MDB_INVALID`.
    public static let invalid = LMDBError(code: MDB_INVALID)
    /// A page has an unexpected type; the file is damaged. The corresponding LMDB code is `MDB_CORRUPTED`.
    public static let corrupted = LMDBError(code: MDB_CORRUPTED)
    /// The environment version does not match this library. The corresponding LMDB code is `MDB_VERSION_MISMATCH`.
    public static let versionMismatch = LMDBError(code: MDB_VERSION_MISMATCH)

    /// The text LMDB gives for this code (`mdb_strerror`), after the call's name.
    public var description: String {
        let text = String(cString: mdb_strerror(code))
        return call.isEmpty ? text : "\(call): \(text)"
    }

    /// Matches on the code alone, so `catch LMDBError.mapFull` ignores which call failed.
    public static func ~= (pattern: LMDBError, error: any Error) -> Bool {
        (error as? LMDBError)?.code == pattern.code
    }

    public static func == (lhs: LMDBError, rhs: LMDBError) -> Bool { lhs.code == rhs.code }
}

/// The one funnel every LMDB return code passes through: zero is success, anything else throws.
@inline(__always)
func check(_ code: Int32, _ call: @autoclosure () -> String) throws {
    if code != 0 { throw LMDBError(code: code, call: call()) }
}
