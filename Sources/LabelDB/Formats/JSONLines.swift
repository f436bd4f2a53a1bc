import Foundation

/// Reading JSON Lines files: one JSON value per line, in row order.
public enum JSONLines {
    /// Reads every line of `path` as a JSON value. A final newline is optional; an empty line
    /// elsewhere is an error, since lines align with rows.
    ///
    /// - Throws: ``InputError`` with the 1-based line number of the first bad line.
    public static func read(_ path: String) throws -> [JSONValue] {
        var values: [JSONValue] = []
        try forEach(path) { _, value in values.append(value) }
        return values
    }

    /// Parses the lines of `path` one at a time, passing each line's number (from 1) and value
    /// to `body` — for files too large to hold as values. Errors as ``read(_:)``.
    public static func forEach(_ path: String, _ body: (_ line: Int, _ value: JSONValue) throws -> Void) throws {
        let data = try InputFile.contents(path)
        try data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) in
            var start = 0
            var line = 1
            while start < raw.count {
                var end = start
                while end < raw.count && raw[end] != 0x0A { end += 1 }
                var contentEnd = end
                if contentEnd > start && raw[contentEnd - 1] == 0x0D { contentEnd -= 1 }
                let slice = UnsafeRawBufferPointer(rebasing: raw[start..<contentEnd])
                if slice.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) {
                    throw InputError(file: path, location: "line \(line)", reason: "empty line (every line must hold one JSON value)")
                }
                let value: JSONValue
                do {
                    value = try JSONValue.parse(slice)
                } catch let error as JSONParseError {
                    throw InputError(file: path, location: "line \(line)", reason: "invalid JSON: \(error.reason) at column \(error.offset + 1)")
                }
                try body(line, value)
                start = end + 1
                line += 1
            }
        }
    }

    /// Reads `path` and checks that every line is a JSON object.
    public static func readObjects(_ path: String) throws -> [[String: JSONValue]] {
        try read(path).enumerated().map { index, value in
            guard let object = value.objectValue else {
                throw InputError(file: path, location: "line \(index + 1)", reason: "not a JSON object")
            }
            return object
        }
    }

    /// Reads a payloads file: each line is `{"base64": …}`, `{"text": …}` or `{"path": …}`;
    /// a path is relative to the folder of the JSONL file.
    public static func readPayloads(_ path: String) throws -> [[UInt8]] {
        let folder = URL(fileURLWithPath: path).deletingLastPathComponent()
        return try readObjects(path).enumerated().map { index, object in
            let location = "line \(index + 1)"
            guard object.count == 1, let (key, value) = object.first, let text = value.stringValue else {
                throw InputError(file: path, location: location, reason: "expected exactly one of {\"base64\": …}, {\"text\": …}, {\"path\": …} with a string value")
            }
            switch key {
            case "text":
                return Array(text.utf8)
            case "base64":
                // Foundation accepts stray padding ("QUJD="); only canonical base64, which
                // encodes back to the same text, is taken, so one payload has one spelling.
                guard let data = Data(base64Encoded: text), data.base64EncodedString() == text else {
                    throw InputError(file: path, location: location, reason: "invalid base64 (padded RFC 4648 base64 expected)")
                }
                return [UInt8](data)
            case "path":
                let file = text.hasPrefix("/") ? URL(fileURLWithPath: text) : folder.appendingPathComponent(text)
                do {
                    return [UInt8](try InputFile.contents(file.path))
                } catch let error as InputError {
                    throw InputError(file: path, location: location, reason: "cannot read payload file \(error)")
                }
            default:
                throw InputError(file: path, location: location, reason: "unknown payload key '\(key)' (expected base64, text or path)")
            }
        }
    }
}
