//! Checks the invariants ARCHITECTURE.md states, over `cargo metadata` and the source tree:
//! the layering of the workspace crates, Apache-2.0-compatible licences for every dependency,
//! and a `//!` doc line at the top of every Rust module.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

const COMPONENTS: &[&str] = &["cloud_controller", "uaa", "dea", "gorouter", "loggregator"];

fn metadata(no_deps: bool) -> serde_json::Value {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let mut command = Command::new(cargo);
    command
        .args(["metadata", "--format-version", "1", "--locked", "--offline"])
        .current_dir(manifest_dir());
    if no_deps {
        command.arg("--no-deps");
    } else {
        // Only what is built here; other platforms' crates are not downloaded (and not shipped).
        command.args(["--filter-platform", &host_triple()]);
    }
    let output = command.output().expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON")
}

fn host_triple() -> String {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string());
    let output = Command::new(rustc)
        .arg("-vV")
        .output()
        .expect("rustc -vV runs");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|line| line.strip_prefix("host: "))
        .expect("rustc -vV names the host")
        .to_string()
}

/// Workspace crate → the workspace crates it depends on, by dependency kind ("normal", "dev", "build").
fn workspace_edges() -> BTreeMap<String, Vec<(String, String)>> {
    let metadata = metadata(true);
    let members: BTreeSet<String> = metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect();
    let mut edges = BTreeMap::new();
    for package in metadata["packages"].as_array().unwrap() {
        let name = package["name"].as_str().unwrap().to_string();
        let deps = package["dependencies"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| members.contains(d["name"].as_str().unwrap()))
            .map(|d| {
                (
                    d["name"].as_str().unwrap().to_string(),
                    d["kind"].as_str().unwrap_or("normal").to_string(),
                )
            })
            .collect();
        edges.insert(name, deps);
    }
    edges
}

#[test]
fn every_crate_of_the_design_is_a_workspace_member() {
    let edges = workspace_edges();
    for name in ["kiln", "protocol", "broker_sdk", "cats"]
        .iter()
        .chain(COMPONENTS)
    {
        assert!(
            edges.contains_key(*name),
            "{name} is not a workspace member"
        );
    }
}

#[test]
fn protocol_depends_on_no_workspace_crate() {
    assert_eq!(workspace_edges()["protocol"], vec![]);
}

#[test]
fn components_depend_only_on_protocol() {
    let edges = workspace_edges();
    for component in COMPONENTS {
        for (dependency, kind) in &edges[*component] {
            // Tests may start a real peer component (the Cloud Controller's tests run a real UAA);
            // shipped code never links another component.
            let allowed = dependency == "protocol" || kind == "dev";
            assert!(
                allowed,
                "{component} depends on {dependency} ({kind}); components talk over HTTP and NATS only"
            );
        }
    }
}

#[test]
fn broker_sdk_stands_alone() {
    assert_eq!(
        workspace_edges()["broker_sdk"],
        vec![],
        "third parties use broker_sdk without the rest of Kiln"
    );
}

#[test]
fn cats_reaches_the_platform_only_through_binaries_http_and_nats() {
    assert_eq!(
        workspace_edges()["cats"],
        vec![],
        "cats must not call into Kiln crates"
    );
}

#[test]
fn only_the_kiln_binary_depends_on_several_components() {
    for (name, deps) in workspace_edges() {
        if name == "kiln" {
            continue;
        }
        let components: BTreeSet<_> = deps
            .iter()
            .filter(|(dep, kind)| COMPONENTS.contains(&dep.as_str()) && kind != "dev")
            .collect();
        assert!(
            components.len() <= 1,
            "{name} depends on several components: {components:?}"
        );
    }
}

/// Licences that may be combined with Apache-2.0 in a distributed binary.
const COMPATIBLE_LICENSES: &[&str] = &[
    "Apache-2.0",
    "Apache-2.0 WITH LLVM-exception",
    "MIT",
    "MIT-0",
    "BSD-2-Clause",
    "BSD-3-Clause",
    "ISC",
    "Zlib",
    "0BSD",
    "CC0-1.0",
    "Unicode-3.0",
    "Unicode-DFS-2016",
    "Unlicense",
    "BSL-1.0",
    "MPL-2.0",
    "CDLA-Permissive-2.0",
];

/// True if some alternative of an SPDX expression consists only of compatible licences.
fn license_is_compatible(expression: &str) -> bool {
    let cleaned = expression.replace(['(', ')'], "");
    cleaned
        .split(" OR ")
        .flat_map(|a| a.split('/'))
        .any(|alternative| {
            alternative
                .split(" AND ")
                .all(|license| COMPATIBLE_LICENSES.contains(&license.trim()))
        })
}

#[test]
fn every_dependency_has_an_apache_compatible_license() {
    let metadata = metadata(false);
    let mut offenders = Vec::new();
    for package in metadata["packages"].as_array().unwrap() {
        let name = package["name"].as_str().unwrap();
        match package["license"].as_str() {
            Some(license) if license_is_compatible(license) => {}
            // ring 0.16 and a few older crates publish only a license file; none are used today.
            other => offenders.push(format!("{name}: {other:?}")),
        }
    }
    assert!(
        offenders.is_empty(),
        "dependencies without an Apache-2.0-compatible licence: {offenders:#?}"
    );
}

#[test]
fn workspace_crates_are_apache_2_0() {
    for package in metadata(true)["packages"].as_array().unwrap() {
        assert_eq!(
            package["license"].as_str(),
            Some("Apache-2.0"),
            "{}",
            package["name"]
        );
    }
}

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

#[test]
fn every_module_starts_with_a_doc_line() {
    let root_dir = manifest_dir();
    let root = Path::new(&root_dir);
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    for member in ["protocol", "broker_sdk", "cats"].iter().chain(COMPONENTS) {
        rust_files(&root.join(member).join("src"), &mut files);
    }
    let undocumented: Vec<_> = files
        .iter()
        .filter(|path| {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            !text
                .lines()
                .find(|line| !line.trim().is_empty())
                .is_some_and(|line| line.starts_with("//!"))
        })
        .collect();
    assert!(
        undocumented.is_empty(),
        "modules without a leading //! line: {undocumented:#?}"
    );
}

/// This crate's directory: cargo's `CARGO_MANIFEST_DIR` at run time, else the compile-time one (a
/// target directory shared by several clones may run a test binary compiled in another clone).
fn manifest_dir() -> String {
    std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned())
}
