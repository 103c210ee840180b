// Fuzzing harnesses for the readers of untrusted files: libFuzzer's entry point when built with
//   swift build -c release -Xswiftc -sanitize=fuzzer -Xswiftc -DMAMBA2_LIBFUZZER --product mamba2-fuzz
// (scripts/fuzz does this and runs each harness), and otherwise a command that replays inputs through a
// harness (`mamba2-fuzz HARNESS FILE...`) or writes small seed inputs (`mamba2-fuzz --seeds DIR`).
// The harness is chosen by MAMBA2_FUZZ (libFuzzer owns the command line). Every input must end in a
// value or a thrown error: a trap, a crash, a hang or a read outside the input is a finding.
import Mamba2
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

enum Harness: String, CaseIterable {
    case safetensors, zip, pickle, config, tokenizer, gguf

    /// Inputs larger than this are cut (the tokenizer's JSON parse and encode are superlinear in places).
    var sizeCap: Int { self == .tokenizer ? 16_384 : 1 << 20 }

    /// Runs one input; errors are the expected outcome for most inputs. True when the input was accepted.
    @discardableResult
    func run(_ bytes: [UInt8]) -> Bool {
        let input = Array(bytes.prefix(sizeCap))
        switch self {
        case .config:
            return (try? Mamba2Config.decode(input, source: "fuzz")) != nil
        case .tokenizer:
            // tokenizer.json, then after a NUL byte the text to encode (and decode back)
            let cut = input.firstIndex(of: 0) ?? input.count
            guard let json = try? JSON.parse(Array(input[..<cut]), source: "fuzz"),
                  let tok = try? Tokenizer(json: json, source: "fuzz") else { return false }
            let text = String(decoding: input[min(cut + 1, input.count)...], as: UTF8.self)
            let ids = tok.encode(text)
            _ = tok.decode(ids)
            _ = tok.decode(ids.map { $0 &+ 1 })
            return true
        case .gguf:
            // the file, then (when it parses) its model config, weights and tokenizer
            let path = Harness.scratchPath
            guard (try? writeFileAtomically(input, to: path)) != nil, let g = try? GGUFFile(path: path) else { return false }
            for t in g.tensorList.prefix(8) { _ = g.floats(t) }
            if let c = try? GGUFModel.config(g) { _ = try? GGUFModel.weights(g, config: c) }
            if let tok = try? GGUFModel.tokenizer(g) { _ = tok.decode(tok.encode("ab a")) }
            return true
        case .safetensors, .zip, .pickle:
            let path = Harness.scratchPath
            guard (try? writeFileAtomically(input, to: path)) != nil else { return false }
            switch self {
            case .safetensors:
                guard let f = try? SafeTensorsFile(path: path) else { return false }
                for name in f.tensors.keys.sorted().prefix(8) { _ = try? f.tensor(name) }
            case .zip:
                guard let file = try? MappedFile(path: path), let z = try? ZipArchive(file: file) else { return false }
                for e in z.entries.values.prefix(8) { _ = try? z.data(e) }
            default:
                guard let t = try? TorchCheckpoint.load(path: path) else { return false }
                for v in t.values.prefix(8) { _ = v.tensor() }
            }
            return true
        }
    }

    /// One scratch file per process (the readers take paths: weights are mapped, never copied).
    static let scratchPath: String = {
        let dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp"
        return "\(dir)/mamba2-fuzz-\(getpid())"
    }()

    /// Small valid inputs to start from.
    static func seeds() throws -> [(Harness, String, [UInt8])] {
        let dir = "/tmp/mamba2-fuzz-seeds-\(getpid())"
        try makeDirectories(dir)
        let path = dir + "/s.safetensors"
        try SafeTensorsFile.write([("a", Tensor(shape: [2, 3], data: [1, 2, 3, 4, 5, 6])), ("b", Tensor(shape: [1], data: [7]))], to: path)
        let st = try MappedFile.readAll(path)
        try SafeTensorsFile.write([("w", Tensor(shape: [4], data: [1, 2, 3, 4]))], to: path, dtype: .bf16, metadata: ["format": "pt"])
        let st16 = try MappedFile.readAll(path)
        unlink(path)
        rmdir(dir)
        // A state dict {"w": tensor of 4 floats} as torch.save pickles it (protocol 2).
        var pkl: [UInt8] = [0x80, 0x02, 0x7D, 0x71, 0x00, 0x58, 0x01, 0x00, 0x00, 0x00, 0x77, 0x71, 0x01]
        pkl += Array("ctorch._utils\n_rebuild_tensor_v2\nq\u{02}((X\u{07}\0\0\0storageq\u{03}ctorch\nFloatStorage\nq\u{04}X\u{01}\0\0\00q\u{05}X\u{03}\0\0\0cpuq\u{06}K\u{04}tq\u{07}QK\0K\u{04}\u{85}q\u{08}K\u{01}\u{85}q\u{09}\u{89}ccollections\nOrderedDict\nq\u{0A})Rq\u{0B}tq\u{0C}Rq\u{0D}s.".unicodeScalars.map { UInt8($0.value) })
        let floats = [Float(1), 2, 3, 4].withUnsafeBytes { Array($0) }
        let torch = ZipArchive.stored([("archive/data.pkl", pkl), ("archive/data/0", floats), ("archive/version", Array("3\n".utf8))])
        let config = Array(#"{"d_model": 64, "n_layer": 2, "vocab_size": 100, "ssm_cfg": {"layer": "Mamba2", "d_state": 16, "headdim": 16}, "pad_vocab_size_multiple": 16, "tie_embeddings": true}"#.utf8)
        let hf = Array(#"{"model_type": "mamba2", "hidden_size": 64, "num_hidden_layers": 2, "vocab_size": 112, "head_dim": 16, "num_heads": 8, "state_size": 16, "n_groups": 1, "time_step_limit": [0.0, Infinity]}"#.utf8)
        let tok = Array(#"{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2, "Ġ": 3, "Ġa": 4}, "merges": ["a b", "Ġ a"]}, "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": true, "use_regex": true}, "decoder": {"type": "ByteLevel"}, "added_tokens": [{"id": 5, "content": "<|x|>", "special": true}]}"#.utf8) + [0] + Array("ab a<|x|> \u{301}b".utf8)
        let meta = Array(#"{"model": {"type": "BPE", "vocab": {"▁": 0, "a": 1, "<0x41>": 2}, "merges": [], "byte_fallback": true}, "pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": false}, "decoder": {"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "▁"}, "content": " "}, {"type": "ByteFallback"}, {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}}"#.utf8) + [0] + Array("a A".utf8)
        // A tiny GGUF model (2 layers, d_model 32, vocab 16) with a byte-level tokenizer, and a Q8_0 tensor.
        var ggufMeta: [(String, GGUFFile.Value)] = [("general.architecture", .string("mamba2"))]
        for (k, v) in [("embedding_length", 32), ("block_count", 1), ("ssm.conv_kernel", 4), ("ssm.inner_size", 64),
                       ("ssm.state_size", 8), ("ssm.time_step_rank", 4), ("ssm.group_count", 1)] { ggufMeta.append(("mamba2." + k, .uint(UInt64(v)))) }
        ggufMeta += [("tokenizer.ggml.model", .string("gpt2")), ("tokenizer.ggml.pre", .string("olmo")),
                     ("tokenizer.ggml.tokens", .array(["a", "b", "ab", "Ġ", "Ġa", "<|x|>"].map { .string($0) })),
                     ("tokenizer.ggml.token_type", .array([1, 1, 1, 1, 1, 3].map { .int($0) })),
                     ("tokenizer.ggml.merges", .array(["a b", "Ġ a"].map { .string($0) }))]
        func f32s(_ n: Int, _ v: Float) -> [UInt8] { [Float](repeating: v, count: n).withUnsafeBytes { Array($0) } }
        let inProj = 2 * 64 + 2 * 8 + 4, convDim = 64 + 2 * 8
        let ggufTensors: [(name: String, type: GGUFFile.TensorType, ne: [Int], data: [UInt8])] = [
            ("token_embd.weight", .f32, [32, 16], f32s(512, 0.1)), ("output_norm.weight", .f32, [32], f32s(32, 1)),
            ("blk.0.attn_norm.weight", .f32, [32], f32s(32, 1)), ("blk.0.ssm_in.weight", .f32, [32, inProj], f32s(32 * inProj, 0.01)),
            ("blk.0.ssm_conv1d.weight", .f32, [4, convDim], f32s(4 * convDim, 0.2)), ("blk.0.ssm_conv1d.bias", .f32, [convDim], f32s(convDim, 0)),
            ("blk.0.ssm_dt.bias", .f32, [4], f32s(4, -2)), ("blk.0.ssm_a", .f32, [1, 4], f32s(4, -1)), ("blk.0.ssm_d", .f32, [1, 4], f32s(4, 1)),
            ("blk.0.ssm_norm.weight", .f32, [64, 1], f32s(64, 1)),
            ("blk.0.ssm_out.weight", .q8_0, [64, 32], Array((0..<(64 * 32 / 32)).map { _ in [UInt8(0), 0x3C] + [UInt8](repeating: 3, count: 32) }.joined()))]
        let gguf = GGUFFile.encode(metadata: ggufMeta, tensors: ggufTensors)
        return [(.gguf, "tiny", gguf), (.safetensors, "f32", st), (.safetensors, "bf16", st16), (.zip, "torch", torch), (.pickle, "torch", torch),
                (.config, "state-spaces", config), (.config, "hf", hf), (.tokenizer, "bytelevel", tok), (.tokenizer, "metaspace", meta)]
    }
}

#if MAMBA2_LIBFUZZER
let harness: Harness = {
    guard let name = getenv("MAMBA2_FUZZ").map({ String(cString: $0) }), let h = Harness(rawValue: name) else {
        fatalError("set MAMBA2_FUZZ to one of: \(Harness.allCases.map(\.rawValue).joined(separator: ", "))")
    }
    return h
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    harness.run(size == 0 ? [] : Array(UnsafeBufferPointer(start: data, count: size)))
    return 0
}

// SwiftPM links an executable's entry point under the name <module>_main; libFuzzer's own main is reached
// through its driver function.
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                         _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt) -> CInt

@_cdecl("mamba2_fuzz_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var c = argc, v = argv
    return LLVMFuzzerRunDriver(&c, &v, fuzz)
}
#else
@main
struct FuzzReplay {
    static func main() throws {
        let args = Array(CommandLine.arguments.dropFirst())
        if args.first == "--seeds", args.count == 2 {
            for (h, name, bytes) in try Harness.seeds() {
                try makeDirectories(args[1] + "/" + h.rawValue)
                try writeFileAtomically(bytes, to: args[1] + "/" + h.rawValue + "/seed-" + name)
            }
            return
        }
        guard let first = args.first, let h = Harness(rawValue: first) else {
            print("usage: mamba2-fuzz HARNESS FILE... | --seeds DIR   (harnesses: \(Harness.allCases.map(\.rawValue).joined(separator: ", ")))")
            exit(2)
        }
        var accepted = 0
        for path in args.dropFirst() where h.run(try MappedFile.readAll(path)) { accepted += 1 }
        print("\(args.count - 1) inputs ran through \(h.rawValue): \(accepted) accepted, \(args.count - 1 - accepted) refused")
    }
}
#endif
