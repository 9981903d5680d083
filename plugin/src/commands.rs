//! The plugin's commands: read the TenantControlPlane and its Secrets in the seed, say clearly
//! when the TCP is missing or not Ready.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use hostplane_api::v1alpha1::TenantControlPlane;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use thiserror::Error;

use crate::{Cli, Command};

#[derive(Debug, Error)]
pub enum PluginError {
    #[error("no seed cluster to talk to: {0}")]
    Config(String),
    #[error(
        "tenantcontrolplane {namespace}/{name} not found (`kubectl get tcp -n {namespace}` lists them)"
    )]
    NotFound { namespace: String, name: String },
    #[error(
        "tcp/{name} is not Ready yet ({why}); `kubectl wait --for=condition=Ready tcp/{name} -n {namespace}` waits for it"
    )]
    NotReady {
        namespace: String,
        name: String,
        why: String,
    },
    #[error("Secret {namespace}/{name}: {why}")]
    Secret {
        namespace: String,
        name: String,
        why: String,
    },
    #[error("{action}: {source}")]
    Kube {
        action: String,
        #[source]
        source: kube::Error,
    },
    #[error("writing {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Render(String),
}

fn kube_error(action: impl Into<String>) -> impl FnOnce(kube::Error) -> PluginError {
    let action = action.into();
    move |source| PluginError::Kube { action, source }
}

async fn connect(kubeconfig: Option<&Path>) -> Result<(Client, String), PluginError> {
    let config = match kubeconfig {
        Some(path) => {
            let file = Kubeconfig::read_from(path)
                .map_err(|e| PluginError::Config(format!("{}: {e}", path.display())))?;
            Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                .await
                .map_err(|e| PluginError::Config(format!("{}: {e}", path.display())))?
        }
        None => Config::infer()
            .await
            .map_err(|e| PluginError::Config(e.to_string()))?,
    };
    let namespace = config.default_namespace.clone();
    let client = Client::try_from(config).map_err(|e| PluginError::Config(e.to_string()))?;
    Ok((client, namespace))
}

pub async fn run(cli: Cli) -> Result<(), PluginError> {
    let (client, default_ns) = connect(cli.kubeconfig.as_deref()).await?;
    let ns = cli.namespace.unwrap_or(default_ns);
    match cli.command {
        Command::Kubeconfig { tcp, output } => {
            ready_tcp(&client, &ns, &tcp).await?;
            let value = secret_key(&client, &ns, &format!("{tcp}-kubeconfig"), "value").await?;
            match output {
                Some(path) => write_private(&path, &value),
                None => print(&value),
            }
        }
        Command::Join { tcp } => {
            ready_tcp(&client, &ns, &tcp).await?;
            let command = secret_key(&client, &ns, &format!("{tcp}-join"), "join-command").await?;
            print(&format!("{command}\n"))
        }
        Command::Status { tcp } => status(&client, &ns, &tcp).await,
        Command::Create {
            name,
            version,
            apply,
        } => create(&client, &ns, &name, &version, apply).await,
    }
}

fn print(text: &str) -> Result<(), PluginError> {
    std::io::stdout()
        .write_all(text.as_bytes())
        .map_err(|source| PluginError::Io {
            path: "standard output".into(),
            source,
        })
}

/// Writes `text` to a new or truncated file readable by its owner only (it holds a credential).
fn write_private(path: &Path, text: &str) -> Result<(), PluginError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let io = |source| PluginError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    file.write_all(text.as_bytes()).map_err(io)
}

async fn get_tcp(client: &Client, ns: &str, name: &str) -> Result<TenantControlPlane, PluginError> {
    Api::<TenantControlPlane>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .map_err(kube_error(format!("reading tcp {ns}/{name}")))?
        .ok_or_else(|| PluginError::NotFound {
            namespace: ns.to_owned(),
            name: name.to_owned(),
        })
}

/// The TCP, if it is Ready; otherwise why not, in its own words.
async fn ready_tcp(
    client: &Client,
    ns: &str,
    name: &str,
) -> Result<TenantControlPlane, PluginError> {
    let tcp = get_tcp(client, ns, name).await?;
    let ready = tcp
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"));
    match ready {
        Some(c) if c.status == "True" => Ok(tcp),
        Some(c) => Err(PluginError::NotReady {
            namespace: ns.to_owned(),
            name: name.to_owned(),
            why: format!("{}: {}", c.reason, c.message),
        }),
        None => Err(PluginError::NotReady {
            namespace: ns.to_owned(),
            name: name.to_owned(),
            why: "the operator has not reported on it yet".into(),
        }),
    }
}

async fn secret_key(
    client: &Client,
    ns: &str,
    name: &str,
    key: &str,
) -> Result<String, PluginError> {
    let err = |why: String| PluginError::Secret {
        namespace: ns.to_owned(),
        name: name.to_owned(),
        why,
    };
    let secret = Api::<Secret>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .map_err(kube_error(format!("reading Secret {ns}/{name}")))?
        .ok_or_else(|| err("not found".into()))?;
    let bytes = secret
        .data
        .and_then(|mut d| d.remove(key))
        .ok_or_else(|| err(format!("has no key `{key}`")))?;
    String::from_utf8(bytes.0).map_err(|e| err(format!("key `{key}` is not text: {e}")))
}

async fn status(client: &Client, ns: &str, name: &str) -> Result<(), PluginError> {
    let tcp = get_tcp(client, ns, name).await?;
    let status = tcp.status.clone().unwrap_or_default();
    let mut out = format!(
        "tcp/{name} in {ns}: phase {}, version {}, endpoint {}\n",
        status
            .phase
            .as_ref()
            .map_or_else(|| "-".to_owned(), |p| format!("{p:?}")),
        status.version.as_deref().unwrap_or("-"),
        status.endpoint.as_deref().unwrap_or("-"),
    );
    // Writing to a String cannot fail.
    if let Some(nodes) = &status.nodes {
        let _ = writeln!(
            out,
            "nodes: {} registered, {} Ready",
            nodes.registered, nodes.ready
        );
    }
    let _ = writeln!(
        out,
        "\n{:<18} {:<7} {:<14} MESSAGE",
        "CONDITION", "STATUS", "REASON"
    );
    for c in &status.conditions {
        let _ = writeln!(
            out,
            "{:<18} {:<7} {:<14} {}",
            c.type_, c.status, c.reason, c.message
        );
    }
    out.push_str("\nCERTIFICATE (Secret)                      EXPIRES\n");
    for (secret, not_after) in certificates(client, ns, name).await? {
        let _ = writeln!(out, "{secret:<41} {not_after}");
    }
    print(&out)
}

/// (Secret name, expiry date) of every certificate of the tenant, the first to expire first.
async fn certificates(
    client: &Client,
    ns: &str,
    name: &str,
) -> Result<Vec<(String, String)>, PluginError> {
    let list = Api::<Secret>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(&format!("hostplane.dev/tenant={name}")))
        .await
        .map_err(kube_error(format!(
            "listing the Secrets of tcp {ns}/{name}"
        )))?;
    let mut certs: Vec<(i64, String)> = list
        .items
        .iter()
        .filter_map(|s| {
            let pem = s.data.as_ref()?.get("tls.crt")?;
            let (_, block) = x509_parser::pem::parse_x509_pem(&pem.0).ok()?;
            let cert = block.parse_x509().ok()?;
            Some((
                cert.validity().not_after.timestamp(),
                s.metadata.name.clone().unwrap_or_default(),
            ))
        })
        .collect();
    certs.sort();
    Ok(certs
        .into_iter()
        .map(|(at, secret)| {
            let date = time::OffsetDateTime::from_unix_timestamp(at)
                .ok()
                .and_then(|t| {
                    t.format(&time::format_description::well_known::Rfc3339)
                        .ok()
                })
                .unwrap_or_else(|| at.to_string());
            (secret, date)
        })
        .collect())
}

async fn create(
    client: &Client,
    ns: &str,
    name: &str,
    version: &str,
    apply: bool,
) -> Result<(), PluginError> {
    let manifest = serde_json::json!({
        "apiVersion": "hostplane.dev/v1alpha1",
        "kind": "TenantControlPlane",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"version": version},
    });
    if !apply {
        let yaml =
            serde_yaml_ng::to_string(&manifest).map_err(|e| PluginError::Render(e.to_string()))?;
        return print(&yaml);
    }
    // The API server validates it (schema and CEL rules) and says what is wrong.
    Api::<TenantControlPlane>::namespaced(client.clone(), ns)
        .patch(
            name,
            &PatchParams::apply("kubectl-hostplane"),
            &Patch::Apply(&manifest),
        )
        .await
        .map_err(kube_error(format!("applying tcp {ns}/{name}")))?;
    print(&format!(
        "tenantcontrolplane.hostplane.dev/{name} applied in {ns}; `kubectl wait --for=condition=Ready tcp/{name} -n {ns}`\n"
    ))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn a_written_kubeconfig_is_private_to_its_owner() {
        let path = std::env::temp_dir().join(format!("hostplane-plugin-{}", std::process::id()));
        std::fs::write(&path, "old, longer content").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        write_private(&path, "new").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        std::fs::remove_file(&path).unwrap();
        write_private(&path, "fresh").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        std::fs::remove_file(&path).unwrap();
        assert_eq!(mode, 0o600);
    }
}
