import Foundation

/// Writes a NumPy `.npz` file — an uncompressed ZIP archive of `.npy` members, what
/// `numpy.savez` writes and `numpy.load` reads — in constant memory: each member streams into a
/// temporary file beside the output, and ``finish()`` copies them into the archive with their
/// CRC-32s. Members or archives past 4 GiB get ZIP64 records, as numpy's own writer does.
///
/// For example:
///
/// ```swift
/// let npz = try NpzWriter(path: "corpus.npz")
/// let ids = try npz.member("ids", dtype: .uint64, rowShape: [])
/// try ids.append(…)
/// try npz.finish()        // np.load("corpus.npz")["ids"]
/// ```
public final class NpzWriter {
    private let path: String
    private let parts: String
    private var members: [(name: String, file: String, writer: NumPyWriter)] = []

    /// Prepares to write `path` (created by ``finish()``); members stream into a temporary folder
    /// beside it, on the same file system.
    public init(path: String) throws {
        self.path = path
        let folder = (path as NSString).deletingLastPathComponent
        parts = (folder.isEmpty ? "." : folder) + "/.\((path as NSString).lastPathComponent).parts-\(UUID().uuidString)"
        do { try FileManager.default.createDirectory(atPath: parts, withIntermediateDirectories: false) } catch {
            throw InputError(file: path, reason: "cannot create a temporary folder beside it: \(error.localizedDescription)")
        }
    }

    deinit { try? FileManager.default.removeItem(atPath: parts) }

    /// A new member `name` (read back as `np.load(path)[name]`) of rows of `rowShape`.
    /// - Throws: ``InputError`` when the archive already has a member of that name.
    public func member(_ name: String, dtype: NumPyArray.DType, rowShape: [Int]) throws -> NumPyWriter {
        guard !members.contains(where: { $0.name == name }) else { throw InputError(file: path, reason: "two members named \(name)") }
        let file = parts + "/\(members.count).npy"
        let writer = try NumPyWriter(path: file, dtype: dtype, rowShape: rowShape)
        members.append((name, file, writer))
        return writer
    }

    /// Finishes every member and writes the archive.
    public func finish() throws {
        for member in members { try member.writer.finish() }
        guard FileManager.default.createFile(atPath: path, contents: nil), let out = FileHandle(forWritingAtPath: path) else {
            throw InputError(file: path, reason: "cannot create the file")
        }
        defer { try? out.close() }
        var offset: UInt64 = 0
        var central: [UInt8] = []
        do {
            for member in members {
                let (size, crc) = try Self.sizeAndCRC(member.file)
                let name = Array((member.name + ".npy").utf8)
                let header = ZipEntry(name: name, size: size, crc: crc, offset: offset)
                try out.write(contentsOf: header.localHeader())
                try Self.copy(member.file, to: out)
                offset += UInt64(header.localHeader().count) + size
                central += header.centralHeader()
            }
            try out.write(contentsOf: central)
            try out.write(contentsOf: ZipEntry.end(entries: members.count, centralSize: UInt64(central.count), centralOffset: offset))
        } catch let error as InputError {
            throw error
        } catch {
            throw StoreError.io(path: path, reason: "write failed: \(error.localizedDescription)")
        }
    }

    private static func sizeAndCRC(_ file: String) throws -> (UInt64, UInt32) {
        guard let handle = FileHandle(forReadingAtPath: file) else { throw InputError(file: file, reason: "cannot open the file") }
        defer { try? handle.close() }
        var crc = CRC32()
        var size: UInt64 = 0
        while let chunk = try handle.read(upToCount: 1 << 22), !chunk.isEmpty {
            chunk.withUnsafeBytes { crc.update($0) }
            size += UInt64(chunk.count)
        }
        return (size, crc.value)
    }

    private static func copy(_ file: String, to out: FileHandle) throws {
        guard let handle = FileHandle(forReadingAtPath: file) else { throw InputError(file: file, reason: "cannot open the file") }
        defer { try? handle.close() }
        while let chunk = try handle.read(upToCount: 1 << 22), !chunk.isEmpty { try out.write(contentsOf: chunk) }
    }
}

/// One stored (uncompressed) ZIP entry's records (APPNOTE 6.3.3 §4.3), with ZIP64 extra fields
/// when its size or offset does not fit 32 bits.
struct ZipEntry {
    let name: [UInt8]
    let size: UInt64
    let crc: UInt32
    let offset: UInt64

    private static let limit: UInt64 = 0xFFFF_FFFF
    private var needsZip64: Bool { size >= Self.limit || offset >= Self.limit }

    func localHeader() -> [UInt8] {
        var bytes = ZipBytes()
        bytes.u32(0x0403_4B50)
        bytes.u16(needsZip64 ? 45 : 20)                  // version needed
        bytes.u16(0); bytes.u16(0)                        // flags; method 0: stored
        bytes.u16(0); bytes.u16(0x21)                     // time, date: 1980-01-01
        bytes.u32(crc)
        let small = UInt32(truncatingIfNeeded: needsZip64 ? Self.limit : size)
        bytes.u32(small); bytes.u32(small)
        bytes.u16(UInt16(name.count)); bytes.u16(needsZip64 ? 20 : 0)
        bytes.raw(name)
        if needsZip64 { bytes.u16(1); bytes.u16(16); bytes.u64(size); bytes.u64(size) }
        return bytes.data
    }

    func centralHeader() -> [UInt8] {
        var bytes = ZipBytes()
        bytes.u32(0x0201_4B50)
        bytes.u16(45); bytes.u16(needsZip64 ? 45 : 20)   // made by, needed
        bytes.u16(0); bytes.u16(0); bytes.u16(0); bytes.u16(0x21)
        bytes.u32(crc)
        let small = UInt32(truncatingIfNeeded: needsZip64 ? Self.limit : size)
        bytes.u32(small); bytes.u32(small)
        bytes.u16(UInt16(name.count)); bytes.u16(needsZip64 ? 28 : 0); bytes.u16(0)
        bytes.u16(0); bytes.u16(0); bytes.u32(0)          // disk, internal, external attributes
        bytes.u32(UInt32(truncatingIfNeeded: needsZip64 ? Self.limit : offset))
        bytes.raw(name)
        if needsZip64 { bytes.u16(1); bytes.u16(24); bytes.u64(size); bytes.u64(size); bytes.u64(offset) }
        return bytes.data
    }

    /// The end records: ZIP64 end record and locator (always: numpy reads them, and they lift
    /// the 65,535-entry and 4 GiB limits), then the classic end record.
    static func end(entries: Int, centralSize: UInt64, centralOffset: UInt64) -> [UInt8] {
        var bytes = ZipBytes()
        let zip64End = centralOffset + centralSize
        bytes.u32(0x0606_4B50); bytes.u64(44)
        bytes.u16(45); bytes.u16(45); bytes.u32(0); bytes.u32(0)
        bytes.u64(UInt64(entries)); bytes.u64(UInt64(entries)); bytes.u64(centralSize); bytes.u64(centralOffset)
        bytes.u32(0x0706_4B50); bytes.u32(0); bytes.u64(zip64End); bytes.u32(1)
        bytes.u32(0x0605_4B50); bytes.u16(0); bytes.u16(0)
        let count = UInt16(clamping: entries)
        bytes.u16(count == 0xFFFF ? 0xFFFF : count); bytes.u16(count == 0xFFFF ? 0xFFFF : count)
        bytes.u32(UInt32(clamping: min(centralSize, limit))); bytes.u32(UInt32(clamping: min(centralOffset, limit)))
        bytes.u16(0)
        return bytes.data
    }
}

/// Little-endian byte building for ZIP records.
private struct ZipBytes {
    var data: [UInt8] = []
    mutating func u16(_ v: UInt16) { data += [UInt8(v & 0xFF), UInt8(v >> 8)] }
    mutating func u32(_ v: UInt32) { for i in 0..<4 { data.append(UInt8((v >> (8 * i)) & 0xFF)) } }
    mutating func u64(_ v: UInt64) { for i in 0..<8 { data.append(UInt8((v >> (8 * i)) & 0xFF)) } }
    mutating func raw(_ bytes: [UInt8]) { data += bytes }
}

/// CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320), as ZIP records it.
struct CRC32 {
    private static let table: [UInt32] = (0..<256).map { n in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }
    private var state: UInt32 = 0xFFFF_FFFF

    mutating func update(_ bytes: UnsafeRawBufferPointer) {
        var c = state
        Self.table.withUnsafeBufferPointer { table in
            for byte in bytes { c = table[Int((c ^ UInt32(byte)) & 0xFF)] ^ (c >> 8) }
        }
        state = c
    }

    var value: UInt32 { state ^ 0xFFFF_FFFF }
}
