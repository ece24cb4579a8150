//! Which `Host` and `Origin` the live view answers. Without a token on localhost, a page the
//! operator visits could otherwise read the view by DNS rebinding (its name made to resolve to
//! 127.0.0.1: the browser then sends that name as `Host`), or ask it from another origin.
//!
//! A request is answered when its `Host` is an IP address with the view's port (no name to
//! rebind), `localhost` with the port when the view listens on loopback or everywhere, or a name
//! the operator configured (`--ui-host`); and when it carries no `Origin` (a same-origin GET, a
//! script) or an `Origin` with such a host, and no `Sec-Fetch-Site: cross-site`.

use std::net::{IpAddr, SocketAddr};

#[derive(Debug, Clone)]
pub struct AllowedHosts {
    port: u16,
    localhost: bool,
    /// Configured names, lower-cased, each with or without a port.
    names: Vec<String>,
}

impl AllowedHosts {
    pub fn new(listen: SocketAddr, names: &[String]) -> Self {
        let ip = listen.ip();
        Self {
            port: listen.port(),
            localhost: ip.is_loopback() || ip.is_unspecified(),
            names: names
                .iter()
                .map(|n| n.trim().to_ascii_lowercase())
                .collect(),
        }
    }

    /// Whether a `Host` value (`name`, `name:port`, `[v6]:port`) names this view.
    pub fn host(&self, host: &str) -> bool {
        let host = host.trim().to_ascii_lowercase();
        if self.names.contains(&host) {
            return true;
        }
        let (name, port) = split(&host);
        // A configured name without a port is answered on any: a proxy in front listens on its own.
        if self.names.iter().any(|n| *n == name) {
            return true;
        }
        if port.unwrap_or(80) != self.port {
            return false;
        }
        name.trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok()
            || (self.localhost && name == "localhost")
    }

    /// Whether an `Origin` value is this view's own.
    pub fn origin(&self, origin: &str) -> bool {
        let origin = origin.trim().to_ascii_lowercase();
        let Some((scheme, authority)) = origin.split_once("://") else {
            return false; // `null` (a sandboxed page, a file) and anything else
        };
        let default = match scheme {
            "http" => 80,
            "https" => 443,
            _ => return false,
        };
        let authority = authority.trim_end_matches('/');
        if split(authority).1.is_some() {
            self.host(authority)
        } else {
            self.host(&format!("{authority}:{default}"))
        }
    }
}

/// `name` and its port, if any (`[v6]:port` included).
fn split(host: &str) -> (&str, Option<u16>) {
    if let Some(rest) = host.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((v6, tail)) => (
                &host[..v6.len() + 2],
                tail.strip_prefix(':').and_then(|p| p.parse().ok()),
            ),
            None => (host, None),
        };
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') => (name, port.parse().ok()),
        _ => (host, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local() -> AllowedHosts {
        AllowedHosts::new(
            "127.0.0.1:8090".parse().unwrap(),
            &["dash.example.org".into()],
        )
    }

    #[test]
    fn ip_literals_localhost_and_configured_names_with_the_port_are_answered() {
        let h = local();
        for ok in [
            "127.0.0.1:8090",
            "localhost:8090",
            "LOCALHOST:8090",
            "[::1]:8090",
            "dash.example.org",
            "dash.example.org:8090",
        ] {
            assert!(h.host(ok), "{ok}");
        }
        for bad in [
            "evil.example:8090",
            "127.0.0.1:9999",
            "localhost",
            "rebind.attacker.test:8090",
            "",
        ] {
            assert!(!h.host(bad), "{bad}");
        }
        let public = AllowedHosts::new("10.0.0.5:8090".parse().unwrap(), &[]);
        assert!(!public.host("localhost:8090"), "not listening on loopback");
        assert!(public.host("10.0.0.5:8090"));
    }

    #[test]
    fn only_the_views_own_origin_is_answered() {
        let h = local();
        assert!(h.origin("http://127.0.0.1:8090"));
        assert!(h.origin("http://localhost:8090"));
        assert!(h.origin("https://dash.example.org"));
        for bad in [
            "http://evil.example",
            "http://evil.example:8090",
            "null",
            "file://",
            "http://127.0.0.1:9999",
        ] {
            assert!(!h.origin(bad), "{bad}");
        }
    }
}
