//! The server address a person types, checked once and normalised: the
//! transport, the stored session, the store's owner and a shell's account
//! name all use the result, so "https://host/", "https://host/v1" and
//! "https://HOST:443" are one server, and `localhost` is `127.0.0.1`.
//! Refusals say what to write instead.

use crate::error::{Error, Result};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerUrl {
    /// What requests are built on: scheme, host as given, port if given,
    /// any path prefix (a reverse proxy's), no trailing slash, no `/v1`.
    pub base: String,
    pub https: bool,
    /// The host for naming (lowercase; `localhost` as `127.0.0.1`).
    pub host: String,
    pub port: u16,
    /// A path prefix ("" or "/gridwork").
    pub path: String,
    pub loopback: bool,
}

fn invalid(why: impl Into<String>) -> Error {
    Error::InvalidServerUrl(why.into())
}

/// Check and normalise a typed server address.
pub fn parse(input: &str) -> Result<ServerUrl> {
    let text = input.trim();
    if text.is_empty() {
        return Err(invalid("the address is empty; write it as https://host or https://host:port"));
    }
    let Some((scheme, _)) = text.split_once("://") else {
        return Err(invalid(format!(
            "it has no scheme: write https://{text} (or http://{text} for a server on this machine)"
        )));
    };
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "https" && scheme != "http" {
        return Err(invalid(format!("unknown scheme \"{scheme}\": use https:// (or http:// for a server on this machine)")));
    }
    let url = url::Url::parse(text).map_err(|e| invalid(format!("not a valid address ({e})")))?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("write the server's address without ?query or #fragment"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("write the server's address without a user or password in it"));
    }
    let (host, loopback) = match url.host() {
        Some(url::Host::Ipv4(ip)) => (ip.to_string(), ip.is_loopback()),
        Some(url::Host::Ipv6(ip)) => (format!("[{ip}]"), ip.is_loopback()),
        Some(url::Host::Domain(d)) if d.eq_ignore_ascii_case("localhost") => ("127.0.0.1".to_owned(), true),
        Some(url::Host::Domain(d)) => (d.to_ascii_lowercase(), false),
        None => return Err(invalid("the address has no host")),
    };
    let port = url.port_or_known_default().ok_or_else(|| invalid("the address has no port"))?;
    // The API lives under /v1 of the base; an address copied from an API
    // URL ("…/v1") names the same server.
    let path = url.path().trim_end_matches('/');
    let path = path.strip_suffix("/v1").unwrap_or(path).to_owned();
    let mut base = format!("{}://{}", url.scheme(), url.host_str().unwrap_or_default());
    if let Some(port) = url.port() {
        base.push_str(&format!(":{port}"));
    }
    base.push_str(&path);
    Ok(ServerUrl { base, https: url.scheme() == "https", host, port, path, loopback })
}

impl ServerUrl {
    /// Plain http only to this machine, unless the caller opted in: tokens
    /// and evidence must not cross a network in the clear.
    pub fn check_security(&self, allow_insecure_http: bool) -> Result<()> {
        if self.https || self.loopback || allow_insecure_http {
            Ok(())
        } else {
            Err(invalid("plain http is only allowed to a server on this machine; use https://"))
        }
    }

    /// One name per server whatever way it was written:
    /// scheme://host:port/prefix with the host normalised.
    pub fn identity(&self) -> String {
        format!("{}://{}:{}{}", if self.https { "https" } else { "http" }, self.host, self.port, self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(input: &str) -> String {
        parse(input).unwrap_err().to_string()
    }

    #[test]
    fn typed_addresses_are_normalised() {
        let a = parse("https://Gridwork.Example.org/").unwrap();
        assert_eq!(a.base, "https://gridwork.example.org");
        assert_eq!(a.identity(), "https://gridwork.example.org:443");
        assert_eq!(parse("https://gridwork.example.org:443/v1/").unwrap().identity(), a.identity());
        assert_eq!(parse("https://gridwork.example.org/v1").unwrap().base, "https://gridwork.example.org");
        let local = parse("http://localhost:8470").unwrap();
        assert_eq!(local.base, "http://localhost:8470", "connections go where the user said");
        assert_eq!(local.identity(), parse("http://127.0.0.1:8470/").unwrap().identity(), "one account for both names");
        let proxied = parse("https://gov.example.cn/gridwork/v1").unwrap();
        assert_eq!((proxied.base.as_str(), proxied.path.as_str()), ("https://gov.example.cn/gridwork", "/gridwork"));
        assert!(parse("http://[::1]:8470").unwrap().loopback);
    }

    #[test]
    fn refusals_say_what_to_write() {
        assert!(message("127.0.0.1:8470").contains("no scheme: write https://127.0.0.1:8470 (or http://127.0.0.1:8470"));
        assert!(message("gridwork.example.org").contains("write https://gridwork.example.org"));
        assert!(message("htp://gridwork.example.org").contains("unknown scheme \"htp\""));
        assert!(message("ftp://x").contains("unknown scheme \"ftp\""));
        assert!(message("").contains("empty"));
        assert!(message("https://").contains("not a valid address") || message("https://").contains("no host"));
        assert!(message("https://x.org/?a=1").contains("without ?query"));
        assert!(message("https://user:pw@x.org").contains("without a user or password"));
        let plain = parse("http://gridwork.example.org").unwrap();
        assert!(plain.check_security(false).unwrap_err().to_string().contains("use https://"));
        assert!(plain.check_security(true).is_ok());
        assert!(parse("http://127.0.0.1:1").unwrap().check_security(false).is_ok());
    }
}
