//! GitOps (issue 7) on the local seed, with real Flux controllers and a real Git server (the seed's
//! git-http-backend): the hosted agent delivers an addon from a repository into the tenant, follows
//! a commit, reports a broken addon with Flux's message; registrations hand out scoped tokens that
//! work (Argo CD's cluster Secret, read as Argo CD documents it, reaches the tenant with nothing
//! else), are refused by another tenant, are revoked by deleting their ServiceAccount (and
//! re-minted), and disappear with their registration or their TenantControlPlane.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, ensure};
use base64::Engine as _;
use hostplane_e2e::{
    Attempt, TestEnv, TestNamespace, install_crds, poll_until, run_command, tenant_client,
};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::Client;
use kube::api::{Api, ListParams, PostParams};

use super::{SMALL, Tcp, patch_spec};

const SEED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/seed/seed");

/// A repository of the seed's git server and a working clone of it.
struct Repo {
    url: String,
    work: PathBuf,
}

impl Repo {
    async fn create(name: &str) -> Result<Self> {
        let out = run_command(SEED, &["git-repo", name]).await?.ok()?;
        let (url, bare) = out
            .stdout
            .trim()
            .split_once('\t')
            .context("seed git-repo prints URL<TAB>PATH")?;
        let work = std::env::temp_dir().join(format!("gitops-{name}"));
        let _ = std::fs::remove_dir_all(&work);
        git(
            Path::new("/"),
            &["clone", "-q", bare, &work.to_string_lossy()],
        )
        .await?;
        Ok(Self {
            url: url.to_owned(),
            work,
        })
    }

    /// Writes `files` (path, content) and commits and pushes them; returns the commit's hash.
    async fn commit(&self, message: &str, files: &[(&str, String)]) -> Result<String> {
        for (path, content) in files {
            let path = self.work.join(path);
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::write(&path, content)?;
        }
        git(&self.work, &["add", "-A"]).await?;
        git(
            &self.work,
            &[
                "-c",
                "user.name=e2e",
                "-c",
                "user.email=e2e@hostplane.dev",
                "commit",
                "-q",
                "-m",
                message,
            ],
        )
        .await?;
        git(&self.work, &["push", "-q", "origin", "HEAD:main"]).await?;
        Ok(git(&self.work, &["rev-parse", "HEAD"])
            .await?
            .trim()
            .to_owned())
    }
}

impl Drop for Repo {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.work);
    }
}

async fn git(dir: &Path, args: &[&str]) -> Result<String> {
    let mut all = vec!["-C", dir.to_str().unwrap_or("/")];
    all.extend_from_slice(args);
    Ok(run_command("git", &all).await?.ok()?.stdout)
}

fn addon(message: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            "addons/namespace.yaml",
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: addon-demo\n".to_owned(),
        ),
        (
            "addons/configmap.yaml",
            format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: greeting\n  namespace: addon-demo\ndata:\n  message: {message}\n"
            ),
        ),
    ]
}

/// Waits until `check` accepts AddonsDelivered's (status, reason, message).
async fn delivered_until(
    tcp: &Tcp<'_>,
    what: &str,
    check: impl Fn(&str, &str, &str) -> bool,
) -> Result<String> {
    poll_until(what, Duration::from_secs(240), || async {
        let (status, reason, message) = tcp.condition("AddonsDelivered").await?;
        Ok(if check(&status, &reason, &message) {
            Attempt::Done(message)
        } else {
            Attempt::NotYet(format!("AddonsDelivered {status} {reason}: {message}"))
        })
    })
    .await
}

/// Waits until the tenant's addon-demo/greeting says `message`; returns how long it took.
async fn greeting_becomes(tenant: &Client, message: &str) -> Result<Duration> {
    let start = Instant::now();
    let api = Api::<ConfigMap>::namespaced(tenant.clone(), "addon-demo");
    poll_until(
        &format!("addon-demo/greeting says {message} in the tenant"),
        Duration::from_secs(240),
        || async {
            let got = api
                .get_opt("greeting")
                .await?
                .and_then(|c| c.data?.get("message").cloned());
            Ok(if got.as_deref() == Some(message) {
                Attempt::Done(())
            } else {
                Attempt::NotYet(format!("message {got:?}"))
            })
        },
    )
    .await?;
    Ok(start.elapsed())
}

/// A client built from an Argo CD cluster Secret as Argo CD reads it: `server`, and `config`
/// (JSON) with `bearerToken` and `tlsClientConfig.caData` (base64 of the PEM). Nothing else.
async fn argo_client(secret: &Secret) -> Result<Client> {
    let data = secret
        .data
        .as_ref()
        .context("the Argo CD Secret has no data")?;
    let text = |key: &str| -> Result<String> {
        let value = data
            .get(key)
            .with_context(|| format!("the Argo CD Secret has no key {key}"))?;
        String::from_utf8(value.0.clone()).with_context(|| format!("key {key} is not UTF-8"))
    };
    ensure!(
        !text("name")?.is_empty(),
        "the Argo CD Secret has an empty name"
    );
    let server = text("server")?;
    let config: serde_json::Value =
        serde_json::from_str(&text("config")?).context("config is not JSON")?;
    let token = config["bearerToken"]
        .as_str()
        .context("config has no bearerToken")?;
    let ca = config["tlsClientConfig"]["caData"]
        .as_str()
        .context("config has no tlsClientConfig.caData")?;
    ensure!(
        config["tlsClientConfig"]["insecure"] != true,
        "the Argo CD Secret turns TLS verification off"
    );
    let pem = base64::engine::general_purpose::STANDARD
        .decode(ca)
        .context("caData is not base64")?;
    ensure!(
        pem.starts_with(b"-----BEGIN CERTIFICATE-----"),
        "caData is not base64 of a PEM certificate"
    );
    token_client(&server, ca, token).await
}

async fn token_client(server: &str, ca_b64: &str, token: &str) -> Result<Client> {
    let kubeconfig = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca_b64}\nusers:\n- name: u\n  user:\n    token: {token}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\n"
    );
    tenant_client(&kubeconfig).await
}

/// The HTTP status of listing namespaces with `client` (200 when allowed).
async fn list_namespaces_status(client: &Client) -> u16 {
    match Api::<Namespace>::all(client.clone())
        .list(&ListParams::default().limit(1))
        .await
    {
        Ok(_) => 200,
        Err(kube::Error::Api(s)) => s.code,
        Err(_) => 0,
    }
}

async fn secret_opt(client: &Client, namespace: &str, name: &str) -> Result<Option<Secret>> {
    Ok(Api::<Secret>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await?)
}

/// Waits until `client`'s token is refused (401): a deleted ServiceAccount's tokens stop at once,
/// up to the API server's 10 s cache of authenticated tokens. Prints how long it took.
async fn refused_within(client: &Client, what: &str) -> Result<()> {
    let start = Instant::now();
    poll_until(
        &format!("{what} is refused"),
        Duration::from_secs(30),
        || async {
            let code = list_namespaces_status(client).await;
            Ok(if code == 401 {
                Attempt::Done(())
            } else {
                Attempt::NotYet(format!("answered {code}"))
            })
        },
    )
    .await?;
    eprintln!(
        "gitops: {what} refused {:?} after its ServiceAccount was deleted",
        start.elapsed()
    );
    Ok(())
}

/// A central Flux in the seed, as a platform team runs one: source-controller and
/// kustomize-controller (the agent image's, with in-cluster credentials) in the test's namespace,
/// watching only it, with Flux's CRDs installed in the seed.
async fn central_flux(env: &TestEnv) -> Result<()> {
    let version = hostplane_e2e::pinned("FLUX_VERSION").context("FLUX_VERSION in versions.env")?;
    install_crds_from(
        &format!("flux/v{version}/crds"),
        &[
            "gitrepositories.source.toolkit.fluxcd.io",
            "kustomizations.kustomize.toolkit.fluxcd.io",
        ],
    )
    .await?;
    let ns = env.namespace();
    let image = format!("ghcr.io/hostplane/flux-agent:v{version}");
    let pull = &env.config.image_pull_policy;
    let security = r"securityContext: {runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532, seccompProfile: {type: RuntimeDefault}}";
    let container_security = r"securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}";
    let deployment = |name: &str, binary: &str, args: &str| {
        format!(
            r"---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      serviceAccountName: central-flux
      {security}
      containers:
      - name: {binary}
        image: {image}
        imagePullPolicy: {pull}
        command: [{binary}]
        args: [--watch-all-namespaces=false, --enable-leader-election=false, --events-addr=, {args}]
        env:
        - {{name: RUNTIME_NAMESPACE, value: {ns}}}
        - {{name: TUF_ROOT, value: /tmp/.sigstore}}
        {container_security}
        volumeMounts: [{{name: tmp, mountPath: /tmp}}, {{name: data, mountPath: /data}}]
      volumes: [{{name: tmp, emptyDir: {{}}}}, {{name: data, emptyDir: {{}}}}]
"
        )
    };
    let manifest = format!(
        r#"apiVersion: v1
kind: ServiceAccount
metadata: {{name: central-flux}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: central-flux}}
rules:
- {{apiGroups: [source.toolkit.fluxcd.io, kustomize.toolkit.fluxcd.io], resources: ["*"], verbs: ["*"]}}
- {{apiGroups: [""], resources: [secrets, configmaps], verbs: [get, list, watch]}}
- {{apiGroups: ["", events.k8s.io], resources: [events], verbs: [create, patch]}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: central-flux}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: central-flux}}
subjects: [{{kind: ServiceAccount, name: central-flux, namespace: {ns}}}]
---
apiVersion: v1
kind: Service
metadata: {{name: central-source}}
spec:
  selector: {{app: central-source}}
  ports: [{{port: 9090, targetPort: 9090}}]
{}{}"#,
        deployment(
            "central-source",
            "source-controller",
            &format!(
                "--storage-path=/data, --storage-adv-addr=central-source.{ns}.svc.cluster.local.:9090"
            ),
        ),
        deployment(
            "central-kustomize",
            "kustomize-controller",
            "--no-remote-bases=true"
        ),
    );
    let path = std::env::temp_dir().join(format!("central-flux-{ns}.yaml"));
    std::fs::write(&path, manifest)?;
    let applied = env.kubectl(&["apply", "-f", &path.to_string_lossy()]).await;
    let _ = std::fs::remove_file(&path);
    applied?
        .ok()
        .context("deploying a central Flux in the seed")?;
    env.wait_deployment_available("central-source").await?;
    env.wait_deployment_available("central-kustomize").await?;
    Ok(())
}

/// A GitRepository and a Kustomization in the seed that apply `path` of `url` into the tenant
/// through the Cluster-API-format Secret `secret` (`spec.kubeConfig.secretRef`).
async fn central_kustomization(env: &TestEnv, url: &str, path: &str, secret: &str) -> Result<()> {
    let manifest = format!(
        r#"apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata: {{name: central}}
spec: {{url: "{url}", ref: {{branch: main}}, interval: 10s}}
---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {{name: central}}
spec:
  sourceRef: {{kind: GitRepository, name: central}}
  path: {path}
  interval: 10s
  retryInterval: 10s
  prune: true
  kubeConfig: {{secretRef: {{name: {secret}}}}}
"#
    );
    let file = std::env::temp_dir().join(format!("central-ks-{}.yaml", env.namespace()));
    std::fs::write(&file, manifest)?;
    let applied = env.kubectl(&["apply", "-f", &file.to_string_lossy()]).await;
    let _ = std::fs::remove_file(&file);
    applied?
        .ok()
        .context("applying the central Kustomization")?;
    Ok(())
}

/// Waits until the tenant's default/`name` ConfigMap says `message`.
async fn config_map_says(tenant: &Client, name: &str, message: &str) -> Result<()> {
    let api = Api::<ConfigMap>::namespaced(tenant.clone(), "default");
    poll_until(
        &format!("default/{name} says {message} in the tenant"),
        Duration::from_secs(180),
        || async {
            let got = api
                .get_opt(name)
                .await?
                .and_then(|c| c.data?.get("message").cloned());
            Ok(if got.as_deref() == Some(message) {
                Attempt::Done(())
            } else {
                Attempt::NotYet(format!("message {got:?}"))
            })
        },
    )
    .await
}

fn central_addon(message: &str) -> Vec<(&'static str, String)> {
    vec![(
        "central/configmap.yaml",
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-central-flux\n  namespace: default\ndata:\n  message: {message}\n"
        ),
    )]
}

/// Sveltos (its CRD installed in the seed): a SveltosCluster naming its kubeconfig Secret and key,
/// and that kubeconfig reaches the tenant with `view`.
async fn sveltos_registration(g: &Gitops<'_>) -> Result<()> {
    let (env, seed) = (g.env, &g.seed);
    let sveltos = sveltos_cluster_api(seed, env.namespace());
    let cluster = sveltos
        .get("g1-fleet")
        .await
        .context("SveltosCluster g1-fleet was not written")?;
    let spec = &cluster.data["spec"];
    ensure!(
        spec["kubeconfigName"] == "g1-fleet-sveltos-kubeconfig"
            && spec["kubeconfigKeyName"] == "kubeconfig",
        "SveltosCluster g1-fleet does not name its kubeconfig Secret and key: {spec}"
    );
    let fleet = secret_opt(seed, env.namespace(), "g1-fleet-sveltos-kubeconfig")
        .await?
        .context("Secret g1-fleet-sveltos-kubeconfig was not written")?;
    let as_sveltos = tenant_client(&secret_text(&fleet, "kubeconfig")?).await?;
    ensure!(
        list_namespaces_status(&as_sveltos).await == 200,
        "the Sveltos kubeconfig cannot list namespaces in the tenant (role view)"
    );

    Ok(())
}

/// A registration whose Secret's name is taken writes nothing, overwrites nothing, and says so.
async fn a_taken_name_is_left_alone(g: &Gitops<'_>) -> Result<()> {
    let (env, seed, argo_ns, tcp) = (g.env, &g.seed, g.argo_ns, g.tcp);
    // A registration whose Secret's name is taken (here by the tenant's own service-account key,
    // `g1-sa`) writes nothing, overwrites nothing, and says so; the other registration carries on.
    let key_before = secret_opt(seed, env.namespace(), "g1-sa")
        .await?
        .context("the tenant's Secret g1-sa is missing")?;
    set_registrations(
        env,
        argo_ns,
        r#",{"name":"sa","agent":"ArgoCD","role":"view"}"#,
    )
    .await?;
    let message = poll_until(
        "RegistrationsReady False NameTaken",
        Duration::from_secs(120),
        || async {
            let (status, reason, message) = tcp.condition("RegistrationsReady").await?;
            Ok(if status == "False" && reason == "NameTaken" {
                Attempt::Done(message)
            } else {
                Attempt::NotYet(format!("RegistrationsReady {status} {reason}: {message}"))
            })
        },
    )
    .await?;
    ensure!(
        message.contains("g1-sa"),
        "the NameTaken message does not name the Secret: {message}"
    );
    let key_after = secret_opt(seed, env.namespace(), "g1-sa")
        .await?
        .context("the tenant's Secret g1-sa is gone")?;
    ensure!(
        key_after.metadata.resource_version == key_before.metadata.resource_version,
        "a registration wrote over the tenant's service-account key Secret"
    );
    ensure!(
        secret_opt(seed, argo_ns.name(), ARGO_SECRET)
            .await?
            .is_some(),
        "the Argo CD registration went away beside the refused one"
    );
    set_registrations(env, argo_ns, "").await?;

    Ok(())
}

/// Sets g1's registrations to the Argo CD one (writing to `argo_ns`) and `more` (JSON list items,
/// each after a comma).
async fn set_registrations(env: &TestEnv, argo_ns: &TestNamespace, more: &str) -> Result<()> {
    let argo = format!(
        r#"{{"name":"argo","agent":"ArgoCD","namespace":"{}","role":"view"}}"#,
        argo_ns.name()
    );
    patch_spec(
        env,
        "g1",
        &format!(r#"{{"gitops":{{"registrations":[{argo}{more}]}}}}"#),
    )
    .await
}

/// Deletes a ServiceAccount inside the tenant (which revokes its tokens).
async fn delete_service_account(admin: &Client, namespace: &str, name: &str) -> Result<()> {
    Api::<k8s_openapi::api::core::v1::ServiceAccount>::namespaced(admin.clone(), namespace)
        .delete(name, &kube::api::DeleteParams::default())
        .await
        .with_context(|| format!("deleting ServiceAccount {namespace}/{name} in the tenant"))?;
    Ok(())
}

/// Installs libsveltos' SveltosCluster CRD in the seed (fetched by e2e/seed/build-binaries from
/// its Go module): registrations for Sveltos are written only where it exists.
async fn install_sveltos_crd() -> Result<()> {
    let version = hostplane_e2e::pinned("LIBSVELTOS_VERSION").context("LIBSVELTOS_VERSION")?;
    install_crds_from(
        &format!("sveltos/v{version}/lib.projectsveltos.io_sveltosclusters.yaml"),
        &["sveltosclusters.lib.projectsveltos.io"],
    )
    .await
}

/// Applies the CRDs at `path` (a file or folder under the seed tooling's cache, which
/// e2e/seed/build-binaries fills) to the seed and waits until `names` are established.
async fn install_crds_from(path: &str, names: &[&str]) -> Result<()> {
    let cache = std::env::var("HOSTPLANE_CACHE").unwrap_or_else(|_| "/var/cache/hostplane".into());
    let path = format!("{cache}/{path}");
    hostplane_e2e::kubectl(&["apply", "--server-side", "--force-conflicts", "-f", &path])
        .await?
        .ok()
        .with_context(|| format!("installing the CRDs of {path} (e2e/seed/build-binaries)"))?;
    hostplane_e2e::wait_crds_established(names).await
}

fn sveltos_cluster_api(seed: &Client, namespace: &str) -> Api<kube::core::DynamicObject> {
    let kind = kube::core::ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk(
        "lib.projectsveltos.io",
        "v1beta1",
        "SveltosCluster",
    ));
    Api::namespaced_with(seed.clone(), namespace, &kind)
}

/// Waits (2 minutes) until Secret `namespace/name` carries a token other than `old` (key `token`,
/// which every Secret of an agent or registration has); returns it.
async fn new_token(seed: &Client, namespace: &str, name: &str, old: &str) -> Result<Secret> {
    poll_until(
        &format!("a new token in Secret {namespace}/{name}"),
        Duration::from_secs(120),
        || async {
            Ok(match secret_opt(seed, namespace, name).await? {
                Some(s) if token_of(&s)? != old => Attempt::Done(s),
                _ => Attempt::NotYet("the same token".into()),
            })
        },
    )
    .await
}

/// The text under `key` of a Secret.
fn secret_text(secret: &Secret, key: &str) -> Result<String> {
    let value = secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .with_context(|| format!("the Secret has no key {key}"))?;
    Ok(String::from_utf8(value.0.clone())?)
}

fn kubeconfig_of(secret: &Secret) -> Result<String> {
    secret_text(secret, "value")
}

/// The token a registration's Secret carries (key `token`).
fn token_of(secret: &Secret) -> Result<String> {
    secret_text(secret, "token")
}

fn bearer_token(secret: &Secret) -> Result<String> {
    let config: serde_json::Value = serde_json::from_str(&secret_text(secret, "config")?)?;
    Ok(config["bearerToken"]
        .as_str()
        .unwrap_or_default()
        .to_owned())
}

#[tokio::test]
async fn an_agent_delivers_addons_and_registrations_hand_out_scoped_expiring_tokens() -> Result<()>
{
    let test = "an_agent_delivers_addons_and_registrations_hand_out_scoped_expiring_tokens";
    install_crds().await?;
    let env = TestEnv::new("tcp-gitops").await?;
    if !env.config.local_seed {
        return hostplane_e2e::skip(
            test,
            "needs the local seed's git server (e2e/seed/seed git-repo); on kind, follow \
             docs/gitops.md with a Git server of your own",
        );
    }
    let seed = hostplane_e2e::client().await?;
    // Argo CD's namespace: registrations may write outside the TCP's namespace.
    let argo_ns = TestNamespace::create(&seed, "tcp-gitops-argocd").await?;
    install_sveltos_crd().await?;
    let repo = Repo::create(env.namespace()).await?;
    let first = repo.commit("addon v1", &addon("hello-1")).await?;

    let spec = format!(
        "  gitops:\n    agent:\n      source:\n        git:\n          url: {}\n      path: ./addons\n      interval: 10s\n    registrations:\n    - name: argo\n      agent: ArgoCD\n      namespace: {}\n      role: view\n    - name: central\n      agent: Flux\n      role: edit\n      tokenTTL: 10m\n    - name: fleet\n      agent: Sveltos\n      role: view\n",
        repo.url,
        argo_ns.name()
    );
    let tcp = Tcp::apply_with(&env, "g1", &spec).await?;
    // A second tenant, to show that g1's tokens are worth nothing there.
    let other = Tcp::apply_with(&env, "g2", SMALL).await?;
    tcp.wait_ready().await?;
    other.wait_ready().await?;
    let admin = tenant_client(&tcp.kubeconfig().await?).await?;

    let g = Gitops {
        env: &env,
        seed,
        argo_ns: &argo_ns,
        repo: &repo,
        tcp: &tcp,
        admin,
    };
    deliveries(&g, &first).await?;
    argo_cd_and_sveltos(&g, &other).await?;
    flux_registration_and_names(&g).await?;
    let Gitops {
        env,
        seed,
        argo_ns,
        tcp,
        ..
    } = g;
    // 8. The agent switched off: its workloads leave the seed, its condition the status.
    patch_spec(env, "g1", r#"{"gitops":{"agent":null}}"#).await?;
    poll_until("the agent is gone", Duration::from_secs(120), || async {
        let left = env
            .kubectl(&["get", "deployments,services,secrets", "-o", "name"])
            .await?
            .ok()?
            .stdout;
        let (status, _, _) = tcp.condition("AddonsDelivered").await?;
        Ok(if !left.contains("gitops") && status.is_empty() {
            Attempt::Done(())
        } else {
            Attempt::NotYet(format!("AddonsDelivered {status:?}; objects: {left}"))
        })
    })
    .await?;

    // 9. Deleting the TCP removes what it wrote in Argo CD's namespace too.
    for name in ["g1", "g2"] {
        env.kubectl(&[
            "annotate",
            &format!("tcp/{name}"),
            "hostplane.dev/confirm-deletion=true",
        ])
        .await?
        .ok()?;
    }
    env.kubectl(&["delete", "tcp", "g1", "g2", "--wait=true", "--timeout=50s"])
        .await?
        .ok()?;
    poll_until(
        "the Argo CD Secret of the deleted TCP is gone",
        Duration::from_secs(200),
        || async {
            Ok(
                match secret_opt(&seed, argo_ns.name(), ARGO_SECRET).await? {
                    None => Attempt::Done(()),
                    Some(_) => Attempt::NotYet("still there".into()),
                },
            )
        },
    )
    .await?;
    Ok(())
}

/// What the phases of the GitOps test share.
struct Gitops<'a> {
    env: &'a TestEnv,
    seed: Client,
    argo_ns: &'a TestNamespace,
    repo: &'a Repo,
    tcp: &'a Tcp<'a>,
    admin: Client,
}

/// The name of the Argo CD registration's Secret (tcp g1, registration argo).
const ARGO_SECRET: &str = "g1-argo";

/// Steps 1-3: the hosted agent delivers, follows a commit, reports a broken addon, survives a new token.
async fn deliveries(g: &Gitops<'_>, first: &str) -> Result<()> {
    let (env, seed, repo, tcp, admin) = (g.env, &g.seed, g.repo, g.tcp, &g.admin);
    // 1. The hosted agent delivers the addon, and the status says which revision.
    let took = greeting_becomes(admin, "hello-1").await?;
    eprintln!("gitops: first delivery {took:?} after Ready");
    let message = delivered_until(tcp, "AddonsDelivered True", |s, _, _| s == "True").await?;
    ensure!(
        message.contains(first),
        "AddonsDelivered does not name the revision {first}: {message}"
    );
    let revision = env
        .kubectl(&[
            "get",
            "tcp/g1",
            "-o",
            "jsonpath={.status.gitops.agent.lastAppliedRevision}",
        ])
        .await?
        .ok()?
        .stdout;
    ensure!(
        revision.contains(first),
        "status.gitops.agent.lastAppliedRevision {revision:?} is not {first}"
    );
    // Flux's own objects are inside the tenant, as its users see them (`kubectl get
    // kustomizations -A`).
    let kind = kube::core::ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk(
        "kustomize.toolkit.fluxcd.io",
        "v1",
        "Kustomization",
    ));
    let kustomizations = Api::<kube::core::DynamicObject>::all_with(admin.clone(), &kind)
        .list(&ListParams::default())
        .await
        .context("listing Kustomizations in the tenant")?;
    ensure!(
        kustomizations
            .items
            .iter()
            .any(|k| k.metadata.name.as_deref() == Some("hostplane")),
        "no Kustomization flux-system/hostplane in the tenant"
    );

    // 2. A commit that changes the addon reaches the tenant.
    let pushed = Instant::now();
    let second = repo.commit("addon v2", &addon("hello-2")).await?;
    greeting_becomes(admin, "hello-2").await?;
    eprintln!(
        "gitops: commit {second} reached the tenant in {:?}",
        pushed.elapsed()
    );

    // 3. A broken addon surfaces with Flux's message, and a fix clears it.
    repo.commit(
        "broken",
        &[(
            "addons/broken.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: broken\n  namespace: addon-demo\ndata: [this is not a map]\n".to_owned(),
        )],
    )
    .await?;
    let message = delivered_until(
        tcp,
        "AddonsDelivered False with Flux's message",
        |s, _, m| s == "False" && m.contains("broken"),
    )
    .await?;
    eprintln!("gitops: a broken addon says: {message}");
    std::fs::remove_file(repo.work.join("addons/broken.yaml"))?;
    repo.commit("fixed", &addon("hello-3")).await?;
    greeting_becomes(admin, "hello-3").await?;
    delivered_until(tcp, "AddonsDelivered True again", |s, _, _| s == "True").await?;

    // The agent's own token replaced (its ServiceAccount deleted and made again, as a rotation
    // does without the wait): the operator writes the new token, the kubelet updates the mounted
    // file, Flux's client re-reads it, and delivery goes on without a restart.
    let agent_token = secret_opt(seed, env.namespace(), "g1-gitops-agent-token")
        .await?
        .context("the agent's token Secret is missing")?;
    let before = token_of(&agent_token)?;
    delete_service_account(admin, "flux-system", "hostplane-agent").await?;
    tcp.touch("agent-token").await?;
    new_token(seed, env.namespace(), "g1-gitops-agent-token", &before).await?;
    let replaced = Instant::now();
    repo.commit("after the agent's new token", &addon("hello-4"))
        .await?;
    greeting_becomes(admin, "hello-4").await?;
    eprintln!(
        "gitops: the agent delivered again {:?} after its token was replaced",
        replaced.elapsed()
    );
    let restarts = env
        .kubectl(&[
            "get",
            "pods",
            "-l",
            "app.kubernetes.io/component in (gitops-source,gitops-kustomize)",
            "-o",
            "jsonpath={.items[*].status.containerStatuses[*].restartCount}",
        ])
        .await?
        .ok()?
        .stdout;
    eprintln!("gitops: agent container restarts: {restarts}");

    Ok(())
}

/// Steps 4-6: the Argo CD and Sveltos registrations, cross-tenant refusal, revocation.
async fn argo_cd_and_sveltos(g: &Gitops<'_>, other: &Tcp<'_>) -> Result<()> {
    let (env, seed, argo_ns, tcp, admin) = (g.env, &g.seed, g.argo_ns, g.tcp, &g.admin);
    // 4. Argo CD's cluster Secret reaches the tenant with the `view` role only.
    let argo = poll_until(
        "the Argo CD cluster Secret",
        Duration::from_secs(60),
        || async {
            Ok(match secret_opt(seed, argo_ns.name(), ARGO_SECRET).await? {
                Some(s) => Attempt::Done(s),
                None => Attempt::NotYet("absent".into()),
            })
        },
    )
    .await?;
    let labels = argo.metadata.labels.clone().unwrap_or_default();
    ensure!(
        labels
            .get("argocd.argoproj.io/secret-type")
            .map(String::as_str)
            == Some("cluster"),
        "the Argo CD Secret lacks label argocd.argoproj.io/secret-type=cluster: {labels:?}"
    );
    let as_argo = argo_client(&argo).await?;
    ensure!(
        list_namespaces_status(&as_argo).await == 200,
        "Argo CD's token cannot list namespaces in the tenant (role view)"
    );
    let write = Api::<ConfigMap>::namespaced(as_argo.clone(), "default")
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({"metadata": {"name": "argo-write"}}))?,
        )
        .await;
    ensure!(
        matches!(&write, Err(kube::Error::Api(s)) if s.code == 403),
        "Argo CD's view token could write in the tenant: {write:?}"
    );
    let status = env
        .kubectl(&[
            "get",
            "tcp/g1",
            "-o",
            "jsonpath={range .status.gitops.registrations[*]}{.name}={.expiresAt},{.renewAt};{end}",
        ])
        .await?
        .ok()?
        .stdout;
    ensure!(
        status.contains("argo=") && status.contains("central=") && status.contains("fleet="),
        "status.gitops.registrations does not list the three registrations: {status}"
    );

    sveltos_registration(g).await?;

    // A token is kept until it is due: passes over the tenant do not mint new ones.
    let kept = bearer_token(&argo)?;
    tcp.touch("again").await?;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let now = secret_opt(seed, argo_ns.name(), ARGO_SECRET)
        .await?
        .context("the Argo CD Secret is gone")?;
    ensure!(
        bearer_token(&now)? == kept,
        "a reconcile replaced a token that was not due"
    );

    // 5. Tenant g1's token is refused by tenant g2 (same seed, its own CA and keys).
    let other_kubeconfig = other.kubeconfig().await?;
    let other_config = kube::config::Kubeconfig::from_yaml(&other_kubeconfig)?;
    let other_cluster = other_config
        .clusters
        .first()
        .and_then(|c| c.cluster.clone())
        .context("g2's kubeconfig has no cluster")?;
    let other_server = other_cluster
        .server
        .context("g2's kubeconfig has no server")?;
    let other_ca = other_cluster
        .certificate_authority_data
        .context("g2's kubeconfig has no CA")?;
    let foreign = token_client(&other_server, &other_ca, &bearer_token(&argo)?).await?;
    let code = list_namespaces_status(&foreign).await;
    ensure!(
        code == 401,
        "tenant g2 answered {code} to tenant g1's token, want 401"
    );

    // 6. Deleting the ServiceAccount revokes the token at once; the operator mints a new one for
    // a new ServiceAccount, and the agent's Secret carries it.
    let old_token = bearer_token(&argo)?;
    delete_service_account(admin, "hostplane-registrations", "argo").await?;
    refused_within(&as_argo, "the revoked Argo CD token").await?;
    tcp.touch("revoked").await?;
    let renewed = new_token(seed, argo_ns.name(), ARGO_SECRET, &old_token).await?;
    let as_argo = argo_client(&renewed).await?;
    ensure!(
        list_namespaces_status(&as_argo).await == 200,
        "the re-minted Argo CD token does not work"
    );

    Ok(())
}

/// Step 7: a central Flux through the Flux registration, its rotation and removal; a taken name.
async fn flux_registration_and_names(g: &Gitops<'_>) -> Result<()> {
    let (env, seed, argo_ns, repo, tcp, admin) =
        (g.env, &g.seed, g.argo_ns, g.repo, g.tcp, &g.admin);
    // 7. The Flux registration (Cluster API format) works with the `edit` role; removing it from
    // the spec removes its Secret and revokes its token.
    let central = "g1-central-kubeconfig";
    let secret = secret_opt(seed, env.namespace(), central)
        .await?
        .with_context(|| format!("Secret {central} was not written"))?;
    ensure!(
        secret.type_.as_deref() == Some("cluster.x-k8s.io/secret"),
        "Secret {central} has type {:?}",
        secret.type_
    );
    let as_central = tenant_client(&kubeconfig_of(&secret)?).await?;
    Api::<ConfigMap>::namespaced(as_central.clone(), "default")
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({"metadata": {"name": "from-central"}}))?,
        )
        .await
        .context("the Flux registration (role edit) cannot create a ConfigMap")?;
    // A central Flux in the seed applies into the tenant through that Secret
    // (`kubeConfig.secretRef`), and keeps doing so with the token that replaces the first one.
    central_flux(env).await?;
    repo.commit("central v1", &central_addon("central-1"))
        .await?;
    central_kustomization(env, &repo.url, "./central", central).await?;
    config_map_says(admin, "from-central-flux", "central-1").await?;
    let before = token_of(&secret)?;
    delete_service_account(admin, "hostplane-registrations", "central").await?;
    refused_within(&as_central, "the first Flux registration token").await?;
    tcp.touch("rotate-central").await?;
    new_token(seed, env.namespace(), central, &before).await?;
    repo.commit("central v2", &central_addon("central-2"))
        .await?;
    config_map_says(admin, "from-central-flux", "central-2").await?;
    let as_central = tenant_client(&kubeconfig_of(
        &secret_opt(seed, env.namespace(), central)
            .await?
            .context("the Flux registration's Secret is gone")?,
    )?)
    .await?;

    let sveltos = sveltos_cluster_api(seed, env.namespace());
    let fleet = secret_opt(seed, env.namespace(), "g1-fleet-sveltos-kubeconfig")
        .await?
        .context("Secret g1-fleet-sveltos-kubeconfig is gone")?;
    let as_sveltos = tenant_client(&secret_text(&fleet, "kubeconfig")?).await?;
    set_registrations(env, argo_ns, "").await?;
    poll_until(
        "the removed registrations' Secrets and SveltosCluster are gone",
        Duration::from_secs(120),
        || async {
            let left = [
                secret_opt(seed, env.namespace(), central).await?.is_some(),
                secret_opt(seed, env.namespace(), "g1-fleet-sveltos-kubeconfig")
                    .await?
                    .is_some(),
                sveltos.get_opt("g1-fleet").await?.is_some(),
            ];
            Ok(if left.iter().any(|l| *l) {
                Attempt::NotYet(format!(
                    "still there (Flux Secret, Sveltos Secret, SveltosCluster): {left:?}"
                ))
            } else {
                Attempt::Done(())
            })
        },
    )
    .await?;
    refused_within(&as_sveltos, "the removed Sveltos registration's token").await?;
    refused_within(&as_central, "the removed registration's token").await?;

    a_taken_name_is_left_alone(g).await?;
    Ok(())
}
