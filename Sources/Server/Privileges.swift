import Glibc

/// Dropping root after the sockets are bound: a server started as root (to bind port 53)
/// switches to `server.user` / `server.group`. The alternative that never runs as root is
/// systemd's `AmbientCapabilities=CAP_NET_BIND_SERVICE` (deploy/systemd/meridian.service).
///
///     if let why = Privileges.drop(user: "meridian", group: nil) { fatal(why) }
public enum Privileges {
    /// Returns nil on success or when there is nothing to do (not root, or neither set);
    /// otherwise why it failed (unknown user or group, or a failing set*id call).
    /// Order matters: supplementary groups and the gid first, while still root, then the uid.
    /// The user's uid and primary gid, or nil when there is no such user.
    static func lookup(user: String) -> (uid: uid_t, gid: gid_t)? {
        guard let pw = getpwnam(user) else { return nil }
        return (pw.pointee.pw_uid, pw.pointee.pw_gid)
    }

    static func lookup(group: String) -> gid_t? { getgrnam(group).map { $0.pointee.gr_gid } }

    static func noSuchUser(_ u: String) -> String { "server.user \"\(u)\": no such user" }
    static func noSuchGroup(_ g: String) -> String { "server.group \"\(g)\": no such group" }

    public static func drop(user: String?, group: String?) -> String? {
        guard user != nil || group != nil else { return nil }
        guard geteuid() == 0 else { return nil }
        var uid: uid_t? = nil
        var gid: gid_t? = nil
        if let u = user {
            guard let ids = lookup(user: u) else { return noSuchUser(u) }
            uid = ids.uid
            gid = ids.gid
        }
        if let g = group {
            guard let id = lookup(group: g) else { return noSuchGroup(g) }
            gid = id
        }
        if let g = gid {
            var list = [g]
            if setgroups(1, &list) != 0 { return "setgroups(\(g)): \(String(cString: strerror(errno)))" }
            if setgid(g) != 0 { return "setgid(\(g)): \(String(cString: strerror(errno)))" }
        }
        if let u = uid {
            if setuid(u) != 0 { return "setuid(\(u)): \(String(cString: strerror(errno)))" }
            // Regaining root must now fail; if it does not, the drop did not take.
            if u != 0 && setuid(0) == 0 { return "setuid(\(u)) did not drop root" }
        }
        return nil
    }
}
