//! Pod volumes and persistent volume claims (StatefulSet `volumeClaimTemplates`, generic
//! ephemeral volumes).
//!
//! Sources converted: `emptyDir`, `hostPath`, `configMap`, `secret`, `downwardAPI`, `projected`
//! (configMap, secret, downwardAPI, serviceAccountToken, clusterTrustBundle, podCertificate),
//! `persistentVolumeClaim`, `ephemeral`, `image`, `nfs` and `csi`. The in-tree cloud and
//! network sources (gcePersistentDisk, iscsi, rbd, cephfs, ...) are not: a volume using only
//! one of them arrives without a source and fails validation rather than being misread.

use k8s_pb::api::core::v1 as pb;
use serde_json::Value;

use super::container::{object_field_selector, resource_field_selector};
use super::fields::{Obj, label_selector, object_meta};

pub(super) fn volume(v: pb::Volume) -> Value {
    let s = v.volume_source.unwrap_or_default();
    Obj::new()
        .opt("name", v.name)
        .msg("hostPath", s.host_path, |h| {
            Obj::new().opt("path", h.path).opt("type", h.r#type).done()
        })
        .msg("emptyDir", s.empty_dir, |e| {
            Obj::new()
                .s("medium", e.medium)
                .msg("sizeLimit", e.size_limit, super::fields::quantity)
                .done()
        })
        .msg("secret", s.secret, |sv| {
            Obj::new()
                .s("secretName", sv.secret_name)
                .list("items", sv.items, key_to_path)
                .opt("defaultMode", sv.default_mode)
                .opt("optional", sv.optional)
                .done()
        })
        .msg("nfs", s.nfs, |n| {
            Obj::new()
                .opt("server", n.server)
                .opt("path", n.path)
                .nz("readOnly", n.read_only)
                .done()
        })
        .msg("persistentVolumeClaim", s.persistent_volume_claim, |c| {
            Obj::new()
                .opt("claimName", c.claim_name)
                .nz("readOnly", c.read_only)
                .done()
        })
        .msg("downwardAPI", s.downward_api, |d| {
            Obj::new()
                .list("items", d.items, downward_api_file)
                .opt("defaultMode", d.default_mode)
                .done()
        })
        .msg("configMap", s.config_map, |c| {
            Obj::new()
                .s("name", c.local_object_reference.and_then(|r| r.name))
                .list("items", c.items, key_to_path)
                .opt("defaultMode", c.default_mode)
                .opt("optional", c.optional)
                .done()
        })
        .msg("projected", s.projected, |p| {
            Obj::new()
                .list("sources", p.sources, volume_projection)
                .opt("defaultMode", p.default_mode)
                .done()
        })
        .msg("csi", s.csi, |c| {
            Obj::new()
                .opt("driver", c.driver)
                .opt("readOnly", c.read_only)
                .opt("fsType", c.fs_type)
                .map("volumeAttributes", c.volume_attributes)
                .msg(
                    "nodePublishSecretRef",
                    c.node_publish_secret_ref,
                    local_object_reference,
                )
                .done()
        })
        .msg("ephemeral", s.ephemeral, |e| {
            Obj::new()
                .msg("volumeClaimTemplate", e.volume_claim_template, |t| {
                    Obj::new()
                        .msg("metadata", t.metadata, object_meta)
                        .msg("spec", t.spec, persistent_volume_claim_spec)
                        .done()
                })
                .done()
        })
        .msg("image", s.image, |i| {
            Obj::new()
                .s("reference", i.reference)
                .s("pullPolicy", i.pull_policy)
                .done()
        })
        .done()
}

/// `LocalObjectReference` (image pull secrets, CSI secret references).
pub(super) fn local_object_reference(r: pb::LocalObjectReference) -> Value {
    Obj::new().s("name", r.name).done()
}

fn key_to_path(k: pb::KeyToPath) -> Value {
    Obj::new()
        .opt("key", k.key)
        .opt("path", k.path)
        .opt("mode", k.mode)
        .done()
}

fn downward_api_file(f: pb::DownwardAPIVolumeFile) -> Value {
    Obj::new()
        .opt("path", f.path)
        .msg("fieldRef", f.field_ref, object_field_selector)
        .msg("resourceFieldRef", f.resource_field_ref, resource_field_selector)
        .opt("mode", f.mode)
        .done()
}

fn volume_projection(p: pb::VolumeProjection) -> Value {
    Obj::new()
        .msg("secret", p.secret, |s| {
            Obj::new()
                .s("name", s.local_object_reference.and_then(|r| r.name))
                .list("items", s.items, key_to_path)
                .opt("optional", s.optional)
                .done()
        })
        .msg("downwardAPI", p.downward_api, |d| {
            Obj::new().list("items", d.items, downward_api_file).done()
        })
        .msg("configMap", p.config_map, |c| {
            Obj::new()
                .s("name", c.local_object_reference.and_then(|r| r.name))
                .list("items", c.items, key_to_path)
                .opt("optional", c.optional)
                .done()
        })
        .msg("serviceAccountToken", p.service_account_token, |t| {
            Obj::new()
                .s("audience", t.audience)
                .opt("expirationSeconds", t.expiration_seconds)
                .opt("path", t.path)
                .done()
        })
        .msg("clusterTrustBundle", p.cluster_trust_bundle, |b| {
            Obj::new()
                .opt("name", b.name)
                .opt("signerName", b.signer_name)
                .msg("labelSelector", b.label_selector, label_selector)
                .opt("optional", b.optional)
                .opt("path", b.path)
                .done()
        })
        .msg("podCertificate", p.pod_certificate, |c| {
            Obj::new()
                .opt("signerName", c.signer_name)
                .opt("keyType", c.key_type)
                .opt("maxExpirationSeconds", c.max_expiration_seconds)
                .s("credentialBundlePath", c.credential_bundle_path)
                .s("keyPath", c.key_path)
                .s("certificateChainPath", c.certificate_chain_path)
                .map("userAnnotations", c.user_annotations)
                .done()
        })
        .done()
}

/// A PersistentVolumeClaim as a template (metadata and spec; status is dropped).
pub(super) fn persistent_volume_claim(c: pb::PersistentVolumeClaim) -> Value {
    Obj::new()
        .set("apiVersion", Value::from("v1"))
        .set("kind", Value::from("PersistentVolumeClaim"))
        .msg("metadata", c.metadata, object_meta)
        .msg("spec", c.spec, persistent_volume_claim_spec)
        .done()
}

fn persistent_volume_claim_spec(s: pb::PersistentVolumeClaimSpec) -> Value {
    Obj::new()
        .vals("accessModes", s.access_modes)
        .msg("selector", s.selector, label_selector)
        .msg("resources", s.resources, |r| {
            Obj::new()
                .quantities("limits", r.limits)
                .quantities("requests", r.requests)
                .done()
        })
        .s("volumeName", s.volume_name)
        .opt("storageClassName", s.storage_class_name)
        .opt("volumeMode", s.volume_mode)
        .msg("dataSource", s.data_source, |d| {
            Obj::new()
                .opt("apiGroup", d.api_group)
                .opt("kind", d.kind)
                .opt("name", d.name)
                .done()
        })
        .msg("dataSourceRef", s.data_source_ref, |d| {
            Obj::new()
                .opt("apiGroup", d.api_group)
                .opt("kind", d.kind)
                .opt("name", d.name)
                .opt("namespace", d.namespace)
                .done()
        })
        .opt("volumeAttributesClassName", s.volume_attributes_class_name)
        .done()
}
