//! Isolated networking (`network.mode: isolated`) through the agent: instances in their own
//! namespaces on 8080 behind their host ports, reaching allow-listed host services through
//! `kiln-host` and nothing else, and leaving no veth, namespace or nftables table behind.

use std::net::Ipv4Addr;
use std::process::Command;

use dea::config::NetworkMode;
use protocol::dea::{DropletExited, StartMessage};
use protocol::router::RegistryMessage;
use tokio::io::AsyncWriteExt;

use crate::agent::{json, next_matching, sha1_hex, World};
use crate::support::{http_get, unique_id, Harness};

/// A small app: `/` reports its environment, `/connect/HOST/PORT` tries a TCP connection and
/// reports `connected` with the peer's greeting, or `failed <exception>` when it cannot connect.
const SERVER_PY: &str = r#"
import os, socket, http.server

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        parts = self.path.strip("/").split("/")
        if parts[0] == "connect":
            try:
                connection = socket.create_connection((parts[1], int(parts[2])), timeout=2)
            except Exception as error:
                body = "failed " + type(error).__name__
            else:
                # Connected; a greeting is reported when the peer sends one at once.
                with connection:
                    connection.settimeout(1)
                    try:
                        greeting = connection.recv(100).decode().strip()
                    except Exception:
                        greeting = ""
                body = ("connected " + greeting).strip()
        else:
            names = ["PORT", "CF_INSTANCE_INTERNAL_IP", "KILN_HOST_GATEWAY", "CF_INSTANCE_PORT"]
            body = " ".join(os.environ.get(name, "-") for name in names)
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass

# Threaded, so the DEA's liveness probes are answered while a connection attempt waits.
http.server.ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler).serve_forever()
"#;

fn server_droplet(h: &Harness) -> Vec<u8> {
    let dir = h.path().join(unique_id("droplet"));
    std::fs::create_dir_all(dir.join("app")).unwrap();
    std::fs::write(dir.join("app/server.py"), SERVER_PY).unwrap();
    std::fs::write(
        dir.join("staging_info.yml"),
        serde_json::json!({"detected_buildpack": "", "start_command": "exec python3 server.py"})
            .to_string(),
    )
    .unwrap();
    let archive = h.path().join(format!("{}.tgz", unique_id("droplet")));
    let status = Command::new("tar")
        .arg("-czf")
        .arg(&archive)
        .arg("-C")
        .arg(&dir)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::read(archive).unwrap()
}

/// Serves `greeting` to every connection until dropped.
async fn greeter(bind: &str, greeting: &'static str) -> (u16, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind(bind).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let _ = socket.write_all(greeting.as_bytes()).await;
        }
    });
    (port, task)
}

/// Isolated mode needs `nft`; like runc, `KILN_REQUIRE_RUNC=1` makes its absence a failure.
fn nft_or_skip() -> bool {
    if Command::new("nft").arg("--version").output().is_ok() {
        return true;
    }
    if std::env::var("KILN_REQUIRE_RUNC").as_deref() == Ok("1") {
        panic!("nft (package nftables) is missing; isolated mode needs it (KILN_REQUIRE_RUNC=1)");
    }
    eprintln!("skipping: nft (package nftables) is missing");
    false
}

/// `/connect/HOST/PORT` of the instance behind `instance_port`.
async fn connect_from(instance_port: u16, host: &str, port: u16) -> String {
    http_get(instance_port, &format!("/connect/{host}/{port}"))
        .await
        .1
}

/// The names the DEA gives a container's veth and namespace, from its address.
fn names_of(container_ip: Ipv4Addr) -> (String, String) {
    let tag = format!("{:08x}", u32::from(container_ip) - 2);
    (format!("kv{tag}"), format!("kiln-{tag}"))
}

fn pool_network(pool: &str) -> Ipv4Addr {
    pool.parse::<dea::network::Ipv4Cidr>().unwrap().network()
}

fn link_exists(name: &str) -> bool {
    Command::new("ip")
        .args(["link", "show", name])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn netns_exists(name: &str) -> bool {
    std::path::Path::new("/run/netns").join(name).exists()
}

async fn start_and_register(
    world: &World,
    registers: &mut async_nats::Subscriber,
    start: &StartMessage,
) -> RegistryMessage {
    world
        .publish(format!("dea.{}.start", world.id), json(start))
        .await;
    let index = start.index.to_string();
    let app = start.droplet.clone();
    next_matching(registers, 60, "router.register", |r: &RegistryMessage| {
        r.app.as_deref() == Some(app.as_str())
            && r.private_instance_index.as_deref() == Some(index.as_str())
    })
    .await
}

/// `/` of an instance through its host port: (PORT, container ip, gateway, CF_INSTANCE_PORT).
async fn identity(port: u16) -> (String, Ipv4Addr, String, String) {
    let (status, body) = http_get(port, "/").await;
    assert_eq!(status, 200, "{body}");
    let words: Vec<&str> = body.split_whitespace().collect();
    assert_eq!(words.len(), 4, "{body}");
    (
        words[0].to_string(),
        words[1].parse().expect("a container IP"),
        words[2].to_string(),
        words[3].to_string(),
    )
}

#[tokio::test]
async fn isolated_instances_share_8080_reach_only_allowed_host_ports_and_leave_nothing_behind() {
    if !nft_or_skip() {
        return;
    }
    let (allowed_port, allowed) = greeter("127.0.0.1:0", "hello-from-host\n").await;
    let (loopback_port, loopback) = greeter("127.0.0.1:0", "loopback-secret\n").await;
    let (wildcard_port, wildcard) = greeter("0.0.0.0:0", "wildcard-secret\n").await;
    // A pool of this test's own (DEAs on one host need disjoint pools).
    let pool = format!("10.254.{}.0/24", 100 + std::process::id() % 150);
    let table = format!("kiln_dea_{:08x}_24", u32::from(pool_network(&pool)));
    // What a crashed DEA with this pool would have left: a veth pair, a namespace, its table.
    let leftover_ip = Ipv4Addr::from(u32::from(pool_network(&pool)) + 250);
    let (leftover_veth, leftover_netns) = names_of(leftover_ip);
    let _ = Command::new("ip")
        .args([
            "link",
            "add",
            &leftover_veth,
            "type",
            "veth",
            "peer",
            "name",
            &format!("kp{}", &leftover_veth[2..]),
        ])
        .output();
    let _ = Command::new("ip")
        .args(["netns", "add", &leftover_netns])
        .output();
    let _ = Command::new("nft")
        .args(["add", "table", "inet", &table])
        .output();
    let Some(world) = World::start_with(|config| {
        config.network.mode = NetworkMode::Isolated;
        config.network.pool_cidr = pool.parse().unwrap();
        config.network.host_ports = vec![allowed_port];
    })
    .await
    else {
        // No runc here: remove the fake leftovers ourselves.
        let _ = Command::new("ip")
            .args(["link", "del", &leftover_veth])
            .output();
        let _ = Command::new("ip")
            .args(["netns", "del", &leftover_netns])
            .output();
        let _ = Command::new("nft")
            .args(["delete", "table", "inet", &table])
            .output();
        return;
    };
    let table_exists = || {
        Command::new("nft")
            .args(["list", "table", "inet", &table])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    assert!(table_exists(), "the DEA installed its table {table}");
    assert!(
        !link_exists(&leftover_veth),
        "the leftover {leftover_veth} is removed at start"
    );
    assert!(
        !netns_exists(&leftover_netns),
        "the leftover {leftover_netns} is removed at start"
    );

    let app = unique_id("isolated");
    let blob = server_droplet(&world.h);
    let sha1 = sha1_hex(&blob);
    world.blobs.put("/droplets/isolated.tgz", blob);
    let mut registers = world.subscribe("router.register").await;
    let mut exits = world.subscribe("droplet.exited").await;
    let mut first = world.start_message(&app, "/droplets/isolated.tgz", &sha1);
    first.health_check_type = Some("http".into());
    let mut second = first.clone();
    second.index = 1;

    // Both listen on 8080 in their own namespaces; each is reached through its host port.
    let first_route = start_and_register(&world, &mut registers, &first).await;
    let second_route = start_and_register(&world, &mut registers, &second).await;
    assert_eq!(first_route.host, "127.0.0.1");
    assert_ne!(first_route.port, second_route.port);
    let (port, first_ip, gateway, instance_port) = identity(first_route.port).await;
    assert_eq!(port, "8080");
    assert_eq!(instance_port, first_route.port.to_string());
    let (port, second_ip, _, _) = identity(second_route.port).await;
    assert_eq!(port, "8080");
    assert_ne!(first_ip, second_ip);
    assert_eq!(gateway, Ipv4Addr::from(u32::from(first_ip) - 1).to_string());
    for ip in [first_ip, second_ip] {
        let (veth, netns) = names_of(ip);
        assert!(link_exists(&veth), "{veth}");
        assert!(netns_exists(&netns), "{netns}");
    }

    assert_eq!(
        connect_from(first_route.port, "kiln-host", allowed_port).await,
        "connected hello-from-host",
        "an allow-listed host port is served on the gateway"
    );
    for (host, port, what) in [
        ("127.0.0.1".to_string(), loopback_port, "host loopback"),
        (
            "kiln-host".to_string(),
            loopback_port,
            "a loopback service via the gateway",
        ),
        (
            "kiln-host".to_string(),
            wildcard_port,
            "a wildcard-bound host service",
        ),
        (second_ip.to_string(), 8080, "the other instance"),
    ] {
        let answer = connect_from(first_route.port, &host, port).await;
        assert!(
            answer.starts_with("failed"),
            "{what} ({host}:{port}) must be unreachable: {answer}"
        );
    }

    // Stopping one instance removes its veth and namespace and frees its /30 for the next.
    let (first_veth, first_netns) = names_of(first_ip);
    world
        .publish(
            "dea.stop".into(),
            json(&serde_json::json!({"droplet": app, "indices": [0]})),
        )
        .await;
    let exited: DropletExited =
        next_matching(&mut exits, 30, "droplet.exited", |e: &DropletExited| {
            e.droplet == app && e.index == 0
        })
        .await;
    assert_eq!(exited.index, 0);
    assert_eventually!(
        10,
        !link_exists(&first_veth) && !netns_exists(&first_netns),
        "{first_veth} / {first_netns} left behind"
    );
    let mut third = first.clone();
    third.index = 2;
    let third_route = start_and_register(&world, &mut registers, &third).await;
    let (_, third_ip, _, _) = identity(third_route.port).await;
    assert_eq!(third_ip, first_ip, "the released /30 is reused");

    world.stop().await;
    for ip in [first_ip, second_ip] {
        let (veth, netns) = names_of(ip);
        assert!(!link_exists(&veth), "{veth} left behind");
        assert!(!netns_exists(&netns), "{netns} left behind");
    }
    assert!(!table_exists(), "{table} left behind");
    for task in [allowed, loopback, wildcard] {
        task.abort();
    }
}

#[tokio::test]
async fn with_egress_instances_reach_beyond_the_host_but_not_the_host_or_each_other() {
    if !nft_or_skip() {
        return;
    }
    let (wildcard_port, wildcard) = greeter("0.0.0.0:0", "wildcard-secret\n").await;
    // The DEA switches forwarding on and leaves it on; the test puts back what it found.
    let ip_forward = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    let pool = format!("10.254.{}.0/24", 20 + std::process::id() % 70);
    let Some(world) = World::start_with(|config| {
        config.network.mode = NetworkMode::Isolated;
        config.network.pool_cidr = pool.parse().unwrap();
        config.network.egress = true;
    })
    .await
    else {
        return;
    };
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap(),
        "1\n",
        "egress switches IPv4 forwarding on"
    );
    let app = unique_id("egress");
    let blob = server_droplet(&world.h);
    let sha1 = sha1_hex(&blob);
    world.blobs.put("/droplets/egress.tgz", blob);
    let mut registers = world.subscribe("router.register").await;
    let first = world.start_message(&app, "/droplets/egress.tgz", &sha1);
    let mut second = first.clone();
    second.index = 1;
    let first_route = start_and_register(&world, &mut registers, &first).await;
    let second_route = start_and_register(&world, &mut registers, &second).await;
    let (_, _, gateway, _) = identity(first_route.port).await;
    let (_, second_ip, _, _) = identity(second_route.port).await;

    // Forwarding is on, yet the host (on any of its addresses) and the other instance are not.
    let mut forbidden = vec![
        (gateway.clone(), wildcard_port),
        (second_ip.to_string(), 8080),
    ];
    if let Some(address) = host_global_address() {
        forbidden.push((address, wildcard_port));
    }
    for (host, port) in forbidden {
        let answer = connect_from(first_route.port, &host, port).await;
        assert!(answer.starts_with("failed"), "{host}:{port}: {answer}");
    }
    // Beyond the host: the host's resolver, when the host itself reaches it over TCP.
    let resolver = std::fs::read_to_string("/etc/resolv.conf")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.strip_prefix("nameserver"))
        .filter_map(|address| address.trim().parse::<Ipv4Addr>().ok())
        .find(|address| !address.is_loopback());
    match resolver {
        Some(resolver)
            if std::net::TcpStream::connect_timeout(
                &(resolver, 53).into(),
                std::time::Duration::from_secs(2),
            )
            .is_ok() =>
        {
            let answer = connect_from(first_route.port, &resolver.to_string(), 53).await;
            assert_eq!(answer, "connected", "egress to {resolver}:53");
        }
        _ => eprintln!("no resolver reachable over TCP from the host; egress itself not checked"),
    }
    world.stop().await;
    wildcard.abort();
    std::fs::write("/proc/sys/net/ipv4/ip_forward", ip_forward).unwrap();
}

/// The host's first global IPv4 address, if any.
fn host_global_address() -> Option<String> {
    let output = Command::new("ip")
        .args(["-o", "-4", "addr", "show", "scope", "global"])
        .output()
        .ok()?;
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| !line.contains(" kv"))
        .find_map(|line| {
            let mut words = line.split_whitespace();
            words.find(|word| *word == "inet")?;
            Some(words.next()?.split('/').next()?.to_string())
        })
}
