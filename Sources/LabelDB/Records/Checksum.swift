import CXXHash

/// xxh3 checksums and content hashes (libxxhash), the only hash functions the format uses.
enum Checksum {
    /// The 64-bit xxh3 of `bytes` with `seed`. Records seed it with their key, so a value moved
    /// under another key no longer checks.
    @inline(__always)
    static func xxh3(_ bytes: UnsafeRawBufferPointer, seed: UInt64 = 0) -> UInt64 {
        #if arch(x86_64)
        // libxxhash picks SSE2, AVX2 or AVX-512 at run time; the value is the same.
        XXH3_64bits_withSeed_dispatch(bytes.baseAddress, bytes.count, seed)
        #else
        XXH3_64bits_withSeed(bytes.baseAddress, bytes.count, seed)
        #endif
    }

    /// The 64-bit xxh3 of `bytes` with `seed`.
    static func xxh3(_ bytes: [UInt8], seed: UInt64 = 0) -> UInt64 {
        bytes.withUnsafeBytes { xxh3($0, seed: seed) }
    }

    /// The 128-bit xxh3 of `bytes` (content hashes of input files, the provenance hash chain),
    /// as 16 bytes, high half first (the canonical order xxHash prints).
    static func xxh3_128(_ bytes: [UInt8]) -> [UInt8] {
        let hash = bytes.withUnsafeBytes { XXH3_128bits($0.baseAddress, $0.count) }
        var out: [UInt8] = []
        withUnsafeBytes(of: hash.high64.bigEndian) { out.append(contentsOf: $0) }
        withUnsafeBytes(of: hash.low64.bigEndian) { out.append(contentsOf: $0) }
        return out
    }

    /// The 128-bit xxh3 as 32 lowercase hex digits.
    static func xxh3_128Hex(_ bytes: [UInt8]) -> String {
        hex(xxh3_128(bytes))
    }

    /// Bytes as lowercase hex.
    static func hex(_ bytes: [UInt8]) -> String {
        bytes.map { String($0, radix: 16).leftPadded(to: 2) }.joined()
    }

    /// The bytes of an even-length hex string (either case), or nil when it is not one.
    static func bytes(hex text: String) -> [UInt8]? {
        let digits = Array(text.utf8)
        guard digits.count % 2 == 0 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(digits.count / 2)
        for i in stride(from: 0, to: digits.count, by: 2) {
            guard let byte = UInt8(String(decoding: digits[i..<(i + 2)], as: UTF8.self), radix: 16) else { return nil }
            out.append(byte)
        }
        return out
    }

    /// Formats a checksum the way error messages show it.
    static func hex(_ value: UInt64) -> String {
        "0x" + String(value, radix: 16, uppercase: false).leftPadded(to: 16)
    }
}

extension String {
    func leftPadded(to width: Int, with pad: Character = "0") -> String {
        count >= width ? self : String(repeating: pad, count: width - count) + self
    }
}
