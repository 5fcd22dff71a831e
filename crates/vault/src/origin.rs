//! Which `Host` and `Origin` a loopback listener answers (issue 16, ADR 30).
//!
//! A web page can rebind its own name to 127.0.0.1 and then reach a server listening there
//! (DNS rebinding); its requests carry the page's name in `Host`. A page on another site can
//! post a form to a loopback server; the browser names that site in `Origin`. So a server on
//! loopback answers only requests whose `Host` is one of its own loopback names, and takes
//! state-changing requests only when their `Origin`, if any, is one of them too.

/// The names a server listening on loopback `port` is reached by.
pub fn loopback_hosts(port: u16) -> [String; 3] {
    [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
    ]
}

/// Whether a `Host` header names this loopback server.
pub fn host_allowed(host: &str, port: u16) -> bool {
    let host = host.trim().to_ascii_lowercase();
    loopback_hosts(port).contains(&host)
}

/// Whether an `Origin` header (absent: `None`) may change state on this loopback server:
/// absent (not a browser, or a same-origin navigation that sends none), or `http(s)://` one of
/// its loopback names.
pub fn origin_allowed(origin: Option<&str>, port: u16) -> bool {
    let Some(origin) = origin else { return true };
    let origin = origin.trim().to_ascii_lowercase();
    let Some(rest) = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
    else {
        return false;
    };
    host_allowed(rest, port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_servers_loopback_names_pass() {
        for ok in [
            "127.0.0.1:8080",
            "localhost:8080",
            "LOCALHOST:8080",
            "[::1]:8080",
        ] {
            assert!(host_allowed(ok, 8080), "{ok}");
        }
        for bad in [
            "evil.example:8080",
            "127.0.0.1:8081",
            "127.0.0.1",
            "localhost",
            "",
            "127.0.0.1.evil.example:8080",
        ] {
            assert!(!host_allowed(bad, 8080), "{bad}");
        }
        assert!(origin_allowed(None, 8080));
        assert!(origin_allowed(Some("http://127.0.0.1:8080"), 8080));
        assert!(!origin_allowed(Some("https://evil.example"), 8080));
        assert!(!origin_allowed(Some("null"), 8080));
        assert!(!origin_allowed(Some("http://127.0.0.1:9999"), 8080));
    }
}
