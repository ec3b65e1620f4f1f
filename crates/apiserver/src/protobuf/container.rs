//! Containers of a pod template: ports, env (with `valueFrom`), `envFrom`, resources, volume
//! mounts, probes, lifecycle hooks and the container security context.
//!
//! Every field of a `Container` is converted. Ephemeral containers are not (they are added
//! through the `ephemeralcontainers` subresource, in JSON).

use k8s_pb::api::core::v1 as pb;
use serde_json::Value;

use super::fields::{Obj, int_or_string, quantity};

pub(super) fn container(c: pb::Container) -> Value {
    Obj::new()
        .opt("name", c.name)
        .s("image", c.image)
        .vals("command", c.command)
        .vals("args", c.args)
        .s("workingDir", c.working_dir)
        .list("ports", c.ports, container_port)
        .list("envFrom", c.env_from, env_from_source)
        .list("env", c.env, env_var)
        .msg("resources", c.resources, resource_requirements)
        .list("resizePolicy", c.resize_policy, |p| {
            Obj::new()
                .opt("resourceName", p.resource_name)
                .opt("restartPolicy", p.restart_policy)
                .done()
        })
        .opt("restartPolicy", c.restart_policy)
        .list("restartPolicyRules", c.restart_policy_rules, restart_rule)
        .list("volumeMounts", c.volume_mounts, volume_mount)
        .list("volumeDevices", c.volume_devices, |d| {
            Obj::new()
                .opt("name", d.name)
                .opt("devicePath", d.device_path)
                .done()
        })
        .msg("livenessProbe", c.liveness_probe, probe)
        .msg("readinessProbe", c.readiness_probe, probe)
        .msg("startupProbe", c.startup_probe, probe)
        .msg("lifecycle", c.lifecycle, lifecycle)
        .s("terminationMessagePath", c.termination_message_path)
        .s("terminationMessagePolicy", c.termination_message_policy)
        .s("imagePullPolicy", c.image_pull_policy)
        .msg("securityContext", c.security_context, security_context)
        .nz("stdin", c.stdin)
        .nz("stdinOnce", c.stdin_once)
        .nz("tty", c.tty)
        .done()
}

fn container_port(p: pb::ContainerPort) -> Value {
    Obj::new()
        .s("name", p.name)
        .nz("hostPort", p.host_port)
        .opt("containerPort", p.container_port)
        .s("protocol", p.protocol)
        .s("hostIP", p.host_ip)
        .done()
}

fn restart_rule(r: pb::ContainerRestartRule) -> Value {
    Obj::new()
        .opt("action", r.action)
        .msg("exitCodes", r.exit_codes, |e| {
            Obj::new()
                .opt("operator", e.operator)
                .vals("values", e.values)
                .done()
        })
        .done()
}

fn env_var(e: pb::EnvVar) -> Value {
    Obj::new()
        .opt("name", e.name)
        .s("value", e.value)
        .msg("valueFrom", e.value_from, env_var_source)
        .done()
}

fn env_var_source(s: pb::EnvVarSource) -> Value {
    Obj::new()
        .msg("fieldRef", s.field_ref, object_field_selector)
        .msg("resourceFieldRef", s.resource_field_ref, resource_field_selector)
        .msg("configMapKeyRef", s.config_map_key_ref, |r| {
            key_selector(r.local_object_reference, r.key, r.optional)
        })
        .msg("secretKeyRef", s.secret_key_ref, |r| {
            key_selector(r.local_object_reference, r.key, r.optional)
        })
        .msg("fileKeyRef", s.file_key_ref, |r| {
            Obj::new()
                .opt("volumeName", r.volume_name)
                .opt("path", r.path)
                .opt("key", r.key)
                .opt("optional", r.optional)
                .done()
        })
        .done()
}

/// `ObjectFieldSelector` (env `fieldRef` and downward API files).
pub(super) fn object_field_selector(f: pb::ObjectFieldSelector) -> Value {
    Obj::new()
        .s("apiVersion", f.api_version)
        .opt("fieldPath", f.field_path)
        .done()
}

/// `ResourceFieldSelector`. Go writes the zero divisor of an unset one as `"0"`, as its JSON
/// encoder does too (a struct is never `omitempty`), so it is kept as sent.
pub(super) fn resource_field_selector(f: pb::ResourceFieldSelector) -> Value {
    Obj::new()
        .s("containerName", f.container_name)
        .opt("resource", f.resource)
        .msg("divisor", f.divisor, quantity)
        .done()
}

/// A key of a ConfigMap or Secret (`LocalObjectReference` inlined as `name`).
fn key_selector(r: Option<pb::LocalObjectReference>, key: Option<String>, optional: Option<bool>) -> Value {
    Obj::new()
        .s("name", r.and_then(|r| r.name))
        .opt("key", key)
        .opt("optional", optional)
        .done()
}

fn env_from_source(s: pb::EnvFromSource) -> Value {
    let named = |r: Option<pb::LocalObjectReference>, optional: Option<bool>| {
        Obj::new()
            .s("name", r.and_then(|r| r.name))
            .opt("optional", optional)
            .done()
    };
    Obj::new()
        .s("prefix", s.prefix)
        .msg("configMapRef", s.config_map_ref, |r| {
            named(r.local_object_reference, r.optional)
        })
        .msg("secretRef", s.secret_ref, |r| {
            named(r.local_object_reference, r.optional)
        })
        .done()
}

/// `ResourceRequirements` (containers and the pod-level `resources`).
pub(super) fn resource_requirements(r: pb::ResourceRequirements) -> Value {
    Obj::new()
        .quantities("limits", r.limits)
        .quantities("requests", r.requests)
        .list("claims", r.claims, |c| {
            Obj::new().opt("name", c.name).s("request", c.request).done()
        })
        .done()
}

fn volume_mount(m: pb::VolumeMount) -> Value {
    Obj::new()
        .opt("name", m.name)
        .nz("readOnly", m.read_only)
        .opt("recursiveReadOnly", m.recursive_read_only)
        .opt("mountPath", m.mount_path)
        .s("subPath", m.sub_path)
        .opt("mountPropagation", m.mount_propagation)
        .s("subPathExpr", m.sub_path_expr)
        .done()
}

/// A probe; its `ProbeHandler` is inlined into the probe object as in JSON.
fn probe(p: pb::Probe) -> Value {
    let h = p.handler.unwrap_or_default();
    Obj::new()
        .msg("exec", h.exec, exec_action)
        .msg("httpGet", h.http_get, http_get_action)
        .msg("tcpSocket", h.tcp_socket, tcp_socket_action)
        .msg("grpc", h.grpc, |g| {
            Obj::new().opt("port", g.port).opt("service", g.service).done()
        })
        .nz("initialDelaySeconds", p.initial_delay_seconds)
        .nz("timeoutSeconds", p.timeout_seconds)
        .nz("periodSeconds", p.period_seconds)
        .nz("successThreshold", p.success_threshold)
        .nz("failureThreshold", p.failure_threshold)
        .opt(
            "terminationGracePeriodSeconds",
            p.termination_grace_period_seconds,
        )
        .done()
}

fn exec_action(e: pb::ExecAction) -> Value {
    Obj::new().vals("command", e.command).done()
}

fn http_get_action(h: pb::HttpGetAction) -> Value {
    Obj::new()
        .s("path", h.path)
        .msg("port", h.port, int_or_string)
        .s("host", h.host)
        .s("scheme", h.scheme)
        .list("httpHeaders", h.http_headers, |hd| {
            // `value` has no omitempty in Go: an empty header value is still sent.
            Obj::new()
                .opt("name", hd.name)
                .set("value", Value::String(hd.value.unwrap_or_default()))
                .done()
        })
        .done()
}

fn tcp_socket_action(t: pb::TcpSocketAction) -> Value {
    Obj::new()
        .msg("port", t.port, int_or_string)
        .s("host", t.host)
        .done()
}

fn lifecycle(l: pb::Lifecycle) -> Value {
    Obj::new()
        .msg("postStart", l.post_start, lifecycle_handler)
        .msg("preStop", l.pre_stop, lifecycle_handler)
        .opt("stopSignal", l.stop_signal)
        .done()
}

fn lifecycle_handler(h: pb::LifecycleHandler) -> Value {
    Obj::new()
        .msg("exec", h.exec, exec_action)
        .msg("httpGet", h.http_get, http_get_action)
        .msg("tcpSocket", h.tcp_socket, tcp_socket_action)
        .msg("sleep", h.sleep, |s| Obj::new().opt("seconds", s.seconds).done())
        .done()
}

fn security_context(s: pb::SecurityContext) -> Value {
    Obj::new()
        .msg("capabilities", s.capabilities, |c| {
            Obj::new().vals("add", c.add).vals("drop", c.drop).done()
        })
        .opt("privileged", s.privileged)
        .msg("seLinuxOptions", s.se_linux_options, se_linux_options)
        .msg("windowsOptions", s.windows_options, windows_options)
        .opt("runAsUser", s.run_as_user)
        .opt("runAsGroup", s.run_as_group)
        .opt("runAsNonRoot", s.run_as_non_root)
        .opt("readOnlyRootFilesystem", s.read_only_root_filesystem)
        .opt("allowPrivilegeEscalation", s.allow_privilege_escalation)
        .opt("procMount", s.proc_mount)
        .msg("seccompProfile", s.seccomp_profile, |p| {
            profile(p.r#type, p.localhost_profile)
        })
        .msg("appArmorProfile", s.app_armor_profile, |p| {
            profile(p.r#type, p.localhost_profile)
        })
        .done()
}

/// `SELinuxOptions` (container and pod security contexts).
pub(super) fn se_linux_options(o: pb::SeLinuxOptions) -> Value {
    Obj::new()
        .s("user", o.user)
        .s("role", o.role)
        .s("type", o.r#type)
        .s("level", o.level)
        .done()
}

/// `WindowsSecurityContextOptions` (container and pod security contexts).
pub(super) fn windows_options(o: pb::WindowsSecurityContextOptions) -> Value {
    Obj::new()
        .opt("gmsaCredentialSpecName", o.gmsa_credential_spec_name)
        .opt("gmsaCredentialSpec", o.gmsa_credential_spec)
        .opt("runAsUserName", o.run_as_user_name)
        .opt("hostProcess", o.host_process)
        .done()
}

/// `SeccompProfile` and `AppArmorProfile` share their shape.
pub(super) fn profile(kind: Option<String>, localhost_profile: Option<String>) -> Value {
    Obj::new()
        .opt("type", kind)
        .opt("localhostProfile", localhost_profile)
        .done()
}
