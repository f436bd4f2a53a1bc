import Foundation

/// Checks on the files a user names as input, made before any of them is read.
public enum InputFile {
    /// Throws unless `path` names a regular file (or a link to one) that exists.
    ///
    /// Foundation reports a directory as an unreadable file with an opaque Cocoa error; this says
    /// what is wrong, naming the file.
    ///
    /// - Throws: ``InputError`` naming `path`.
    public static func checkRegularFile(_ path: String) throws {
        _ = try fileSize(path)
    }

    /// The size of the file at `path`; nil for what has no size of its own (a pipe, a device).
    ///
    /// - Throws: ``InputError`` naming `path` when it is missing or a directory.
    static func fileSize(_ path: String) throws -> Int? {
        var info = stat()
        guard stat(path, &info) == 0 else {
            throw InputError(file: path, reason: "cannot open the file: \(String(cString: strerror(errno)))")
        }
        if info.st_mode & S_IFMT == S_IFDIR {
            throw InputError(file: path, reason: "is a directory, not a file")
        }
        return info.st_mode & S_IFMT == S_IFREG ? Int(info.st_size) : nil
    }

    /// The whole contents of the regular file at `path`.
    ///
    /// - Throws: ``InputError`` naming `path` when it is missing, a directory, or unreadable.
    public static func contents(_ path: String) throws -> Data {
        // Foundation's reader leaks a 4 KiB buffer on every empty file (found by fuzzing the
        // JSONL reader under LeakSanitizer), and an empty file needs no reading.
        if try fileSize(path) == 0 { return Data() }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw InputError(file: path, reason: "cannot read the file")
        }
        return data
    }
}
