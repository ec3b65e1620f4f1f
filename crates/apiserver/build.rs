//! Generates the served kinds' schemas for the OpenAPI documents (`src/openapi`): every type
//! reachable from a served kind, from k8s-openapi's `schemars` feature, as OpenAPI 3.0
//! `components.schemas` (`$ref`s to `#/components/schemas/<name>`, no `$ref` siblings), with
//! each kind's `x-kubernetes-group-version-kind` list from its `k8s_openapi::Resource`
//! metadata. Written to `$OUT_DIR/schemas.json`, which the server includes, so the server
//! binary carries the schemas but not schemars. The paths, list types and the per group-version
//! documents are made at run time from the server's own tables (`resources`, `list_types`).
//!
//! Not here: which kinds are served (the `openapi` module's tests check that every served
//! kind has its schema here, and this list has no kind that is not served).

use std::io::Write as _;

use k8s_openapi::{ListableResource, Resource};
use schemars::generate::SchemaSettings;
use serde_json::{Value, json};

const GVK: &str = "x-kubernetes-group-version-kind";

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    let mut generator = SchemaSettings::openapi3().into_generator();
    // (schema name, group, version, kind, list kind for the listable ones)
    let mut kinds: Vec<(String, &str, &str, &str, Option<&str>)> = Vec::new();
    macro_rules! kinds {
        ($($t:ty),* $(,)?) => {$(
            generator.subschema_for::<$t>();
            let name = <$t as schemars::JsonSchema>::schema_name().into_owned();
            kinds.push((name, <$t>::GROUP, <$t>::VERSION, <$t>::KIND, Some(<$t as ListableResource>::LIST_KIND)));
        )*};
    }
    macro_rules! bodies {
        ($($t:ty),* $(,)?) => {$(
            generator.subschema_for::<$t>();
            let name = <$t as schemars::JsonSchema>::schema_name().into_owned();
            kinds.push((name, <$t>::GROUP, <$t>::VERSION, <$t>::KIND, None));
        )*};
    }
    use k8s_openapi::api::{apps, batch, coordination, core, discovery, events};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
    kinds!(
        core::v1::Namespace,
        core::v1::Pod,
        core::v1::Service,
        core::v1::Endpoints,
        core::v1::Event,
        core::v1::Node,
        core::v1::ConfigMap,
        core::v1::Secret,
        core::v1::ServiceAccount,
        discovery::v1::EndpointSlice,
        events::v1::Event,
        coordination::v1::Lease,
        apps::v1::Deployment,
        apps::v1::ReplicaSet,
        apps::v1::StatefulSet,
        apps::v1::DaemonSet,
        apps::v1::ControllerRevision,
        batch::v1::Job,
        batch::v1::CronJob,
    );
    bodies!(
        // The bodies of subresources and of the options the operations take.
        k8s_openapi::api::autoscaling::v1::Scale,
        k8s_openapi::api::policy::v1::Eviction,
        core::v1::Binding,
        meta::Status,
    );
    generator.subschema_for::<meta::DeleteOptions>();
    generator.subschema_for::<meta::ListMeta>();
    let mut schemas = generator.take_definitions(true);
    for (name, group, version, kind, list_kind) in kinds {
        let Some(Value::Object(schema)) = schemas.get_mut(&name) else {
            continue;
        };
        schema.insert(
            GVK.into(),
            json!([{"group": group, "version": version, "kind": kind}]),
        );
        // `metadata` is not required of an object sent (`generateName`), nor by kube-apiserver's
        // schemas; k8s-openapi's non-optional `ObjectMeta` says so.
        if let Some(Value::Array(required)) = schema.get_mut("required") {
            required.retain(|field| field != "metadata");
            if required.is_empty() {
                schema.remove("required");
            }
        }
        let Some(list_kind) = list_kind else {
            continue;
        };
        // The list kind (`PodList`): k8s-openapi's `List<T>` has no schema of its own.
        let field = |f: &str| schema.get("properties").and_then(|p| p.get(f)).cloned();
        let list = json!({
            "description": format!("{list_kind} is a list of {kind} objects."),
            "type": "object",
            "properties": {
                "apiVersion": field("apiVersion"),
                "kind": field("kind"),
                "items": {"description": format!("The {kind} objects."), "type": "array",
                    "items": {"$ref": format!("#/components/schemas/{name}")}},
                "metadata": {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta"},
            },
            "required": ["items"],
            GVK: [{"group": group, "version": version, "kind": list_kind}],
        });
        let list_name = format!("{}{list_kind}", name.strip_suffix(kind).unwrap_or(&name));
        schemas.insert(list_name, list);
    }
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"))
        .join("schemas.json");
    let mut file = std::fs::File::create(&out).expect("OUT_DIR is writable");
    serde_json::to_writer(&mut file, &schemas).expect("schemas encode as JSON");
    file.flush().expect("OUT_DIR is writable");
}
