//! The Hostplane API: the Rust types of `hostplane.dev/v1alpha1` and nothing else.
//!
//! The CustomResourceDefinition is generated from these types (`crdgen`), so its OpenAPI schema,
//! defaults and CEL rules (`x-kubernetes-validations`) live next to the fields they guard. The
//! checked-in `crds/hostplane.dev_tenantcontrolplanes.yaml` is the output of [`crd_yaml`]; a unit
//! test fails when the two drift apart.

pub mod v1alpha1;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use kube::CustomResourceExt as _;

/// The command that regenerates the checked-in CRD file, run from the workspace root.
pub const CRDGEN_COMMAND: &str =
    "cargo run -q -p hostplane-api --bin crdgen > crds/hostplane.dev_tenantcontrolplanes.yaml";

/// The TenantControlPlane CustomResourceDefinition, as installed.
///
/// It is `TenantControlPlane::crd()` with the descriptions turned into prose: doc comments wrap
/// at 100 columns, and those line breaks would show as ragged lines in `kubectl explain`, so a
/// single line break becomes a space. Paragraph breaks (blank lines) stay, and so do the
/// descriptions of embedded Kubernetes types, which have no single line breaks.
#[must_use]
pub fn crd() -> CustomResourceDefinition {
    let mut crd = v1alpha1::TenantControlPlane::crd();
    for version in &mut crd.spec.versions {
        if let Some(schema) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        {
            unwrap_descriptions(schema);
        }
    }
    crd
}

/// [`crd`] as YAML, exactly as checked in under `crds/`.
pub fn crd_yaml() -> Result<String, serde_yaml_ng::Error> {
    serde_yaml_ng::to_string(&crd())
}

fn unwrap_descriptions(schema: &mut JSONSchemaProps) {
    if let Some(description) = schema.description.as_mut() {
        *description = unwrap_lines(description);
    }
    let children = schema
        .properties
        .iter_mut()
        .flat_map(|props| props.values_mut())
        .chain(
            [&mut schema.all_of, &mut schema.any_of, &mut schema.one_of]
                .into_iter()
                .flatten()
                .flatten(),
        );
    for child in children {
        unwrap_descriptions(child);
    }
    match &mut schema.items {
        Some(JSONSchemaPropsOrArray::Schema(items)) => unwrap_descriptions(items),
        Some(JSONSchemaPropsOrArray::Schemas(items)) => {
            items.iter_mut().for_each(unwrap_descriptions);
        }
        None => {}
    }
    if let Some(JSONSchemaPropsOrBool::Schema(values)) = &mut schema.additional_properties {
        unwrap_descriptions(values);
    }
}

fn unwrap_lines(text: &str) -> String {
    text.split("\n\n")
        .map(|paragraph| paragraph.replace('\n', " "))
        .collect::<Vec<_>>()
        .join("\n\n")
}

#[cfg(test)]
mod tests {
    use super::{CRDGEN_COMMAND, crd, crd_yaml, unwrap_lines};

    /// The checked-in CRD must be what `crdgen` prints today, or `kubectl apply -f crds/` would
    /// install a schema that no longer matches the types.
    #[test]
    fn checked_in_crd_matches_crdgen() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../crds/hostplane.dev_tenantcontrolplanes.yaml"
        );
        let generated = crd_yaml().unwrap();
        let checked_in = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            checked_in == generated,
            "{path} is out of date with the API types; regenerate it from the workspace root \
             with:\n\n    {CRDGEN_COMMAND}\n"
        );
    }

    #[test]
    fn descriptions_are_unwrapped_into_paragraphs() {
        assert_eq!(
            unwrap_lines("one line\nwrapped here.\n\n\tSecond paragraph\nas is."),
            "one line wrapped here.\n\n\tSecond paragraph as is."
        );
        let json = serde_json::to_string(&crd()).unwrap();
        assert!(
            json.contains(
                "\"description\":\"Kubernetes version of the control plane, `1.<minor>.<patch>` \
                 (e.g. 1.36.3). Upgrades go one minor at a time; downgrades are refused.\""
            ),
            "{json}"
        );
    }
}
