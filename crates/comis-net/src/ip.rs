//! Which IP addresses an agent may never reach.
//!
//! **Defends** the host, its LAN and its cloud control plane against server-side request
//! forgery: a steered agent asking the daemon to fetch loopback services (the gateway on
//! `127.0.0.1:4766`), private networks, link-local cloud metadata (`169.254.169.254`,
//! `169.254.170.2`, `fd00:ec2::254`, Alibaba's `100.100.100.200`, Oracle's `192.0.0.192`), or any
//! other IANA special-purpose range.
//!
//! **Guarantees.** [`classify`] is total and pure: every address is either [`Class::Public`] or
//! [`Class::Blocked`] with the range that blocks it. IPv4 follows the IANA IPv4 special-purpose
//! registry. IPv6 is *allowlisted*: only global unicast (`2000::/3`) can be public, minus its
//! special-purpose blocks (`2001::/23` including Teredo, `2001:db8::/32`, `3fff::/20`,
//! AS112 `2620:4f:8000::/48`); everything outside `2000::/3` (`::`, `::1`, `fc00::/7`,
//! `fe80::/10`, `fec0::/10`, `ff00::/8`, `100::/64`, IPv4-compatible `::/96`, …) is blocked.
//! IPv6 forms that carry an IPv4 address to the IPv4 stack — IPv4-mapped `::ffff:0:0/96`,
//! NAT64 `64:ff9b::/96` and 6to4 `2002::/16` — are judged by the IPv4 address they embed, so
//! `::ffff:7f00:1` is loopback. Teredo (`2001::/32`) is blocked whole; the client address it
//! embeds is reported.
//!
//! **Does not** know about names or allow-list exceptions (see [`crate::policy`]), and does not
//! parse text: spellings such as `0x7f.1` are turned into addresses by [`crate::policy`].

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Serialize;

/// Why an address is blocked: the special-purpose range it falls in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Range {
    /// A cloud instance-metadata endpoint (credentials live there).
    CloudMetadata,
    /// `0.0.0.0/8` and `::`: "this host/network"; connecting to them reaches the local host.
    ThisNetwork,
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// RFC 1918: `10/8`, `172.16/12`, `192.168/16`.
    Private,
    /// `100.64.0.0/10`, carrier-grade NAT.
    SharedAddressSpace,
    /// `169.254.0.0/16`, `fe80::/10`.
    LinkLocal,
    /// `192.0.0.0/24`, `2001::/23` (outside Teredo).
    IetfProtocolAssignment,
    /// `192.0.2/24`, `198.51.100/24`, `203.0.113/24`, `2001:db8::/32`, `3fff::/20`.
    Documentation,
    /// `198.18.0.0/15`.
    Benchmarking,
    /// `192.31.196/24`, `192.175.48/24`, `2620:4f:8000::/48`.
    As112,
    /// `192.52.193.0/24`.
    Amt,
    /// `192.88.99.0/24`, the deprecated 6to4 relay anycast.
    SixToFourRelay,
    /// `224.0.0.0/4`, `ff00::/8`.
    Multicast,
    /// `240.0.0.0/4` (except broadcast).
    Reserved,
    /// `255.255.255.255`.
    Broadcast,
    /// `fc00::/7`.
    UniqueLocal,
    /// `fec0::/10`, deprecated but still treated as local by some stacks.
    SiteLocal,
    /// `2001::/32`.
    Teredo,
    /// `::/96` (deprecated IPv4-compatible addresses).
    Ipv4Compatible,
    /// `100::/64`.
    DiscardOnly,
    /// Anything else outside `2000::/3`: not routable on the internet.
    NotGlobalUnicast,
}

impl Range {
    /// Stable snake_case name, used as the finding name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Range::CloudMetadata => "cloud_metadata",
            Range::ThisNetwork => "this_network",
            Range::Loopback => "loopback",
            Range::Private => "private",
            Range::SharedAddressSpace => "shared_address_space",
            Range::LinkLocal => "link_local",
            Range::IetfProtocolAssignment => "ietf_protocol_assignment",
            Range::Documentation => "documentation",
            Range::Benchmarking => "benchmarking",
            Range::As112 => "as112",
            Range::Amt => "amt",
            Range::SixToFourRelay => "six_to_four_relay",
            Range::Multicast => "multicast",
            Range::Reserved => "reserved",
            Range::Broadcast => "broadcast",
            Range::UniqueLocal => "unique_local",
            Range::SiteLocal => "site_local",
            Range::Teredo => "teredo",
            Range::Ipv4Compatible => "ipv4_compatible",
            Range::DiscardOnly => "discard_only",
            Range::NotGlobalUnicast => "not_global_unicast",
        }
    }

    /// Whether an operator's `security.ssrf.allowHosts` may open this range. Never: addresses
    /// that are not a single unicast destination, or that mean "this host" whatever is listed.
    #[must_use]
    pub fn exemptible(self) -> bool {
        !matches!(
            self,
            Range::ThisNetwork | Range::Multicast | Range::Broadcast | Range::Reserved
        )
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_str().replace('_', " "))
    }
}

/// How an IPv6 address carries an IPv4 one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Embedding {
    /// `::ffff:a.b.c.d`.
    Ipv4Mapped,
    /// `64:ff9b::a.b.c.d`.
    Nat64,
    /// `2002:aabb:ccdd::/48`.
    SixToFour,
    /// `2001:0:server:…:~client`.
    Teredo,
    /// `::a.b.c.d`.
    Ipv4Compatible,
}

impl Embedding {
    fn as_str(self) -> &'static str {
        match self {
            Embedding::Ipv4Mapped => "IPv4-mapped",
            Embedding::Nat64 => "NAT64",
            Embedding::SixToFour => "6to4",
            Embedding::Teredo => "Teredo",
            Embedding::Ipv4Compatible => "IPv4-compatible",
        }
    }
}

/// A blocked address: its range, and the IPv4 address it embeds when that decided it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Blocked {
    pub range: Range,
    pub embedded: Option<(Embedding, Ipv4Addr)>,
}

impl fmt::Display for Blocked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.embedded {
            Some((how, v4)) => write!(f, "{} (embeds {v4} as {})", self.range, how.as_str()),
            None => write!(f, "{}", self.range),
        }
    }
}

/// The verdict on one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    Public,
    Blocked(Blocked),
}

impl Class {
    #[must_use]
    pub fn is_public(self) -> bool {
        self == Class::Public
    }
}

/// Classifies one address. Never fails.
#[must_use]
pub fn classify(ip: IpAddr) -> Class {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4).map_or(Class::Public, |range| {
            Class::Blocked(Blocked {
                range,
                embedded: None,
            })
        }),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

/// Known instance-metadata endpoints, blocked under their own name so audits say so.
const METADATA_V4: [Ipv4Addr; 5] = [
    Ipv4Addr::new(169, 254, 169, 254), // AWS, GCP, Azure, DigitalOcean, OpenStack, Hetzner…
    Ipv4Addr::new(169, 254, 170, 2),   // AWS ECS task credentials
    Ipv4Addr::new(169, 254, 170, 23),  // AWS EKS pod identity
    Ipv4Addr::new(100, 100, 100, 200), // Alibaba Cloud
    Ipv4Addr::new(192, 0, 0, 192),     // Oracle Cloud
];

const METADATA_V6: [Ipv6Addr; 2] = [
    Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x254), // AWS IMDS over IPv6
    Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x23),  // AWS EKS pod identity over IPv6
];

/// The IPv4 special-purpose table: (network, prefix length, range). Most specific first.
const V4_TABLE: [(u32, u8, Range); 19] = [
    (0xffff_ffff, 32, Range::Broadcast),
    (0x0000_0000, 8, Range::ThisNetwork),
    (0x0a00_0000, 8, Range::Private),
    (0x6440_0000, 10, Range::SharedAddressSpace),
    (0x7f00_0000, 8, Range::Loopback),
    (0xa9fe_0000, 16, Range::LinkLocal),
    (0xac10_0000, 12, Range::Private),
    (0xc000_0000, 24, Range::IetfProtocolAssignment),
    (0xc000_0200, 24, Range::Documentation),
    (0xc01f_c400, 24, Range::As112),
    (0xc034_c100, 24, Range::Amt),
    (0xc058_6300, 24, Range::SixToFourRelay),
    (0xc0a8_0000, 16, Range::Private),
    (0xc0af_3000, 24, Range::As112),
    (0xc612_0000, 15, Range::Benchmarking),
    (0xc633_6400, 24, Range::Documentation),
    (0xcb00_7100, 24, Range::Documentation),
    (0xe000_0000, 4, Range::Multicast),
    (0xf000_0000, 4, Range::Reserved),
];

fn in_v4(addr: u32, net: u32, len: u8) -> bool {
    let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
    addr & mask == net & mask
}

fn classify_v4(ip: Ipv4Addr) -> Option<Range> {
    if METADATA_V4.contains(&ip) {
        return Some(Range::CloudMetadata);
    }
    let a = u32::from(ip);
    V4_TABLE
        .iter()
        .find(|(net, len, _)| in_v4(a, *net, *len))
        .map(|(_, _, r)| *r)
}

fn in_v6(addr: u128, net: u128, len: u8) -> bool {
    let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
    addr & mask == net & mask
}

/// The IPv4 address in the low 32 bits.
fn low_v4(a: u128) -> Ipv4Addr {
    Ipv4Addr::from((a & 0xffff_ffff) as u32)
}

fn via(embedding: Embedding, v4: Ipv4Addr) -> Class {
    match classify_v4(v4) {
        None => Class::Public,
        Some(range) => Class::Blocked(Blocked {
            range,
            embedded: Some((embedding, v4)),
        }),
    }
}

fn blocked(range: Range) -> Class {
    Class::Blocked(Blocked {
        range,
        embedded: None,
    })
}

fn classify_v6(ip: Ipv6Addr) -> Class {
    if METADATA_V6.contains(&ip) {
        return blocked(Range::CloudMetadata);
    }
    let a = u128::from(ip);
    if a == 0 {
        return blocked(Range::ThisNetwork);
    }
    if a == 1 {
        return blocked(Range::Loopback);
    }
    // Forms that reach the IPv4 stack: judged by the address they carry.
    if in_v6(a, 0xffff_0000_0000, 96) {
        return via(Embedding::Ipv4Mapped, low_v4(a));
    }
    if in_v6(a, 0x0064_ff9b << 96, 96) {
        return via(Embedding::Nat64, low_v4(a));
    }
    if in_v6(a, 0x2002 << 112, 16) {
        let v4 = Ipv4Addr::from(((a >> 80) & 0xffff_ffff) as u32);
        return via(Embedding::SixToFour, v4);
    }
    if in_v6(a, 0, 96) {
        // Deprecated (RFC 4291): no stack should route these; block whatever they embed.
        return Class::Blocked(Blocked {
            range: Range::Ipv4Compatible,
            embedded: Some((Embedding::Ipv4Compatible, low_v4(a))),
        });
    }
    if in_v6(a, 0x2001 << 112, 32) {
        // The client's public address is stored inverted in the low 32 bits.
        let client = Ipv4Addr::from(!((a & 0xffff_ffff) as u32));
        return Class::Blocked(Blocked {
            range: Range::Teredo,
            embedded: Some((Embedding::Teredo, client)),
        });
    }
    const V6_TABLE: [(u128, u8, Range); 9] = [
        (0x0100 << 112, 64, Range::DiscardOnly),
        (0x2001_0db8 << 96, 32, Range::Documentation),
        (0x2001 << 112, 23, Range::IetfProtocolAssignment),
        (0x2620_004f_8000 << 80, 48, Range::As112),
        (0x3fff << 112, 20, Range::Documentation),
        (0xfc00 << 112, 7, Range::UniqueLocal),
        (0xfe80 << 112, 10, Range::LinkLocal),
        (0xfec0 << 112, 10, Range::SiteLocal),
        (0xff00 << 112, 8, Range::Multicast),
    ];
    if let Some((_, _, r)) = V6_TABLE.iter().find(|(n, l, _)| in_v6(a, *n, *l)) {
        return blocked(*r);
    }
    if !in_v6(a, 0x2000 << 112, 3) {
        return blocked(Range::NotGlobalUnicast);
    }
    Class::Public
}

/// The IPv4 address an IPv6 address delivers to (mapped, NAT64, 6to4), for matching
/// allow-list entries written as IPv4.
#[must_use]
pub fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let a = u128::from(ip);
    if in_v6(a, 0xffff_0000_0000, 96) || in_v6(a, 0x0064_ff9b << 96, 96) {
        Some(low_v4(a))
    } else if in_v6(a, 0x2002 << 112, 16) {
        Some(Ipv4Addr::from(((a >> 80) & 0xffff_ffff) as u32))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use proptest::prelude::*;

    fn range(s: &str) -> Option<Range> {
        match classify(s.parse().unwrap()) {
            Class::Public => None,
            Class::Blocked(b) => Some(b.range),
        }
    }

    #[test]
    fn every_ipv4_special_range_from_the_issue() {
        let cases = [
            ("0.0.0.0", Range::ThisNetwork),
            ("0.255.255.255", Range::ThisNetwork),
            ("10.0.0.1", Range::Private),
            ("10.255.255.255", Range::Private),
            ("100.64.0.0", Range::SharedAddressSpace),
            ("100.127.255.255", Range::SharedAddressSpace),
            ("100.100.100.200", Range::CloudMetadata),
            ("127.0.0.1", Range::Loopback),
            ("127.255.255.254", Range::Loopback),
            ("169.254.0.1", Range::LinkLocal),
            ("169.254.169.254", Range::CloudMetadata),
            ("169.254.170.2", Range::CloudMetadata),
            ("172.16.0.0", Range::Private),
            ("172.31.255.255", Range::Private),
            ("192.0.0.8", Range::IetfProtocolAssignment),
            ("192.0.0.192", Range::CloudMetadata),
            ("192.0.2.1", Range::Documentation),
            ("192.168.1.1", Range::Private),
            ("198.18.0.1", Range::Benchmarking),
            ("198.19.255.255", Range::Benchmarking),
            ("198.51.100.7", Range::Documentation),
            ("203.0.113.9", Range::Documentation),
            ("224.0.0.1", Range::Multicast),
            ("239.255.255.255", Range::Multicast),
            ("240.0.0.1", Range::Reserved),
            ("255.255.255.254", Range::Reserved),
            ("255.255.255.255", Range::Broadcast),
            ("192.31.196.1", Range::As112),
            ("192.175.48.1", Range::As112),
            ("192.52.193.1", Range::Amt),
            ("192.88.99.1", Range::SixToFourRelay),
        ];
        for (ip, want) in cases {
            assert_eq!(range(ip), Some(want), "{ip}");
        }
    }

    #[test]
    fn public_ipv4_edges_pass() {
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "126.255.255.255",
            "128.0.0.0",
            "169.253.255.255",
            "169.255.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.0",
            "192.0.3.0",
            "192.167.255.255",
            "192.169.0.0",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
        ] {
            assert_eq!(range(ip), None, "{ip}");
        }
    }

    #[test]
    fn ipv6_special_ranges() {
        let cases = [
            ("::", Range::ThisNetwork),
            ("::1", Range::Loopback),
            ("fc00::1", Range::UniqueLocal),
            ("fdff:ffff::1", Range::UniqueLocal),
            ("fd00:ec2::254", Range::CloudMetadata),
            ("fe80::1", Range::LinkLocal),
            ("febf:ffff::1", Range::LinkLocal),
            ("fec0::1", Range::SiteLocal),
            ("ff02::1", Range::Multicast),
            ("ff00::", Range::Multicast),
            ("100::1", Range::DiscardOnly),
            ("2001:db8::1", Range::Documentation),
            ("3fff::1", Range::Documentation),
            ("2001:2::1", Range::IetfProtocolAssignment),
            ("2001:1ff::1", Range::IetfProtocolAssignment),
            ("2620:4f:8000::1", Range::As112),
            ("99::", Range::NotGlobalUnicast),
            ("4000::1", Range::NotGlobalUnicast),
            ("::1fff:0:0", Range::NotGlobalUnicast),
        ];
        for (ip, want) in cases {
            assert_eq!(range(ip), Some(want), "{ip}");
        }
        for ip in [
            "2606:4700:4700::1111",
            "2001:4860:4860::8888",
            "2001:200::1",
            "2001:db7::1",
            "2001:db9::1",
            "3ffe::1",
            "2620:4f:8001::1",
        ] {
            assert_eq!(range(ip), None, "{ip}");
        }
    }

    #[test]
    fn embedded_ipv4_is_judged_by_the_ipv4_list() {
        let cases = [
            ("::ffff:127.0.0.1", Range::Loopback),
            ("::ffff:7f00:1", Range::Loopback),
            ("::ffff:a9fe:a9fe", Range::CloudMetadata),
            ("0:0:0:0:0:ffff:169.254.169.254", Range::CloudMetadata),
            ("::ffff:0.0.0.0", Range::ThisNetwork),
            ("::ffff:10.1.2.3", Range::Private),
            ("64:ff9b::127.0.0.1", Range::Loopback),
            ("64:ff9b::a9fe:a9fe", Range::CloudMetadata),
            ("64:ff9b::0.0.0.0", Range::ThisNetwork),
            ("2002:7f00:1::", Range::Loopback),
            ("2002:a9fe:a9fe::1", Range::CloudMetadata),
            ("2002:c0a8:101::", Range::Private),
            ("2002::", Range::ThisNetwork),
            ("::127.0.0.1", Range::Ipv4Compatible),
            ("::8.8.8.8", Range::Ipv4Compatible),
        ];
        for (ip, want) in cases {
            assert_eq!(range(ip), Some(want), "{ip}");
        }
        // Public IPv4 through the forms that deliver to it stays public.
        for ip in ["::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1"] {
            assert_eq!(range(ip), None, "{ip}");
        }
    }

    #[test]
    fn teredo_is_blocked_and_reports_the_client() {
        // Client 127.0.0.1 is stored inverted: 0x80ff_fffe.
        let Class::Blocked(b) = classify("2001:0:4136:e378:8000:63bf:80ff:fffe".parse().unwrap())
        else {
            panic!("teredo must be blocked")
        };
        assert_eq!(b.range, Range::Teredo);
        assert_eq!(
            b.embedded,
            Some((Embedding::Teredo, Ipv4Addr::new(127, 0, 0, 1)))
        );
        assert!(b.to_string().contains("127.0.0.1"));
    }

    #[test]
    fn never_exemptible_ranges() {
        assert!(!Range::ThisNetwork.exemptible());
        assert!(!Range::Multicast.exemptible());
        assert!(!Range::Broadcast.exemptible());
        assert!(Range::Loopback.exemptible());
        assert!(Range::Private.exemptible());
    }

    proptest! {
        /// An IPv4 address and its IPv4-mapped and NAT64 forms get the same verdict.
        #[test]
        fn mapped_forms_agree_with_ipv4(raw in any::<u32>()) {
            let v4 = Ipv4Addr::from(raw);
            let plain = classify(IpAddr::V4(v4)).is_public();
            prop_assert_eq!(plain, classify(IpAddr::V6(v4.to_ipv6_mapped())).is_public());
            let nat64 = Ipv6Addr::from((0x0064_ff9b_u128 << 96) | u128::from(raw));
            prop_assert_eq!(plain, classify(IpAddr::V6(nat64)).is_public());
            let six = Ipv6Addr::from((0x2002_u128 << 112) | (u128::from(raw) << 80));
            prop_assert_eq!(plain, classify(IpAddr::V6(six)).is_public());
        }

        /// Every public IPv6 address is global unicast, and std agrees it is not loopback,
        /// unspecified, multicast or unique-local.
        #[test]
        fn public_v6_is_global_unicast(raw in any::<u128>()) {
            let ip = Ipv6Addr::from(raw);
            if classify(IpAddr::V6(ip)).is_public() && embedded_v4(ip).is_none() {
                prop_assert!(raw >> 125 == 1);
                prop_assert!(!ip.is_loopback() && !ip.is_unspecified() && !ip.is_multicast());
                prop_assert!(!ip.is_unique_local() && !ip.is_unicast_link_local());
            }
        }

        /// std's own notion of non-public IPv4 is a subset of ours.
        #[test]
        fn std_private_v4_is_blocked(raw in any::<u32>()) {
            let ip = Ipv4Addr::from(raw);
            if ip.is_private() || ip.is_loopback() || ip.is_link_local() || ip.is_multicast()
                || ip.is_broadcast() || ip.is_unspecified() || ip.is_documentation()
            {
                prop_assert!(!classify(IpAddr::V4(ip)).is_public());
            }
        }
    }
}
