//! Resolving a Service port's `targetPort` for one pod (rule 16.6).

use podvisor_core::corev1::{Pod, ServicePort};
use podvisor_core::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// The port number a pod serves `service_port` on, or `None` if it does not.
///
/// A numeric `targetPort` is used as it is (default: the service `port`). A named one is looked
/// up among the regular containers' ports, then the sidecars' (init containers with
/// `restartPolicy: Always`), matching name **and** protocol; plain init containers are never
/// searched.
pub fn find_port(pod: &Pod, service_port: &ServicePort) -> Option<i32> {
    let protocol = service_port.protocol.as_deref().unwrap_or("TCP");
    match &service_port.target_port {
        None => Some(service_port.port),
        Some(IntOrString::Int(0)) => Some(service_port.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(s)) if s.is_empty() => Some(service_port.port),
        Some(IntOrString::String(name)) => {
            let spec = pod.spec.as_ref()?;
            let sidecars = spec
                .init_containers
                .iter()
                .flatten()
                .filter(|c| c.restart_policy.as_deref() == Some("Always"));
            spec.containers
                .iter()
                .chain(sidecars)
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| {
                    p.name.as_deref() == Some(name) && p.protocol.as_deref().unwrap_or("TCP") == protocol
                })
                .map(|p| p.container_port)
        }
    }
}
