//! Object keys: (group/resource, namespace, name), and their encoding as one ordered string.

use std::fmt;

/// Names one stored object.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    /// `"<resource>"` (core group) or `"<group>/<resource>"`.
    pub resource: String,
    /// The namespace, `""` for cluster-scoped objects.
    pub namespace: String,
    /// The object's name.
    pub name: String,
}

/// Separates the parts of an encoded key; never valid in a resource, namespace or name.
const SEP: char = '\u{0}';

impl ObjectKey {
    /// A key from its parts.
    pub fn new(resource: impl Into<String>, namespace: impl Into<String>, name: impl Into<String>) -> Self {
        ObjectKey {
            resource: resource.into(),
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// The key as one string whose byte order groups a resource, then a namespace.
    pub fn encode(&self) -> String {
        format!("{}{SEP}{}{SEP}{}", self.resource, self.namespace, self.name)
    }

    /// The inverse of [`ObjectKey::encode`]; `None` for a string that is not an encoded key.
    pub fn decode(s: &str) -> Option<Self> {
        let mut parts = s.splitn(3, SEP);
        let resource = parts.next()?;
        let namespace = parts.next()?;
        let name = parts.next()?;
        Some(ObjectKey::new(resource, namespace, name))
    }

    /// The prefix of every encoded key of `resource` (in `namespace`, if given).
    pub fn prefix(resource: &str, namespace: Option<&str>) -> String {
        match namespace {
            Some(ns) => format!("{resource}{SEP}{ns}{SEP}"),
            None => format!("{resource}{SEP}"),
        }
    }

    /// Whether this key is of `resource` (in `namespace`, if given).
    pub fn matches(&self, resource: &str, namespace: Option<&str>) -> bool {
        self.resource == resource && namespace.is_none_or(|ns| self.namespace == ns)
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{}/{}", self.resource, self.name)
        } else {
            write!(f, "{}/{}/{}", self.resource, self.namespace, self.name)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_round_trips_and_prefixes_group() {
        let k = ObjectKey::new("discovery.k8s.io/endpointslices", "default", "web-1");
        assert_eq!(ObjectKey::decode(&k.encode()), Some(k.clone()));
        assert!(
            k.encode()
                .starts_with(&ObjectKey::prefix(&k.resource, Some("default")))
        );
        assert!(k.encode().starts_with(&ObjectKey::prefix(&k.resource, None)));
        assert!(
            !k.encode()
                .starts_with(&ObjectKey::prefix(&k.resource, Some("def")))
        );
        assert!(k.matches("discovery.k8s.io/endpointslices", None));
        assert!(!k.matches("pods", None));
    }
}
