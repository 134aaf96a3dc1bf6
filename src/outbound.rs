//! Requests the server makes to URLs its users hand it (push services now, bots' webhooks
//! next). Such a URL must not become a way into the server's own network: a host that is,
//! or resolves to, a loopback, private, link-local or unspecified address is refused, when
//! the URL is given and again on every connection (a name may resolve elsewhere later).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

/// Addresses inside the server's own network.
pub fn internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => internal_v4(ip),
        IpAddr::V6(ip) => match ip.to_ipv4_mapped() {
            Some(v4) => internal_v4(v4),
            None => internal_v6(ip),
        },
    }
}

fn internal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        // 100.64.0.0/10, carrier-grade NAT: private in all but name.
        || a == 100 && (64..128).contains(&b)
}

fn internal_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    ip.is_loopback()
        || ip.is_unspecified()
        // fc00::/7 unique local, fe80::/10 link-local.
        || first & 0xfe00 == 0xfc00
        || first & 0xffc0 == 0xfe80
}

/// Whether `url`'s host, as written, is inside the server's network: a literal address, or
/// `localhost`. Names are checked again when they resolve (`client`).
pub fn host_is_internal(url: &Url) -> Option<bool> {
    Some(match url.host()? {
        Host::Domain(name) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            name == "localhost" || name.ends_with(".localhost")
        }
        Host::Ipv4(ip) => internal_v4(ip),
        Host::Ipv6(ip) => internal(IpAddr::V6(ip)),
    })
}

/// Whether `url` names a literal address inside the network: what the resolver never sees,
/// so what a sender checks before each request.
pub fn literal_inside(url: &Url) -> bool {
    matches!(url.host(), Some(Host::Ipv4(_) | Host::Ipv6(_))) && host_is_internal(url) == Some(true)
}

/// Whether `url`'s host is a name that resolves now to an address inside the network. A
/// name that does not resolve (in time) is not refused here: every connection checks again.
pub async fn resolves_inside(url: &Url) -> bool {
    let Some(Host::Domain(name)) = url.host() else { return false };
    let lookup = tokio::net::lookup_host((name, 0));
    match tokio::time::timeout(Duration::from_secs(2), lookup).await {
        Ok(Ok(found)) => found.into_iter().any(|addr| internal(addr.ip())),
        _ => false,
    }
}

/// `Retry-After` in seconds (the form push services and webhooks use), as milliseconds,
/// at most an hour.
pub fn retry_after_ms(answer: &reqwest::Response) -> Option<i64> {
    let seconds: i64 = answer.headers().get("retry-after")?.to_str().ok()?.trim().parse().ok()?;
    Some(seconds.clamp(1, 3600) * 1000)
}

/// A resolver that refuses a name with any address inside the network (one internal answer
/// among public ones is how DNS rebinding gets in).
struct Guarded;

#[derive(Debug, thiserror::Error)]
#[error("{0} resolves to an address inside the server's network")]
struct Refused(String);

impl Resolve for Guarded {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            if found.iter().any(|addr| internal(addr.ip())) {
                return Err(Refused(name.as_str().to_owned()).into());
            }
            Ok(Box::new(found.into_iter()) as Addrs)
        })
    }
}

/// An HTTP client for user-given URLs: no redirects (each hop would be a URL nobody
/// checked), a timeout for the whole request, and unless `allow_private` the guarded
/// resolver. A URL with a literal address skips resolution: check it with
/// `host_is_internal` before sending.
pub fn client(allow_private: bool, timeout: Duration) -> reqwest::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .user_agent(concat!("Switchboard/", env!("CARGO_PKG_VERSION")));
    if !allow_private {
        builder = builder.dns_resolver(Arc::new(Guarded));
    }
    builder.build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_inside_the_network() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.5.4",
            "192.168.0.10",
            "169.254.10.10",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(internal(ip.parse().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))), "{ip}");
        }
        for ip in ["8.8.8.8", "100.128.0.1", "2001:4860:4860::8888", "::ffff:8.8.8.8"] {
            let parsed: IpAddr = ip.parse().unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
            assert!(!internal(parsed), "{ip}");
        }
    }

    #[actix_web::test]
    async fn a_name_that_resolves_inside_the_network_is_refused_on_connect() {
        let Ok(client) = client(false, Duration::from_secs(2)) else {
            panic!("client builds");
        };
        let Err(err) = client.get("http://localhost:9/").send().await else {
            panic!("localhost was reached");
        };
        // The refusal is the innermost cause.
        let mut cause: &dyn std::error::Error = &err;
        while let Some(inner) = cause.source() {
            cause = inner;
        }
        assert_eq!(cause.to_string(), "localhost resolves to an address inside the server's network");
    }
}
