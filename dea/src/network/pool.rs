//! The container address pool: an IPv4 CIDR cut into /30 subnets, one per isolated container
//! (network address, host side `.1`, container side `.2`, broadcast), handed out lowest first
//! and reused after release.

use std::collections::BTreeSet;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 network written `a.b.c.d/len`, with no host bits set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct Ipv4Cidr {
    network: Ipv4Addr,
    prefix_len: u8,
}

impl Ipv4Cidr {
    /// `None` when host bits are set or the prefix is longer than 32.
    pub fn new(network: Ipv4Addr, prefix_len: u8) -> Option<Self> {
        if prefix_len > 32 || u32::from(network) & !mask(prefix_len) != 0 {
            return None;
        }
        Some(Ipv4Cidr {
            network,
            prefix_len,
        })
    }

    pub fn network(&self) -> Ipv4Addr {
        self.network
    }

    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// Number of addresses (2^(32 - prefix)).
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix_len))
    }

    pub fn contains(&self, address: Ipv4Addr) -> bool {
        u32::from(address) & mask(self.prefix_len) == u32::from(self.network)
    }

    pub fn overlaps(&self, other: &Ipv4Cidr) -> bool {
        let shorter = self.prefix_len.min(other.prefix_len);
        u32::from(self.network) & mask(shorter) == u32::from(other.network) & mask(shorter)
    }
}

fn mask(prefix_len: u8) -> u32 {
    if prefix_len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix_len))
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}/{}", self.network, self.prefix_len)
    }
}

impl FromStr for Ipv4Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || format!("`{text}` is not an IPv4 network like 10.254.0.0/16");
        let (address, prefix) = text.trim().split_once('/').ok_or_else(invalid)?;
        let address: Ipv4Addr = address.parse().map_err(|_| invalid())?;
        let prefix: u8 = prefix.parse().map_err(|_| invalid())?;
        Ipv4Cidr::new(address, prefix).ok_or_else(|| {
            format!("`{text}` has host bits set or a prefix longer than 32 (the network address must end the prefix)")
        })
    }
}

impl TryFrom<String> for Ipv4Cidr {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

/// One container's /30.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    /// Position of the /30 in the pool.
    pub index: u32,
    /// The /30's network address.
    pub network: Ipv4Addr,
    /// The host side of the veth pair: the container's gateway (`.1`).
    pub host: Ipv4Addr,
    /// The container side (`.2`).
    pub container: Ipv4Addr,
}

impl Subnet {
    fn at(pool: &Ipv4Cidr, index: u32) -> Subnet {
        let base = u32::from(pool.network) + index * 4;
        Subnet {
            index,
            network: Ipv4Addr::from(base),
            host: Ipv4Addr::from(base + 1),
            container: Ipv4Addr::from(base + 2),
        }
    }

    /// Eight hex digits of the network address: the suffix of the veth and netns names.
    pub fn tag(&self) -> String {
        format!("{:08x}", u32::from(self.network))
    }
}

/// Hands out the /30s of a pool.
#[derive(Debug)]
pub struct AddressPool {
    cidr: Ipv4Cidr,
    capacity: u32,
    in_use: BTreeSet<u32>,
}

impl AddressPool {
    pub fn new(cidr: Ipv4Cidr) -> Self {
        let capacity = u32::try_from(cidr.size() / 4).unwrap_or(u32::MAX);
        AddressPool {
            cidr,
            capacity,
            in_use: BTreeSet::new(),
        }
    }

    pub fn cidr(&self) -> Ipv4Cidr {
        self.cidr
    }

    /// Number of /30s in the pool.
    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// The lowest free /30, or `None` when all are taken.
    pub fn allocate(&mut self) -> Option<Subnet> {
        let mut candidate = 0;
        for used in &self.in_use {
            if *used != candidate {
                break;
            }
            candidate += 1;
        }
        if candidate >= self.capacity {
            return None;
        }
        self.in_use.insert(candidate);
        Some(Subnet::at(&self.cidr, candidate))
    }

    /// Returns a /30 to the pool; releasing a free one is a no-op.
    pub fn release(&mut self, subnet: &Subnet) {
        self.in_use.remove(&subnet.index);
    }

    /// The /30 whose network address has this tag, if it lies in the pool (leftover cleanup).
    pub fn subnet_of_tag(&self, tag: &str) -> Option<Subnet> {
        if tag.len() != 8 {
            return None;
        }
        let network = Ipv4Addr::from(u32::from_str_radix(tag, 16).ok()?);
        let offset = u32::from(network).checked_sub(u32::from(self.cidr.network))?;
        if !self.cidr.contains(network) || offset % 4 != 0 {
            return None;
        }
        Some(Subnet::at(&self.cidr, offset / 4))
    }

    pub fn n_in_use(&self) -> usize {
        self.in_use.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(text: &str) -> Ipv4Cidr {
        text.parse().unwrap()
    }

    #[test]
    fn cidrs_parse_and_compare() {
        let pool = cidr("10.254.0.0/16");
        assert_eq!(pool.to_string(), "10.254.0.0/16");
        assert_eq!(pool.size(), 65536);
        assert!(pool.contains("10.254.3.7".parse().unwrap()));
        assert!(!pool.contains("10.255.0.1".parse().unwrap()));
        assert!(pool.overlaps(&cidr("10.0.0.0/8")));
        assert!(pool.overlaps(&cidr("10.254.255.0/24")));
        assert!(!pool.overlaps(&cidr("10.255.255.0/24")));
        assert!(cidr("0.0.0.0/0").overlaps(&pool));
        assert!("10.254.0.1/16".parse::<Ipv4Cidr>().is_err(), "host bits");
        assert!("10.254.0.0/33".parse::<Ipv4Cidr>().is_err());
        assert!("10.254.0.0".parse::<Ipv4Cidr>().is_err());
        assert!("ten/8".parse::<Ipv4Cidr>().is_err());
    }

    #[test]
    fn subnets_are_consecutive_slash_30s_and_reused_after_release() {
        let mut pool = AddressPool::new(cidr("10.254.1.0/28"));
        assert_eq!(pool.capacity(), 4);
        let first = pool.allocate().unwrap();
        assert_eq!(first.network, Ipv4Addr::new(10, 254, 1, 0));
        assert_eq!(first.host, Ipv4Addr::new(10, 254, 1, 1));
        assert_eq!(first.container, Ipv4Addr::new(10, 254, 1, 2));
        assert_eq!(first.tag(), "0afe0100");
        let second = pool.allocate().unwrap();
        assert_eq!(second.host, Ipv4Addr::new(10, 254, 1, 5));
        assert_eq!(second.container, Ipv4Addr::new(10, 254, 1, 6));
        let third = pool.allocate().unwrap();
        let fourth = pool.allocate().unwrap();
        assert_eq!(fourth.container, Ipv4Addr::new(10, 254, 1, 14));
        assert_eq!(pool.allocate(), None, "the pool is exhausted");

        pool.release(&second);
        pool.release(&second);
        assert_eq!(pool.n_in_use(), 3);
        assert_eq!(pool.allocate(), Some(second), "a released /30 is reused");
        pool.release(&first);
        pool.release(&third);
        assert_eq!(pool.allocate(), Some(first), "lowest first");
        assert_eq!(pool.allocate(), Some(third));
        assert_eq!(pool.allocate(), None);
    }

    #[test]
    fn tags_map_back_to_subnets_of_this_pool_only() {
        let mut pool = AddressPool::new(cidr("10.254.0.0/16"));
        let subnet = pool.allocate().unwrap();
        assert_eq!(pool.subnet_of_tag(&subnet.tag()), Some(subnet));
        assert_eq!(pool.subnet_of_tag("0afe0104").unwrap().index, 65);
        assert_eq!(pool.subnet_of_tag("0afe0105"), None, "not a /30 start");
        assert_eq!(pool.subnet_of_tag("0aff0000"), None, "another pool");
        assert_eq!(pool.subnet_of_tag("zzzzzzzz"), None);
        assert_eq!(pool.subnet_of_tag("0afe00"), None);
    }
}
