import Foundation
import Glibc
import Logging

/// `server.control_token_file`: the bearer token of the control API, read once at start.
///
///     let token = try ControlTokenFile.read("/etc/meridian/control.token", logger: log)
///
/// The file must be a regular file (after symlinks; not a FIFO, device or directory, which
/// could block or never end), at most `ControlLimits.maxTokenFileBytes`, and not empty once
/// surrounding white space is trimmed. A file that group or others can read or write is
/// accepted with a warning naming the file and its mode: anyone who can read the token can
/// force datacenters down.
public enum ControlTokenFile {
    /// `logger` nil (the CLI) skips the mode warning: the server gives it at start.
    public static func read(_ path: String, logger: Logger?) throws(ControlConfigError) -> String {
        func fail(_ why: String) -> ControlConfigError { ControlConfigError(message: "server.control_token_file \(path): \(why)") }
        // O_NONBLOCK so opening a FIFO does not wait for a writer; fstat on the open file so
        // the checks and the read see the same file.
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { throw fail("cannot open it: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw fail("cannot stat it: \(String(cString: strerror(errno)))") }
        guard st.st_mode & S_IFMT == S_IFREG else { throw fail("not a regular file") }
        guard st.st_size <= ControlLimits.maxTokenFileBytes else {
            throw fail("\(st.st_size) bytes; a token file holds at most \(ControlLimits.maxTokenFileBytes)")
        }
        var bytes = [UInt8](repeating: 0, count: ControlLimits.maxTokenFileBytes + 1)
        var count = 0
        while count < bytes.count {
            let n = bytes.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress! + count, $0.count - count) }
            if n < 0 && errno == EINTR { continue }
            guard n >= 0 else { throw fail("cannot read it: \(String(cString: strerror(errno)))") }
            if n == 0 { break }
            count += n
        }
        guard count <= ControlLimits.maxTokenFileBytes else { throw fail("larger than \(ControlLimits.maxTokenFileBytes) bytes") }
        guard let text = String(validating: bytes[0..<count], as: UTF8.self) else { throw fail("not UTF-8 text") }
        let token = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !token.isEmpty else { throw fail("is empty") }
        guard !token.unicodeScalars.contains(where: { $0.value < 0x21 || $0.value == 0x7F }) else {
            throw fail("the token contains white space or a control character (it goes into an HTTP header)")
        }
        let mode = st.st_mode & 0o7777
        if mode & 0o077 != 0, let logger {
            logger.warning("server.control_token_file \(path) has mode 0\(String(mode, radix: 8)): group or others can read or change the control token; chmod 600 it (owned by the user meridian runs as)")
        }
        return token
    }
}
