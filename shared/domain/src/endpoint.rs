//! Which addresses leadflow may send a lead to. A CRM endpoint comes from configuration, and a
//! delivery is a signed POST with the lead's contact data: pointed at a private, loopback or
//! link-local address it would reach the deployment's own network or the instance metadata
//! service (blind SSRF). Outside local mode an endpoint must be https on a public host; the
//! check runs on the configuration (host names and IP literals) and again at send time on every
//! address the name resolves to.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Where the deployment runs: the local stack (`cargo dev`, the tests) sends to a CRM receiver
/// on this machine over http; a deployment only to public https endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointMode {
    Public,
    Local,
}

/// Why an address is not public.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressKind {
    /// 0.0.0.0/8, `::`.
    Unspecified,
    /// 127.0.0.0/8, `::1`.
    Loopback,
    /// 10/8, 172.16/12, 192.168/16.
    Private,
    /// 100.64/10 (carrier-grade NAT).
    SharedNat,
    /// 169.254/16 (the instance metadata service), fe80::/10.
    LinkLocal,
    /// fc00::/7.
    UniqueLocal,
    /// 224/4, ff00::/8, 255.255.255.255.
    Multicast,
    /// Reserved, documentation, benchmarking and protocol ranges: never a CRM.
    Reserved,
}

impl fmt::Display for AddressKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AddressKind::Unspecified => "unspecified",
            AddressKind::Loopback => "loopback",
            AddressKind::Private => "private",
            AddressKind::SharedNat => "carrier-grade NAT",
            AddressKind::LinkLocal => "link-local",
            AddressKind::UniqueLocal => "unique-local",
            AddressKind::Multicast => "multicast or broadcast",
            AddressKind::Reserved => "reserved",
        })
    }
}

/// Why an endpoint is refused. The messages never quote the URL (its path or query may carry a
/// token); the host is named where it helps and is not secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    #[error("is not a URL ({0})")]
    Unparsable(String),
    #[error("has no host")]
    NoHost,
    #[error("must be https (http only in local mode)")]
    NotHttps,
    #[error("names a {kind} address ({address}): a CRM endpoint must be a public address")]
    NotPublic { address: IpAddr, kind: AddressKind },
    #[error("names {host:?}, a host of this machine or a local network: a CRM endpoint must be a public host")]
    LocalName { host: String },
    #[error(
        "{host} resolves to a {kind} address ({address}): a CRM endpoint must be a public address"
    )]
    ResolvesNotPublic {
        host: String,
        address: IpAddr,
        kind: AddressKind,
    },
}

/// The kind of a non-public address; `None` for a public one. IPv6 addresses that carry an
/// IPv4 address (mapped, compatible, NAT64) are judged by that address.
pub fn address_kind(ip: IpAddr) -> Option<AddressKind> {
    match ip {
        IpAddr::V4(v4) => v4_kind(v4),
        IpAddr::V6(v6) => v6_kind(v6),
    }
}

fn v4_kind(ip: Ipv4Addr) -> Option<AddressKind> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        (0, _, _) => AddressKind::Unspecified,
        (127, _, _) => AddressKind::Loopback,
        (10, _, _) | (192, 168, _) => AddressKind::Private,
        (172, b, _) if (16..32).contains(&b) => AddressKind::Private,
        (100, b, _) if (64..128).contains(&b) => AddressKind::SharedNat,
        (169, 254, _) => AddressKind::LinkLocal,
        _ if ip.is_broadcast() || ip.is_multicast() => AddressKind::Multicast,
        // 192.0.0/24 IETF protocol assignments, 192.0.2/24, 198.51.100/24, 203.0.113/24
        // documentation, 198.18/15 benchmarking, 240/4 reserved.
        (192, 0, 0) | (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => AddressKind::Reserved,
        (198, 18 | 19, _) => AddressKind::Reserved,
        (a, _, _) if a >= 240 => AddressKind::Reserved,
        _ => return None,
    })
}

fn v6_kind(ip: Ipv6Addr) -> Option<AddressKind> {
    if let Some(v4) = embedded_v4(ip) {
        return v4_kind(v4);
    }
    let s = ip.segments();
    Some(match s[0] {
        _ if ip.is_unspecified() => AddressKind::Unspecified,
        _ if ip.is_loopback() => AddressKind::Loopback,
        x if x & 0xffc0 == 0xfe80 => AddressKind::LinkLocal,
        // fec0::/10, the deprecated site-local range, reaches the same kind of network.
        x if x & 0xffc0 == 0xfec0 => AddressKind::UniqueLocal,
        x if x & 0xfe00 == 0xfc00 => AddressKind::UniqueLocal,
        x if x & 0xff00 == 0xff00 => AddressKind::Multicast,
        // 2001:db8::/32 documentation, 100::/64 discard.
        0x2001 if s[1] == 0x0db8 => AddressKind::Reserved,
        0x0100 if s[1..4] == [0, 0, 0] => AddressKind::Reserved,
        _ => return None,
    })
}

/// The IPv4 address inside an IPv4-mapped (`::ffff:a.b.c.d`), IPv4-compatible (`::a.b.c.d`)
/// or NAT64 (`64:ff9b::a.b.c.d`) address: each can reach that IPv4 address.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let tail = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s[..6] {
        [0, 0, 0, 0, 0, 0xffff] => Some(tail),
        // `::` and `::1` are IPv6's own, not compatible addresses.
        [0, 0, 0, 0, 0, 0] if s[6] != 0 => Some(tail),
        [0x64, 0xff9b, 0, 0, 0, 0] => Some(tail),
        _ => None,
    }
}

/// Host names that name this machine or a private network wherever they are resolved.
fn is_local_name(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    // A single label ("crm") is completed by the resolver's search domains: an internal host.
    !host.contains('.')
        || [
            ".localhost",
            ".local",
            ".localdomain",
            ".internal",
            ".home.arpa",
        ]
        .iter()
        .any(|suffix| host.ends_with(suffix))
}

/// An endpoint that passed [`check_endpoint`]: what the sender must resolve and check again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedEndpoint {
    /// The host as in the URL (an IP literal without brackets).
    pub host: String,
    pub port: u16,
    /// Set when the host is an IP literal: nothing to resolve.
    pub address: Option<IpAddr>,
}

/// Checks a CRM endpoint: https on a public host outside local mode. Host names are checked
/// as names here; the addresses they resolve to with [`check_address`] when sending.
pub fn check_endpoint(
    endpoint: &str,
    mode: EndpointMode,
) -> Result<CheckedEndpoint, EndpointError> {
    let url = url::Url::parse(endpoint).map_err(|e| EndpointError::Unparsable(e.to_string()))?;
    let port = url.port_or_known_default().ok_or(EndpointError::NoHost)?;
    let (host, address) = match url.host().ok_or(EndpointError::NoHost)? {
        url::Host::Domain(d) => (d.to_owned(), None),
        url::Host::Ipv4(ip) => (ip.to_string(), Some(IpAddr::V4(ip))),
        url::Host::Ipv6(ip) => (ip.to_string(), Some(IpAddr::V6(ip))),
    };
    if !matches!(url.scheme(), "https" | "http") {
        return Err(EndpointError::NotHttps);
    }
    if mode == EndpointMode::Public {
        // The address first: it is the graver fault, and the one to fix.
        match address {
            Some(ip) => check_address(&host, ip, mode)?,
            None if is_local_name(&host) => return Err(EndpointError::LocalName { host }),
            None => {}
        }
        if url.scheme() != "https" {
            return Err(EndpointError::NotHttps);
        }
    }
    Ok(CheckedEndpoint {
        host,
        port,
        address,
    })
}

/// Checks one address `host` resolved to (or an IP literal, `host` being its text).
pub fn check_address(host: &str, ip: IpAddr, mode: EndpointMode) -> Result<(), EndpointError> {
    if mode == EndpointMode::Local {
        return Ok(());
    }
    match address_kind(ip) {
        None => Ok(()),
        Some(kind) if host.parse::<IpAddr>().is_ok() => {
            Err(EndpointError::NotPublic { address: ip, kind })
        }
        Some(kind) => Err(EndpointError::ResolvesNotPublic {
            host: host.to_owned(),
            address: ip,
            kind,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(s: &str) -> Option<AddressKind> {
        address_kind(s.parse().unwrap())
    }

    #[test]
    fn every_non_public_ipv4_range_is_named() {
        use AddressKind::*;
        for (ip, want) in [
            ("0.0.0.0", Unspecified),
            ("0.1.2.3", Unspecified),
            ("127.0.0.1", Loopback),
            ("127.255.255.254", Loopback),
            ("10.0.0.1", Private),
            ("10.255.255.255", Private),
            ("172.16.0.1", Private),
            ("172.31.255.255", Private),
            ("192.168.1.1", Private),
            ("100.64.0.1", SharedNat),
            ("100.127.255.255", SharedNat),
            ("169.254.169.254", LinkLocal),
            ("169.254.0.1", LinkLocal),
            ("224.0.0.1", Multicast),
            ("239.255.255.255", Multicast),
            ("255.255.255.255", Multicast),
            ("240.0.0.1", Reserved),
            ("192.0.2.10", Reserved),
            ("198.18.0.1", Reserved),
        ] {
            assert_eq!(kind(ip), Some(want), "{ip}");
        }
    }

    #[test]
    fn public_ipv4_addresses_next_to_the_ranges_pass() {
        for ip in [
            "8.8.8.8",
            "172.15.255.255",
            "172.32.0.1",
            "100.63.255.255",
            "100.128.0.1",
            "169.253.255.255",
            "11.0.0.1",
            "192.169.0.1",
            "126.255.255.255",
            "1.1.1.1",
        ] {
            assert_eq!(kind(ip), None, "{ip}");
        }
    }

    #[test]
    fn every_non_public_ipv6_range_is_named() {
        use AddressKind::*;
        for (ip, want) in [
            ("::", Unspecified),
            ("::1", Loopback),
            ("fe80::1", LinkLocal),
            ("febf:ffff::1", LinkLocal),
            ("fc00::1", UniqueLocal),
            ("fd12:3456::1", UniqueLocal),
            ("fec0::1", UniqueLocal),
            ("ff02::1", Multicast),
            ("2001:db8::1", Reserved),
            // IPv4 inside IPv6 is judged by the IPv4 address.
            ("::ffff:127.0.0.1", Loopback),
            ("::ffff:169.254.169.254", LinkLocal),
            ("::ffff:10.1.2.3", Private),
            ("::ffff:192.168.0.1", Private),
            ("::ffff:100.64.0.1", SharedNat),
            ("::ffff:0.0.0.0", Unspecified),
            ("::127.0.0.1", Loopback),
            ("64:ff9b::169.254.169.254", LinkLocal),
        ] {
            assert_eq!(kind(ip), Some(want), "{ip}");
        }
        for ip in [
            "2606:4700::1111",
            "2a00:1450:4001::200e",
            "::ffff:8.8.8.8",
            "fe7f::1",
        ] {
            assert_eq!(kind(ip), None, "{ip}");
        }
    }

    #[test]
    fn endpoints_must_be_https_on_a_public_host_outside_local_mode() {
        let public = EndpointMode::Public;
        let ok = check_endpoint("https://crm.example.com/hooks?token=x", public).unwrap();
        assert_eq!(
            (ok.host.as_str(), ok.port, ok.address),
            ("crm.example.com", 443, None)
        );
        assert_eq!(
            check_endpoint("http://crm.example.com/hooks", public),
            Err(EndpointError::NotHttps)
        );
        for url in [
            "https://127.0.0.1/x",
            "https://127.1/x",
            "https://2130706433/x",
            "https://0x7f.0.0.1/x",
            "https://[::1]/x",
            "https://[::ffff:7f00:1]/x",
            "https://10.0.0.5/x",
            "https://169.254.169.254/latest/meta-data/",
            "https://[fe80::1]/x",
            "https://[fd00::1]/x",
            "https://100.64.1.1/x",
            "https://0.0.0.0/x",
            "http://127.0.0.1:9000/hooks",
        ] {
            assert!(
                matches!(
                    check_endpoint(url, public),
                    Err(EndpointError::NotPublic { .. })
                ),
                "{url}: {:?}",
                check_endpoint(url, public)
            );
        }
        for url in [
            "https://localhost/x",
            "https://LOCALHOST./x",
            "https://crm.localhost/x",
            "https://printer.local/x",
            "https://crm.internal/x",
            "https://ip-10-0-0-1.ec2.internal/x",
            "https://crm/x",
        ] {
            assert!(
                matches!(
                    check_endpoint(url, public),
                    Err(EndpointError::LocalName { .. })
                ),
                "{url}"
            );
        }
        assert!(matches!(
            check_endpoint("not a url", public),
            Err(EndpointError::Unparsable(_))
        ));
        assert_eq!(
            check_endpoint("ftp://crm.example.com/x", public),
            Err(EndpointError::NotHttps)
        );
    }

    #[test]
    fn local_mode_takes_http_to_this_machine() {
        let local = EndpointMode::Local;
        let ok = check_endpoint("http://127.0.0.1:9000/hooks", local).unwrap();
        assert_eq!(ok.address, Some("127.0.0.1".parse().unwrap()));
        assert_eq!(ok.port, 9000);
        assert!(check_endpoint("http://localhost:9000/hooks", local).is_ok());
        assert!(check_address("localhost", "127.0.0.1".parse().unwrap(), local).is_ok());
    }

    #[test]
    fn resolved_addresses_are_checked_with_the_name_they_came_from() {
        let err = check_address(
            "crm.example.com",
            "169.254.169.254".parse().unwrap(),
            EndpointMode::Public,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "crm.example.com resolves to a link-local address (169.254.169.254): a CRM endpoint must be a public address"
        );
        assert!(check_address(
            "crm.example.com",
            "93.184.215.14".parse().unwrap(),
            EndpointMode::Public
        )
        .is_ok());
    }

    #[test]
    fn errors_do_not_quote_the_url() {
        let err = check_endpoint("https://10.0.0.1/hooks?token=s3cr3t", EndpointMode::Public)
            .unwrap_err();
        assert!(!err.to_string().contains("s3cr3t"), "{err}");
    }
}
