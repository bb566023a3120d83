#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The size limits of the files Meridian reads at load time, in one place. A file over
/// its limit is a load error naming the file and the limit, never a partial read.
public enum InputLimits {
    /// Zone files and each `$INCLUDE`d file. The largest zone measured here (1.2 million
    /// records) is about 40 MB of text; 1 GiB leaves room for far bigger zones while a
    /// stray device or a runaway generator cannot take the machine's memory.
    public static let zoneFileBytes = 1 << 30
    /// `meridian.yaml`. A config with 10,000 GSLB names is under 2 MB; 16 MiB bounds the
    /// YAML parser's memory (its node tree costs a few hundred bytes per node).
    public static let configFileBytes = 16 << 20
    /// `geo.cidr_file` maps: 64 MiB is over a million `prefix: target` lines.
    public static let cidrFileBytes = 64 << 20
    /// MaxMind databases (`geo.database`, `geo.asn_database`), which are copied into private
    /// memory (see `GeoDatabase`). GeoIP2 City, the largest MaxMind product, is about
    /// 130 MB; 2 GiB is the bound libmaxminddb itself handles comfortably on 64-bit and
    /// what a server can be expected to hold twice during a reload.
    public static let geoDatabaseBytes = 2 << 30
    /// Small text files read whole: `server.control_token_file`, health `file` check states.
    public static let smallFileBytes = 64 << 10
}

/// Why a file named by the configuration could not be read. `description` names the file
/// and the reason; callers prefix the `file:line:column` of the reference to it.
public struct InputFileError: Error, Sendable, CustomStringConvertible {
    public var path: String
    public var reason: String
    public var kind: Kind
    public enum Kind: Sendable {
        case notFound
        /// The path resolved to somewhere outside the folder it had to stay in.
        case outsideFolder
        case other
    }
    public init(path: String, reason: String, kind: Kind = .other) {
        self.path = path; self.reason = reason; self.kind = kind
    }
    static func notFoundOr(_ path: String, _ what: String) -> InputFileError {
        errno == ENOENT ? InputFileError(path: path, reason: "not found", kind: .notFound)
                        : InputFileError(path: path, reason: "\(what): \(InputFile.errnoText())")
    }
    public var description: String { "\(path): \(reason)" }
}

/// The one way Meridian opens a file named by its input (zone files, `$INCLUDE`s, the
/// YAML config, CIDR maps, MaxMind databases, token and state files).
///
///     let bytes = try InputFile.read("zones/example.com.zone", limit: InputLimits.zoneFileBytes)
///     let inc = try InputFile.read(candidate, limit: InputLimits.zoneFileBytes, within: "zones")
///
/// Rules, in order, so that no bad file can hang or crash a load:
/// 1. With `within`, the path is resolved (`realpath`, following every symbolic link) and
///    must lie inside the resolved folder *before* anything is opened: a link to a FIFO or a
///    device outside the folder is refused without touching it.
/// 2. It is opened with `O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY`: opening a FIFO with
///    no writer, or a device, returns at once instead of blocking the reload thread.
/// 3. `fstat` on the opened descriptor must show a regular file (not a FIFO, socket, device
///    or folder), of at most `limit` bytes.
/// 4. The read must return exactly the size `fstat` gave: a file truncated or grown while
///    being read is an error ("changed while being read"), not a silently partial load.
public enum InputFile {
    /// Reads the whole file. See the type's rules.
    public static func read(_ path: String, limit: Int, within folder: String? = nil) throws(InputFileError) -> [UInt8] {
        try withOpened(path, limit: limit, within: folder) { (fd, size) throws(InputFileError) in
            var short = false
            // Read into uninitialized storage: zero-filling a large zone first would cost a pass of its own.
            let out = [UInt8](unsafeUninitializedCapacity: size) { buffer, count in
                count = readFully(fd, buffer.baseAddress, size)
                short = count != size
            }
            if short { throw InputFileError(path: path, reason: "changed while being read (expected \(size) bytes)") }
            // One more byte means the file grew after fstat.
            var extra: UInt8 = 0
            if Glibc.read(fd, &extra, 1) > 0 { throw InputFileError(path: path, reason: "changed while being read (grew past \(size) bytes)") }
            return out
        }
    }

    /// Reads the whole file as UTF-8 text; invalid UTF-8 is an error naming the file.
    public static func readText(_ path: String, limit: Int, within folder: String? = nil) throws(InputFileError) -> String {
        let bytes = try read(path, limit: limit, within: folder)
        guard let s = String(validating: bytes, as: UTF8.self) else {
            throw InputFileError(path: path, reason: "not valid UTF-8 text")
        }
        return s
    }

    /// Opens the file under the type's rules and calls `body` with the descriptor and its
    /// size; the descriptor is closed when `body` returns and must not be kept.
    public static func withOpened<T>(_ path: String, limit: Int, within folder: String? = nil,
                                     _ body: (Int32, Int) throws(InputFileError) -> T) throws(InputFileError) -> T {
        let target = try folder.map { (f) throws(InputFileError) in try resolve(path, within: f) } ?? path
        let fd = open(target, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY)
        guard fd >= 0 else {
            throw .notFoundOr(path, "cannot open")
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw InputFileError(path: path, reason: "cannot stat: \(errnoText())") }
        let kind = st.st_mode & S_IFMT
        guard kind == S_IFREG else {
            throw InputFileError(path: path, reason: "not a regular file (\(kindName(kind)))")
        }
        guard st.st_size <= limit else {
            throw InputFileError(path: path, reason: "is \(st.st_size) bytes, over the limit of \(limit) bytes")
        }
        // Regular files never block, but reads should see plain blocking semantics.
        _ = fcntl(fd, F_SETFL, 0)
        return try body(fd, Int(st.st_size))
    }

    /// The zone files of a folder (`zones_dir`, `--zones`): the names of its `*.zone`
    /// entries, sorted; nil when the folder cannot be listed. Each is then read with `read`.
    ///
    ///     InputFile.zoneFiles(inFolder: "zones")   // ["example.com.zone", "example.net.zone"]
    public static func zoneFiles(inFolder path: String) -> [String]? {
        guard let dir = opendir(path) else { return nil }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name.hasSuffix(".zone") && name.count > ".zone".count { names.append(name) }
        }
        return names.sorted()
    }

    /// The real path of `path` (every symbolic link followed), which must lie inside the
    /// real path of `folder`. Nothing is opened, so a link to a FIFO or device is harmless.
    /// `folderName` names the folder in the error ("the zones folder"); default: its path.
    public static func resolve(_ path: String, within folder: String, folderName: String? = nil) throws(InputFileError) -> String {
        guard let realFolder = realPath(folder) else {
            throw InputFileError(path: path, reason: "cannot resolve folder \(folder): \(errnoText())")
        }
        guard let real = realPath(path) else {
            throw .notFoundOr(path, "cannot resolve")
        }
        let prefix = realFolder == "/" ? "/" : realFolder + "/"
        guard real.hasPrefix(prefix) else {
            throw InputFileError(path: path, reason: "is outside \(folderName ?? folder) (through a symbolic link)", kind: .outsideFolder)
        }
        return real
    }

    /// Reads up to `count` bytes at `buffer`, retrying EINTR and short reads; returns how
    /// many were read (fewer at end of file or on an error).
    public static func readFully(_ fd: Int32, _ buffer: UnsafeMutableRawPointer?, _ count: Int) -> Int {
        guard let buffer else { return 0 }
        var got = 0
        while got < count {
            let n = Glibc.read(fd, buffer + got, count - got)
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { break }
            got += n
        }
        return got
    }

    /// `realpath(3)`, or nil (errno set) when some component does not resolve.
    public static func realPath(_ path: String) -> String? {
        guard let p = realpath(path, nil) else { return nil }
        defer { free(p) }
        return String(cString: p)
    }

    static func kindName(_ kind: mode_t) -> String {
        switch kind {
        case S_IFDIR: return "a folder"
        case S_IFIFO: return "a FIFO"
        case S_IFSOCK: return "a socket"
        case S_IFCHR: return "a character device"
        case S_IFBLK: return "a block device"
        case S_IFLNK: return "a symbolic link"
        default: return "file type \(kind)"
        }
    }

    static func errnoText() -> String { String(cString: strerror(errno)) }
}
