//! Pods and pod templates: the `PodSpec` with its scheduling (node selector, affinity,
//! tolerations, topology spread), security context, DNS and service account fields.
//!
//! Not converted: `ephemeralContainers` (added through their own subresource, in JSON) and the
//! pod status (a create body carries none the server keeps).

use k8s_pb::api::core::v1 as pb;
use serde_json::Value;

use super::container::{container, profile, resource_requirements, se_linux_options, windows_options};
use super::fields::{Obj, label_selector, object_meta};
use super::volume::{local_object_reference, volume};

/// A core/v1 Pod (metadata and spec).
pub(super) fn pod(p: pb::Pod) -> Value {
    Obj::new()
        .set("apiVersion", Value::from("v1"))
        .set("kind", Value::from("Pod"))
        .msg("metadata", p.metadata, object_meta)
        .msg("spec", p.spec, pod_spec)
        .done()
}

/// The `template` of a workload.
pub(super) fn pod_template_spec(t: pb::PodTemplateSpec) -> Value {
    Obj::new()
        .msg("metadata", t.metadata, object_meta)
        .msg("spec", t.spec, pod_spec)
        .done()
}

fn pod_spec(s: pb::PodSpec) -> Value {
    Obj::new()
        .list("volumes", s.volumes, volume)
        .list("initContainers", s.init_containers, container)
        .list("containers", s.containers, container)
        .s("restartPolicy", s.restart_policy)
        .opt(
            "terminationGracePeriodSeconds",
            s.termination_grace_period_seconds,
        )
        .opt("activeDeadlineSeconds", s.active_deadline_seconds)
        .s("dnsPolicy", s.dns_policy)
        .map("nodeSelector", s.node_selector)
        .s("serviceAccountName", s.service_account_name)
        .s("serviceAccount", s.service_account)
        .opt("automountServiceAccountToken", s.automount_service_account_token)
        .s("nodeName", s.node_name)
        .nz("hostNetwork", s.host_network)
        .nz("hostPID", s.host_pid)
        .nz("hostIPC", s.host_ipc)
        .opt("shareProcessNamespace", s.share_process_namespace)
        .msg("securityContext", s.security_context, pod_security_context)
        .list("imagePullSecrets", s.image_pull_secrets, local_object_reference)
        .s("hostname", s.hostname)
        .s("subdomain", s.subdomain)
        .msg("affinity", s.affinity, affinity)
        .s("schedulerName", s.scheduler_name)
        .list("tolerations", s.tolerations, toleration)
        .list("hostAliases", s.host_aliases, |h| {
            Obj::new().opt("ip", h.ip).vals("hostnames", h.hostnames).done()
        })
        .s("priorityClassName", s.priority_class_name)
        .opt("priority", s.priority)
        .msg("dnsConfig", s.dns_config, dns_config)
        .list("readinessGates", s.readiness_gates, |g| {
            Obj::new().opt("conditionType", g.condition_type).done()
        })
        .opt("runtimeClassName", s.runtime_class_name)
        .opt("enableServiceLinks", s.enable_service_links)
        .opt("preemptionPolicy", s.preemption_policy)
        .quantities("overhead", s.overhead)
        .list(
            "topologySpreadConstraints",
            s.topology_spread_constraints,
            topology_spread,
        )
        .opt("setHostnameAsFQDN", s.set_hostname_as_fqdn)
        .msg("os", s.os, |o| Obj::new().opt("name", o.name).done())
        .opt("hostUsers", s.host_users)
        .list("schedulingGates", s.scheduling_gates, |g| {
            Obj::new().opt("name", g.name).done()
        })
        .list("resourceClaims", s.resource_claims, |c| {
            Obj::new()
                .opt("name", c.name)
                .opt("resourceClaimName", c.resource_claim_name)
                .opt("resourceClaimTemplateName", c.resource_claim_template_name)
                .done()
        })
        .msg("resources", s.resources, resource_requirements)
        .opt("hostnameOverride", s.hostname_override)
        .msg("workloadRef", s.workload_ref, |w| {
            Obj::new()
                .opt("name", w.name)
                .opt("podGroup", w.pod_group)
                .s("podGroupReplicaKey", w.pod_group_replica_key)
                .done()
        })
        .done()
}

fn pod_security_context(s: pb::PodSecurityContext) -> Value {
    Obj::new()
        .msg("seLinuxOptions", s.se_linux_options, se_linux_options)
        .msg("windowsOptions", s.windows_options, windows_options)
        .opt("runAsUser", s.run_as_user)
        .opt("runAsGroup", s.run_as_group)
        .opt("runAsNonRoot", s.run_as_non_root)
        .vals("supplementalGroups", s.supplemental_groups)
        .opt("supplementalGroupsPolicy", s.supplemental_groups_policy)
        .opt("fsGroup", s.fs_group)
        .list("sysctls", s.sysctls, |c| {
            Obj::new().opt("name", c.name).opt("value", c.value).done()
        })
        .opt("fsGroupChangePolicy", s.fs_group_change_policy)
        .msg("seccompProfile", s.seccomp_profile, |p| {
            profile(p.r#type, p.localhost_profile)
        })
        .msg("appArmorProfile", s.app_armor_profile, |p| {
            profile(p.r#type, p.localhost_profile)
        })
        .opt("seLinuxChangePolicy", s.se_linux_change_policy)
        .done()
}

fn toleration(t: pb::Toleration) -> Value {
    Obj::new()
        .s("key", t.key)
        .s("operator", t.operator)
        .s("value", t.value)
        .s("effect", t.effect)
        .opt("tolerationSeconds", t.toleration_seconds)
        .done()
}

fn dns_config(d: pb::PodDnsConfig) -> Value {
    Obj::new()
        .vals("nameservers", d.nameservers)
        .vals("searches", d.searches)
        .list("options", d.options, |o| {
            Obj::new().s("name", o.name).opt("value", o.value).done()
        })
        .done()
}

fn affinity(a: pb::Affinity) -> Value {
    Obj::new()
        .msg("nodeAffinity", a.node_affinity, |n| {
            Obj::new()
                .msg(
                    "requiredDuringSchedulingIgnoredDuringExecution",
                    n.required_during_scheduling_ignored_during_execution,
                    |s| {
                        Obj::new()
                            .list("nodeSelectorTerms", s.node_selector_terms, node_selector_term)
                            .done()
                    },
                )
                .list(
                    "preferredDuringSchedulingIgnoredDuringExecution",
                    n.preferred_during_scheduling_ignored_during_execution,
                    |p| {
                        Obj::new()
                            .opt("weight", p.weight)
                            .msg("preference", p.preference, node_selector_term)
                            .done()
                    },
                )
                .done()
        })
        .msg("podAffinity", a.pod_affinity, |p| {
            pod_affinity(
                p.required_during_scheduling_ignored_during_execution,
                p.preferred_during_scheduling_ignored_during_execution,
            )
        })
        .msg("podAntiAffinity", a.pod_anti_affinity, |p| {
            pod_affinity(
                p.required_during_scheduling_ignored_during_execution,
                p.preferred_during_scheduling_ignored_during_execution,
            )
        })
        .done()
}

fn node_selector_term(t: pb::NodeSelectorTerm) -> Value {
    let requirement = |r: pb::NodeSelectorRequirement| {
        Obj::new()
            .opt("key", r.key)
            .opt("operator", r.operator)
            .vals("values", r.values)
            .done()
    };
    Obj::new()
        .list("matchExpressions", t.match_expressions, requirement)
        .list("matchFields", t.match_fields, requirement)
        .done()
}

/// `PodAffinity` and `PodAntiAffinity` share their shape.
fn pod_affinity(required: Vec<pb::PodAffinityTerm>, preferred: Vec<pb::WeightedPodAffinityTerm>) -> Value {
    Obj::new()
        .list(
            "requiredDuringSchedulingIgnoredDuringExecution",
            required,
            pod_affinity_term,
        )
        .list(
            "preferredDuringSchedulingIgnoredDuringExecution",
            preferred,
            |w| {
                Obj::new()
                    .opt("weight", w.weight)
                    .msg("podAffinityTerm", w.pod_affinity_term, pod_affinity_term)
                    .done()
            },
        )
        .done()
}

fn pod_affinity_term(t: pb::PodAffinityTerm) -> Value {
    Obj::new()
        .msg("labelSelector", t.label_selector, label_selector)
        .vals("namespaces", t.namespaces)
        .opt("topologyKey", t.topology_key)
        .msg("namespaceSelector", t.namespace_selector, label_selector)
        .vals("matchLabelKeys", t.match_label_keys)
        .vals("mismatchLabelKeys", t.mismatch_label_keys)
        .done()
}

fn topology_spread(t: pb::TopologySpreadConstraint) -> Value {
    Obj::new()
        .opt("maxSkew", t.max_skew)
        .opt("topologyKey", t.topology_key)
        .opt("whenUnsatisfiable", t.when_unsatisfiable)
        .msg("labelSelector", t.label_selector, label_selector)
        .opt("minDomains", t.min_domains)
        .opt("nodeAffinityPolicy", t.node_affinity_policy)
        .opt("nodeTaintsPolicy", t.node_taints_policy)
        .vals("matchLabelKeys", t.match_label_keys)
        .done()
}
