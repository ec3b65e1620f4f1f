//! IPv4 networks as a type: the pod CIDR and the service CIDR (`10.96.0.0/16`), parsed once
//! with `ipnet`, with the host arithmetic the allocators and the pod network need.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use ipnet::Ipv4Net;

/// An IPv4 network with a prefix of 8 to 30 bits (room for a gateway and hosts), its host bits
/// cleared (`10.9.0.77/29` is `10.9.0.72/29`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ipv4Cidr(Ipv4Net);

/// Text that is not `a.b.c.d/n` with `n` in 8..=30.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid CIDR {0:?}: expected an IPv4 CIDR such as 10.96.0.0/16 with a prefix of 8 to 30")]
pub struct CidrError(pub String);

impl Ipv4Cidr {
    /// A network known when compiling (`Ipv4Cidr::constant(Ipv4Addr::new(10, 96, 0, 0), 16)`);
    /// a prefix outside 8..=30 or set host bits fail the build when used in a `const`.
    pub const fn constant(network: Ipv4Addr, prefix: u8) -> Ipv4Cidr {
        assert!(prefix >= 8 && prefix <= 30, "a prefix of 8 to 30");
        assert!(network.to_bits() & (u32::MAX >> prefix) == 0, "no host bits");
        Ipv4Cidr(Ipv4Net::new_assert(network, prefix))
    }

    /// Parses `a.b.c.d/n` (surrounding white space ignored, host bits cleared).
    pub fn parse(s: &str) -> Result<Ipv4Cidr, CidrError> {
        let net: Ipv4Net = s.trim().parse().map_err(|_| CidrError(s.to_string()))?;
        if !(8..=30).contains(&net.prefix_len()) {
            return Err(CidrError(s.to_string()));
        }
        Ok(Ipv4Cidr(net.trunc()))
    }

    /// The network address (`10.96.0.0`).
    pub fn network(&self) -> Ipv4Addr {
        self.0.network()
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.0.prefix_len()
    }

    /// How many addresses the network has, network and broadcast address included.
    pub fn size(&self) -> u32 {
        1u32 << (32 - u32::from(self.prefix()))
    }

    /// The address `offset` after the network address, if inside the network.
    pub fn nth(&self, offset: u32) -> Option<Ipv4Addr> {
        (offset < self.size()).then(|| Ipv4Addr::from(u32::from(self.network()) + offset))
    }

    /// The first host address (`.1`): a bridge's gateway, the `kubernetes` Service's ClusterIP.
    pub fn first_host(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network()) + 1)
    }

    /// Whether `ip` is a host address of the network (not the network or broadcast address).
    pub fn is_host(&self, ip: Ipv4Addr) -> bool {
        self.0.contains(&ip) && ip != self.network() && ip != self.0.broadcast()
    }
}

/// A Node's (IPv4) pod CIDR: `spec.podCIDR`, else the first of `spec.podCIDRs`, when it parses.
pub fn node_pod_cidr(node: &crate::corev1::Node) -> Option<Ipv4Cidr> {
    let spec = node.spec.as_ref()?;
    let text = spec
        .pod_cidr
        .as_deref()
        .or_else(|| spec.pod_cidrs.as_ref()?.first().map(String::as_str))?;
    Ipv4Cidr::parse(text).ok()
}

/// A Node's (IPv4) `InternalIP` address, when it reports one.
pub fn node_internal_ip(node: &crate::corev1::Node) -> Option<Ipv4Addr> {
    node.status
        .as_ref()?
        .addresses
        .as_ref()?
        .iter()
        .find(|a| a.type_ == "InternalIP")?
        .address
        .parse()
        .ok()
}

impl FromStr for Ipv4Cidr {
    type Err = CidrError;
    fn from_str(s: &str) -> Result<Ipv4Cidr, CidrError> {
        Ipv4Cidr::parse(s)
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_and_clears_host_bits() {
        let c = Ipv4Cidr::parse("10.9.0.77/29").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.network(), Ipv4Addr::new(10, 9, 0, 72));
        assert_eq!(c.prefix(), 29);
        assert_eq!(c.first_host(), Ipv4Addr::new(10, 9, 0, 73));
        assert_eq!(c.size(), 8);
        assert_eq!(c.nth(7), Some(Ipv4Addr::new(10, 9, 0, 79)));
        assert_eq!(c.nth(8), None);
        assert_eq!(c.to_string(), "10.9.0.72/29");
        assert!(c.is_host(Ipv4Addr::new(10, 9, 0, 78)));
        assert!(!c.is_host(Ipv4Addr::new(10, 9, 0, 72)), "the network address");
        assert!(!c.is_host(Ipv4Addr::new(10, 9, 0, 79)), "the broadcast address");
        assert!(!c.is_host(Ipv4Addr::new(10, 9, 0, 80)));
        assert_eq!(" 10.96.0.0/16 ".parse::<Ipv4Cidr>().map(|c| c.prefix()), Ok(16));
        const SERVICES: Ipv4Cidr = Ipv4Cidr::constant(Ipv4Addr::new(10, 96, 0, 0), 16);
        assert_eq!(Ipv4Cidr::parse("10.96.0.0/16"), Ok(SERVICES));
    }

    #[test]
    fn rejects_what_is_not_a_usable_ipv4_network() {
        for bad in [
            "10.0.0.0/31",
            "10.0.0.0/7",
            "10.0.0.0",
            "nonsense",
            "fd00::/64",
            "10.0.0.0/x",
        ] {
            assert_eq!(Ipv4Cidr::parse(bad), Err(CidrError(bad.into())), "{bad}");
        }
        assert_eq!(
            CidrError("x".into()).to_string(),
            "invalid CIDR \"x\": expected an IPv4 CIDR such as 10.96.0.0/16 with a prefix of 8 to 30"
        );
    }

    proptest! {
        #[test]
        fn every_host_is_inside(ip in any::<u32>(), prefix in 8u8..=30, offset in any::<u32>()) {
            let c = Ipv4Cidr::parse(&format!("{}/{prefix}", Ipv4Addr::from(ip)))
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(c.network().to_string().parse::<Ipv4Addr>().ok(), Some(c.network()));
            match c.nth(offset) {
                Some(addr) => prop_assert_eq!(c.is_host(addr), offset > 0 && offset < c.size() - 1),
                None => prop_assert!(offset >= c.size()),
            }
        }
    }
}
