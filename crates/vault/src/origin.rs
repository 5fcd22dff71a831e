//! Which `Host` and `Origin` a loopback listener answers (issue 16, ADR 30).
//!
//! A web page can rebind its own name to 127.0.0.1 and then reach a server listening there
//! (DNS rebinding); its requests carry the page's name in `Host`. A page on another site can
//! post a form to a loopback server; the browser names that site in `Origin`. So a server on
//! loopback answers only requests whose `Host` is a loopback name, and takes state-changing
//! requests only when their `Origin`, if any, is one too. Any port: a local tunnel or proxy
//! may forward another port to the server's own.

/// The names a loopback server is reached by.
pub const LOOPBACK_NAMES: [&str; 3] = ["127.0.0.1", "localhost", "[::1]"];

/// The host name of a `Host` value, without its port.
fn name_of(host: &str) -> &str {
    if host.starts_with('[') {
        // [v6]:port
        return host.find(']').map_or(host, |i| &host[..=i]);
    }
    host.rsplit_once(':').map_or(host, |(name, port)| {
        if port.bytes().all(|b| b.is_ascii_digit()) {
            name
        } else {
            host
        }
    })
}

/// Whether a `Host` header names a loopback server.
pub fn host_allowed(host: &str) -> bool {
    let host = host.trim().to_ascii_lowercase();
    LOOPBACK_NAMES.contains(&name_of(&host))
}

/// Whether an `Origin` header (absent: `None`) may change state on a loopback server: absent
/// (not a browser, or a request that sends none), or `http(s)://` a loopback name.
pub fn origin_allowed(origin: Option<&str>) -> bool {
    let Some(origin) = origin else { return true };
    let origin = origin.trim().to_ascii_lowercase();
    origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .is_some_and(host_allowed)
}

/// Why a loopback server refuses a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// `Host` is not a loopback name (answer 421).
    Host,
    /// A state-changing request from another origin (answer 403).
    Origin,
}

/// The one decision every loopback listener makes: `host` and `origin` are the request's
/// headers (absent: `None`; no `Host` is an HTTP/1.0 tool, not a browser), `changes_state`
/// whether the method is anything but GET, HEAD or OPTIONS.
pub fn check(host: Option<&str>, origin: Option<&str>, changes_state: bool) -> Result<(), Refused> {
    if host.is_some_and(|h| !host_allowed(h)) {
        return Err(Refused::Host);
    }
    if changes_state && !origin_allowed(origin) {
        return Err(Refused::Origin);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_names_pass() {
        for ok in [
            "127.0.0.1:8080",
            "localhost:8080",
            "LOCALHOST:1",
            "[::1]:8080",
            "127.0.0.1",
            "localhost",
        ] {
            assert!(host_allowed(ok), "{ok}");
        }
        for bad in [
            "evil.example:8080",
            "evil.example",
            "127.0.0.1.evil.example:8080",
            "",
            "localhost.evil:80",
            "[::2]:80",
            "127.0.0.2:80",
        ] {
            assert!(!host_allowed(bad), "{bad}");
        }
        assert!(origin_allowed(None));
        assert!(origin_allowed(Some("http://127.0.0.1:8080")));
        assert!(!origin_allowed(Some("https://evil.example")));
        assert!(!origin_allowed(Some("null")));
        assert!(!origin_allowed(Some("http://127.0.0.1.evil.example")));
    }
}
