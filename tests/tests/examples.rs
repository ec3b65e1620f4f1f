//! Every manifest in `examples/` loads, defaults and validates (pods, Deployments, ConfigMaps,
//! Secrets),
//! so the examples never rot.

use std::path::Path;

use podvisor_api::manifest::{self, FieldValidation, Object};
use podvisor_api::{defaults, validation};

#[test]
fn every_example_is_a_valid_pod() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("examples/ exists") {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let objects = manifest::load(&text, FieldValidation::Strict)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for object in objects {
            match object {
                Object::Pod(pod) => {
                    let mut pod = *pod;
                    defaults::default_pod(&mut pod);
                    if let Err(e) = validation::validate_pod(&pod) {
                        panic!("{}: {e}", path.display());
                    }
                    seen += 1;
                }
                Object::Other { kind, value, .. } if kind == "ConfigMap" => {
                    let cm = serde_json::from_value(value).unwrap();
                    if let Err(e) = validation::validate_config_map(&cm) {
                        panic!("{}: {e}", path.display());
                    }
                }
                Object::Other { kind, value, .. } if kind == "Secret" => {
                    let mut secret = serde_json::from_value(value).unwrap();
                    validation::fold_string_data(&mut secret);
                    if let Err(e) = validation::validate_secret(&secret) {
                        panic!("{}: {e}", path.display());
                    }
                }
                Object::Other { kind, value, .. } if kind == "Deployment" => {
                    let mut deployment = serde_json::from_value(value).unwrap();
                    defaults::default_deployment(&mut deployment);
                    if let Err(e) = validation::validate_deployment(&deployment) {
                        panic!("{}: {e}", path.display());
                    }
                    seen += 1;
                }
                _ => {}
            }
        }
    }
    assert!(seen >= 8, "only {seen} example pods found");
}
