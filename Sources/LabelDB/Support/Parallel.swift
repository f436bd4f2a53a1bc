import Foundation

/// Runs independent pieces of work on the cores.
enum Parallel {
    /// `body(i)` for every i in `0..<count`, on up to `count` threads at once, with the results
    /// in index order; the first error thrown (by index) is rethrown once every piece has ended.
    /// One piece runs on the calling thread alone, so a single part costs no thread.
    ///
    /// `body` must be safe to run concurrently for different indices: each index touches its own
    /// data (a corpus's shard, its own buffers).
    static func map<T>(_ count: Int, _ body: (Int) throws -> T) throws -> [T] {
        guard count > 1 else { return try (0..<count).map(body) }
        return try withoutActuallyEscaping(body) { body in
            let box = ResultBox<T>(count: count, body: body)
            DispatchQueue.concurrentPerform(iterations: count) { box.run($0) }
            return try box.results()
        }
    }

    /// `map(i)` for every i in `0..<count`, folded left in index order by `combine` (the first
    /// result is the start): in waves of as many pieces as there are cores, so at most that many
    /// results are held at once (a corpus's per-shard matrices, not all of them).
    static func mapReduce<T>(_ count: Int, _ map: (Int) throws -> T, _ combine: (inout T, T) -> Void) throws -> T {
        precondition(count >= 1, "mapReduce needs at least one piece")
        let width = max(1, ProcessInfo.processInfo.activeProcessorCount)
        var total: T? = nil
        for start in stride(from: 0, to: count, by: width) {
            let wave = try Parallel.map(min(width, count - start)) { try map(start + $0) }
            for result in wave {
                if total == nil { total = result } else { combine(&total!, result) }
            }
        }
        return total!
    }

    /// Where the pieces leave their outcomes: each writes only its own slot, under the lock.
    private final class ResultBox<T>: @unchecked Sendable {
        private let lock = NSLock()
        private var outcomes: [Result<T, any Error>?]
        private let body: (Int) throws -> T

        init(count: Int, body: @escaping (Int) throws -> T) {
            outcomes = Array(repeating: nil, count: count)
            self.body = body
        }

        func run(_ index: Int) {
            let outcome = Result { try body(index) }
            lock.lock()
            outcomes[index] = outcome
            lock.unlock()
        }

        func results() throws -> [T] {
            try outcomes.map { try $0!.get() }
        }
    }
}
