//! Per-container network isolation (`network.mode: isolated`): each instance gets its own
//! network namespace and a veth pair with a /30 from the pool (host side `.1` = the container's
//! gateway, container side `.2` = `eth0`), wired before runc starts the container (runc joins
//! the pre-created namespace named in `config.json`), and userspace TCP proxies for its host
//! port and the allow-listed host services. One nftables table per DEA (named after its pool)
//! keeps containers from reaching the host's other services, each other, and — unless egress is
//! enabled — anything beyond the host.
//!
//! Names: host-side veths are `kv<tag>`, namespaces `kiln-<tag>` (`<tag>` = the /30's network
//! address as eight hex digits), the table `kiln_dea_<pool>`. They are unique per pool, so a DEA
//! removes only its own leftovers at start, and DEAs with disjoint pools coexist.

pub mod pool;
mod proxy;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

pub use pool::{AddressPool, Ipv4Cidr, Subnet};
pub use proxy::TcpProxy;

use crate::container::NetworkNamespace;

/// The port an app listens on inside an isolated container (CF's `PORT=8080`).
pub const CONTAINER_PORT: u16 = 8080;
/// The `/etc/hosts` name of the container's gateway, where allow-listed host ports are served.
pub const HOST_GATEWAY_NAME: &str = "kiln-host";
/// Prefix of host-side veth names (interface names are at most 15 characters).
const HOST_VETH_PREFIX: &str = "kv";
/// Prefix of network namespace names (`/run/netns/<name>`).
const NETNS_PREFIX: &str = "kiln-";
/// The container side of the veth pair, as the container sees it.
const CONTAINER_INTERFACE: &str = "eth0";

/// What isolated mode needs from the configuration.
#[derive(Debug, Clone)]
pub struct NetworkOptions {
    pub pool: Ipv4Cidr,
    pub egress: bool,
    pub host_ports: Vec<u16>,
}

/// Errors of the network layer.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("{0}")]
    Unavailable(String),
    #[error("`{command}` failed: {message}")]
    Command { command: String, message: String },
    #[error("the container address pool {pool} is exhausted")]
    PoolExhausted { pool: Ipv4Cidr },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

/// The DEA's isolated network: the address pool and the nftables table.
#[derive(Debug)]
pub struct Network {
    options: NetworkOptions,
    pool: Mutex<AddressPool>,
    table: String,
    resolv_conf: String,
}

impl Network {
    /// Checks that `ip` and `nft` run, removes what an earlier run of a DEA with this pool left
    /// behind (veths, namespaces, its nftables table), installs the table and, with egress,
    /// turns on IPv4 forwarding. Installs no packages.
    pub async fn start(options: NetworkOptions) -> Result<Arc<Network>, NetworkError> {
        let network = Arc::new(Network {
            table: table_name(&options.pool),
            pool: Mutex::new(AddressPool::new(options.pool)),
            resolv_conf: container_resolv_conf(
                &std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
                options.egress,
            ),
            options,
        });
        let setup = network.clone();
        blocking(move || setup.start_blocking()).await??;
        tracing::info!(pool = %network.options.pool, egress = network.options.egress, table = %network.table, "isolated container network ready");
        Ok(network)
    }

    fn start_blocking(&self) -> Result<(), NetworkError> {
        for (program, hint) in [
            ("ip", "install iproute2"),
            (
                "nft",
                "install the `nftables` package (scripts/install-deps)",
            ),
        ] {
            let runs = Command::new(program)
                .arg(if program == "ip" { "-V" } else { "--version" })
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|status| status.success())
                .unwrap_or(false);
            if !runs {
                let why = if program == "nft" && self.options.egress {
                    "network.egress needs nftables for NAT and forwarding rules"
                } else {
                    "network.mode isolated needs it to keep containers off the host's services"
                };
                return Err(NetworkError::Unavailable(format!(
                    "`{program}` cannot be run: {why}; {hint}"
                )));
            }
        }
        self.remove_leftovers();
        run("nft", &["-f", "-"], Some(&self.ruleset()))?;
        if self.options.egress {
            std::fs::write("/proc/sys/net/ipv4/ip_forward", "1").map_err(|source| {
                NetworkError::Io {
                    context: "enabling IPv4 forwarding for network.egress".into(),
                    source,
                }
            })?;
        }
        Ok(())
    }

    /// The nftables table name of this DEA (from its pool).
    pub fn table(&self) -> &str {
        &self.table
    }

    pub fn options(&self) -> &NetworkOptions {
        &self.options
    }

    /// Veths and namespaces of this pool, and this DEA's table: whatever a crashed DEA left.
    fn remove_leftovers(&self) {
        let pool = AddressPool::new(self.options.pool);
        if let Ok(links) = output("ip", &["-o", "link", "show"]) {
            for line in links.lines() {
                let Some(name) = line.split(": ").nth(1) else {
                    continue;
                };
                let name = name.split('@').next().unwrap_or(name);
                if let Some(tag) = name.strip_prefix(HOST_VETH_PREFIX) {
                    if pool.subnet_of_tag(tag).is_some() {
                        tracing::info!(interface = name, "removing a leftover veth");
                        let _ = run("ip", &["link", "del", name], None);
                    }
                }
            }
        }
        if let Ok(namespaces) = output("ip", &["netns", "list"]) {
            for line in namespaces.lines() {
                let name = line.split_whitespace().next().unwrap_or_default();
                if let Some(tag) = name.strip_prefix(NETNS_PREFIX) {
                    if pool.subnet_of_tag(tag).is_some() {
                        tracing::info!(netns = name, "removing a leftover network namespace");
                        let _ = run("ip", &["netns", "del", name], None);
                    }
                }
            }
        }
        let _ = run("nft", &["delete", "table", "inet", &self.table], None);
    }

    /// Removes the nftables table (at DEA shutdown, once every instance is gone).
    pub async fn stop(self: Arc<Self>) {
        let network = self.clone();
        let _ = blocking(move || network.remove_leftovers()).await;
        tracing::info!(table = %self.table, "isolated container network removed");
    }

    /// The table: containers reach the host only for replies and allow-listed ports, never
    /// each other; forwarded traffic (egress) is NATed, or dropped without egress.
    fn ruleset(&self) -> String {
        let pool = self.options.pool;
        let table = &self.table;
        let host_ports = if self.options.host_ports.is_empty() {
            String::new()
        } else {
            let ports: Vec<String> = self.options.host_ports.iter().map(u16::to_string).collect();
            format!(
                "    ip saddr {pool} ip daddr {pool} tcp dport {{ {} }} accept\n",
                ports.join(", ")
            )
        };
        let egress_verdict = if self.options.egress {
            "accept"
        } else {
            "drop"
        };
        let nat = if self.options.egress {
            format!(
                "  chain postrouting {{\n    type nat hook postrouting priority srcnat; policy accept;\n    ip saddr {pool} ip daddr != {pool} masquerade\n  }}\n"
            )
        } else {
            String::new()
        };
        // `table … ; delete table …` first makes the load idempotent in one transaction.
        format!(
            "table inet {table}\ndelete table inet {table}\ntable inet {table} {{\n\
             \x20 chain input {{\n\
             \x20   type filter hook input priority filter - 10; policy accept;\n\
             \x20   ip saddr {pool} ct state established,related accept\n\
             {host_ports}\
             \x20   ip saddr {pool} drop\n\
             \x20   iifname \"{HOST_VETH_PREFIX}*\" meta nfproto ipv6 drop\n\
             \x20 }}\n\
             \x20 chain forward {{\n\
             \x20   type filter hook forward priority filter - 10; policy accept;\n\
             \x20   ip saddr {pool} ip daddr {pool} drop\n\
             \x20   ip saddr {pool} oifname \"{HOST_VETH_PREFIX}*\" drop\n\
             \x20   ip daddr {pool} ct state established,related accept\n\
             \x20   ip daddr {pool} drop\n\
             \x20   ip saddr {pool} {egress_verdict}\n\
             \x20 }}\n\
             {nat}}}\n"
        )
    }

    /// Gives a container its namespace, veth pair and addresses, serves the allow-listed host
    /// ports on its gateway and, when `host_port` is given, proxies `0.0.0.0:<host_port>` to
    /// `<container ip>:8080`.
    pub async fn attach(
        self: &Arc<Self>,
        host_port: Option<u16>,
    ) -> Result<Attachment, NetworkError> {
        let subnet = {
            let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
            pool.allocate().ok_or(NetworkError::PoolExhausted {
                pool: self.options.pool,
            })?
        };
        // From here on the attachment's drop undoes whatever part of the setup happened.
        let mut attachment = Attachment {
            network: self.clone(),
            subnet,
            proxies: Vec::new(),
            released: false,
        };
        blocking(move || setup_blocking(&subnet)).await??;
        for port in &self.options.host_ports {
            let address = SocketAddr::new(IpAddr::V4(subnet.host), *port);
            let listener = tokio::net::TcpListener::bind(address)
                .await
                .map_err(|source| NetworkError::Io {
                    context: format!("serving host port {port} on {address}"),
                    source,
                })?;
            let target = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), *port);
            attachment
                .proxies
                .push(proxy_start(listener, target, "host port proxy")?);
        }
        if let Some(port) = host_port {
            let address = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port);
            let listener = tokio::net::TcpListener::bind(address)
                .await
                .map_err(|source| NetworkError::Io {
                    context: format!("listening on the instance's host port {port}"),
                    source,
                })?;
            let target = SocketAddr::new(IpAddr::V4(subnet.container), CONTAINER_PORT);
            attachment
                .proxies
                .push(proxy_start(listener, target, "instance proxy")?);
        }
        Ok(attachment)
    }

    fn release_subnet(&self, subnet: &Subnet) {
        self.pool
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .release(subnet);
    }

    /// /30s handed out right now.
    pub fn n_attached(&self) -> usize {
        self.pool
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .n_in_use()
    }
}

fn proxy_start(
    listener: tokio::net::TcpListener,
    target: SocketAddr,
    what: &str,
) -> Result<TcpProxy, NetworkError> {
    TcpProxy::start(listener, target).map_err(|source| NetworkError::Io {
        context: format!("starting the {what} to {target}"),
        source,
    })
}

/// One container's share of the network. Dropping it without [`Attachment::release`] tears
/// everything down synchronously.
#[derive(Debug)]
pub struct Attachment {
    network: Arc<Network>,
    subnet: Subnet,
    proxies: Vec<TcpProxy>,
    released: bool,
}

impl Attachment {
    pub fn container_ip(&self) -> Ipv4Addr {
        self.subnet.container
    }

    /// The host side of the veth: the container's default route and `kiln-host`.
    pub fn gateway(&self) -> Ipv4Addr {
        self.subnet.host
    }

    pub fn netns_name(&self) -> String {
        netns_name(&self.subnet)
    }

    pub fn host_interface(&self) -> String {
        host_veth_name(&self.subnet)
    }

    /// What the bundle needs: the namespace to join and the `/etc` files to write.
    pub fn namespace(&self) -> NetworkNamespace {
        NetworkNamespace {
            path: Path::new("/run/netns").join(self.netns_name()),
            extra_hosts: vec![(IpAddr::V4(self.gateway()), HOST_GATEWAY_NAME.to_string())],
            resolv_conf: self.network.resolv_conf.clone(),
        }
    }

    /// Stops the proxies, removes the veth pair and the namespace, and frees the /30.
    pub async fn release(mut self) {
        self.proxies.clear();
        let subnet = self.subnet;
        let _ = blocking(move || teardown_blocking(&subnet)).await;
        self.network.release_subnet(&self.subnet);
        self.released = true;
    }
}

impl Drop for Attachment {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        self.proxies.clear();
        teardown_blocking(&self.subnet);
        self.network.release_subnet(&self.subnet);
    }
}

fn host_veth_name(subnet: &Subnet) -> String {
    format!("{HOST_VETH_PREFIX}{}", subnet.tag())
}

fn netns_name(subnet: &Subnet) -> String {
    format!("{NETNS_PREFIX}{}", subnet.tag())
}

fn table_name(pool: &Ipv4Cidr) -> String {
    format!(
        "kiln_dea_{:08x}_{}",
        u32::from(pool.network()),
        pool.prefix_len()
    )
}

/// Namespace, veth pair (the peer created directly inside the namespace as `eth0`), addresses,
/// `lo` up and the default route. No IPv6 on the host side: nothing may reach the host that way.
fn setup_blocking(subnet: &Subnet) -> Result<(), NetworkError> {
    let netns = netns_name(subnet);
    let veth = host_veth_name(subnet);
    let result = (|| {
        run("ip", &["netns", "add", &netns], None)?;
        let host_side = format!(
            "link add {veth} type veth peer name {CONTAINER_INTERFACE} netns {netns}\n\
             link set {veth} addrgenmode none\n\
             addr add {}/30 dev {veth}\n\
             link set {veth} up\n",
            subnet.host
        );
        run("ip", &["-batch", "-"], Some(&host_side))?;
        let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{veth}/disable_ipv6"), "1");
        let container_side = format!(
            "link set lo up\n\
             addr add {}/30 dev {CONTAINER_INTERFACE}\n\
             link set {CONTAINER_INTERFACE} up\n\
             route add default via {}\n",
            subnet.container, subnet.host
        );
        run("ip", &["-n", &netns, "-batch", "-"], Some(&container_side))
    })();
    if result.is_err() {
        teardown_blocking(subnet);
    }
    result
}

/// Removes the veth pair (deleting one end deletes both) and the namespace; missing is fine.
fn teardown_blocking(subnet: &Subnet) {
    let veth = host_veth_name(subnet);
    let netns = netns_name(subnet);
    let _ = run("ip", &["link", "del", &veth], None);
    if let Err(error) = run("ip", &["netns", "del", &netns], None) {
        if Path::new("/run/netns").join(&netns).exists() {
            tracing::warn!(%error, netns, "cannot remove a network namespace");
        }
    }
}

/// `resolv.conf` of isolated containers. Without egress no resolver is reachable, so queries go
/// to `127.0.0.1` inside the container, where nothing listens: they fail at once instead of
/// stalling for the resolver timeout. With egress the host's resolvers are used (loopback ones
/// are unreachable from the container and are left out).
pub fn container_resolv_conf(host_resolv_conf: &str, egress: bool) -> String {
    const LOCAL_ONLY: &str =
        "# Kiln: isolated container; no resolver is reachable.\nnameserver 127.0.0.1\n";
    if !egress {
        return LOCAL_ONLY.to_string();
    }
    let mut text = String::new();
    let mut nameservers = 0;
    for line in host_resolv_conf.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => {
                let usable = words
                    .next()
                    .and_then(|a| a.parse::<IpAddr>().ok())
                    .is_some_and(|a| a.is_ipv4() && !a.is_loopback());
                if usable {
                    nameservers += 1;
                    text.push_str(line.trim());
                    text.push('\n');
                }
            }
            Some("search" | "domain" | "options") => {
                text.push_str(line.trim());
                text.push('\n');
            }
            _ => {}
        }
    }
    if nameservers == 0 {
        LOCAL_ONLY.to_string()
    } else {
        text
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, NetworkError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| NetworkError::Io {
            context: "network task".into(),
            source: std::io::Error::other(error),
        })
}

/// Runs a command to completion, feeding it `stdin`; fails with its stderr.
fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Result<(), NetworkError> {
    use std::io::Write;
    let command_line = format!("{program} {}", args.join(" "));
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| NetworkError::Io {
            context: format!("running {program}"),
            source,
        })?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        let _ = pipe.write_all(text.as_bytes());
    }
    let output = child
        .wait_with_output()
        .map_err(|source| NetworkError::Io {
            context: format!("waiting for {program}"),
            source,
        })?;
    if output.status.success() {
        Ok(())
    } else {
        Err(NetworkError::Command {
            command: command_line,
            message: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        })
    }
}

fn output(program: &str, args: &[&str]) -> Result<String, NetworkError> {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| NetworkError::Io {
            context: format!("running {program}"),
            source,
        })?;
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Why `pool` cannot serve as the container pool on a host with these routes (destination
/// networks, from `/proc/net/route`, excluding the default route and routes through our own
/// veths) and resolvers; `None` when it can.
pub fn pool_conflict(
    pool: &Ipv4Cidr,
    host_routes: &[(String, Ipv4Cidr)],
    nameservers: &[Ipv4Addr],
) -> Option<String> {
    const RESERVED: &[(&str, &str)] = &[
        ("10.255.255.0/24", "the host resolver range"),
        ("127.0.0.0/8", "loopback"),
        ("0.0.0.0/8", "\"this network\""),
        ("169.254.0.0/16", "link-local"),
        ("224.0.0.0/3", "multicast and reserved"),
    ];
    for (range, what) in RESERVED {
        let range: Ipv4Cidr = range.parse().ok()?;
        if pool.overlaps(&range) {
            return Some(format!("overlaps {range} ({what})"));
        }
    }
    if pool.prefix_len() > MAX_POOL_PREFIX_LEN {
        return Some(format!(
            "is too small: at least a /{MAX_POOL_PREFIX_LEN} is needed ({} containers)",
            (1u64 << (32 - u32::from(MAX_POOL_PREFIX_LEN))) / 4
        ));
    }
    for nameserver in nameservers {
        if pool.contains(*nameserver) {
            return Some(format!("contains the host's resolver {nameserver}"));
        }
    }
    for (interface, route) in host_routes {
        if route.prefix_len() == 0 || interface.starts_with(HOST_VETH_PREFIX) {
            continue;
        }
        if pool.overlaps(route) {
            return Some(format!("overlaps the host route {route} on {interface}"));
        }
    }
    None
}

/// The smallest pool accepted: 16 containers.
pub const MAX_POOL_PREFIX_LEN: u8 = 26;

/// The host's IPv4 routes (`/proc/net/route`) as (interface, destination).
pub fn host_routes() -> Vec<(String, Ipv4Cidr)> {
    let text = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let interface = fields.first()?.to_string();
            // Little-endian hex, as the kernel prints them.
            let destination = u32::from_str_radix(fields.get(1)?, 16).ok()?.swap_bytes();
            let mask = u32::from_str_radix(fields.get(7)?, 16).ok()?.swap_bytes();
            let cidr = Ipv4Cidr::new(Ipv4Addr::from(destination), mask.count_ones() as u8)?;
            Some((interface, cidr))
        })
        .collect()
}

/// The IPv4 nameservers of the host's `/etc/resolv.conf`.
pub fn host_nameservers() -> Vec<Ipv4Addr> {
    std::fs::read_to_string("/etc/resolv.conf")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.trim().strip_prefix("nameserver"))
        .filter_map(|address| address.trim().parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(text: &str) -> Ipv4Cidr {
        text.parse().unwrap()
    }

    #[test]
    fn pools_must_avoid_the_resolver_range_host_routes_and_be_large_enough() {
        let routes = vec![
            ("eth0".to_string(), cidr("0.0.0.0/0")),
            ("eth0".to_string(), cidr("192.0.2.0/24")),
            ("kv0afe0000".to_string(), cidr("10.254.0.0/30")),
        ];
        let resolvers = ["10.255.255.53".parse().unwrap()];
        assert_eq!(
            pool_conflict(&cidr("10.254.0.0/16"), &routes, &resolvers),
            None
        );
        let conflict = |text: &str| pool_conflict(&cidr(text), &routes, &resolvers).unwrap();
        assert!(conflict("10.255.0.0/16").contains("10.255.255.0/24"));
        assert!(conflict("10.0.0.0/8").contains("resolver range"));
        assert!(conflict("192.0.2.0/25").contains("host route 192.0.2.0/24 on eth0"));
        assert!(conflict("10.254.0.0/27").contains("too small"));
        assert!(conflict("127.0.0.0/16").contains("loopback"));
        let resolvers = ["172.20.0.10".parse().unwrap()];
        assert!(pool_conflict(&cidr("172.20.0.0/16"), &[], &resolvers)
            .unwrap()
            .contains("resolver 172.20.0.10"));
    }

    #[test]
    fn host_routes_parse() {
        // Whatever this host has, the parse yields valid networks and the default route.
        for (interface, route) in host_routes() {
            assert!(!interface.is_empty());
            assert!(route.prefix_len() <= 32);
        }
    }

    #[test]
    fn resolv_conf_never_stalls() {
        let host =
            "search example.com\nnameserver 127.0.0.53\nnameserver 10.255.255.53\noptions edns0\n";
        assert_eq!(
            container_resolv_conf(host, true),
            "search example.com\nnameserver 10.255.255.53\noptions edns0\n"
        );
        assert!(container_resolv_conf(host, false).contains("nameserver 127.0.0.1\n"));
        assert!(container_resolv_conf("nameserver 127.0.0.53\n", true)
            .contains("nameserver 127.0.0.1\n"));
    }

    #[test]
    fn names_fit_interface_limits_and_the_ruleset_names_the_pool() {
        let mut pool = AddressPool::new(cidr("10.254.0.0/16"));
        let subnet = pool.allocate().unwrap();
        assert_eq!(host_veth_name(&subnet), "kv0afe0000");
        assert!(host_veth_name(&subnet).len() <= 15);
        assert_eq!(netns_name(&subnet), "kiln-0afe0000");
        let network = Network {
            options: NetworkOptions {
                pool: cidr("10.254.0.0/16"),
                egress: false,
                host_ports: vec![5432, 6379],
            },
            pool: Mutex::new(pool),
            table: table_name(&cidr("10.254.0.0/16")),
            resolv_conf: String::new(),
        };
        assert_eq!(network.table(), "kiln_dea_0afe0000_16");
        let rules = network.ruleset();
        assert!(rules.contains("tcp dport { 5432, 6379 } accept"), "{rules}");
        assert!(rules.contains("ip saddr 10.254.0.0/16 drop"), "{rules}");
        assert!(!rules.contains("masquerade"), "{rules}");
    }
}
