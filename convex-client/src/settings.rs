//! What the client needs to reach one deployment: its URL, its deploy key, the timeouts and how
//! the client names itself to Convex. Built by whoever embeds the client (the connector builds
//! it from its config); the client validates nothing else.

use std::time::Duration;

/// Where and how to reach a deployment.
#[derive(Clone, Debug)]
pub struct Settings {
    pub deployment_url: DeploymentUrl,
    pub access_key: AccessKey,
    /// How long a connection may take to open.
    pub connect_timeout: Duration,
    /// How long a request may stay idle (see `http::request_deadline` for the whole request).
    pub request_timeout: Duration,
    /// Sent as `Convex-Client`: Convex tells exporters apart by it (`<name>-<semver>`).
    pub client_id: String,
    /// Sent as `User-Agent`.
    pub user_agent: String,
}

/// A deployment URL that cannot be used, with what is wrong with it in words for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidUrl(pub String);

impl InvalidUrl {
    fn new(message: impl Into<String>) -> Self {
        InvalidUrl(message.into())
    }
}

impl std::fmt::Display for InvalidUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InvalidUrl {}

/// The deploy key. Never printed: `Debug` and `Display` redact it.
#[derive(Clone)]
pub struct AccessKey(String);

impl AccessKey {
    pub fn new(key: impl Into<String>) -> Self {
        AccessKey(key.into())
    }
}

impl AccessKey {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A deployment URL without trailing slash; any path prefix is kept for every request
/// (the Python connector dropped it on reads).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeploymentUrl(String);

impl DeploymentUrl {
    pub fn parse(raw: &str) -> Result<Self, InvalidUrl> {
        let trimmed = raw.trim();
        let url = url::Url::parse(trimmed).map_err(|e| {
            // Quoted only when short: a mis-pasted value can be anything, even the key.
            let shown = if trimmed.len() <= 100 {
                format!(" {trimmed:?}")
            } else {
                String::new()
            };
            InvalidUrl::new(format!(
                "deployment_url{shown} is not a valid URL ({e}); it looks like https://<name>.convex.cloud"
            ))
        })?;
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(InvalidUrl::new(format!(
                "deployment_url must start with https:// (or http:// for a local backend), got {:?}",
                url.scheme()
            )));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(InvalidUrl::new(
                "deployment_url has no host; it looks like https://<name>.convex.cloud",
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(InvalidUrl::new(
                "deployment_url must not contain a query (?…) or fragment (#…)",
            ));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(InvalidUrl::new(
                "deployment_url must not contain credentials; put the key in access_key",
            ));
        }
        let host = url
            .host_str()
            .unwrap_or_default()
            .trim_end_matches('.')
            .to_ascii_lowercase();
        let convex_cloud = ["convex.cloud", "convex.site"]
            .iter()
            .any(|d| host == *d || host.ends_with(&format!(".{d}")));
        if url.scheme() == "http" && convex_cloud {
            return Err(InvalidUrl::new(format!(
                "deployment_url uses http://, which would send the deploy key unencrypted; Convex Cloud deployments are served over https: use https://{host}"
            )));
        }
        let mut s = url.as_str().to_owned();
        while s.ends_with('/') {
            s.pop();
        }
        Ok(DeploymentUrl(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Requests go unencrypted over a network: the key crosses it in clear. Loopback is
    /// exempt (nothing leaves the machine), as is https.
    pub fn cleartext_warning(&self) -> Option<String> {
        let url = url::Url::parse(&self.0).ok()?;
        if url.scheme() != "http" || is_loopback(&url) {
            return None;
        }
        Some(format!(
            "deployment_url {} uses http://: the deploy key is sent unencrypted. Use https:// unless this network is private and trusted.",
            self.0
        ))
    }

    /// A plain-http URL whose host is this machine.
    pub fn is_loopback_cleartext(&self) -> bool {
        url::Url::parse(&self.0).is_ok_and(|u| u.scheme() == "http" && is_loopback(&u))
    }
}

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => {
            let d = d.trim_end_matches('.');
            d.eq_ignore_ascii_case("localhost") || d.to_ascii_lowercase().ends_with(".localhost")
        }
        None => false,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Settings for a test server (the emulator) at `url`.
    pub(crate) fn settings_for(url: &str, access_key: &str) -> Settings {
        Settings {
            deployment_url: DeploymentUrl::parse(url).unwrap(),
            access_key: AccessKey::new(access_key),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(120),
            client_id: "airbyte-export-1.0.0".to_owned(),
            user_agent: "convex-client-tests".to_owned(),
        }
    }

    #[test]
    fn urls_are_normalised_and_keep_their_path_prefix() {
        let u = DeploymentUrl::parse("https://murky-swan-635.convex.cloud/").unwrap();
        assert_eq!(u.as_str(), "https://murky-swan-635.convex.cloud");
        let u = DeploymentUrl::parse(" http://127.0.0.1:3210/proxy/convex// ").unwrap();
        assert_eq!(u.as_str(), "http://127.0.0.1:3210/proxy/convex");
        for bad in [
            "murky-swan-635.convex.cloud",
            "ftp://x.convex.cloud",
            "https://x.convex.cloud/?a=1",
            "https://user:pw@x.convex.cloud",
            "",
        ] {
            assert!(DeploymentUrl::parse(bad).is_err(), "{bad}");
        }
    }

    /// A mistyped `http://x.convex.cloud` would send the key in clear; plain http elsewhere
    /// is allowed and warned about, except on this machine.
    #[test]
    fn cleartext_is_refused_for_convex_cloud_and_warned_about_elsewhere() {
        for cloud in [
            "http://murky-swan-635.convex.cloud",
            "http://murky-swan-635.CONVEX.cloud./x",
            "http://a.convex.site",
        ] {
            let err = DeploymentUrl::parse(cloud).unwrap_err();
            assert!(err.0.contains("use https://"), "{err}");
        }
        let tls = DeploymentUrl::parse("https://murky-swan-635.convex.cloud").unwrap();
        assert_eq!(tls.cleartext_warning(), None);
        for local in [
            "http://127.0.0.1:3210",
            "http://localhost:1",
            "http://[::1]:2",
        ] {
            let u = DeploymentUrl::parse(local).unwrap();
            assert!(
                u.is_loopback_cleartext() && u.cleartext_warning().is_none(),
                "{local}"
            );
        }
        let lan = DeploymentUrl::parse("http://convex.internal:3210").unwrap();
        assert!(!lan.is_loopback_cleartext());
        assert!(lan.cleartext_warning().unwrap().contains("unencrypted"));
        // Not a Convex Cloud host, only a look-alike.
        assert!(DeploymentUrl::parse("http://convex.cloud.example.com").is_ok());
    }

    #[test]
    fn a_long_bad_url_is_not_quoted() {
        let long = format!("https://{}", "a".repeat(200));
        let err = DeploymentUrl::parse(&format!("{long} x")).unwrap_err();
        assert!(!err.0.contains(&long), "{err}");
    }

    #[test]
    fn the_key_is_never_debug_printed() {
        let key = AccessKey::new("prod:secret-key-123");
        assert_eq!(format!("{key:?}"), "<redacted>");
    }
}
