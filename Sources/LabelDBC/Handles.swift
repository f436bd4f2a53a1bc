import CLabelDB
import Foundation
import LabelDB

// The C API's plumbing: handles, the per-thread last error, and the guard every entry point
// runs its body in, so no Swift error crosses into C.

/// An error of the C API's own checks (a NULL argument, a misused handle), with its class.
struct APIError: Error, CustomStringConvertible {
    let errorClass: ErrorClass
    let description: String

    static func badInput(_ text: String) -> APIError { APIError(errorClass: .badInput, description: text) }
}

/// What the last failing call on a thread said: kept per thread, as `errno` is.
final class LastError {
    var message: [CChar] = [0]
    var refused = false

    private static let key: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key) { if let slot = $0 { Unmanaged<LastError>.fromOpaque(slot).release() } }
        return key
    }()

    /// This thread's slot, made on first use.
    static var current: LastError {
        if let existing = pthread_getspecific(key) { return Unmanaged<LastError>.fromOpaque(existing).takeUnretainedValue() }
        let slot = LastError()
        pthread_setspecific(key, Unmanaged.passRetained(slot).toOpaque())
        return slot
    }
}

/// Runs an entry point's body: LDB_OK, or the error's class with its message recorded.
func guarded(_ body: () throws -> Void) -> Int32 {
    do {
        try body()
        return ErrorClass.ok.rawValue
    } catch {
        let slot = LastError.current
        slot.message = Array("\(error)".utf8CString)
        slot.refused = ErrorClass.isRefusal(error)
        if let api = error as? APIError { return api.errorClass.rawValue }
        return ErrorClass(error).rawValue
    }
}

/// The store directories this process opened for writing through the C API: a second handle
/// for writing to one of them is refused (two writers in one process would only wait on each other).
enum WriterRegistry {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var paths: Set<String> = []

    /// The directory's canonical path, so two spellings of it are one store.
    static func key(_ path: String) -> String {
        guard let resolved = realpath(path, nil) else { return path }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    static func claim(_ path: String) throws {
        try lock.withLock {
            guard paths.insert(key(path)).inserted else {
                throw APIError.badInput("\(path) is already open for writing in this process; use that handle (or close it first)")
            }
        }
    }

    static func release(_ path: String) { _ = lock.withLock { paths.remove(key(path)) } }
}

/// An open store as C sees it: the store, the process that opened it, its open transactions.
final class StoreHandle {
    let store: Store
    let pid = getpid()
    /// The path claimed in ``WriterRegistry`` when opened for writing.
    let writerPath: String?
    private let lock = NSLock()
    private var transactions = 0

    init(_ store: Store, writerPath: String?) {
        self.store = store
        self.writerPath = writerPath
    }

    private var inFlight = 0
    private var closed = false

    func transactionBegan() { lock.withLock { transactions += 1 } }
    func transactionEnded() { lock.withLock { transactions -= 1 } }

    /// Runs a store-level call; `close` waits for none and refuses while any runs.
    func use<T>(_ body: (Store) throws -> T) throws -> T {
        try lock.withLock {
            guard !closed else { throw SessionError.storeClosed }
            inFlight += 1
        }
        defer { lock.withLock { inFlight -= 1 } }
        return try body(store)
    }

    /// Marks the handle closed, or throws when transactions are open or calls are running.
    func markClosed() throws {
        try lock.withLock {
            guard transactions == 0, inFlight == 0 else {
                throw APIError.badInput("ldb_close: \(transactions) transaction(s) of this store are still open and \(inFlight) call(s) running; end them first")
            }
            closed = true
        }
    }
}

/// A transaction as C sees it: a read or a write session, and the memory its batch reads lend.
final class TransactionHandle {
    let owner: StoreHandle
    let read: ReadSession?
    let write: WriteSession?
    let pid = getpid()
    let arena = BatchArena()
    var taintJSON: [CChar] = [0]
    /// Held by every call on the transaction: a second call at the same time (from another
    /// thread) is refused instead of racing on the session and the arena.
    private let busy = NSLock()

    /// Runs one call on the transaction, refusing a concurrent one.
    func call<T>(_ body: () throws -> T) throws -> T {
        guard busy.try() else { throw APIError.badInput("another call on this transaction is running (a transaction belongs to one thread)") }
        defer { busy.unlock() }
        return try body()
    }

    init(owner: StoreHandle, read: ReadSession?, write: WriteSession?) {
        self.owner = owner
        self.read = read
        self.write = write
    }

    var schema: Schema { owner.store.schema }

    /// Runs `body` in the transaction (read or write alike).
    func run<T>(_ body: (Transaction) throws -> T) throws -> T {
        try call {
            if let read { return try read.run(body) }
            // A read inside the write transaction: nothing to replay, so run it directly.
            return try write!.runReading(body)
        }
    }

    /// Runs a write call: its own argument checks and the step. Any failure fails the session,
    /// so a commit cannot pass over a call that did not happen.
    func writing<T>(_ body: (WriteSession) throws -> T) throws -> T {
        guard let write else { throw APIError.badInput("this is a read transaction; begin one with write = 1 to change the store") }
        return try call {
            do { return try body(write) } catch {
                if write.isOpen, write.isOnOwnThread { write.fail("\(error)") }
                throw error
            }
        }
    }

    /// The write session, or an error for a read transaction.
    func writer() throws -> WriteSession {
        guard let write else { throw APIError.badInput("this is a read transaction; begin one with write = 1 to change the store") }
        return write
    }
}

/// Checks a process-wide rule of LMDB: a handle must not be used in a forked child.
private func checkProcess(_ pid: pid_t) throws {
    guard pid == getpid() else {
        throw APIError.badInput("the handle was opened in process \(pid) and used in process \(getpid()) after fork(); open the store again in this process")
    }
}

func storeHandle(_ pointer: OpaquePointer?) throws -> StoreHandle {
    guard let pointer else { throw APIError.badInput("the store handle is NULL") }
    let handle = Unmanaged<StoreHandle>.fromOpaque(UnsafeRawPointer(pointer)).takeUnretainedValue()
    try checkProcess(handle.pid)
    return handle
}

func transactionHandle(_ pointer: OpaquePointer?) throws -> TransactionHandle {
    guard let pointer else { throw APIError.badInput("the transaction handle is NULL") }
    let handle = Unmanaged<TransactionHandle>.fromOpaque(UnsafeRawPointer(pointer)).takeUnretainedValue()
    try checkProcess(handle.pid)
    return handle
}

// MARK: Arguments

/// A C string argument that must be present.
func string(_ pointer: UnsafePointer<CChar>?, _ name: String) throws -> String {
    guard let pointer else { throw APIError.badInput("\(name) is NULL") }
    return String(cString: pointer)
}

/// An array argument of `count` elements that must be present unless `count` is 0.
func buffer<T>(_ pointer: UnsafePointer<T>?, _ count: Int, _ name: String) throws -> UnsafeBufferPointer<T> {
    guard count > 0 else { return UnsafeBufferPointer(start: nil, count: 0) }
    guard let pointer else { throw APIError.badInput("\(name) is NULL but \(count) elements were promised") }
    return UnsafeBufferPointer(start: pointer, count: count)
}

/// An options object given as JSON text (NULL or "" for none).
func options(_ pointer: UnsafePointer<CChar>?) throws -> [String: JSONValue] {
    guard let pointer, pointer.pointee != 0 else { return [:] }
    let text = String(cString: pointer)
    guard let object = try JSONValue.parse(text).objectValue else {
        throw APIError.badInput("the options must be a JSON object, not \(text.prefix(80))")
    }
    return object
}

/// Hands a JSON document to C: a malloc'd string the caller frees with ldb_free.
func give(_ value: JSONValue, _ out: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) {
    guard let out else { return }
    out.pointee = strdup(value.serialized())
}

/// Lines of JSON documents as one JSON array.
func give(_ values: [JSONValue], _ out: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) {
    give(.array(values), out)
}

extension Dictionary where Key == String, Value == JSONValue {
    /// An option that must be a string when present.
    func text(_ key: String) throws -> String? {
        guard let value = self[key], value != .null else { return nil }
        guard let text = value.stringValue else { throw APIError.badInput("option '\(key)' must be a string") }
        return text
    }

    /// An option that must be a number when present.
    func number(_ key: String) throws -> Double? {
        guard let value = self[key], value != .null else { return nil }
        guard let number = value.doubleValue else { throw APIError.badInput("option '\(key)' must be a number") }
        return number
    }

    /// An option that must be a whole number when present.
    func integer(_ key: String) throws -> Int? {
        guard let number = try number(key) else { return nil }
        guard number == number.rounded(), abs(number) < 9e15 else { throw APIError.badInput("option '\(key)' must be a whole number") }
        return Int(number)
    }

    /// An option that is a whole number or a list of them when present.
    func integers(_ key: String) throws -> [Int] {
        guard let value = self[key], value != .null else { return [] }
        guard let items = value.arrayValue else { return [try integer(key)!] }
        return try items.map { item in
            guard let number = item.doubleValue, number == number.rounded(), abs(number) < 9e15 else {
                throw APIError.badInput("option '\(key)' must be a whole number or a list of them")
            }
            return Int(number)
        }
    }

    /// An option that must be true or false when present.
    func flag(_ key: String) throws -> Bool? {
        guard let value = self[key], value != .null else { return nil }
        guard case .bool(let flag) = value else { throw APIError.badInput("option '\(key)' must be true or false") }
        return flag
    }

    /// An option that is a list of strings (or one comma list) when present.
    func strings(_ key: String) throws -> [String] {
        guard let value = self[key], value != .null else { return [] }
        if let text = value.stringValue { return [text] }
        guard let items = value.arrayValue, let texts = Optional(items.compactMap(\.stringValue)), texts.count == items.count else {
            throw APIError.badInput("option '\(key)' must be a list of strings")
        }
        return texts
    }

    /// Rejects options this call does not know (a typo must not be ignored).
    func only(_ known: Set<String>, call: String) throws {
        if let unknown = keys.sorted().first(where: { !known.contains($0) }) {
            throw APIError.badInput("\(call): unknown option '\(unknown)' (known: \(known.sorted().joined(separator: ", ")))")
        }
    }

    /// The taint label of the `secrecy` and `integrity` options.
    func taint() throws -> TaintLabel { try TaintLabel(secrecyLists: strings("secrecy"), integrityLists: strings("integrity")) }

    /// The `privilege` option's tags.
    func privileges() throws -> Set<String> { try TaintTags.parse(lists: strings("privilege")) }
}
