import Foundation

/// Files a reader must see whole or not at all: the corpus manifest and a write session's file.
enum AtomicFile {
    /// Replaces the file `name` in `directory` atomically: the bytes go to a temporary file, which
    /// is flushed to disk and renamed over `name`, and the directory is flushed — so a reader sees
    /// the old file or the new one, never a mix, even after a crash.
    static func replace(_ name: String, in directory: String, with bytes: [UInt8]) throws {
        let path = directory + "/" + name, temporary = path + ".tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw StoreError.io(path: temporary, reason: String(cString: strerror(errno))) }
        let written = bytes.withUnsafeBytes { Foundation.write(fd, $0.baseAddress, $0.count) }
        let synced = fsync(fd)
        close(fd)
        guard written == bytes.count, synced == 0 else { throw StoreError.io(path: temporary, reason: "write or fsync failed") }
        guard rename(temporary, path) == 0 else { throw StoreError.io(path: path, reason: String(cString: strerror(errno))) }
        let dir = open(directory, O_RDONLY | O_CLOEXEC)
        if dir >= 0 { _ = fsync(dir); close(dir) }
    }
}
