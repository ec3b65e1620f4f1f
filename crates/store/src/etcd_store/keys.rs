//! The etcd key layout: `<prefix>/<resource>/<namespace>/<name>`, or `<prefix>/<resource>/<name>`
//! for cluster-scoped objects, as kube-apiserver lays its keys out.
//!
//! `pods` in `default` named `web` is `/registry/pods/default/web`; the node `n1` is
//! `/registry/nodes/n1`. A grouped resource keeps its group: `apps/deployments` is
//! `/registry/apps/deployments/<namespace>/<name>`. That is how kube-apiserver lays out custom
//! resources; its built-in grouped resources drop the group (`/registry/deployments/...`),
//! which podvisor does not copy so that two resources of the same name in different groups
//! never share keys. Names and namespaces never contain `/`, so a key splits unambiguously.

use crate::ObjectKey;

/// The key layout under one prefix (`/registry` by default).
#[derive(Debug, Clone)]
pub(super) struct Layout {
    /// The prefix without a trailing `/`.
    root: String,
}

impl Layout {
    /// The layout under `prefix` (a trailing `/` is ignored; an empty prefix is the key root).
    pub(super) fn new(prefix: &str) -> Self {
        Layout {
            root: prefix.trim_end_matches('/').to_string(),
        }
    }

    /// The etcd key of an object.
    pub(super) fn key(&self, key: &ObjectKey) -> String {
        if key.namespace.is_empty() {
            format!("{}/{}/{}", self.root, key.resource, key.name)
        } else {
            format!("{}/{}/{}/{}", self.root, key.resource, key.namespace, key.name)
        }
    }

    /// The prefix of every key of `resource` (in `namespace`, if given and not empty), always
    /// ending in `/`: `/registry/pods/` does not match `/registry/pods2/...`.
    pub(super) fn prefix(&self, resource: &str, namespace: Option<&str>) -> String {
        match namespace.filter(|ns| !ns.is_empty()) {
            Some(ns) => format!("{}/{resource}/{ns}/", self.root),
            None => format!("{}/{resource}/", self.root),
        }
    }

    /// The object key of an etcd key of `resource`, if it is one and lies in `namespace`
    /// (`Some("")`: cluster-scoped objects only).
    pub(super) fn parse(
        &self,
        resource: &str,
        namespace: Option<&str>,
        etcd_key: &[u8],
    ) -> Option<ObjectKey> {
        let s = std::str::from_utf8(etcd_key).ok()?;
        let rest = s
            .strip_prefix(self.root.as_str())?
            .strip_prefix('/')?
            .strip_prefix(resource)?
            .strip_prefix('/')?;
        let key = match rest.split_once('/') {
            Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
                ObjectKey::new(resource, ns, name)
            }
            Some(_) => return None,
            None if !rest.is_empty() => ObjectKey::new(resource, "", rest),
            None => return None,
        };
        key.matches(resource, namespace).then_some(key)
    }
}

/// The end of the range of every key starting with `prefix`: the prefix with its last byte
/// that is not 0xff incremented (etcd's `range_end` for a prefix).
pub(super) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Only 0xff bytes (or nothing): every key from the prefix on.
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_kube_apiserver_and_keep_the_group() {
        let l = Layout::new("/registry");
        assert_eq!(
            l.key(&ObjectKey::new("pods", "default", "web")),
            "/registry/pods/default/web"
        );
        assert_eq!(l.key(&ObjectKey::new("nodes", "", "n1")), "/registry/nodes/n1");
        assert_eq!(
            l.key(&ObjectKey::new("apps/deployments", "ns", "d")),
            "/registry/apps/deployments/ns/d"
        );
        assert_eq!(l.prefix("pods", None), "/registry/pods/");
        assert_eq!(l.prefix("pods", Some("default")), "/registry/pods/default/");
        assert_eq!(l.prefix("nodes", Some("")), "/registry/nodes/");
        assert_eq!(Layout::new("/other/").prefix("pods", None), "/other/pods/");
    }

    #[test]
    fn parse_inverts_key_and_rejects_other_resources_and_namespaces() {
        let l = Layout::new("/registry");
        for k in [
            ObjectKey::new("pods", "default", "web"),
            ObjectKey::new("nodes", "", "n1"),
            ObjectKey::new("apps/deployments", "ns", "d"),
        ] {
            let etcd = l.key(&k);
            assert_eq!(l.parse(&k.resource, None, etcd.as_bytes()), Some(k.clone()));
            assert_eq!(
                l.parse(&k.resource, Some(&k.namespace), etcd.as_bytes()),
                Some(k.clone())
            );
        }
        assert_eq!(l.parse("pods", None, b"/registry/pods2/default/web"), None);
        assert_eq!(
            l.parse("pods", Some("other"), b"/registry/pods/default/web"),
            None
        );
        assert_eq!(l.parse("pods", Some(""), b"/registry/pods/default/web"), None);
        assert_eq!(l.parse("pods", None, b"/registry/pods/a/b/c"), None);
        assert_eq!(l.parse("pods", None, b"/registry/pods/"), None);
        assert_eq!(l.parse("pods", None, b"/registry/pods/a/"), None);
        assert_eq!(l.parse("pods", None, b"/registry/pods/\xff"), None);
    }

    #[test]
    fn prefix_end_is_the_first_key_after_the_prefix() {
        assert_eq!(prefix_end(b"/registry/pods/"), b"/registry/pods0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff"), vec![0]);
    }
}
