//! What podvisor says it is: the Kubernetes version it serves and the machine's architecture,
//! in Kubernetes' words (the API server's `/version`, the Node's `nodeInfo` and labels).

/// The Kubernetes version podvisor is: the one whose API types it serves (`k8s-openapi`'s
/// `v1_35`). The Node's `kubeletVersion` says the same.
pub const GIT_VERSION: &str = "v1.35.0-podvisor";

/// This machine's architecture as Kubernetes names it (Go's `GOARCH`: `amd64`, `arm64`).
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}
