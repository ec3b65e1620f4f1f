//! The documents as kubectl reads them: schemas, extensions, paths, index and v2.

use super::*;

fn doc(key: &str) -> Value {
    serde_json::from_slice(&group_version(key).unwrap().unwrap()).unwrap()
}

fn component<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc.pointer(&format!("/components/schemas/{}", name.replace('/', "~1")))
        .unwrap_or_else(|| panic!("no component {name}"))
}

#[test]
fn list_fields_carry_their_merge_semantics_from_the_table() {
    let core = doc("api/v1");
    let containers = &component(&core, "io.k8s.api.core.v1.PodSpec")["properties"]["containers"];
    assert_eq!(containers["x-kubernetes-list-type"], "map");
    assert_eq!(containers["x-kubernetes-list-map-keys"], json!(["name"]));
    assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
    assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
    let container = &component(&core, "io.k8s.api.core.v1.Container")["properties"];
    assert_eq!(container["env"]["x-kubernetes-patch-merge-key"], "name");
    assert_eq!(
        container["ports"]["x-kubernetes-list-map-keys"],
        json!(["containerPort", "protocol"])
    );
    assert_eq!(
        container["volumeMounts"]["x-kubernetes-patch-merge-key"],
        "mountPath"
    );
    // A list without a merge strategy is atomic: no extension.
    assert!(container["command"].get("x-kubernetes-list-type").is_none());
    let meta = &component(&core, "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta")["properties"];
    assert_eq!(meta["finalizers"]["x-kubernetes-list-type"], "set");
    assert_eq!(meta["ownerReferences"]["x-kubernetes-patch-merge-key"], "uid");
    let service = &component(&core, "io.k8s.api.core.v1.ServiceSpec")["properties"];
    assert_eq!(service["ports"]["x-kubernetes-patch-merge-key"], "port");
    // The same component reached from a workload's pod template is the same component.
    let apps = doc("apis/apps/v1");
    let containers = &component(&apps, "io.k8s.api.core.v1.PodSpec")["properties"]["containers"];
    assert_eq!(containers["x-kubernetes-list-map-keys"], json!(["name"]));
}

#[test]
fn no_component_gets_two_list_semantics() {
    let components = schemas::Components::load().unwrap();
    assert!(components.conflicts.is_empty(), "{:?}", components.conflicts);
}

#[test]
fn kinds_carry_their_group_version_kind_and_have_list_kinds() {
    let apps = doc("apis/apps/v1");
    assert_eq!(
        component(&apps, "io.k8s.api.apps.v1.Deployment")[schemas::GVK],
        json!([{"group": "apps", "version": "v1", "kind": "Deployment"}])
    );
    let list = component(&apps, "io.k8s.api.apps.v1.DeploymentList");
    assert_eq!(list[schemas::GVK][0]["kind"], "DeploymentList");
    assert_eq!(
        list["properties"]["items"]["items"]["$ref"],
        "#/components/schemas/io.k8s.api.apps.v1.Deployment"
    );
    // `metadata` is not required (generateName); what the type requires still is.
    let core = doc("api/v1");
    assert!(
        component(&core, "io.k8s.api.core.v1.Pod")
            .get("required")
            .is_none()
    );
    let slices = doc("apis/discovery.k8s.io/v1");
    let required = &component(&slices, "io.k8s.api.discovery.v1.EndpointSlice")["required"];
    assert_eq!(required, &json!(["addressType", "endpoints"]));
}

#[test]
fn every_served_kind_has_a_schema_and_a_patch_operation_with_field_validation() {
    let components = schemas::Components::load().unwrap();
    for r in crate::resources::RESOURCES {
        assert!(components.of_resource(r).is_some(), "no schema for {}", r.kind);
        let key = r.gv_path().trim_start_matches('/').to_owned();
        let doc = doc(&key);
        let found = doc["paths"].as_object().unwrap().values().any(|path| {
            let Some(patch) = path.get("patch") else {
                return false;
            };
            patch[schemas::GVK] == json!({"group": r.group, "version": r.version, "kind": r.kind})
                && patch["parameters"].as_array().is_some_and(|ps| {
                    ps.iter()
                        .any(|p| p["name"] == "fieldValidation" && p["in"] == "query")
                })
        });
        assert!(
            found,
            "{} has no PATCH operation with fieldValidation in {key}",
            r.kind
        );
        // kubectl reads the first PATCH operation of the kind it meets (in no set order), so
        // every one of them (status, scale, ...) must take the parameter.
        for (path, item) in doc["paths"].as_object().unwrap() {
            if let Some(patch) = item.get("patch") {
                let params = patch["parameters"].as_array().unwrap();
                assert!(params.iter().any(|p| p["name"] == "fieldValidation"), "{path}");
            }
        }
    }
    // The generated kinds are the served ones and the bodies of their subresources.
    let bodies = [
        ("autoscaling", "Scale"),
        ("policy", "Eviction"),
        ("", "Binding"),
        ("", "Status"),
    ];
    for schema in components.schemas.values() {
        for gvk in schema
            .get(schemas::GVK)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let (group, kind) = (gvk["group"].as_str().unwrap(), gvk["kind"].as_str().unwrap());
            let kind = kind.strip_suffix("List").unwrap_or(kind);
            let served = crate::resources::RESOURCES
                .iter()
                .any(|r| r.group == group && r.kind == kind);
            assert!(
                served || bodies.contains(&(group, kind)),
                "{gvk} is generated but not served"
            );
        }
    }
}

#[test]
fn operations_are_named_as_kube_apiserver_names_them() {
    let core = doc("api/v1");
    let pods = &core["paths"]["/api/v1/namespaces/{namespace}/pods"];
    assert_eq!(pods["get"]["operationId"], "listCoreV1NamespacedPod");
    assert_eq!(pods["get"]["x-kubernetes-action"], "list");
    assert_eq!(pods["post"]["operationId"], "createCoreV1NamespacedPod");
    assert_eq!(
        pods["delete"]["operationId"],
        "deleteCoreV1CollectionNamespacedPod"
    );
    let pod = &core["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"];
    assert_eq!(pod["patch"]["operationId"], "patchCoreV1NamespacedPod");
    assert_eq!(
        pod["get"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/io.k8s.api.core.v1.Pod"
    );
    assert_eq!(
        core["paths"]["/api/v1/pods"]["get"]["operationId"],
        "listCoreV1PodForAllNamespaces"
    );
    assert_eq!(
        core["paths"]["/api/v1/nodes/{name}/status"]["patch"]["operationId"],
        "patchCoreV1NodeStatus"
    );
    let eviction = &core["paths"]["/api/v1/namespaces/{namespace}/pods/{name}/eviction"]["post"];
    assert_eq!(
        eviction[schemas::GVK],
        json!({"group": "policy", "version": "v1", "kind": "Eviction"})
    );
    let apps = doc("apis/apps/v1");
    let scale = &apps["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]["patch"];
    assert_eq!(scale["operationId"], "patchAppsV1NamespacedDeploymentScale");
    assert_eq!(scale[schemas::GVK]["kind"], "Scale");
    assert!(component(&apps, "io.k8s.api.autoscaling.v1.Scale").is_object());
}

#[test]
fn every_reference_resolves_and_none_has_siblings() {
    for (key, _, _) in served_group_versions() {
        let doc = doc(&key);
        let mut refs = Vec::new();
        collect_refs(&doc, &mut refs);
        for r in refs {
            assert!(
                doc["components"]["schemas"].get(&r).is_some(),
                "{key}: {r} is not a component"
            );
        }
        fn no_siblings(v: &Value) -> bool {
            match v {
                Value::Object(m) => (!m.contains_key("$ref") || m.len() == 1) && m.values().all(no_siblings),
                Value::Array(a) => a.iter().all(no_siblings),
                _ => true,
            }
        }
        assert!(no_siblings(&doc["components"]), "{key} has a $ref with siblings");
    }
}

#[test]
fn the_index_lists_every_served_group_version_with_its_hash() {
    let index: Value = serde_json::from_slice(&index().unwrap()).unwrap();
    let paths = index["paths"].as_object().unwrap();
    assert_eq!(paths.len(), 1 + GROUPS.len());
    for (key, _, _) in served_group_versions() {
        let url = paths[&key]["serverRelativeURL"].as_str().unwrap();
        let bytes = group_version(&key).unwrap().unwrap();
        assert_eq!(url, format!("/openapi/v3/{key}?hash={}", hash(&bytes)));
        assert_eq!(hash(&bytes).len(), 128);
    }
    assert!(group_version("apis/apps/v1beta1").unwrap().is_none());
}

#[test]
fn v2_is_gnostic_protobuf_with_the_same_definitions() {
    use prost::Message as _;
    let doc = v2::Document::decode(v2().unwrap()).unwrap();
    assert_eq!(doc.swagger, "2.0");
    let definitions = doc.definitions.unwrap().additional_properties;
    let deployment = definitions
        .iter()
        .find(|d| d.name == "io.k8s.api.apps.v1.Deployment")
        .and_then(|d| d.value.clone())
        .unwrap();
    let gvk = deployment
        .vendor_extension
        .iter()
        .find(|e| e.name == schemas::GVK)
        .and_then(|e| e.value.clone())
        .unwrap();
    let gvk: Value = serde_json::from_str(&gvk.yaml).unwrap();
    assert_eq!(
        gvk,
        json!([{"group": "apps", "version": "v1", "kind": "Deployment"}])
    );
    let spec = deployment
        .properties
        .unwrap()
        .additional_properties
        .into_iter()
        .find(|p| p.name == "spec")
        .and_then(|p| p.value)
        .unwrap();
    assert_eq!(spec.reference, "#/definitions/io.k8s.api.apps.v1.DeploymentSpec");
    assert!(!spec.description.is_empty());
    let config_map = definitions
        .iter()
        .find(|d| d.name == "io.k8s.api.core.v1.ConfigMap")
        .unwrap();
    let data = config_map.value.as_ref().unwrap().properties.as_ref().unwrap();
    let data = data
        .additional_properties
        .iter()
        .find(|p| p.name == "data")
        .unwrap();
    let values = data
        .value
        .as_ref()
        .unwrap()
        .additional_properties
        .as_ref()
        .unwrap();
    assert_eq!(
        values.schema.as_ref().unwrap().kind.as_ref().unwrap().value,
        vec!["string"]
    );
}
