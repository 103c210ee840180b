import Foundation
import Mamba2
import Mamba2Hub
import Mamba2TestSupport
import Testing

/// A Hugging Face Hub stand-in on 127.0.0.1: the model-info API, `resolve` URLs that answer HEAD with
/// ETags (small files) or a redirect to a CDN path with X-Linked-Etag/X-Linked-Size (large files), and
/// a CDN that honours Range and breaks its first full transfer halfway, as a flaky network would.
final class TestHubServer: @unchecked Sendable {
    let repo = "test-org/tiny-mamba2"
    let commit = "0123456789abcdef0123456789abcdef01234567"
    let files: [String: [UInt8]]
    private(set) var port: UInt16 = 0
    private var fd: Int32 = -1
    private let lock = NSLock()
    private var _log: [String] = []
    private var interrupted = false
    var log: [String] { lock.lock(); defer { lock.unlock() }; return _log }

    init(files: [String: [UInt8]]) throws {
        self.files = files
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, 4)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        let ok = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard ok == 0, listen(fd, 16) == 0 else { throw Mamba2Error.io(path: "test server", reason: "cannot listen") }
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        port = UInt16(bigEndian: addr.sin_port)
        let thread = Thread { [self] in serve() }
        thread.start()
    }

    var endpoint: String { "http://127.0.0.1:\(port)" }

    func stop() { shutdown(fd, Int32(SHUT_RDWR)); close(fd) }

    func etag(_ name: String) -> String { String(format: "%064x", abs(name.hashValue) % Int(Int32.max)) }

    private func serve() {
        while true {
            let c = accept(fd, nil, nil)
            if c < 0 { return }
            handle(c)
            close(c)
        }
    }

    private func send(_ c: Int32, _ status: String, _ headers: [String: String], _ body: [UInt8] = [], bodyLength: Int? = nil) {
        var h = "HTTP/1.1 \(status)\r\nConnection: close\r\n"
        var hs = headers
        if hs["Content-Length"] == nil { hs["Content-Length"] = String(bodyLength ?? body.count) }
        for (k, v) in hs { h += "\(k): \(v)\r\n" }
        h += "\r\n"
        let bytes = Array(h.utf8) + body
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { write(c, $0.baseAddress! + off, bytes.count - off) }
            if n <= 0 { return }
            off += n
        }
    }

    private func handle(_ c: Int32) {
        var buf = [UInt8](repeating: 0, count: 65536)
        var req = [UInt8]()
        while !req.ends(with: Array("\r\n\r\n".utf8)) {
            let n = read(c, &buf, buf.count)
            if n <= 0 { return }
            req += buf[0..<n]
        }
        let text = String(decoding: req, as: UTF8.self)
        let lines = text.components(separatedBy: "\r\n")
        let parts = lines[0].split(separator: " ")
        guard parts.count >= 2 else { return }
        let method = String(parts[0]), path = String(parts[1])
        var headers: [String: String] = [:]
        for l in lines.dropFirst() where l.contains(":") {
            let i = l.firstIndex(of: ":")!
            headers[l[..<i].lowercased()] = l[l.index(after: i)...].trimmingCharacters(in: .whitespaces)
        }
        lock.lock(); _log.append("\(method) \(path)" + (headers["range"].map { " range=\($0)" } ?? "") + (headers["authorization"].map { " auth=\($0)" } ?? "")); lock.unlock()

        if path == "/api/models/\(repo)/revision/main" {
            let siblings = (files.keys.sorted() + ["README.md"]).map { "{\"rfilename\":\"\($0)\"}" }.joined(separator: ",")
            send(c, "200 OK", ["Content-Type": "application/json"], Array("{\"id\":\"\(repo)\",\"sha\":\"\(commit)\",\"siblings\":[\(siblings)]}".utf8))
            return
        }
        let resolve = "/\(repo)/resolve/\(commit)/"
        if path.hasPrefix(resolve), let data = files[String(path.dropFirst(resolve.count))] {
            let name = String(path.dropFirst(resolve.count))
            if name.hasSuffix(".safetensors") {
                // Large files live on the "CDN": a redirect with the LFS ETag and size.
                send(c, "302 Found", ["Location": "\(endpoint)/cdn/\(name)", "X-Linked-Etag": "\"\(etag(name))\"",
                                      "X-Linked-Size": String(data.count), "X-Repo-Commit": commit, "ETag": "\"wrong\""])
            } else if method == "HEAD" {
                send(c, "200 OK", ["ETag": "\"\(etag(name))\"", "X-Repo-Commit": commit], bodyLength: data.count)
            } else {
                send(c, "200 OK", ["ETag": "\"\(etag(name))\""], data)
            }
            return
        }
        if path.hasPrefix("/cdn/"), let data = files[String(path.dropFirst(5))] {
            if let range = headers["range"], range.hasPrefix("bytes="), let from = Int(range.dropFirst(6).prefix { $0 != "-" }), from < data.count {
                send(c, "206 Partial Content", ["Content-Range": "bytes \(from)-\(data.count - 1)/\(data.count)"], Array(data[from...]))
                return
            }
            lock.lock(); let first = !interrupted; interrupted = true; lock.unlock()
            if first {
                // Promise the whole body, deliver half, hang up.
                send(c, "200 OK", [:], Array(data[0..<(data.count / 2)]), bodyLength: data.count)
                return
            }
            send(c, "200 OK", [:], data)
            return
        }
        send(c, "404 Not Found", ["Content-Type": "text/plain"], Array("not found".utf8))
    }
}

extension Array where Element == UInt8 {
    func ends(with s: [UInt8]) -> Bool { count >= s.count && Array(suffix(s.count)) == s }
}

@Suite("Hugging Face Hub")
struct HubTests {
    static func tinyFiles() throws -> [String: [UInt8]] {
        ["config.json": try readBytes(fixture("tiny-hf/config.json")), "model.safetensors": try readBytes(fixture("tiny-hf/model.safetensors"))]
    }

    @Test("downloads into the huggingface_hub cache layout, resuming a broken transfer; then works offline")
    func download() async throws {
        let server = try TestHubServer(files: try Self.tinyFiles())
        let cache = makeTempDir()
        let client = HubClient(endpoint: server.endpoint, cacheDirectory: cache, token: "hf_secret", offline: false)
        let dir = try await client.snapshot(repo: server.repo)
        let repoDir = cache + "/models--test-org--tiny-mamba2"
        #expect(dir == repoDir + "/snapshots/" + server.commit)
        #expect(String(decoding: try readBytes(repoDir + "/refs/main"), as: UTF8.self) == server.commit)
        // Snapshot entries are relative symlinks into blobs/ named by the (linked) ETag.
        for name in ["config.json", "model.safetensors"] {
            let target = try FileManager.default.destinationOfSymbolicLink(atPath: dir + "/" + name)
            #expect(target == "../../blobs/" + server.etag(name))
            #expect(try readBytes(dir + "/" + name) == (try Self.tinyFiles())[name]!)
        }
        #expect(!FileManager.default.fileExists(atPath: repoDir + "/blobs/" + server.etag("model.safetensors") + ".incomplete"))
        // The broken transfer was resumed with a Range request, and the token went to the hub.
        #expect(server.log.contains { $0.hasPrefix("GET /cdn/model.safetensors range=bytes=") })
        #expect(server.log.contains { $0.contains("/api/models/") && $0.contains("auth=Bearer hf_secret") })
        // The model runs.
        let g = try TinyGolden()
        let model = try Mamba2Model.load(directory: dir)
        var states = [model.newState()]
        #expect(try model.prefill([g.ids[0]], states: &states)[0].relativeError(to: g.logits(0)) < 1e-5)
        // Offline, with the server gone, the cache answers.
        server.stop()
        let offline = HubClient(endpoint: server.endpoint, cacheDirectory: cache, token: nil, offline: true)
        #expect(try await offline.snapshot(repo: server.repo) == dir)
        do {
            _ = try await offline.snapshot(repo: "test-org/other")
            Issue.record("no error for an uncached repo offline")
        } catch { #expect("\(error)".contains("HF_HUB_OFFLINE")) }
    }

    @Test("an unknown repository is a clear 404 error")
    func notFound() async throws {
        let server = try TestHubServer(files: try Self.tinyFiles())
        defer { server.stop() }
        let client = HubClient(endpoint: server.endpoint, cacheDirectory: makeTempDir(), token: nil, offline: false)
        do {
            _ = try await client.snapshot(repo: "test-org/missing")
            Issue.record("no error for a missing repo")
        } catch {
            #expect("\(error)".contains("404") && "\(error)".contains("test-org/missing"), "\(error)")
        }
        #expect(!HubClient.isRepoID("../etc") && !HubClient.isRepoID("a/b/c") && HubClient.isRepoID("state-spaces/mamba2-130m"))
    }

    @Test("mamba2 generate --model ORG/NAME downloads and generates")
    func cli() throws {
        let server = try TestHubServer(files: try Self.tinyFiles())
        defer { server.stop() }
        let (prompt, expected) = try TinyGolden.greedyFixture()
        let home = makeTempDir()
        let r = try runCLI(["generate", "--model", server.repo, "--prompt-ids", prompt.map(String.init).joined(separator: ","),
                            "--temperature", "0", "--max-tokens", "12", "--print-ids"],
                           environment: ["HF_ENDPOINT": server.endpoint, "HF_HOME": home])
        #expect(r.status == 0, "\(r.err)")
        #expect(r.out.trimmingCharacters(in: .whitespacesAndNewlines) == expected.map(String.init).joined(separator: ","))
        #expect(FileManager.default.fileExists(atPath: home + "/hub/models--test-org--tiny-mamba2/refs/main"))
    }
}
