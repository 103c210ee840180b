@testable import Mamba2
import Mamba2TestSupport
import Testing
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// Inputs made to break the readers (the classes of the hardening issue): each must be a clear error naming
// the file and what is wrong, never a trap, a hang or a read outside the file.
@Suite("Hostile checkpoint inputs")
struct HostileInputTests {
    /// Expects `body` to throw an error whose text contains every one of `mentions`.
    func expectError(_ mentions: [String], _ body: () throws -> Void) {
        do {
            try body()
            Issue.record("accepted; expected an error mentioning \(mentions)")
        } catch {
            for m in mentions { #expect("\(error)".contains(m), "\(error)") }
        }
    }

    /// A safetensors file from a header object (written verbatim) and `data` bytes.
    func safetensors(_ header: String, data: Int) throws -> String {
        let path = makeTempDir() + "/x.safetensors"
        var out: [UInt8] = []
        withUnsafeBytes(of: UInt64(header.utf8.count).littleEndian) { out += $0 }
        out += Array(header.utf8) + [UInt8](repeating: 0, count: data)
        try writeBytes(out, path)
        return path
    }

    // Class A: the element count fits an Int, count × element size does not.
    @Test("safetensors: a shape whose byte size overflows")
    func byteSizeOverflow() throws {
        let p = try safetensors(#"{"w": {"dtype": "F32", "shape": [2147483648, 2147483648], "data_offsets": [0, 0]}}"#, data: 8)
        expectError(["x.safetensors", "w", "too large"]) { _ = try SafeTensorsFile(path: p) }
    }

    // Class T: tensors sharing bytes, and a __metadata__ that is not an object.
    @Test("safetensors: overlapping data and malformed metadata")
    func overlapAndMetadata() throws {
        let p = try safetensors(#"{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}"#, data: 16)
        expectError(["x.safetensors", "overlaps"]) { _ = try SafeTensorsFile(path: p) }
        let q = try safetensors(#"{"__metadata__": [1, 2], "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}"#, data: 8)
        expectError(["x.safetensors", "__metadata__"]) { _ = try SafeTensorsFile(path: q) }
        // Adjacent (not overlapping) ranges and empty tensors are fine.
        let r = try safetensors(#"{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "b": {"dtype": "F32", "shape": [0], "data_offsets": [8, 8]}, "c": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}"#, data: 16)
        #expect(try SafeTensorsFile(path: r).tensors.count == 3)
    }

    // Class P: a FIFO in place of a model file, a config or a tokenizer is refused at once (opening it used to
    // wait for a writer forever); text inputs still read pipes and character devices.
    @Test("a FIFO in place of a file")
    func fifo() throws {
        let dir = makeTempDir()
        for name in ["model.safetensors", "config.json", "tokenizer.json"] {
            #expect(mkfifo(dir + "/" + name, 0o644) == 0)
        }
        expectError(["model.safetensors", "FIFO"]) { _ = try SafeTensorsFile(path: dir + "/model.safetensors") }
        expectError(["config.json", "FIFO"]) { _ = try Mamba2Config.load(path: dir + "/config.json") }
        expectError(["tokenizer.json", "FIFO"]) { _ = try Tokenizer(path: dir + "/tokenizer.json") }
        expectError(["not a text input", "directory"]) { _ = try MappedFile.readText(dir) }
        #expect(try MappedFile.readText("/dev/null").isEmpty)
        try writeBytes(Array("text".utf8), dir + "/t.txt")
        #expect(try MappedFile.readText(dir + "/t.txt") == Array("text".utf8))
    }

    // Class Q: a NaN or infinity in any weight (norm_f and out_proj passed before) is refused at load.
    @Test("non-finite weights are refused, naming the tensor", arguments: ["backbone.norm_f.weight", "backbone.layers.1.mixer.out_proj.weight"])
    func nonFinite(name: String) throws {
        let model = try Mamba2Model.load(directory: fixture("tiny-hf"))
        let dir = try copyModel("tiny-hf")
        var tensors = model.weights.namedTensors(model.config)
        let i = tensors.firstIndex { $0.0 == name }!
        tensors[i].1.data[3] = .nan
        try SafeTensorsFile.write(tensors, to: dir + "/model.safetensors")
        expectError([name, "finite"]) { _ = try Mamba2Model.load(directory: dir) }
        tensors[i].1.data[3] = -.infinity
        try SafeTensorsFile.write(tensors, to: dir + "/model.safetensors")
        expectError([name, "finite"]) { _ = try Mamba2Model.load(directory: dir) }
    }

    // MARK: torch.save archives

    /// Pickle opcodes for a state dict of one tensor "w" over storage "0" of `numel` floats, at `offset`
    /// with `size` and `stride`.
    func statePickle(numel: Int, offset: Int, size: [Int], stride: [Int]) -> [UInt8] {
        func str(_ s: String) -> [UInt8] {
            var b: [UInt8] = [UInt8(ascii: "X")]
            withUnsafeBytes(of: UInt32(s.utf8.count).littleEndian) { b += $0 }
            return b + Array(s.utf8)
        }
        func int(_ v: Int) -> [UInt8] {  // LONG1, 8 bytes, two's complement
            var b: [UInt8] = [0x8A, 8]
            withUnsafeBytes(of: Int64(v).littleEndian) { b += $0 }
            return b
        }
        func tuple(_ items: [Int]) -> [UInt8] { [UInt8(ascii: "(")] + items.flatMap(int) + [UInt8(ascii: "t")] }
        var p: [UInt8] = [0x80, 0x02, UInt8(ascii: "}")] + str("w")
        p += Array("ctorch._utils\n_rebuild_tensor_v2\n".utf8)
        p += [UInt8(ascii: "("), UInt8(ascii: "(")] + str("storage") + Array("ctorch\nFloatStorage\n".utf8) + str("0") + str("cpu")
        p += int(numel) + [UInt8(ascii: "t"), UInt8(ascii: "Q")]
        p += int(offset) + tuple(size) + tuple(stride) + [0x89, UInt8(ascii: "}"), UInt8(ascii: "t"), UInt8(ascii: "R")]
        p += [UInt8(ascii: "s"), UInt8(ascii: ".")]
        return p
    }

    func torchFile(_ pickle: [UInt8], storage: [UInt8] = [UInt8](repeating: 0, count: 16), sizeOverride: [String: UInt32] = [:]) throws -> String {
        let path = makeTempDir() + "/pytorch_model.bin"
        var bytes = ZipArchive.stored([("archive/data.pkl", pickle), ("archive/data/0", storage)])
        // A size override rewrites both size fields of that entry's central-directory record.
        for (name, size) in sizeOverride {
            let n = Array(name.utf8)
            let at = (0...(bytes.count - n.count)).last { i in bytes[i..<(i + n.count)].elementsEqual(n) }! - 46
            withUnsafeBytes(of: size.littleEndian) { bytes.replaceSubrange((at + 20)..<(at + 24), with: $0); bytes.replaceSubrange((at + 24)..<(at + 28), with: $0) }
        }
        try writeBytes(bytes, path)
        return path
    }

    @Test("torch.save: a well-formed archive of one tensor loads")
    func wellFormed() throws {
        let storage = [Float(1), 2, 3, 4].withUnsafeBytes { Array($0) }
        let t = try TorchCheckpoint.load(path: try torchFile(statePickle(numel: 4, offset: 1, size: [3], stride: [1]), storage: storage))
        #expect(t["w"]?.tensor().data == [2, 3, 4])
    }

    // Classes E, F, G: sizes, offsets and strides that overflow or point outside the storage.
    @Test("torch.save: storage and tensor sizes that overflow or overrun", arguments: [
        (1 << 61, 0, [4], [1], "claims"),                  // E: element count × 4 overflows
        (4, 1 << 62, [1], [1], "overruns"),                // F: offset far past the storage
        (4, 0, [1 << 40, 1 << 40], [1 << 40, 1], "overruns"),  // F: size × stride overflows
        (4, -1, [2], [1], "negative offset"),              // G: before the storage
        (4, 0, [2, 3], [3, 1], "overruns"),                // 6 elements in 4
    ] as [(Int, Int, [Int], [Int], String)])
    func badTensor(numel: Int, offset: Int, size: [Int], stride: [Int], says: String) throws {
        let path = try torchFile(statePickle(numel: numel, offset: offset, size: size, stride: stride))
        expectError(["pytorch_model.bin", says]) { _ = try TorchCheckpoint.load(path: path) }
    }

    // Class H: a BINUNICODE8 length of 2^63 − 1; class I: 50,000 nested tuples in a 50 KB pickle.
    @Test("torch.save: huge string lengths and deep nesting")
    func lengthsAndNesting() throws {
        var p: [UInt8] = [0x80, 0x02, 0x8D]
        withUnsafeBytes(of: UInt64(Int.max).littleEndian) { p += $0 }
        expectError(["pytorch_model.bin", "end of data"]) { _ = try TorchCheckpoint.load(path: try torchFile(p)) }
        var q: [UInt8] = [0x80, 0x02, 0x8D] + [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]
        expectError(["pytorch_model.bin", "too large"]) { _ = try TorchCheckpoint.load(path: try torchFile(q)) }
        q = [0x80, 0x02, UInt8(ascii: "]")] + [UInt8](repeating: 0x85, count: 50_000) + [UInt8(ascii: ".")]
        expectError(["pytorch_model.bin", "nested deeper"]) { _ = try TorchCheckpoint.load(path: try torchFile(q)) }
        q = [0x80, 0x02] + [UInt8](repeating: UInt8(ascii: "]"), count: 25_000) + [UInt8](repeating: UInt8(ascii: "a"), count: 24_999) + [UInt8(ascii: ".")]
        expectError(["pytorch_model.bin", "nested deeper"]) { _ = try TorchCheckpoint.load(path: try torchFile(q)) }
    }

    // Class J: a ZIP entry whose size runs past the end of the file.
    @Test("torch.save: a ZIP entry larger than the file")
    func zipEntryTooLarge() throws {
        let path = try torchFile(statePickle(numel: 4, offset: 0, size: [4], stride: [1]), sizeOverride: ["archive/data/0": 1 << 30])
        expectError(["pytorch_model.bin", "archive/data/0", "past the end"]) { _ = try TorchCheckpoint.load(path: path) }
    }
}

@Suite("Hostile tokenizer files")
struct HostileTokenizerTests {
    func load(_ json: String) throws -> Tokenizer { try Tokenizer(json: try JSON.parse(Array(json.utf8), source: "tokenizer.json"), source: "tokenizer.json") }

    // Classes K and S: ids that are negative or past 2^31 − 1 (they index tables and are packed into 32 bits);
    // class T: a model type that is not a string.
    @Test("token ids outside 0 ... 2^31 − 1 and non-string model types are refused", arguments: [
        (#"{"model": {"type": "BPE", "vocab": {"a": 0, "b": -1, "ab": 2}, "merges": ["a b"]}}"#, "vocab entry 'b'"),
        (#"{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2147483648}, "merges": ["a b"]}}"#, "vocab entry 'ab'"),
        (#"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "added_tokens": [{"id": 8000000000000000, "content": "<x>"}]}"#, "added token '<x>'"),
        (#"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>"}}, {"Sequence": {"id": "A"}}], "special_tokens": {"<s>": {"ids": [-1]}}}}"#, "TemplateProcessing special token '<s>'"),
        (#"{"model": {"type": 5, "vocab": {"a": 0}, "merges": []}}"#, "model.type"),
    ])
    func badIDs(json: String, mentions: String) throws {
        do {
            _ = try load(json)
            Issue.record("accepted: \(json)")
        } catch {
            #expect("\(error)".contains(mentions) && "\(error)".contains("tokenizer.json"), "\(error)")
        }
    }
}
