import Foundation

/// Checks `data.mdb` before LMDB maps it.
///
/// LMDB trusts its file: if the file is shorter than the last page its meta page names, touching
/// the missing pages raises SIGBUS and kills the process. A truncated store must give a clear
/// error instead, so the two meta pages are read here with bounds checks first.
///
/// The fields read are LMDB's own (native byte order, as LMDB writes them): in each of the two
/// meta pages (pages 0 and 1), after the 16-byte page header, `mm_magic` (u32, 0xBEEFC0DE) at 16,
/// the page size in `mm_dbs[0].md_pad` (u32) at 40, `mm_last_pg` (u64) at 136 and `mm_txnid`
/// (u64) at 144. The meta with the larger transaction id is the current one.
enum DataFileCheck {
    static let magic: UInt32 = 0xBEEF_C0DE

    /// Throws ``StoreError/notAStore(path:reason:)`` when the file is too short or has no valid meta page,
    /// and ``StoreError/corruptRecord(store:table:key:detail:)`` when it is shorter than its last page.
    static func check(directory: String) throws {
        let file = directory + "/data.mdb"
        guard let handle = FileHandle(forReadingAtPath: file) else { return }  // LMDB reports missing files itself
        defer { try? handle.close() }
        let head = [UInt8]((try? handle.read(upToCount: 160)) ?? Data())
        guard head.count == 160 else {
            throw StoreError.notAStore(path: directory, reason: "data.mdb is \(head.count) bytes, too short to be an LMDB file")
        }
        let pageSize = Int(read32(head, 40))
        guard read32(head, 16) == magic, pageSize >= 512, pageSize <= 65536, pageSize & (pageSize - 1) == 0 else {
            throw StoreError.notAStore(path: directory, reason: "data.mdb is not an LMDB file (no valid meta page)")
        }
        let best = metaPages(handle, pageSize: pageSize).compactMap { $0 }.max { $0.txn < $1.txn }
        guard let best else {
            throw StoreError.notAStore(path: directory, reason: "data.mdb has no valid meta page")
        }
        // The size is read after the meta pages: a writer in another process only ever grows the
        // file before it writes a meta page naming the new pages, so this order cannot see a
        // meta page that is ahead of the size (the other order would report a live store as truncated).
        var info = stat()
        guard fstat(handle.fileDescriptor, &info) == 0 else { return }
        let size = Int(info.st_size)
        let (needed, overflow) = (Int(clamping: best.lastPage) + 1).multipliedReportingOverflow(by: pageSize)
        if overflow || needed > size {
            throw StoreError.corruptRecord(
                store: directory, table: "data.mdb", key: "meta",
                detail: "the file is truncated: \(size) bytes, but its last page ends at byte \(overflow ? Int.max : needed)")
        }
    }

    /// What is wrong with the two meta pages' transaction ids, or nil. LMDB writes the meta of
    /// transaction t into page t mod 2, so the two ids are consecutive (both 0 before the first
    /// commit) and each page's id has its parity. LMDB keeps no checksum there: a damaged id can
    /// make it read the other page, an older state, as current — a rollback that every record's
    /// checksum would pass.
    static func metaPageProblem(directory: String) -> String? {
        guard let handle = FileHandle(forReadingAtPath: directory + "/data.mdb") else { return nil }
        defer { try? handle.close() }
        let head = [UInt8]((try? handle.read(upToCount: 160)) ?? Data())
        guard head.count == 160 else { return nil }
        let pageSize = Int(read32(head, 40))
        guard pageSize >= 512, pageSize <= 65536 else { return nil }
        var ids: [UInt64] = []
        for (page, meta) in metaPages(handle, pageSize: pageSize).enumerated() {
            guard let meta else { return "meta page \(page) is not a valid LMDB meta page" }
            ids.append(meta.txn)
        }
        let consecutive = ids[0] == ids[1] ? ids[0] == 0 : max(ids[0], ids[1]) - min(ids[0], ids[1]) == 1
        let parity = (0..<2).allSatisfy { ids[$0] == 0 || ids[$0] % 2 == UInt64($0) }
        return consecutive && parity ? nil : "the meta pages name transactions \(ids[0]) and \(ids[1]): one is damaged, and LMDB may be reading an older state as current"
    }

    /// The transaction id and last page of each of the two meta pages (nil for one without LMDB's magic).
    private static func metaPages(_ handle: FileHandle, pageSize: Int) -> [(txn: UInt64, lastPage: UInt64)?] {
        (0..<2).map { page in
            try? handle.seek(toOffset: UInt64(page * pageSize))
            let bytes = [UInt8]((try? handle.read(upToCount: 160)) ?? Data())
            guard bytes.count == 160, read32(bytes, 16) == magic else { return nil }
            return (read64(bytes, 144), read64(bytes, 136))
        }
    }

    private static func read32(_ bytes: [UInt8], _ offset: Int) -> UInt32 {
        bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: UInt32.self) }
    }

    private static func read64(_ bytes: [UInt8], _ offset: Int) -> UInt64 {
        bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: UInt64.self) }
    }
}
