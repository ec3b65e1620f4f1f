//! Repository policy as `#[test]`s (rust-analyzer's tidy pattern): `cargo test` enforces it.
//!
//! - every source file under `crates/*/src` and `xtask/src` starts with a `//!` module doc;
//! - dependency direction, read from `cargo metadata`: `podvisor-core` depends on no other
//!   `podvisor-*` crate, and neither it, `podvisor-lifecycle` nor `podvisor-workloads` has tokio, hyper, nix or tonic
//!   in its normal dependency closure;
//!   and `podvisor-kubelet` has no system-call crate (nix, libc, rustix) of its own;
//! - `anyhow` is a dependency of xtask only;
//! - every workspace member inherits the workspace lints and is not published;
//! - `unsafe` code only in the runtime's audited module (`crates/runtime/src/sys/`), and every
//!   other crate root forbids `unsafe_code`;
//! - layers: every normal `podvisor-*` dependency points to a lower layer ([`LAYERS`]), so the
//!   kubelet, the proxy and the control loops never link the API server;
//! - HTTP on the wire only in the API server and the probes (and the benchmark harness);
//! - every declared dependency is named in the crate's code.
//!
//! Each failure lists every violation with the file or crate it is in, so one run shows them all.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::Value;

use crate::{project_root, step};

/// Crates that do IO or need a runtime: never in the closure of the pure crates.
const RUNTIME_CRATES: [&str; 4] = ["tokio", "hyper", "nix", "tonic"];
/// Crates whose normal dependency closure must stay free of [`RUNTIME_CRATES`].
const PURE_CRATES: [&str; 3] = ["podvisor-core", "podvisor-lifecycle", "podvisor-workloads"];

#[test]
fn every_source_file_starts_with_a_module_doc() {
    let root = project_root();
    let mut src_dirs = vec![root.join("xtask/src")];
    for crate_dir in sorted_entries(&root.join("crates")) {
        if crate_dir.join("src").is_dir() {
            src_dirs.push(crate_dir.join("src"));
        }
    }
    let mut files = Vec::new();
    for dir in &src_dirs {
        collect_rs_files(dir, &mut files);
    }
    assert!(
        !files.is_empty(),
        "tidy found no source files under {}",
        root.display()
    );

    let mut violations = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file)
            .unwrap_or_else(|error| panic!("cannot read {}: {error}", file.display()));
        if !text.starts_with("//!") {
            let first_line = text.lines().next().unwrap_or("(the file is empty)");
            violations.push(format!(
                "{}: does not start with a `//!` module doc; its first line is `{first_line}`",
                relative(file).display()
            ));
        }
    }
    report(
        "every source file must open with a `//!` doc saying what the module is (STYLE A33)",
        &violations,
    );
}

#[test]
fn unsafe_code_is_only_in_the_runtimes_audited_module() {
    let root = project_root();
    let audited = root.join("crates/runtime/src/sys");
    let keyword = concat!("un", "safe");
    let uses = [
        format!("{keyword} {{"),
        format!("{keyword} fn "),
        format!("{keyword} impl "),
        format!("allow({keyword}_code)"),
    ];
    let mut files = Vec::new();
    for dir in [root.join("crates"), root.join("xtask"), root.join("tests")] {
        collect_rs_files(&dir, &mut files);
    }
    let mut violations = Vec::new();
    for file in files.iter().filter(|f| !f.starts_with(&audited)) {
        let text = std::fs::read_to_string(file)
            .unwrap_or_else(|error| panic!("cannot read {}: {error}", file.display()));
        for (n, line) in text.lines().enumerate() {
            let code = line.trim_start();
            if !code.starts_with("//") && uses.iter().any(|u| code.contains(u.as_str())) {
                violations.push(format!("{}:{}: `{}`", relative(file).display(), n + 1, code));
            }
        }
        let is_root = file.ends_with("src/lib.rs") || file.ends_with("src/main.rs");
        let forbids = text.contains(&format!("#![forbid({keyword}_code)]"));
        if is_root && !file.starts_with(root.join("crates/runtime")) && !forbids {
            violations.push(format!(
                "{}: a crate root without `#![forbid({keyword}_code)]`",
                relative(file).display()
            ));
        }
    }
    report(
        "unsafe code lives only in crates/runtime/src/sys (ARCHITECTURE.md); other crates forbid it",
        &violations,
    );
}

#[test]
fn core_depends_on_no_other_podvisor_crate() {
    let core = package_named("podvisor-core");
    let violations: Vec<String> = dependencies(core)
        .filter(|dep| dep.name.starts_with("podvisor-"))
        .map(|dep| {
            format!(
                "{}: podvisor-core depends on {} ({})",
                manifest(core),
                dep.name,
                dep.kind_label()
            )
        })
        .collect();
    report(
        "podvisor-core is the bottom of the workspace: it depends on no podvisor-* crate",
        &violations,
    );
}

/// System-call crates: the kubelet reaches the machine through `podvisor-core`'s seams
/// (`HostOps`, `ContainerRuntime`), implemented by the runtime.
const SYSCALL_CRATES: [&str; 3] = ["nix", "libc", "rustix"];

#[test]
fn the_kubelet_makes_no_system_calls_of_its_own() {
    let kubelet = package_named("podvisor-kubelet");
    let violations: Vec<String> = dependencies(kubelet)
        .filter(|dep| SYSCALL_CRATES.contains(&dep.name) && dep.kind != Some("dev"))
        .map(|dep| {
            format!(
                "{}: depends on {} ({})",
                manifest(kubelet),
                dep.name,
                dep.kind_label()
            )
        })
        .collect();
    report(
        "podvisor-kubelet reaches the machine through podvisor-core's seams (mounts and \
         figures through HostOps, implemented by podvisor-runtime): no nix, libc or rustix",
        &violations,
    );
}

#[test]
fn pure_crates_have_no_runtime_crates_in_their_closure() {
    let metadata = metadata();
    let nodes = resolve_nodes(metadata);
    let names: HashMap<&str, &str> = packages(metadata)
        .map(|package| (str_field(package, "id"), str_field(package, "name")))
        .collect();

    let mut violations = Vec::new();
    for pure in PURE_CRATES {
        let start = str_field(package_named(pure), "id");
        // Breadth-first over normal edges; `parent` lets a violation show the path that pulls it in.
        let mut parent: HashMap<&str, &str> = HashMap::new();
        let mut seen: HashSet<&str> = HashSet::from([start]);
        let mut queue = VecDeque::from([start]);
        while let Some(id) = queue.pop_front() {
            let name = names.get(id).copied().unwrap_or(id);
            if RUNTIME_CRATES.contains(&name) {
                let mut chain = vec![name];
                let mut at = id;
                while let Some(&up) = parent.get(at) {
                    chain.push(names.get(up).copied().unwrap_or(up));
                    at = up;
                }
                chain.reverse();
                violations.push(format!(
                    "{pure} ({}) pulls in {name} through normal dependencies: {}",
                    manifest(package_named(pure)),
                    chain.join(" -> ")
                ));
                continue;
            }
            for dep in nodes.get(id).into_iter().flat_map(|node| normal_deps(node)) {
                if seen.insert(dep) {
                    parent.insert(dep, id);
                    queue.push_back(dep);
                }
            }
        }
    }
    report(
        "podvisor-core, podvisor-lifecycle and podvisor-workloads are pure: no tokio, hyper, nix or tonic in their \
         normal (non-dev) dependency closure, on any target",
        &violations,
    );
}

#[test]
fn anyhow_is_used_only_at_the_edges() {
    // Binary-only crates (xtask, the benchmark harness) are edges; libraries are not.
    let violations: Vec<String> = workspace_members()
        .filter(|member| has_library(member))
        .flat_map(|member| {
            dependencies(member)
                .filter(|dep| dep.name == "anyhow")
                .map(move |dep| {
                    format!(
                        "{}: {} depends on anyhow ({})",
                        manifest(member),
                        str_field(member, "name"),
                        dep.kind_label()
                    )
                })
        })
        .collect();
    report(
        "anyhow belongs at the edges (binary-only crates such as xtask); libraries return their own thiserror enums (STYLE A21)",
        &violations,
    );
}

#[test]
fn test_support_is_only_a_dev_dependency() {
    let violations: Vec<String> = workspace_members()
        .flat_map(|member| {
            dependencies(member)
                .filter(|dep| dep.name == "podvisor-test-support" && dep.kind != Some("dev"))
                .map(move |dep| {
                    format!(
                        "{}: {} ({})",
                        manifest(member),
                        str_field(member, "name"),
                        dep.kind_label()
                    )
                })
        })
        .collect();
    report(
        "podvisor-test-support is for tests: only under [dev-dependencies] (STYLE B rule 5)",
        &violations,
    );
}

#[test]
fn members_inherit_workspace_lints() {
    let violations: Vec<String> = member_manifests()
        .filter(|(_, text)| !inherits_workspace_lints(text))
        .map(|(path, _)| {
            format!(
                "{}: has no `[lints]` section with `workspace = true`",
                path.display()
            )
        })
        .collect();
    report(
        "every workspace member takes its lints from [workspace.lints] (STYLE A1, A34)",
        &violations,
    );
}

#[test]
fn members_are_not_published() {
    let violations: Vec<String> = member_manifests()
        .filter(|(_, text)| !is_unpublished(text))
        .map(|(path, _)| {
            format!(
                "{}: [package] has neither `publish = false` nor `publish.workspace = true`",
                path.display()
            )
        })
        .collect();
    report(
        "every workspace member is internal and never published (STYLE A7)",
        &violations,
    );
}

#[test]
fn manifest_checks_read_toml_forms() {
    assert!(inherits_workspace_lints(
        "[package]\nname = \"a\"\n\n[lints]\nworkspace = true\n"
    ));
    assert!(inherits_workspace_lints("[lints]\nworkspace=true # comment\n"));
    assert!(!inherits_workspace_lints("[lints.rust]\nworkspace = true\n"));
    assert!(!inherits_workspace_lints("[package]\nworkspace = true\n"));
    assert!(is_unpublished("[package]\npublish = false\n"));
    assert!(is_unpublished("[package]\npublish.workspace = true\n"));
    assert!(is_unpublished("[package]\npublish = { workspace = true }\n"));
    assert!(!is_unpublished("[package]\npublish = true\n"));
    assert!(!is_unpublished("[package]\n[features]\npublish = false\n"));
}

/// Panics with `rule` and one line per violation, if there are any.
fn report(rule: &str, violations: &[String]) {
    assert!(
        violations.is_empty(),
        "tidy: {rule}\n  {}\n",
        violations.join("\n  ")
    );
}

// ----- Source files -----

/// The entries of `dir`, sorted, so failures come out in a stable order.
fn sorted_entries(dir: &Path) -> Vec<PathBuf> {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|error| panic!("cannot list {}: {error}", dir.display()));
    let mut paths: Vec<PathBuf> = entries
        .map(|entry| {
            entry
                .unwrap_or_else(|error| panic!("cannot list {}: {error}", dir.display()))
                .path()
        })
        .collect();
    paths.sort();
    paths
}

fn collect_rs_files(dir: &Path, files: &mut Vec<PathBuf>) {
    for path in sorted_entries(dir) {
        if path.is_dir() {
            collect_rs_files(&path, files);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path);
        }
    }
}

/// `path` relative to the workspace root, for messages.
fn relative(path: &Path) -> &Path {
    path.strip_prefix(project_root()).unwrap_or(path)
}

// ----- Manifests -----

/// Each workspace member's `Cargo.toml` path (relative) and text.
fn member_manifests() -> impl Iterator<Item = (PathBuf, String)> {
    workspace_members().map(|member| {
        let path = PathBuf::from(str_field(member, "manifest_path"));
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
        (relative(&path).to_path_buf(), text)
    })
}

/// The manifest's lines as (section, key-value line), without comments or whitespace.
///
/// A line-level reading of TOML, enough for the simple keys checked here.
fn toml_lines(text: &str) -> impl Iterator<Item = (String, String)> + '_ {
    let mut section = String::new();
    text.lines().filter_map(move |line| {
        let line = line.split('#').next().unwrap_or("");
        let compact: String = line.chars().filter(|c| !c.is_whitespace()).collect();
        if compact.is_empty() {
            return None;
        }
        if let Some(header) = compact.strip_prefix('[').and_then(|rest| rest.strip_suffix(']')) {
            section = header.to_owned();
            return None;
        }
        Some((section.clone(), compact))
    })
}

fn inherits_workspace_lints(text: &str) -> bool {
    toml_lines(text).any(|(section, line)| {
        (section == "lints" && line == "workspace=true")
            || (section.is_empty() && (line == "lints.workspace=true" || line == "lints={workspace=true}"))
    })
}

fn is_unpublished(text: &str) -> bool {
    toml_lines(text).any(|(section, line)| {
        section == "package"
            && matches!(
                line.as_str(),
                "publish=false" | "publish.workspace=true" | "publish={workspace=true}"
            )
    })
}

// ----- cargo metadata -----

/// `cargo metadata --format-version 1` for the workspace, run once per test binary.
fn metadata() -> &'static Value {
    static METADATA: OnceLock<Value> = OnceLock::new();
    METADATA.get_or_init(|| {
        let output = step::cargo()
            .args(["metadata", "--format-version", "1"])
            .output()
            .unwrap_or_else(|error| panic!("cannot run `cargo metadata`: {error}"));
        assert!(
            output.status.success(),
            "`cargo metadata --format-version 1` failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|error| panic!("`cargo metadata` printed invalid JSON: {error}"))
    })
}

fn str_field<'a>(value: &'a Value, key: &str) -> &'a str {
    value[key]
        .as_str()
        .unwrap_or_else(|| panic!("cargo metadata: `{key}` is not a string in {value}"))
}

fn array<'a>(value: &'a Value, key: &str) -> &'a [Value] {
    value[key].as_array().map_or(&[], Vec::as_slice)
}

fn packages(metadata: &Value) -> impl Iterator<Item = &Value> {
    array(metadata, "packages").iter()
}

fn workspace_members() -> impl Iterator<Item = &'static Value> {
    let metadata = metadata();
    let members: HashSet<&str> = array(metadata, "workspace_members")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    packages(metadata).filter(move |package| members.contains(str_field(package, "id")))
}

fn package_named(name: &str) -> &'static Value {
    workspace_members()
        .find(|package| str_field(package, "name") == name)
        .unwrap_or_else(|| panic!("tidy: workspace member `{name}` not found in `cargo metadata`"))
}

/// Whether `package` has a library target (then it is not an edge).
fn has_library(package: &Value) -> bool {
    array(package, "targets").iter().any(|t| {
        array(t, "kind")
            .iter()
            .any(|k| matches!(k.as_str(), Some("lib" | "rlib" | "dylib" | "proc-macro")))
    })
}

/// `package`'s manifest path relative to the workspace root, for messages.
fn manifest(package: &Value) -> String {
    relative(Path::new(str_field(package, "manifest_path")))
        .display()
        .to_string()
}

/// One declared dependency of a package, of any kind.
struct Dependency<'a> {
    name: &'a str,
    /// `null` (normal), `"dev"` or `"build"`.
    kind: Option<&'a str>,
    target: Option<&'a str>,
}

impl Dependency<'_> {
    fn kind_label(&self) -> String {
        let section = match self.kind {
            Some("dev") => "[dev-dependencies]",
            Some("build") => "[build-dependencies]",
            _ => "[dependencies]",
        };
        match self.target {
            Some(target) => format!("{section} for target `{target}`"),
            None => section.to_owned(),
        }
    }
}

fn dependencies(package: &Value) -> impl Iterator<Item = Dependency<'_>> {
    array(package, "dependencies").iter().map(|dep| Dependency {
        name: str_field(dep, "name"),
        kind: dep["kind"].as_str(),
        target: dep["target"].as_str(),
    })
}

/// `resolve.nodes` by package id.
fn resolve_nodes(metadata: &Value) -> HashMap<&str, &Value> {
    let nodes = metadata["resolve"]["nodes"]
        .as_array()
        .unwrap_or_else(|| panic!("cargo metadata has no `resolve.nodes`"));
    nodes.iter().map(|node| (str_field(node, "id"), node)).collect()
}

/// The package ids `node` depends on as a normal dependency (`kind: null`), on any target.
fn normal_deps(node: &Value) -> impl Iterator<Item = &str> {
    array(node, "deps")
        .iter()
        .filter(|dep| array(dep, "dep_kinds").iter().any(|kind| kind["kind"].is_null()))
        .map(|dep| str_field(dep, "pkg"))
}

/// The layer of every workspace crate: a crate's normal dependencies on other `podvisor-*`
/// crates point to strictly lower layers, so crates of one layer never depend on each other
/// (the kubelet, the Service proxy and the control loops reach the API server only through
/// `kube::Client`, never by linking it).
const LAYERS: &[(&str, u8)] = &[
    // Vocabulary and leaves.
    ("podvisor-core", 0),
    ("podvisor-store", 0),
    ("podvisor-dns", 0),
    // Pure rules and single-purpose mechanisms.
    ("podvisor-lifecycle", 1),
    ("podvisor-api", 1),
    ("podvisor-endpoints", 1),
    ("podvisor-workloads", 1),
    ("podvisor-probe", 1),
    ("podvisor-stream", 1),
    ("podvisor-runtime", 1),
    // Components: one side of the API each.
    ("podvisor-apiserver", 2),
    ("podvisor-kubelet", 2),
    ("podvisor-proxy", 2),
    ("podvisor-controllers", 2),
    // Wiring.
    ("podvisor-node", 3),
    ("podvisor-test-support", 3),
    // Binaries and harnesses.
    ("podvisor", 4),
    ("podvisor-bench", 4),
    ("podvisor-tests", 4),
];

#[test]
fn podvisor_crates_depend_only_on_lower_layers() {
    let layer = |name: &str| LAYERS.iter().find(|(n, _)| *n == name).map(|(_, l)| *l);
    let mut violations = Vec::new();
    for member in workspace_members() {
        let name = str_field(member, "name");
        if name == "xtask" {
            continue;
        }
        let Some(own) = layer(name) else {
            violations.push(format!(
                "{}: {name} has no layer in tidy.rs LAYERS",
                manifest(member)
            ));
            continue;
        };
        for dep in dependencies(member).filter(|d| d.kind.is_none() && d.name.starts_with("podvisor")) {
            match layer(dep.name) {
                Some(l) if l < own => {}
                Some(l) => violations.push(format!(
                    "{}: {name} (layer {own}) depends on {} (layer {l})",
                    manifest(member),
                    dep.name
                )),
                None => violations.push(format!("{}: {} has no layer", manifest(member), dep.name)),
            }
        }
    }
    report(
        "normal dependencies point to lower layers (ARCHITECTURE.md, dependency rule 7)",
        &violations,
    );
}

/// The crates that speak HTTP on the wire themselves, and the benchmark harness that measures
/// them; everyone else reaches the API through `kube::Client`.
const HTTP_SPEAKERS: &[&str] = &["podvisor-apiserver", "podvisor-probe", "podvisor-bench"];

#[test]
fn http_is_spoken_only_by_the_api_server_and_the_probes() {
    let wire = ["hyper", "hyper-util", "http-body-util", "h2", "reqwest", "ureq"];
    let violations: Vec<String> = workspace_members()
        .filter(|m| !HTTP_SPEAKERS.contains(&str_field(m, "name")))
        .flat_map(|member| {
            dependencies(member)
                .filter(|d| d.kind.is_none() && wire.contains(&d.name))
                .map(move |d| format!("{}: depends on {}", manifest(member), d.name))
        })
        .collect();
    report(
        "only the API server and the probes speak HTTP (ARCHITECTURE.md, dependency rule 8)",
        &violations,
    );
}

/// Dependencies used without being named in code: (crate, dependency, why).
const USED_WITHOUT_A_PATH: &[(&str, &str, &str)] = &[];

#[test]
fn every_dependency_is_used() {
    let mut violations = Vec::new();
    for member in workspace_members() {
        let name = str_field(member, "name");
        let dir = Path::new(str_field(member, "manifest_path"))
            .parent()
            .unwrap_or_else(|| panic!("manifest without a directory"))
            .to_path_buf();
        let mut files = Vec::new();
        for sub in ["src", "tests", "benches", "examples"] {
            let d = dir.join(sub);
            if d.is_dir() {
                collect_rs_files(&d, &mut files);
            }
        }
        // A build script names its build-dependencies.
        if dir.join("build.rs").is_file() {
            files.push(dir.join("build.rs"));
        }
        let text: String = files
            .iter()
            .filter_map(|f| fs::read_to_string(f).ok())
            .collect::<Vec<_>>()
            .join("\n");
        for dep in array(member, "dependencies") {
            let dep_name = str_field(dep, "name");
            let used_as = dep["rename"].as_str().unwrap_or(dep_name).replace('-', "_");
            if USED_WITHOUT_A_PATH
                .iter()
                .any(|(c, d, _)| *c == name && *d == dep_name)
            {
                continue;
            }
            let named = [
                format!("{used_as}::"),
                format!("use {used_as}"),
                format!("{used_as} as"),
                format!("extern crate {used_as}"),
            ]
            .iter()
            .any(|p| text.contains(p.as_str()));
            if !named {
                violations.push(format!("{}: {dep_name} is never named in code", manifest(member)));
            }
        }
    }
    report(
        "every declared dependency is used (or listed with its reason in USED_WITHOUT_A_PATH)",
        &violations,
    );
}
