import ArgumentParser
import Mamba2
import Mamba2Training
import Mamba2CUDA
import Mamba2Diagnostics
import Mamba2Hub
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

struct GenerateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Generates text (or ids) from a prompt, streaming to stdout; a summary goes to stderr.")

    @OptionGroup var compute: ComputeOptions
    @Option(help: "Model directory (config.json + weights [+ tokenizer.json]) or a Hugging Face repo id such as state-spaces/mamba2-130m (default: the small English model in \(LanguageModel.bundledModelRelativePath)).") var model: String?
    @Option(help: "Revision (branch, tag or commit) of a Hub repo.") var revision: String = "main"
    @Option(help: "tokenizer.json (default: the model's, or the bundled GPT-NeoX-20B one for state-spaces models).") var tokenizer: String?
    @Argument(help: "The prompt (or use --prompt, --prompt-file, --prompt-ids, or stdin).") var positionalPrompt: String?
    @Option(help: "The prompt text.") var prompt: String?
    @Option(help: "Read the prompt from a file.") var promptFile: String?
    @Option(help: "The prompt as token ids, comma-separated (for a model without a tokenizer).") var promptIds: String?
    @Option(help: "A file with one prompt per line, generated as one batch.") var promptsFile: String?
    @Option(help: "Tokens to generate at most.") var maxTokens: Int = 128
    @Option(help: "Sampling temperature; 0 is greedy.") var temperature: Float = 0.8
    @Option(help: "Keep the k most likely tokens (0: all).") var topK: Int = 0
    @Option(help: "Nucleus sampling mass (1: off).") var topP: Float = 1
    @Option(help: "Drop tokens below min-p times the top probability (0: off).") var minP: Float = 0
    @Option(help: "Repetition penalty (1: off).") var repetitionPenalty: Float = 1
    @Option(help: "Sampler seed: the same seed gives the same output.") var seed: UInt64 = 0
    @Option(help: "Stop when this string appears (repeatable).") var stop: [String] = []
    @Option(help: "Stop after this token id (repeatable; default: the tokenizer's end-of-text).") var stopId: [Int] = []
    @Flag(help: "Print the generated token ids (one line, comma-separated) instead of text.") var printIds = false
    @Option(help: "Print the log-probabilities of the N most likely tokens at each step (to stderr).") var logprobs: Int = 0
    @OptionGroup var decodeWeights: DecodeWeightOptions
    @OptionGroup var device: DeviceOptions
    @Flag(help: "Show load time and which SSD form ran.") var verbose = false

    func run() async throws {
        try compute.apply()
        guard let model = model ?? LanguageModel.bundledModelPath else {
            throw ValidationError("no --model given, and the bundled model (\(LanguageModel.bundledModelRelativePath) of the checkout this binary was built from, or MAMBA2_MODEL) was not found")
        }
        let modelDir = try await resolveModel(model, revision: revision)
        let t0 = monotonicSeconds()
        let place = try device.place()
        let lm = try LanguageModel.load(directory: modelDir, tokenizerPath: tokenizer, device: place, weights: decodeWeights.parsed(for: place))
        let loadSeconds = monotonicSeconds() - t0
        var params = GenerateParameters(maxTokens: maxTokens, temperature: temperature, topK: topK, topP: topP, minP: minP,
                                        repetitionPenalty: repetitionPenalty, seed: seed, stopStrings: stop,
                                        stopTokenIDs: Set(stopId), topLogprobs: logprobs)
        if stopId.isEmpty, let tok = lm.tokenizer, let eos = tok.endOfTextID { params.stopTokenIDs = [eos] }
        if verbose {
            printErr("loaded \(model) in \(fixed(loadSeconds, 2)) s; tokenizer: \(lm.tokenizer == nil ? "none" : (tokenizer ?? "auto")); "
                + "running on \(lm.backend.deviceDescription), weights \(lm.backend.weightType.rawValue); BLAS \(BLAS.name)")
        }
        if let promptsFile { return try runBatch(lm, params: params, file: promptsFile) }

        let ids = try promptIDs(lm)
        var gen = try lm.tokenGenerator(prompt: ids, parameters: params, printingText: !printIds)
        var generated: [Int] = []
        while let step = try gen.next() {
            generated.append(step.token.id)
            if let text = step.text { printOut(text) }
            if logprobs > 0 {
                printErr("token \(step.token.id) logprob \(fixed(Double(step.token.logprob), 4)); top: "
                    + step.token.top.map { "\($0.id):\(fixed(Double($0.logprob), 4))" }.joined(separator: " "))
            }
        }
        if let rest = gen.finishText() { printOut(rest) }
        if printIds { printOut(generated.map(String.init).joined(separator: ",")) }
        printOut("\n")
        let info = gen.info
        printErr("prompt \(info.promptTokens) tokens, prefill \(fixed(info.prefillTokensPerSecond, 1)) tokens/s; "
            + "generated \(info.generatedTokens) tokens, decode \(fixed(info.decodeTokensPerSecond, 1)) tokens/s; "
            + "stop: \(info.stopReason.rawValue); peak memory \(bytesString(peakResidentBytes()))")
    }

    func promptIDs(_ lm: LanguageModel) throws -> [Int] {
        if let promptIds { return try parseIDs(promptIds, option: "--prompt-ids") }
        var text: String?
        if let prompt { text = prompt } else if let positionalPrompt { text = positionalPrompt } else if let promptFile {
            text = try readText(promptFile)
        } else if isatty(0) == 0 {
            var bytes: [UInt8] = []
            var buf = [UInt8](repeating: 0, count: 65536)
            while true {
                let n = read(0, &buf, buf.count)
                if n <= 0 { break }
                bytes += buf[0..<n]
            }
            text = String(decoding: bytes, as: UTF8.self)
        }
        guard let text else { throw ValidationError("give a prompt: --prompt, a positional argument, --prompt-file, --prompt-ids or stdin") }
        guard let tok = lm.tokenizer else { throw ValidationError("this model has no tokenizer: give --tokenizer FILE or --prompt-ids") }
        return tok.encode(text)
    }

    func runBatch(_ lm: LanguageModel, params: GenerateParameters, file: String) throws {
        let lines = try readText(file).split(separator: "\n").map(String.init).filter { !$0.isEmpty }
        guard !lines.isEmpty else { throw ValidationError("\(file) holds no prompt") }
        let prompts: [[Int]] = try lines.map { line in
            if printIds || lm.tokenizer == nil { return try parseIDs(line, option: "--prompts-file line") }
            return lm.tokenizer!.encode(line)
        }
        let t0 = monotonicSeconds()
        let outs = try lm.generateBatch(prompts: prompts, parameters: params)
        let seconds = monotonicSeconds() - t0
        for out in outs {
            let ids = out.map(\.id)
            if printIds || lm.tokenizer == nil { printOut(ids.map(String.init).joined(separator: ",") + "\n") }
            else { printOut(lm.tokenizer!.decode(ids) + "\n---\n") }
        }
        let total = outs.reduce(0) { $0 + $1.count }
        printErr("\(prompts.count) prompts, \(total) tokens generated in \(fixed(seconds, 2)) s (\(fixed(Double(total) / seconds, 1)) tokens/s aggregate); peak memory \(bytesString(peakResidentBytes()))")
    }
}

/// A local directory as it is; a Hub repo id downloaded (or found) in the Hugging Face cache, with a
/// progress bar on stderr.
func resolveModel(_ model: String, revision: String) async throws -> String {
    guard HubClient.isRepoID(model) else { return model }
    let client = HubClient()
    let dir = try await client.snapshot(repo: model, revision: revision) { p in
        let width = 30
        if let total = p.total, total > 0 {
            let done = min(width, p.bytes * width / total)
            writeAll(2, "\r\(p.file) [" + String(repeating: "#", count: done) + String(repeating: ".", count: width - done)
                + "] \(bytesString(p.bytes)) / \(bytesString(total))   " + (p.bytes >= total ? "\n" : ""))
        } else {
            writeAll(2, "\r\(p.file) \(bytesString(p.bytes))   ")
        }
    }
    return dir
}

/// Writes to stdout unbuffered, so text appears as it is generated.
func printOut(_ s: String) { writeAll(1, s) }

func printErr(_ s: String) { writeAll(2, s + "\n") }

func writeAll(_ fd: Int32, _ s: String) {
    var bytes = Array(s.utf8)
    var off = 0
    while off < bytes.count {
        let n = bytes.withUnsafeMutableBytes { write(fd, $0.baseAddress! + off, $0.count - off) }
        if n <= 0 { return }
        off += n
    }
}
