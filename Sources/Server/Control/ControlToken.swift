import Diagnostics
import Foundation
import Glibc
import Logging

/// `server.control_token_file`: the bearer token of the control API, read once while loading.
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
    /// `key` names the setting in messages (`fleet.password_file` reads etcd's password the same way).
    public static func read(_ path: String, logger: Logger?, key: String = "server.control_token_file") throws(ControlConfigError) -> String {
        let (token, warning) = try load(path, key: key)
        if let warning, let logger { logger.warning("\(warning)") }
        return token
    }

    /// The token and, when group or others can read or change the file, the warning to give
    /// (the loader reads the file once and `serve` gives the warning at start).
    public static func load(_ path: String, key: String = "server.control_token_file") throws(ControlConfigError) -> (token: String, warning: String?) {
        func fail(_ why: String) -> ControlConfigError { ControlConfigError(message: "\(key) \(path): \(why)") }
        // The loaders' one reader: regular files only (a FIFO cannot block start-up), size
        // bounded, read whole or refused.
        let text: String
        do { text = try InputFile.readText(path, limit: ControlLimits.maxTokenFileBytes) } catch {
            throw fail(error.reason)
        }
        let token = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !token.isEmpty else { throw fail("is empty") }
        guard !token.unicodeScalars.contains(where: { $0.value < 0x21 || $0.value == 0x7F }) else {
            throw fail("the token contains white space or a control character (it goes into an HTTP header)")
        }
        // The mode only decides a warning, so reading it by path after the content is enough.
        var st = stat()
        let mode = stat(path, &st) == 0 ? st.st_mode & 0o7777 : 0
        guard mode & 0o077 != 0 else { return (token, nil) }
        return (token, "\(key) \(path) has mode 0\(String(mode, radix: 8)): group or others can read or change it; chmod 600 it (owned by the user meridian runs as)")
    }
}
