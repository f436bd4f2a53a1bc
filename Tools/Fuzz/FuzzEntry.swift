// The libFuzzer entry point of `Tools/fuzz`: compiled with the library's sources into one module
// (so the internal decoders are reachable) and `-sanitize=fuzzer,address`. One binary serves every
// target; LABELDB_FUZZ_TARGET names the one to run (see DecoderFuzzTargets.names).
import Foundation

let fuzzTargetName: String = {
    let name = ProcessInfo.processInfo.environment["LABELDB_FUZZ_TARGET"] ?? ""
    guard DecoderFuzzTargets.names.contains(name) else {
        fatalError("set LABELDB_FUZZ_TARGET to one of \(DecoderFuzzTargets.names.joined(separator: ", "))")
    }
    return name
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func labelDBFuzzTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    DecoderFuzzTargets.run(fuzzTargetName, bytes)
    return 0
}
