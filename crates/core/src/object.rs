//! Naming objects: the namespace default and a pod reference (`namespace/name`).

use std::fmt;

use crate::corev1::Pod;
use crate::metav1::ObjectMeta;

/// The namespace of an object that names none (kube-apiserver's `metav1.NamespaceDefault`).
pub const DEFAULT_NAMESPACE: &str = "default";

/// The namespace of an object, `default` when it names none (or an empty one).
pub fn namespace_of(meta: &ObjectMeta) -> &str {
    meta.namespace
        .as_deref()
        .filter(|ns| !ns.is_empty())
        .unwrap_or(DEFAULT_NAMESPACE)
}

/// A pod by namespace and name; shown as `namespace/name`, as the kubelet logs pods.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PodRef {
    /// The pod's namespace (defaulted).
    pub namespace: String,
    /// The pod's name (empty when it has none).
    pub name: String,
}

impl PodRef {
    /// The reference of `pod`.
    pub fn of(pod: &Pod) -> PodRef {
        PodRef {
            namespace: namespace_of(&pod.metadata).to_string(),
            name: pod.metadata.name.clone().unwrap_or_default(),
        }
    }
}

impl fmt::Display for PodRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_namespace_defaults() {
        let mut pod = Pod::default();
        pod.metadata.name = Some("web".into());
        assert_eq!(PodRef::of(&pod).to_string(), "default/web");
        pod.metadata.namespace = Some(String::new());
        assert_eq!(namespace_of(&pod.metadata), "default");
        pod.metadata.namespace = Some("team".into());
        assert_eq!(PodRef::of(&pod).to_string(), "team/web");
    }
}
