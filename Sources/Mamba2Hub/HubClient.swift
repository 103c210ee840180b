import AsyncHTTPClient
import Mamba2
import NIOCore
import NIOHTTP1
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Fetches Mamba-2 model repositories from the Hugging Face Hub into the cache exactly as
/// `huggingface_hub` lays it out, so that models downloaded by Python tools are reused and ours serve them:
///
///     $HF_HOME/hub/models--ORG--NAME/
///         refs/main                      the commit the branch pointed at
///         blobs/ETAG                     file contents, named by ETag (sha256 for LFS files)
///         snapshots/COMMIT/FILE          relative symlinks into blobs/
///
/// Honours HF_ENDPOINT, HF_HOME (or HF_HUB_CACHE), HF_TOKEN and HF_HUB_OFFLINE. Interrupted transfers
/// resume from `blobs/ETAG.incomplete` with an HTTP Range request.
public final class HubClient: Sendable {
    public let endpoint: String
    public let cacheDirectory: String
    public let token: String?
    public let offline: Bool

    /// Reads the standard Hugging Face environment variables.
    public convenience init() {
        func env(_ k: String) -> String? { getenv(k).map { String(cString: $0) }.flatMap { $0.isEmpty ? nil : $0 } }
        let home = env("HF_HOME") ?? ((env("XDG_CACHE_HOME") ?? ((env("HOME") ?? "/tmp") + "/.cache")) + "/huggingface")
        let offlineValue = env("HF_HUB_OFFLINE")?.lowercased()
        self.init(endpoint: env("HF_ENDPOINT") ?? "https://huggingface.co", cacheDirectory: env("HF_HUB_CACHE") ?? home + "/hub",
                  token: env("HF_TOKEN"), offline: offlineValue == "1" || offlineValue == "true" || offlineValue == "yes")
    }

    public init(endpoint: String, cacheDirectory: String, token: String?, offline: Bool) {
        self.endpoint = endpoint.hasSuffix("/") ? String(endpoint.dropLast()) : endpoint
        self.cacheDirectory = cacheDirectory
        self.token = token
        self.offline = offline
    }

    /// True when `name` looks like a Hub repo id ("org/name") rather than a local directory.
    public static func isRepoID(_ name: String) -> Bool {
        let parts = name.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, !MappedFile.exists(name) else { return false }
        return parts.allSatisfy { p in
            !p.isEmpty && p != "." && p != ".." && p.allSatisfy { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == "." }
        }
    }

    /// Progress of one file: bytes on disk so far, and the total when known.
    public struct Progress: Sendable {
        public var file: String
        public var bytes: Int
        public var total: Int?
    }

    /// The local snapshot directory of `repo` at `revision`, downloading the files a Mamba-2 model needs
    /// (config, weights in whichever layout the repo has, tokenizer.json if present) when not cached.
    public func snapshot(repo: String, revision: String = "main",
                         progress: @escaping @Sendable (Progress) -> Void = { _ in }) async throws -> String {
        guard HubClient.isRepoID(repo) else { throw HubError.badRepoID(repo) }
        let repoDir = cacheDirectory + "/models--" + repo.split(separator: "/").joined(separator: "--")
        if offline { return try cachedSnapshot(repo: repo, repoDir: repoDir, revision: revision) }

        let http = HTTPClient(eventLoopGroupProvider: .singleton,
                              configuration: HTTPClient.Configuration(redirectConfiguration: .disallow))
        do {
            let dir = try await download(http: http, repo: repo, repoDir: repoDir, revision: revision, progress: progress)
            try await http.shutdown()
            return dir
        } catch {
            try? await http.shutdown()
            throw error
        }
    }

    func cachedSnapshot(repo: String, repoDir: String, revision: String) throws -> String {
        let commit: String
        if revision.count == 40, revision.allSatisfy(\.isHexDigit) { commit = revision } else {
            guard let ref = try? MappedFile.readAll(repoDir + "/refs/" + revision) else { throw HubError.notCached(repo, cacheDirectory) }
            commit = String(decoding: ref, as: UTF8.self).trimmedWhitespace
        }
        let dir = repoDir + "/snapshots/" + commit
        guard MappedFile.exists(dir + "/config.json") else { throw HubError.notCached(repo, cacheDirectory) }
        return dir
    }

    func download(http: HTTPClient, repo: String, repoDir: String, revision: String,
                  progress: @escaping @Sendable (Progress) -> Void) async throws -> String {
        // The file list and the commit.
        let apiURL = "\(endpoint)/api/models/\(repo)/revision/\(revision)"
        let (status, _, body) = try await get(http, apiURL, maxBytes: 16 << 20)
        guard status == 200 else { throw HubError.http(status: status, url: apiURL, hint: status == 401 || status == 403 ? "set HF_TOKEN for gated or private repositories" : status == 404 ? "no such repository or revision" : nil) }
        let info = try JSON.parse(body, source: apiURL)
        guard let commit = info["sha"]?.stringValue, commit.count >= 7 else { throw HubError.protocolError(apiURL, "no commit 'sha' in the answer") }
        let siblings = Set((info["siblings"]?.arrayValue ?? []).compactMap { $0["rfilename"]?.stringValue })
        var files = ["config.json"]
        if siblings.contains("model.safetensors") { files.append("model.safetensors") }
        else if siblings.contains("model.safetensors.index.json") { files.append("model.safetensors.index.json") }
        else if siblings.contains("pytorch_model.bin") { files.append("pytorch_model.bin") }
        else { throw HubError.protocolError(apiURL, "the repository has neither model.safetensors(.index.json) nor pytorch_model.bin") }
        if siblings.contains("tokenizer.json") { files.append("tokenizer.json") }
        guard siblings.contains("config.json") else { throw HubError.protocolError(apiURL, "the repository has no config.json") }

        let snapshotDir = repoDir + "/snapshots/" + commit
        var i = 0
        while i < files.count {
            try await fetch(http: http, repo: repo, repoDir: repoDir, commit: commit, file: files[i], progress: progress)
            if files[i] == "model.safetensors.index.json" {
                let index = try JSON.parse(try MappedFile.readAll(snapshotDir + "/" + files[i]), source: files[i])
                let shards = Set((index["weight_map"]?.objectValue ?? [:]).values.compactMap(\.stringValue)).sorted()
                for s in shards where !files.contains(s) {
                    guard !s.contains(".."), !s.hasPrefix("/") else { throw HubError.protocolError(files[i], "shard name '\(s)' leaves the snapshot") }
                    files.append(s)
                }
            }
            i += 1
        }
        if revision != commit {
            try makeDirectories(repoDir + "/refs")
            try writeFileAtomically(Array(commit.utf8), to: repoDir + "/refs/" + revision)
        }
        return snapshotDir
    }

    /// One file into blobs/ (resuming a partial download) and its symlink into the snapshot.
    func fetch(http: HTTPClient, repo: String, repoDir: String, commit: String, file: String,
               progress: @escaping @Sendable (Progress) -> Void) async throws {
        let link = repoDir + "/snapshots/" + commit + "/" + file
        if MappedFile.exists(link) { return }
        // HEAD, redirects not followed: the Hub answers with the ETag (X-Linked-Etag for LFS files) and,
        // for large files, a Location on a CDN.
        var url = "\(endpoint)/\(repo)/resolve/\(commit)/\(file)"
        var head = try await request(http, url, method: .HEAD)
        var hops = 0
        while (300..<400).contains(head.status.code), let loc = head.headers.first(name: "location"), loc.hasPrefix("/"), hops < 5 {
            url = origin(of: url) + loc  // a relative redirect (renamed repo): follow the HEAD
            head = try await request(http, url, method: .HEAD)
            hops += 1
        }
        guard head.status == .ok || (300..<400).contains(head.status.code) else {
            throw HubError.http(status: Int(head.status.code), url: url, hint: head.status == .notFound ? "the file '\(file)' is not in \(repo)@\(commit)" : nil)
        }
        guard var etag = head.headers.first(name: "x-linked-etag") ?? head.headers.first(name: "etag") else {
            throw HubError.protocolError(url, "no ETag header: cannot name the blob")
        }
        if etag.hasPrefix("W/") { etag.removeFirst(2) }
        etag.removeAll { $0 == "\"" }
        guard !etag.isEmpty, !etag.contains("/"), !etag.contains("..") else { throw HubError.protocolError(url, "unusable ETag '\(etag)'") }
        let total = (head.headers.first(name: "x-linked-size") ?? head.headers.first(name: "content-length")).flatMap { Int($0) }
        let downloadURL = head.headers.first(name: "location").map { $0.hasPrefix("/") ? origin(of: url) + $0 : $0 } ?? url

        let blob = repoDir + "/blobs/" + etag
        try makeDirectories(repoDir + "/blobs")
        if !MappedFile.exists(blob) {
            try await downloadBlob(http: http, url: downloadURL, sameHost: origin(of: downloadURL) == origin(of: endpoint + "/"),
                                   to: blob, total: total, file: file, progress: progress)
        }
        // snapshots/COMMIT/FILE → ../../blobs/ETAG (one more ../ per folder in FILE).
        let depth = file.split(separator: "/").count - 1
        let target = String(repeating: "../", count: 2 + depth) + "blobs/" + etag
        let linkDir = String(link[..<link.lastIndex(of: "/")!])
        try makeDirectories(linkDir)
        unlink(link)
        guard symlink(target, link) == 0 else { throw HubError.io(link, String(cString: strerror(errno))) }
    }

    func downloadBlob(http: HTTPClient, url: String, sameHost: Bool, to blob: String, total: Int?, file: String,
                      progress: @escaping @Sendable (Progress) -> Void) async throws {
        let partial = blob + ".incomplete"
        var attempts = 0
        while true {
            attempts += 1
            var have = fileSize(partial) ?? 0
            if let total, have > total { unlink(partial); have = 0 }
            if let total, have == total { break }
            do {
                var req = HTTPClientRequest(url: url)
                if sameHost, let token { req.headers.add(name: "Authorization", value: "Bearer \(token)") }
                if have > 0 { req.headers.add(name: "Range", value: "bytes=\(have)-") }
                let resp = try await followRedirects(http, req)
                guard resp.status == .ok || resp.status == .partialContent else {
                    throw HubError.http(status: Int(resp.status.code), url: url, hint: nil)
                }
                // 200 to a Range request: the server sends it all again, so start over.
                let append = resp.status == .partialContent && have > 0
                let fd = open(partial, O_WRONLY | O_CREAT | (append ? O_APPEND : O_TRUNC), 0o644)
                guard fd >= 0 else { throw HubError.io(partial, String(cString: strerror(errno))) }
                var written = append ? have : 0
                var lastReport = 0.0
                do {
                    for try await var chunk in resp.body {
                        while chunk.readableBytes > 0 {
                            let n = chunk.withUnsafeReadableBytes { write(fd, $0.baseAddress!, $0.count) }
                            guard n > 0 else { throw HubError.io(partial, String(cString: strerror(errno))) }
                            chunk.moveReaderIndex(forwardBy: n)
                            written += n
                        }
                        let now = monotonicSeconds()
                        if now - lastReport > 0.1 { progress(Progress(file: file, bytes: written, total: total)); lastReport = now }
                    }
                } catch {
                    close(fd)
                    throw error
                }
                fsync(fd)
                close(fd)
                progress(Progress(file: file, bytes: written, total: total))
                if let total, written != total {
                    throw HubError.protocolError(url, "transfer ended at \(written) of \(total) bytes")
                }
                break
            } catch let e as HubError where e.isFinal {
                throw e
            } catch {
                // A broken transfer: resume from what is on disk, a few times.
                if attempts >= 5 { throw HubError.transfer(url, "\(error)") }
            }
        }
        guard rename(partial, blob) == 0 else { throw HubError.io(blob, String(cString: strerror(errno))) }
    }

    // MARK: HTTP

    func request(_ http: HTTPClient, _ url: String, method: HTTPMethod) async throws -> HTTPClientResponse {
        var req = HTTPClientRequest(url: url)
        req.method = method
        if let token { req.headers.add(name: "Authorization", value: "Bearer \(token)") }
        req.headers.add(name: "User-Agent", value: "mamba2-swift")
        do { return try await http.execute(req, timeout: .seconds(60)) } catch { throw HubError.transfer(url, "\(error)") }
    }

    /// Follows up to 10 redirects; the token goes only to the Hub's own host.
    func followRedirects(_ http: HTTPClient, _ first: HTTPClientRequest) async throws -> HTTPClientResponse {
        var req = first
        for _ in 0..<10 {
            let resp = try await http.execute(req, timeout: .hours(12))
            guard (300..<400).contains(resp.status.code), let loc = resp.headers.first(name: "location") else { return resp }
            let next = loc.hasPrefix("/") ? origin(of: req.url) + loc : loc
            var r = HTTPClientRequest(url: next)
            for (name, value) in req.headers where name.lowercased() != "authorization" || origin(of: next) == origin(of: req.url) {
                r.headers.add(name: name, value: value)
            }
            req = r
        }
        throw HubError.protocolError(first.url, "more than 10 redirects")
    }

    func get(_ http: HTTPClient, _ url: String, maxBytes: Int) async throws -> (Int, HTTPHeaders, [UInt8]) {
        let resp = try await request(http, url, method: .GET)
        let body = try await resp.body.collect(upTo: maxBytes)
        return (Int(resp.status.code), resp.headers, Array(body.readableBytesView))
    }

    func origin(of url: String) -> String {
        guard let scheme = url.firstRange(of: "://") else { return url }
        let rest = url[scheme.upperBound...]
        let host = rest.prefix { $0 != "/" }
        return String(url[..<scheme.upperBound]) + host
    }
}

/// Errors of the Hub client, each naming the URL or file.
public enum HubError: Error, CustomStringConvertible {
    case badRepoID(String)
    case http(status: Int, url: String, hint: String?)
    case protocolError(String, String)
    case transfer(String, String)
    case io(String, String)
    case notCached(String, String)

    var isFinal: Bool {
        switch self { case .http, .badRepoID, .notCached, .io: return true; default: return false }
    }

    public var description: String {
        switch self {
        case let .badRepoID(s): return "'\(s)' is neither a local model directory nor a Hugging Face repo id (ORG/NAME)"
        case let .http(status, url, hint): return "HTTP \(status) from \(url)" + (hint.map { ": \($0)" } ?? "")
        case let .protocolError(url, why): return "\(url): \(why)"
        case let .transfer(url, why): return "download of \(url) failed: \(why)"
        case let .io(path, why): return "\(path): \(why)"
        case let .notCached(repo, cache): return "HF_HUB_OFFLINE is set and \(repo) is not in the cache \(cache)"
        }
    }
}

func fileSize(_ path: String) -> Int? {
    var st = stat()
    return stat(path, &st) == 0 ? Int(st.st_size) : nil
}

extension String {
    var trimmedWhitespace: String { String(drop { $0.isWhitespace }.reversed().drop { $0.isWhitespace }.reversed()) }
}
