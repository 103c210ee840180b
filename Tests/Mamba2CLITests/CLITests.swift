import Foundation
import Mamba2
import Mamba2Training
import Mamba2TestSupport
import Testing


@Suite("Command line")
struct CLITests {
    @Test("generate --prompt-ids --print-ids reproduces the reference's greedy tokens")
    func generateGreedy() throws {
        let (prompt, expected) = try TinyGolden.greedyFixture()
        for dir in ["tiny-ssm", "tiny-hf"] {
            let r = try runCLI(["generate", "--model", fixture(dir), "--prompt-ids", prompt.map(String.init).joined(separator: ","),
                                "--temperature", "0", "--max-tokens", "12", "--print-ids"])
            #expect(r.status == 0, "\(r.err)")
            #expect(r.out.trimmingCharacters(in: .whitespacesAndNewlines) == expected.map(String.init).joined(separator: ","))
            #expect(r.err.contains("decode") && r.err.contains("tokens/s") && r.err.contains("peak memory"))
        }
    }

    @Test("generate with the same seed prints the same text")
    func generateSeed() throws {
        let args = ["generate", "--model", fixture("tiny-hf"), "--tokenizer", repoRoot + "/Tokenizers/gpt-neox-20b/tokenizer.json",
                    "--prompt", "#$%", "--max-tokens", "20", "--temperature", "1", "--seed", "5"]
        let a = try runCLI(args), b = try runCLI(args)
        #expect(a.status == 0, "\(a.err)")
        #expect(a.out == b.out && !a.out.isEmpty)
    }

    // logits written by the command equal the reference (1e-5 relative, as the library test).
    @Test("logits writes the reference logits")
    func logits() throws {
        let g = try TinyGolden()
        let out = makeTempDir() + "/logits.safetensors"
        let r = try runCLI(["logits", "--model", fixture("tiny-ssm"), "--tokens", g.ids[0].map(String.init).joined(separator: ","),
                            "--tokens", g.ids[1].map(String.init).joined(separator: ","), "--output", out])
        #expect(r.status == 0, "\(r.err)")
        let t = try SafeTensorsFile(path: out).tensor("logits")
        #expect(t.shape == [2, 37, 112])
        #expect(t.relativeError(to: g.logits) < 1e-5)
    }

    // perplexity equals the mean NLL computed here from the reference logits (windows of 7 tokens
    // stream through the state; 1e-4 relative covers float32 log-sum-exp over 112 logits).
    @Test("perplexity streams in windows and matches the reference logits")
    func perplexity() throws {
        let g = try TinyGolden()
        let r = try runCLI(["perplexity", "--model", fixture("tiny-hf"), "--tokens", g.ids[0].map(String.init).joined(separator: ","), "--window", "7"])
        #expect(r.status == 0, "\(r.err)")
        var nll = 0.0
        let logits = g.logits(0)
        for t in 0..<36 {
            let row = logits.data[(t * 112)..<((t + 1) * 112)].map(Double.init)
            let m = row.max()!
            nll += log(row.map { exp($0 - m) }.reduce(0, +)) + m - row[g.ids[0][t + 1]]
        }
        let line = r.out.split(separator: "\n").first { $0.hasPrefix("mean NLL") }!
        let value = Double(line.split(separator: " ").first { Double($0) != nil }!)!
        #expect(abs(value - nll / 36) <= 1e-4 * nll / 36)
    }

    @Test("info reports the shape, parameters and state size")
    func info() throws {
        let r = try runCLI(["info", "--model", fixture("tiny-ssm-bf16-tied")])
        #expect(r.status == 0, "\(r.err)")
        #expect(r.out.contains("63.54K") && r.out.contains("BF16") && r.out.contains("state-spaces"))
    }

    // The CPU self-test runs every kernel path this host has (its first line names them) and passes; a cap
    // above the host's best is refused naming the option.
    @Test("selftest --device cpu checks every path the host runs")
    func cpuSelfTest() throws {
        let r = try runCLI(["selftest", "--device", "cpu", "--fixtures", fixturesDir])
        #expect(r.status == 0, "\(r.out)\(r.err)")
        #expect(r.out.contains(" passed, 0 failed"), "\(r.out)")
        for level in CPUKernelLevel.supported { #expect(r.out.contains("gemm \(level.rawValue) "), "\(level)") }
        if let above = CPUKernelLevel.allCases.first(where: { $0 > CPUKernelLevel.host }) {
            let capped = try runCLI(["bench", "model", "--shape", "130m", "--cpu-kernels", above.rawValue])
            #expect(capped.status != 0 && capped.err.contains("--cpu-kernels \(above.rawValue): this host runs at most"), "\(capped.err)")
        }
    }

    @Test("tokenize and detokenize, one string and JSON lines")
    func tokenize() throws {
        let tok = repoRoot + "/Tokenizers/gpt-neox-20b/tokenizer.json"
        let r = try runCLI(["tokenize", "--tokenizer", tok, "--text", "Hello world"])
        #expect(r.out == "12092,1533\n")
        let jsonl = makeTempDir() + "/in.jsonl"
        try writeBytes(Array("\"Hello world\"\n\"The quick brown fox\"\n".utf8), jsonl)
        let j = try runCLI(["tokenize", "--tokenizer", tok, "--jsonl", jsonl])
        #expect(j.out == "[12092,1533]\n[510,3158,8516,30013]\n")
        let d = try runCLI(["detokenize", "--tokenizer", tok, "--ids", "12092,1533"])
        #expect(d.out == "Hello world\n")
    }

    @Test("bad input exits non-zero with a message naming the culprit", arguments: [
        (["generate", "--model", "/nonexistent", "--prompt-ids", "1"], "config.json"),
        (["generate", "--model", "TINY", "--prompt-ids", "1,x"], "--prompt-ids"),
        (["generate", "--model", "TINY", "--prompt-ids", "500"], "outside the vocabulary"),
        (["generate", "--model", "TINY", "--prompt", "hi"], "tokenizer"),
        (["generate", "--model", "TINY", "--prompt-ids", "1", "--top-p", "0"], "top_p"),
        (["logits", "--model", "TINY", "--tokens", "1,2", "--tokens", "1", "--output", "/tmp/x.safetensors"], "same length"),
        (["tokenize", "--tokenizer", "/nonexistent.json", "--text", "a"], "/nonexistent.json"),
        (["bench", "ssd", "--lengths", "0"], "--lengths"),
        (["selftest", "--device", "cuda"], "libcuda.so.1"),
        (["bench", "model", "--shape", "130m", "--cpu-kernels", "avx1024"], "--cpu-kernels"),
        (["selftest", "--device", "cpu", "--fixtures", "/nonexistent"], "/nonexistent"),
        (["generate", "--model", "TINY", "--prompt-ids", "1", "--device", "cuda"], "libcuda.so.1"),
        (["generate", "--model", "TINY", "--prompt-ids", "1", "--device", "gpu"], "--device"),
        (["generate", "--model", "TINY", "--prompt-ids", "1", "--device", "cuda", "--weights-dtype", "fp8"], "--weights-dtype"),
        (["generate", "--model", "TINY", "--prompt-ids", "1", "--state-dtype", "bf16"], "--state-dtype"),
        (["generate", "--model", "TINY", "--prompt-ids", "1", "--device", "cuda", "--state-dtype", "f8"], "--state-dtype"),
        (["bench", "--shape", "130m", "--device", "cuda"], "libcuda.so.1"),
        (["bench", "ssd-kernels", "--device", "cuda", "--dtype", "bf16"], "libcuda.so.1"),
        (["bench", "ssd-kernels", "--device", "tpu"], "--device"),
        (["bench", "ssd-kernels", "--device", "cpu"], "--device"),
        (["generate", "--model", "TINY", "--prompts-file", "/nonexistent-prompts.txt", "--device", "cuda"], "libcuda.so.1"),
        (["generate", "--model", "TINY", "--prompt-ids", "1", "--threads", "2147483648"], "--threads"),
    ])
    func badInput(args: [String], mentions: String) throws {
        let r = try runCLI(args.map { $0 == "TINY" ? fixture("tiny-hf") : $0 })
        #expect(r.status != 0)
        #expect(r.err.contains(mentions), "\(r.err)")
        #expect(!r.err.contains("Fatal error") && !r.err.contains("crashed"))
    }
}

@Suite("Linking")
struct LinkingTests {
    // OpenBLAS is linked statically, so the command starts where no BLAS shared library is installed
    // (the GPU machines). The dynamic dependencies must name no BLAS.
    @Test("the command needs no BLAS shared library")
    func noSharedBLAS() throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/ldd")
        p.arguments = [repoRoot + "/.build/debug/mamba2"]
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        #expect(p.terminationStatus == 0)
        #expect(text.contains("libc.so"))
        #expect(!text.lowercased().contains("blas") && !text.contains("lapack"), "\(text)")
    }
}

@Suite("The model that ships")
struct BundledModelTests {
    // With no --model, generate uses Models/english-bytes (trained by mamba2 train, byte-level): the command
    // succeeds, prints text that is valid UTF-8 and mostly letters and spaces, and the same seed repeats it.
    @Test("generate without --model uses the bundled English model")
    func bundled() throws {
        let args = ["generate", "--prompt", "And the LORD said unto Moses", "--max-tokens", "120", "--temperature", "0.7",
                    "--seed", "3", "--threads", "1"]
        let a = try runCLI(args), b = try runCLI(args)
        #expect(a.status == 0, "\(a.err)")
        #expect(a.out == b.out)
        let text = a.out
        #expect(text.count >= 60, "\(text)")
        let letters = text.unicodeScalars.filter { ("a"..."z").contains($0) || ("A"..."Z").contains($0) || $0 == " " }.count
        #expect(Double(letters) / Double(text.unicodeScalars.count) > 0.8, "\(text)")
        // English-like: a few of the commonest words of the corpus appear as words.
        let words = Set(text.split(whereSeparator: { !$0.isLetter }).map { $0.lowercased() })
        #expect(words.intersection(["the", "and", "of", "unto", "he", "that", "his", "i", "shall", "to", "in"]).count >= 3, "\(text)")
    }

    // The bundled model's config, weights and tokenizer load through the library API.
    @Test("LanguageModel.bundledModelPath loads")
    func loads() throws {
        let path = try #require(LanguageModel.bundledModelPath)
        let lm = try LanguageModel.load(directory: path)
        #expect(lm.tokenizer != nil && lm.model.weights.storedDType == "BF16")
        #expect(lm.model.config.vocabSize == ByteTokenizer.vocabularySize + 7)  // padded to a multiple of 8 by the preset
    }
}
