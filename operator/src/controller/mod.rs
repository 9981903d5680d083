//! The TenantControlPlane controller: load → validate → PKI → build → apply → observe → tenant
//! bootstrap → status. Pure decisions live in `build`, `pki` and `status`; this module is the
//! edge that reads and writes.

mod addons;
mod apply;
mod backup;
mod ca_rotation;
mod encryption;
mod error;
mod gitops;
mod node_join;
mod pki;
mod restore;
mod sa_rotation;
mod tenant_api;
mod upgrade;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt as _;
use hostplane_api::v1alpha1::{
    NodeCounts, Phase, SecretReference, TenantControlPlane, TenantControlPlaneStatus,
};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Node, Secret, Service};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, Resource as _, ResourceExt as _};
use tracing::{info, instrument, warn};

pub use self::error::Error;
use crate::build::{self, Endpoint, Tenant};
use crate::metrics::Metrics;
use crate::rollout;
use crate::status::{
    self, API_SERVER_READY, CONTROLLERS_READY, ETCD_READY, Observed, PKI_READY, READY,
};

/// Settings of one controller run.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The seed cluster's DNS domain, for `<svc>.<ns>.svc.<domain>` names.
    pub seed_cluster_domain: String,
    /// How many TenantControlPlanes are reconciled at once.
    pub concurrency: u16,
    /// The operator's own image: backup Jobs run its `snapshot-finish`. Unknown: no backups.
    pub operator_image: Option<String>,
    /// The hosted GitOps agent's image (Flux's controllers, kubectl and Flux's CRDs).
    pub gitops_agent_image: String,
}

struct Context {
    client: Client,
    recorder: Recorder,
    settings: Settings,
    /// Consecutive failures per object, for exponential backoff.
    failures: Mutex<HashMap<ObjectRef<TenantControlPlane>, u32>>,
    metrics: Metrics,
}

/// The back-off of the controller's watches. kube-runtime applies one back-off to all its watches
/// merged, and pauses all of them while it runs: with its default (up to 30 s, reset after 2
/// minutes quiet), the five watches' errors after the seed's API server restarted paused every
/// trigger again and again, and a tenant's status lagged by minutes (the chaos test, 2026-11-23).
/// Up to 2 s keeps a down API server at a few requests per second and the lag to seconds.
fn trigger_backoff() -> kube::runtime::utils::ResetTimerBackoff<watcher::ExponentialBackoff> {
    let builder = backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(2))
        .with_factor(2.0)
        .with_jitter()
        .without_max_times();
    kube::runtime::utils::ResetTimerBackoff::new(builder.into(), Duration::from_secs(60))
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `endpoints` when given, waits for `leading`
/// (leader election; `false` ends here), then runs the controller until SIGTERM/SIGINT.
pub async fn run(
    client: Client,
    settings: Settings,
    endpoints: Option<tokio::net::TcpListener>,
    leading: impl Future<Output = bool>,
) {
    let tcps: Api<TenantControlPlane> = Api::all(client.clone());
    let controller = Controller::new(tcps, watcher::Config::default());
    let store = controller.store();
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = Metrics::new(&mut registry, store.clone());
    if let Some(listener) = endpoints {
        let ready = Arc::new(AtomicBool::new(false));
        let synced = ready.clone();
        tokio::spawn(async move {
            // Polled again each second: kube-runtime's ready signal wakes only the last of
            // several waiters (the controller itself waits on it too).
            loop {
                match tokio::time::timeout(Duration::from_secs(1), store.wait_until_ready()).await {
                    Err(_) => {}
                    Ok(Ok(())) => {
                        info!("the TenantControlPlane cache has synced");
                        synced.store(true, Ordering::Relaxed);
                        break;
                    }
                    Ok(Err(e)) => {
                        warn!(error = %e, "the TenantControlPlane cache will not sync");
                        break;
                    }
                }
            }
        });
        tokio::spawn(async move {
            if let Err(e) = crate::metrics::serve(listener, registry, ready).await {
                warn!(error = %e, "the metrics and health endpoints stopped");
            }
        });
    }
    // A standby serves /healthz (and a 503 /readyz: its cache fills once it leads).
    if !leading.await {
        return;
    }
    let sweeper = client.clone();
    tokio::spawn(async move {
        // What registrations wrote in other namespaces outlives a deleted TCP until this finds it.
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            match gitops::sweep(&sweeper).await {
                Ok(0) => {}
                Ok(n) => info!(
                    removed = n,
                    "removed registrations of deleted TenantControlPlanes"
                ),
                Err(e) => {
                    warn!(error = %e, "sweeping registrations of deleted TenantControlPlanes failed");
                }
            }
        }
    });
    let ctx = Arc::new(Context {
        recorder: Recorder::new(client.clone(), Reporter::from("hostplane-operator")),
        client: client.clone(),
        settings: settings.clone(),
        failures: Mutex::default(),
        metrics,
    });
    let children = watcher::Config::default().labels("app.kubernetes.io/managed-by=hostplane");
    controller
        .owns(Api::<StatefulSet>::all(client.clone()), children.clone())
        .owns(Api::<Deployment>::all(client.clone()), children.clone())
        .owns(Api::<Service>::all(client.clone()), children.clone())
        .owns(Api::<Job>::all(client.clone()), children)
        .with_config(kube::runtime::controller::Config::default().concurrency(settings.concurrency))
        .trigger_backoff(trigger_backoff())
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                warn!(error = %e, "reconcile failed");
            }
        })
        .await;
}

/// What observing the children found.
#[derive(Clone, Default)]
struct Observation {
    conditions: Vec<Observed>,
    ready: bool,
    /// When something is due that no watch event announces (a bootstrap token rotation).
    due: Option<time::OffsetDateTime>,
    /// The tenant's nodes, when the pass reached inside the tenant.
    nodes: Option<NodeCounts>,
    /// What the next pass waits for.
    next: Next,
    /// Hibernated (or going to sleep): the phase is Hibernated.
    hibernated: bool,
    /// An in-place restore holds the tenant: the phase is Restoring.
    restoring: bool,
    /// `status.backup` as this pass left it (None: as it was).
    backup: Option<hostplane_api::v1alpha1::BackupStatus>,
    /// `status.gitops` as this pass left it.
    gitops: GitOpsSeen,
    /// `status.version` after this pass and whether an upgrade is under way (phase Upgrading);
    /// None: as it was.
    version: Option<crate::upgrade::VersionState>,
    /// `status.certificates` after this pass (None: as it was).
    certificates: Option<hostplane_api::v1alpha1::CertificatesStatus>,
    /// `status.serviceAccountKey` after this pass (None: as it was).
    service_account_key: Option<hostplane_api::v1alpha1::ServiceAccountKeyStatus>,
    /// `status.caRotation` after this pass (None: as it was).
    ca_rotation: Option<hostplane_api::v1alpha1::CaRotationStatus>,
}

impl Next {
    /// How long until the next pass at the latest. A pass over an unchanged tenant writes nothing;
    /// the periodic one (a safety net only while a watch event is awaited) is spread over the
    /// tenants.
    fn wait(self, uid: Option<&str>) -> Duration {
        match self {
            Next::Resync | Next::SeedWorkload => jittered(RESYNC_SECONDS, uid),
            Next::NodesSettling | Next::PodsNotReady => jittered(60, uid),
            Next::TenantAnswer => Duration::from_secs(5),
        }
    }

    /// After a pass of an awake tenant: its seed workloads ready or not, the tenant ready or not,
    /// its nodes settling or not.
    #[allow(clippy::fn_params_excessive_bools)] // four facts of one pass, named at the call
    fn after(workloads_ready: bool, ready: bool, settling: bool, stuck: bool) -> Self {
        if stuck || !workloads_ready {
            Next::PodsNotReady
        } else if !ready {
            Next::TenantAnswer
        } else if settling {
            Next::NodesSettling
        } else {
            Next::Resync
        }
    }
}

/// What the next pass of a tenant waits for, after a pass that went through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
enum Next {
    /// Nothing: periodic self-healing (ready, or hibernated with every pod gone).
    #[default]
    Resync,
    /// Nodes are registered but the addons do not run on them yet: nothing in the seed announces
    /// a change inside the tenant, so look again in a minute.
    NodesSettling,
    /// A hibernating tenant's pods going away: a watch event of an owned StatefulSet or
    /// Deployment, no polling.
    SeedWorkload,
    /// The workloads are up; whether the tenant answers is nothing the seed announces: poll.
    TenantAnswer,
    /// A component's pods are not ready, with a problem `diagnose` named (an image, a volume, a
    /// crash loop) or none yet: a watch event of the owner, or a look again in a minute. Pods are
    /// not watched, and a pod going from ContainerCreating to ErrImagePull changes nothing of its
    /// StatefulSet (a tenant waited the 10-minute resync before it said why). Not every 5 s: 1000
    /// TCPs whose pods could not start kept the seed's API server busy (e2e/bench/scale).
    PodsNotReady,
}

#[instrument(skip_all, fields(tcp = %tcp.name_any(), ns = tcp.namespace().unwrap_or_default()))]
async fn reconcile(tcp: Arc<TenantControlPlane>, ctx: Arc<Context>) -> Result<Action, Error> {
    let start = std::time::Instant::now();
    let result = reconcile_once(&tcp, &ctx).await;
    ctx.metrics
        .reconciled(start.elapsed(), result.as_ref().err().map(Error::reason));
    result
}

async fn reconcile_once(tcp: &Arc<TenantControlPlane>, ctx: &Context) -> Result<Action, Error> {
    if is_paused(tcp) {
        write_paused(tcp, ctx).await?;
        // Removing the annotation is a change of the TCP, which wakes it.
        return Ok(Action::await_change());
    }
    // Boxed: the pass's future is large (its many awaits), and it is moved into the runtime.
    let result = Box::pin(provision(tcp, ctx)).await;
    let (observation, endpoint) = match &result {
        Ok((o, endpoint)) => (o.clone(), Some(endpoint.clone())),
        Err(e) => (
            Observation {
                conditions: vec![Observed::new(READY, false, e.reason(), e.to_string())],
                next: Next::TenantAnswer,
                ..Observation::default()
            },
            tcp.status.as_ref().and_then(|s| s.endpoint.clone()),
        ),
    };
    let failed = result.as_ref().err().is_some_and(Error::is_permanent);
    write_status(tcp, ctx, &observation, endpoint, failed).await?;
    let (o, _) = result?;
    if let Ok(mut failures) = ctx.failures.lock() {
        failures.remove(&ObjectRef::from(tcp.as_ref()));
    }
    // Whatever is due (a token rotation, a hibernation schedule) comes before any other wait.
    let until_due = o.due.map_or(Duration::MAX, |due| {
        let secs = (due - time::OffsetDateTime::now_utc()).whole_seconds();
        Duration::from_secs(u64::try_from(secs).unwrap_or(0).max(1))
    });
    Ok(Action::requeue(
        o.next.wait(tcp.metadata.uid.as_deref()).min(until_due),
    ))
}

/// Whether the TCP carries `hostplane.dev/paused: "true"`.
fn is_paused(tcp: &TenantControlPlane) -> bool {
    tcp.annotations()
        .get(hostplane_api::v1alpha1::PAUSED_ANNOTATION)
        .is_some_and(|v| v == "true")
}

/// A paused TCP's status: what it was, plus the Paused condition (written once, with an Event).
async fn write_paused(tcp: &TenantControlPlane, ctx: &Context) -> Result<(), Error> {
    let old = tcp.status.clone().unwrap_or_default();
    let paused = Observed::new(
        status::PAUSED,
        true,
        "Paused",
        format!(
            "annotation {}=\"true\": the operator changes nothing of this TenantControlPlane \
             (nor reconciles, renews or repairs it) until the annotation is removed",
            hostplane_api::v1alpha1::PAUSED_ANNOTATION
        ),
    );
    let new = TenantControlPlaneStatus {
        conditions: status::merge_conditions(
            &old.conditions,
            std::slice::from_ref(&paused),
            tcp.metadata.generation,
            Timestamp::now(),
        ),
        ..old.clone()
    };
    if !status::needs_write(Some(&old), &new) {
        return Ok(());
    }
    patch_status(tcp, ctx, &new).await?;
    publish(tcp, ctx, EventType::Normal, "Paused", Some(paused.message)).await;
    Ok(())
}

/// Seconds between passes over a tenant that no event announces a change of.
const RESYNC_SECONDS: u64 = 600;

/// `seconds`, stretched by 0.9 to 1.1 after the TCP's uid: tenants reconciled together (all of
/// them after an operator restart) spread out instead of coming back in one herd.
fn jittered(seconds: u64, uid: Option<&str>) -> Duration {
    use std::hash::{Hash as _, Hasher as _};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    uid.hash(&mut hasher);
    let permille = 900 + hasher.finish() % 201; // 900..=1100
    Duration::from_millis(seconds.saturating_mul(permille))
}

/// A Warning Event (and a log line) for each root replaced this pass, as the annotation
/// `hostplane.dev/accept-new-roots` accepted.
async fn report_replaced_roots(
    tcp: &TenantControlPlane,
    ctx: &Context,
    tenant: &Tenant,
    pki_state: &pki::PkiState,
) {
    // Replaced, not merely written (a Secret that gains a key is written too).
    for item in &pki_state.replaced {
        let note = format!(
            "the {} Secret {} was replaced by a new one, as {} asked; everything it signed is \
             re-issued (credentials handed out before no longer work). Remove the annotation.",
            item.description(),
            item.secret_name(&tenant.name),
            hostplane_api::v1alpha1::ACCEPT_NEW_ROOTS_ANNOTATION
        );
        warn!(secret = %item.secret_name(&tenant.name), "a root of trust was replaced, as accepted");
        publish(tcp, ctx, EventType::Warning, "RootReplaced", Some(note)).await;
    }
}

/// When the API servers of an older template will have stopped, if that is still to come (no
/// watch event tells): a key rotation moves on then, and the `kubernetes` endpoints one of them
/// removed as it stopped (an API server of before `--endpoint-reconciler-type=none`) are
/// written again.
/// The rotations' status, and when to look again: when one falls due, or once the rollouts it
/// waits for are over (no watch event tells when the old pods' grace period has passed).
fn record_rotations(
    observation: &mut Observation,
    sa_keys: sa_rotation::Seen,
    cas: ca_rotation::Seen,
    workloads: &Workloads,
) {
    let now = time::OffsetDateTime::now_utc();
    for due in [
        sa_keys.due,
        api_servers_settle(workloads),
        cas.due,
        ca_rotation::settled_at(workloads).filter(|t| *t > now),
    ] {
        observation.due = earliest(observation.due, due);
    }
    observation.service_account_key = Some(sa_keys.status);
    observation.ca_rotation = cas.status;
}

fn api_servers_settle(workloads: &Workloads) -> Option<time::OffsetDateTime> {
    workloads
        .apiserver
        .as_ref()
        .and_then(rollout::api_servers_settled_at)
        .filter(|t| *t > time::OffsetDateTime::now_utc())
}

/// The PKI of this pass: what is missing or due issued and written, replaced roots reported, the
/// earliest expiry exported; and when its certificates expire and fall due.
async fn pki_pass(
    tcp: &TenantControlPlane,
    ctx: &Context,
    tenant: &Tenant,
    cluster_ip: &str,
) -> Result<(pki::PkiState, crate::pki::Expiry), Error> {
    let mut inputs = tenant.pki_inputs();
    inputs.extra_sans.push(cluster_ip.to_owned());
    inputs.accept_new_roots =
        pki::accepted_roots(&tenant.name, tcp.annotations()).map_err(Error::InvalidSpec)?;
    let pki_state = pki::ensure(&ctx.client, tenant, &inputs).await?;
    report_replaced_roots(tcp, ctx, tenant, &pki_state).await;
    let expiry = pki_state.pki.expiry(inputs.validity.renewal);
    if let Some((_, first)) = expiry.earliest {
        ctx.metrics.certificates_expire(tcp, first);
    }
    Ok((pki_state, expiry))
}

/// Everything but the status write. Returns the observation and the endpoint URL.
async fn provision(
    tcp: &TenantControlPlane,
    ctx: &Context,
) -> Result<(Observation, String), Error> {
    let client = &ctx.client;
    let seed_domain = &ctx.settings.seed_cluster_domain;
    let unplaced =
        Tenant::new(tcp, seed_domain, None).map_err(|e| Error::InvalidSpec(e.to_string()))?;

    // The apiserver Service first: its ClusterIP and node port are part of the endpoint, and the
    // endpoint is in the serving certificate.
    let desired_service = build::apiserver::service(&unplaced);
    let service = apply::apply(client, &desired_service).await?;
    let cluster_ip = service
        .spec
        .as_ref()
        .and_then(|s| s.cluster_ip.clone())
        .filter(|ip| !ip.is_empty() && ip != "None")
        .ok_or_else(|| {
            Error::Conflict(format!(
                "Service {} has no ClusterIP yet",
                service.name_any()
            ))
        })?;
    let endpoint = endpoint_of(client, &service, &cluster_ip).await?;
    let mut tenant = Tenant::new(tcp, seed_domain, Some(endpoint))
        .map_err(|e| Error::InvalidSpec(e.to_string()))?;
    let sleep = crate::hibernation::decide(
        tcp.spec.hibernation.as_ref(),
        k8s_openapi::jiff::Timestamp::now(),
    )
    .map_err(|e| Error::InvalidSpec(e.to_string()))?;
    let mut restore = restore::for_pass(client, tcp, &tenant).await?;
    // Held by a restore this pass: etcd and the control plane stay at zero.
    let held = restore::stops_etcd(restore.as_ref());
    tenant.asleep = sleep.asleep || held;
    let probe_url = format!(
        "https://{}:{}",
        build::url_host(&cluster_ip),
        tenant.api_server_port()
    );

    let (mut pki_state, expiry) = pki_pass(tcp, ctx, &tenant, &cluster_ip).await?;
    let version = upgrade::hold(client, tcp, &mut tenant, &probe_url).await?;
    let restore_from = tcp
        .spec
        .etcd
        .managed
        .as_ref()
        .and_then(|m| m.restore_from.as_ref())
        .map(|r| r.tenant.as_str());
    let key = encryption::ensure_key(client, &tenant, pki_state.existed, restore_from).await?;
    let children = build::build(&tenant, &pki_state.pki, &key)?;
    let applied = Applied {
        secrets: &pki_state.listed,
        service: &desired_service,
        upgrading: version.upgrading(&tenant),
    };
    let workloads = apply_children(client, &tenant, &children, &applied).await?;
    let rolled_out = upgrade::follow(&mut tenant, &workloads, &children, &version);
    let sa_keys = sa_rotation::pass(tcp, ctx, &tenant, &mut pki_state.pki, &workloads).await?;
    let cas = ca_rotation::pass(tcp, ctx, &tenant, &mut pki_state.pki, &workloads).await?;

    if tenant.asleep && tcp.spec.gitops.as_ref().is_some_and(|g| g.agent.is_some()) {
        gitops::sleep(client, &tenant, &ctx.settings.gitops_agent_image).await?;
    }
    let mut observation = if tenant.asleep {
        observe_asleep(&pki_state, &workloads, &sleep)
    } else {
        let gitops = Gitops {
            tcp,
            agent_image: &ctx.settings.gitops_agent_image,
        };
        let mut o = observe(client, &tenant, &pki_state, &workloads, &probe_url, &gitops).await?;
        upgrade::record(&mut o, tcp, &version, rolled_out);
        o
    };
    // A leaf renewal is due at a time no watch event announces.
    observation.due = earliest(observation.due, expiry.next_renewal);
    observation.certificates = certificates_status(&tenant, &expiry);
    record_rotations(&mut observation, sa_keys, cas, &workloads);
    if let Some(r) = restore.as_mut() {
        let pass = restore::Pass {
            held,
            recorded: restore::recorded(tcp, r),
            running: running_pods(&workloads),
            hibernated: sleep.asleep,
        };
        restore::step(tcp, ctx, &tenant, r, &pass, &mut observation).await?;
    }
    // Backups need a running etcd; one due while it sleeps runs once it wakes.
    let next_backup = if tenant.asleep || !rollout::etcd_has_quorum(&workloads.etcd) {
        None
    } else {
        backup::observe(ctx, tcp, &tenant, &mut observation).await?
    };
    for next in [sleep.next_change, next_backup]
        .into_iter()
        .flatten()
        .filter_map(|t| time::OffsetDateTime::from_unix_timestamp(t.as_second()).ok())
    {
        observation.due = Some(observation.due.map_or(next, |due| due.min(next)));
    }
    if let Some(r) = restore {
        restore::record(tcp, r, &mut observation);
    }
    Ok((observation, tenant.endpoint_url()))
}

/// PKIReady: what this pass issued, if anything.
fn pki_condition(pki_state: &pki::PkiState) -> Observed {
    if !pki_state.ca_due.is_empty() {
        let due: Vec<String> = pki_state
            .ca_due
            .iter()
            .map(|r| {
                let until = r
                    .not_after
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default();
                format!(
                    "{} {} {until}",
                    r.item,
                    if r.expired {
                        "expired at"
                    } else {
                        "expires at"
                    }
                )
            })
            .collect();
        return Observed::new(
            PKI_READY,
            false,
            "CARenewalDue",
            format!(
                "{}: a CA is never replaced silently; before then, start a CA rotation with \
                 the annotation {}=<id> (docs/ca-rotation.md), or certificates it signed stop \
                 being trusted",
                due.join("; "),
                hostplane_api::v1alpha1::ROTATE_CA_ANNOTATION
            ),
        );
    }
    Observed::new(
        PKI_READY,
        true,
        "Issued",
        if pki_state.written.is_empty() {
            "every certificate is valid and current".to_owned()
        } else {
            format!(
                "issued: {}",
                pki_state
                    .written
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        },
    )
}

/// etcd's, the API server's, the controller-manager's and the scheduler's states, each not ready
/// one with why (`explain`), and whether a problem was found.
async fn component_states(
    client: &Client,
    tenant: &Tenant,
    workloads: &Workloads,
) -> ([rollout::WorkloadState; 4], bool) {
    let mut etcd = rollout::etcd_state(&workloads.etcd);
    let mut apiserver = rollout::deployment_state(
        &build::apiserver::name(tenant),
        workloads.apiserver.as_ref(),
        "a majority of etcd members to be ready",
    );
    let kcm_name = build::controllers::name(tenant, "kube-controller-manager");
    let mut kcm = rollout::deployment_state(
        &kcm_name,
        workloads.deployment(&kcm_name),
        "the API server's rollout (one available, none of an older spec)",
    );
    let scheduler_name = build::controllers::name(tenant, "kube-scheduler");
    let mut scheduler = rollout::deployment_state(
        &scheduler_name,
        workloads.deployment(&scheduler_name),
        "the API server's rollout (one available, none of an older spec)",
    );
    let stuck = explain(
        client,
        tenant,
        [
            (&mut etcd, build::etcd::COMPONENT),
            (&mut apiserver, build::apiserver::COMPONENT),
            (&mut kcm, "kube-controller-manager"),
            (&mut scheduler, "kube-scheduler"),
        ],
    )
    .await;
    ([etcd, apiserver, kcm, scheduler], stuck)
}

/// Says why the components that are not ready are not, from their pods (listed only then): the
/// first problem `diagnose` finds becomes the state's reason and ends its message.
/// Returns whether it found a problem.
async fn explain(
    client: &Client,
    tenant: &Tenant,
    states: [(&mut rollout::WorkloadState, &str); 4],
) -> bool {
    if states.iter().all(|(s, _)| s.ready) {
        return false;
    }
    let (pods, claims) = pod_evidence(client, tenant).await;
    let mut found = false;
    for (state, component) in states {
        if state.ready {
            continue;
        }
        if let Some(problem) = crate::diagnose::component_problem(&pods, component, &claims) {
            state.reason = problem.reason;
            state.message = format!("{}: {}", state.message, problem.message);
            found = true;
        }
    }
    found
}

/// The tenant's pods and the claims of those waiting to be scheduled, for `diagnose`. A failure
/// only leaves the conditions without the why (logged): it never fails the pass.
async fn pod_evidence(
    client: &Client,
    tenant: &Tenant,
) -> (
    Vec<k8s_openapi::api::core::v1::Pod>,
    Vec<k8s_openapi::api::core::v1::PersistentVolumeClaim>,
) {
    let pods: Api<k8s_openapi::api::core::v1::Pod> =
        Api::namespaced(client.clone(), &tenant.namespace);
    let selector = format!("{}={}", build::TENANT_LABEL, tenant.name);
    let pods = match pods
        .list(&kube::api::ListParams::default().labels(&selector))
        .await
    {
        Ok(list) => list.items,
        Err(e) => {
            warn!(error = %e, "listing the tenant's pods to tell why they are not ready");
            return (Vec::new(), Vec::new());
        }
    };
    let claims_api: Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> =
        Api::namespaced(client.clone(), &tenant.namespace);
    let mut claims = Vec::new();
    for name in pods
        .iter()
        .filter(|p| crate::diagnose::unscheduled(p))
        .flat_map(crate::diagnose::claims_of)
    {
        match claims_api.get_opt(&name).await {
            Ok(Some(claim)) => claims.push(claim),
            Ok(None) => {}
            Err(e) => warn!(error = %e, claim = %name, "reading a pending pod's volume claim"),
        }
    }
    (pods, claims)
}

/// Reads what the children report and asks the tenant itself whether it is ready.
async fn observe(
    client: &Client,
    tenant: &Tenant,
    pki_state: &pki::PkiState,
    workloads: &Workloads,
    probe_url: &str,
    gitops: &Gitops<'_>,
) -> Result<Observation, Error> {
    let mut conditions = vec![pki_condition(pki_state)];
    let ([etcd, apiserver, kcm, scheduler], stuck) =
        component_states(client, tenant, workloads).await;
    conditions.push(Observed::new(
        ETCD_READY,
        etcd.ready,
        etcd.reason,
        etcd.message.clone(),
    ));
    let controllers_ready = kcm.ready && scheduler.ready;
    conditions.push(Observed::new(
        CONTROLLERS_READY,
        controllers_ready,
        if controllers_ready {
            "Available"
        } else if !kcm.ready {
            kcm.reason
        } else {
            scheduler.reason
        },
        format!("{}; {}", kcm.message, scheduler.message),
    ));

    // Ready means the tenant answers /readyz through its Service, not only that pods run.
    let inside = if apiserver.ready {
        tenant_ready_and_bootstrapped(client, tenant, &pki_state.pki, probe_url, gitops).await?
    } else {
        TenantSide {
            ready: Err(apiserver.message.clone()),
            due: None,
            addons: None,
            gitops: None,
        }
    };
    let api_ok = inside.ready.is_ok();
    conditions.push(match inside.ready {
        Ok(()) => Observed::new(
            API_SERVER_READY,
            true,
            "Ready",
            format!("/readyz answers at {probe_url}"),
        ),
        Err(why) => Observed::new(
            API_SERVER_READY,
            false,
            if apiserver.ready {
                "NotReady"
            } else {
                apiserver.reason
            },
            why,
        ),
    });
    let ready = etcd.ready && api_ok && controllers_ready;
    let waiting: Vec<&str> = conditions
        .iter()
        .filter(|c| !c.status)
        .map(|c| c.type_)
        .collect();
    conditions.push(if ready {
        Observed::new(
            READY,
            true,
            "Ready",
            "the control plane serves at its endpoint",
        )
    } else {
        Observed::new(
            READY,
            false,
            "Provisioning",
            format!("waiting for {}", waiting.join(", ")),
        )
    });
    // Addons are reported, not awaited: a control plane is Ready before it has a node.
    let mut settling = false;
    let nodes = inside.addons.map(|a| {
        settling = a.nodes.registered > 0 && !a.condition.status;
        conditions.push(a.condition);
        a.nodes
    });
    let mut due = inside.due;
    let gitops_status = GitOpsSeen::take(inside.gitops, &mut conditions, &mut due);
    let next = Next::after(
        etcd.ready && apiserver.ready && controllers_ready,
        ready,
        settling,
        stuck,
    );
    Ok(Observation {
        conditions,
        ready,
        due,
        nodes,
        next,
        hibernated: false,
        restoring: false,
        gitops: gitops_status,
        ..Observation::default()
    })
}

/// `status.gitops` after a pass: what the GitOps pass left, or (it did not run: the tenant was
/// not reached) as it was.
#[derive(Clone, Debug, Default)]
enum GitOpsSeen {
    #[default]
    Unseen,
    Seen(Option<hostplane_api::v1alpha1::GitOpsStatus>),
}

impl GitOpsSeen {
    /// The GitOps pass's status; its conditions and due time join the pass's.
    fn take(
        pass: Option<gitops::GitOpsState>,
        conditions: &mut Vec<Observed>,
        due: &mut Option<time::OffsetDateTime>,
    ) -> Self {
        match pass {
            None => Self::Unseen,
            Some(g) => {
                conditions.extend(g.conditions);
                *due = earliest(*due, g.due);
                Self::Seen(g.status)
            }
        }
    }
}

/// The earlier of two moments, either of which may be unknown.
fn earliest(
    a: Option<time::OffsetDateTime>,
    b: Option<time::OffsetDateTime>,
) -> Option<time::OffsetDateTime> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Pods of the tenant's etcd and control plane that still exist.
fn running_pods(workloads: &Workloads) -> i32 {
    rollout::running_pods(&workloads.etcd)
        + workloads
            .apiserver
            .iter()
            .chain(&workloads.controllers)
            .map(rollout::running_deployment_pods)
            .sum::<i32>()
}

/// A hibernating tenant: nothing is asked of it (it does not answer); the conditions say it
/// sleeps, and whether its pods are gone yet.
fn observe_asleep(
    pki_state: &pki::PkiState,
    workloads: &Workloads,
    sleep: &crate::hibernation::Sleep,
) -> Observation {
    let running = running_pods(workloads);
    let (reason, message) = if running == 0 {
        (
            "Hibernated",
            format!(
                "hibernated ({}): no control-plane pod runs, etcd's volume is kept; the \
                 kubeconfig works again once it wakes",
                sleep.why
            ),
        )
    } else {
        (
            "Hibernating",
            format!(
                "going to sleep ({}): {running} control-plane pod(s) still stopping",
                sleep.why
            ),
        )
    };
    let mut conditions = vec![pki_condition(pki_state)];
    for type_ in [ETCD_READY, API_SERVER_READY, CONTROLLERS_READY] {
        conditions.push(Observed::new(
            type_,
            false,
            reason,
            "hibernated: scaled to zero",
        ));
    }
    conditions.push(Observed::new(READY, false, reason, message));
    Observation {
        conditions,
        ready: false,
        due: None,
        nodes: None,
        next: if running > 0 {
            Next::SeedWorkload
        } else {
            Next::Resync
        },
        hibernated: true,
        ..Observation::default()
    }
}

/// The tenant's workloads as the seed returned them from the apply. A control-plane Deployment
/// missing here was not applied in this pass: it waits for the component before it.
struct Workloads {
    etcd: StatefulSet,
    apiserver: Option<Deployment>,
    controllers: Vec<Deployment>,
}

impl Workloads {
    fn deployment(&self, name: &str) -> Option<&Deployment> {
        self.controllers.iter().find(|d| d.name_any() == name)
    }
}

/// What the pass inside the tenant found.
struct TenantSide {
    /// Whether `/readyz` answers, or why not.
    ready: Result<(), String>,
    /// When a bootstrap token rotation is due.
    due: Option<time::OffsetDateTime>,
    addons: Option<addons::AddonsState>,
    gitops: Option<gitops::GitOpsState>,
}

/// What the GitOps pass needs besides the tenant: the TCP (its spec, status and uid) and the
/// agent's image.
struct Gitops<'a> {
    tcp: &'a TenantControlPlane,
    agent_image: &'a str,
}

/// Asks the tenant's `/readyz` through its Service; once it answers, applies what the tenant
/// needs inside (the admins' binding, node bootstrap, addons).
async fn tenant_ready_and_bootstrapped(
    client: &Client,
    tenant: &Tenant,
    pki: &crate::pki::Pki,
    probe_url: &str,
    gitops: &Gitops<'_>,
) -> Result<TenantSide, Error> {
    let kubeconfig = super_admin_kubeconfig(client, tenant).await?;
    let tenant_client = tenant_api::client(&kubeconfig, probe_url).await?;
    if let Err(why) = tenant_api::ready(&tenant_client).await {
        return Ok(TenantSide {
            ready: Err(why),
            due: None,
            addons: None,
            gitops: None,
        });
    }
    tenant_api::bootstrap(&tenant_client).await?;
    let due = node_join::ensure(client, &tenant_client, tenant, pki).await?;
    let addons = addons::ensure(&tenant_client, tenant).await?;
    let ca_pem = pki.trust_bundle_pem(crate::pki::CaItem::Cluster);
    let inputs = gitops::Inputs {
        tcp: gitops.tcp,
        tenant,
        ca_pem: &ca_pem,
        agent_image: gitops.agent_image,
    };
    let gitops = gitops::ensure(client, &tenant_client, &inputs).await;
    Ok(TenantSide {
        ready: Ok(()),
        due: Some(due),
        addons: Some(addons),
        gitops: Some(gitops),
    })
}

/// What a pass already holds before it applies the children: the Secrets as listed at its start
/// and as `pki::ensure` wrote them, and the apiserver Service it applied first (for the endpoint).
struct Applied<'a> {
    secrets: &'a std::collections::BTreeMap<String, Secret>,
    service: &'a Service,
    /// An upgrade is under way: the controllers wait for the API server's whole rollout.
    upgrading: bool,
}

/// Applies every child, in rollout order (see [`rollout`]): the API server only once etcd has a
/// majority ready, the controllers only once the API server's rollout is over. Skipping an apply
/// removes nothing: a running component keeps running, its update waits. What `applied` holds
/// unchanged is not applied again.
async fn apply_children(
    client: &Client,
    tenant: &Tenant,
    children: &build::Children,
    applied: &Applied<'_>,
) -> Result<Workloads, Error> {
    let build::Children {
        secrets,
        services,
        statefulsets,
        deployments,
        pdbs,
        network_policies,
    } = children;
    for s in secrets {
        if applied
            .secrets
            .get(&s.name_any())
            .is_some_and(|current| apply::already_applied(s, current))
        {
            continue;
        }
        apply::apply(client, s).await?;
    }
    for s in services.iter().filter(|s| *s != applied.service) {
        apply::apply(client, s).await?;
    }
    for p in network_policies {
        apply::apply(client, p).await?;
    }
    if tenant.asleep {
        return scale_to_zero(client, tenant, statefulsets, deployments).await;
    }
    let mut etcd = None;
    for s in statefulsets {
        etcd = Some(apply::apply(client, s).await?);
    }
    let etcd = etcd.ok_or_else(|| Error::Conflict("no etcd StatefulSet was built".to_owned()))?;
    let apiserver_name = build::apiserver::name(tenant);
    let mut apiserver = None;
    if rollout::etcd_has_quorum(&etcd)
        && let Some(d) = deployments.iter().find(|d| d.name_any() == apiserver_name)
    {
        apiserver = Some(apply::apply(client, d).await?);
    }
    let mut controllers = Vec::new();
    let gate = if applied.upgrading {
        rollout::rolled_out
    } else {
        rollout::serves
    };
    if apiserver.as_ref().is_some_and(gate) {
        for d in deployments
            .iter()
            .filter(|d| d.name_any() != apiserver_name)
        {
            controllers.push(apply::apply(client, d).await?);
        }
    }
    for p in pdbs {
        apply::apply(client, p).await?;
    }
    Ok(Workloads {
        etcd,
        apiserver,
        controllers,
    })
}

/// Hibernation: every Deployment at zero first, then etcd (its volume stays: `whenScaled:
/// Retain`). No rollout order applies: nothing is started.
async fn scale_to_zero(
    client: &Client,
    tenant: &Tenant,
    statefulsets: &[StatefulSet],
    deployments: &[Deployment],
) -> Result<Workloads, Error> {
    let apiserver_name = build::apiserver::name(tenant);
    let mut apiserver = None;
    let mut controllers = Vec::new();
    for d in deployments {
        let applied = apply::apply(client, d).await?;
        if d.name_any() == apiserver_name {
            apiserver = Some(applied);
        } else {
            controllers.push(applied);
        }
    }
    let mut etcd = None;
    for s in statefulsets {
        etcd = Some(apply::apply(client, s).await?);
    }
    let etcd = etcd.ok_or_else(|| Error::Conflict("no etcd StatefulSet was built".to_owned()))?;
    Ok(Workloads {
        etcd,
        apiserver,
        controllers,
    })
}

/// The address users reach: the ClusterIP for ClusterIP Services, a node address + node port for
/// NodePort, the load balancer's address for LoadBalancer.
async fn endpoint_of(
    client: &Client,
    service: &Service,
    cluster_ip: &str,
) -> Result<Endpoint, Error> {
    let spec = service.spec.as_ref();
    let port = spec
        .and_then(|s| s.ports.as_ref())
        .and_then(|p| p.first())
        .ok_or_else(|| Error::Conflict(format!("Service {} has no port", service.name_any())))?;
    match spec.and_then(|s| s.type_.as_deref()) {
        Some("NodePort") => {
            let node_port = port.node_port.ok_or_else(|| {
                Error::Conflict(format!(
                    "Service {} has no node port yet",
                    service.name_any()
                ))
            })?;
            Ok(Endpoint {
                host: node_address(client).await?,
                port: u16::try_from(node_port).unwrap_or_default(),
            })
        }
        Some("LoadBalancer") => {
            let ingress = service
                .status
                .as_ref()
                .and_then(|s| s.load_balancer.as_ref())
                .and_then(|lb| lb.ingress.as_ref())
                .and_then(|i| i.first())
                .and_then(|i| i.ip.clone().or_else(|| i.hostname.clone()));
            let host = ingress.ok_or_else(|| {
                Error::Conflict(format!(
                    "Service {} has no load balancer address yet",
                    service.name_any()
                ))
            })?;
            Ok(Endpoint {
                host,
                port: u16::try_from(port.port).unwrap_or_default(),
            })
        }
        _ => Ok(Endpoint {
            host: cluster_ip.to_owned(),
            port: u16::try_from(port.port).unwrap_or_default(),
        }),
    }
}

/// The InternalIP of a Ready node: where a NodePort answers.
async fn node_address(client: &Client) -> Result<String, Error> {
    let nodes = Api::<Node>::all(client.clone())
        .list(&kube::api::ListParams::default())
        .await
        .map_err(Error::kube("list", "Node", "*"))?;
    let ready = |n: &Node| {
        n.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    };
    nodes
        .items
        .iter()
        .filter(|n| ready(n))
        .filter_map(|n| n.status.as_ref()?.addresses.as_ref())
        .flatten()
        .find(|a| a.type_ == "InternalIP")
        .map(|a| a.address.clone())
        .ok_or_else(|| {
            Error::Conflict("no Ready node has an InternalIP for the NodePort endpoint".to_owned())
        })
}

async fn super_admin_kubeconfig(client: &Client, tenant: &Tenant) -> Result<String, Error> {
    let name = build::kubeconfig::SUPER_ADMIN_SECRET_SUFFIX;
    let name = format!("{}-{name}", tenant.name);
    let secret = Api::<Secret>::namespaced(client.clone(), &tenant.namespace)
        .get(&name)
        .await
        .map_err(Error::kube("get", "Secret", &name))?;
    let value = secret
        .data
        .as_ref()
        .and_then(|d| d.get(build::kubeconfig::KUBECONFIG_KEY))
        .ok_or_else(|| Error::Conflict(format!("Secret {name} has no kubeconfig yet")))?;
    String::from_utf8(value.0.clone()).map_err(|e| Error::Tenant(format!("Secret {name}: {e}")))
}

/// `status.certificates` from a pass's PKI.
fn certificates_status(
    tenant: &Tenant,
    expiry: &crate::pki::Expiry,
) -> Option<hostplane_api::v1alpha1::CertificatesStatus> {
    let rfc3339 = |t: time::OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .ok()
    };
    let (item, not_after) = expiry.earliest?;
    Some(hostplane_api::v1alpha1::CertificatesStatus {
        earliest_expiry: rfc3339(not_after)?,
        earliest_expiry_secret: item.secret_name(&tenant.name),
        next_renewal: expiry.next_renewal.and_then(rfc3339),
    })
}

async fn write_status(
    tcp: &TenantControlPlane,
    ctx: &Context,
    observation: &Observation,
    endpoint: Option<String>,
    failed: bool,
) -> Result<(), Error> {
    let old = tcp.status.as_ref();
    let phase = if observation.restoring {
        Phase::Restoring
    } else if observation.hibernated {
        Phase::Hibernated
    } else if !failed
        && observation.version.as_ref().map_or_else(
            // A pass that failed half-way does not end an upgrade.
            || old.and_then(|s| s.phase) == Some(Phase::Upgrading),
            |v| v.upgrading,
        )
    {
        Phase::Upgrading
    } else {
        status::phase(observation.ready, failed)
    };
    // A Paused condition stays only while the TCP is paused.
    let current: Vec<_> = old
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default()
        .iter()
        .filter(|c| c.type_ != status::PAUSED)
        .filter(|c| {
            let gitops = tcp.spec.gitops.as_ref();
            (c.type_ != gitops::ADDONS_DELIVERED || gitops.is_some_and(|g| g.agent.is_some()))
                && (c.type_ != gitops::REGISTRATIONS_READY
                    || gitops.is_some_and(|g| !g.registrations.is_empty()))
        })
        .cloned()
        .collect();
    let new = TenantControlPlaneStatus {
        phase: Some(phase),
        conditions: status::merge_conditions(
            &current,
            &observation.conditions,
            tcp.metadata.generation,
            Timestamp::now(),
        ),
        observed_generation: tcp.metadata.generation,
        endpoint,
        version: observation
            .version
            .as_ref()
            .and_then(|v| v.running.clone())
            .or_else(|| old.and_then(|s| s.version.clone())),
        kubeconfig_secret_ref: Some(SecretReference {
            name: format!("{}-kubeconfig", tcp.name_any()),
        }),
        // Kept from before when this pass did not reach inside the tenant.
        nodes: observation
            .nodes
            .clone()
            .or_else(|| old.and_then(|s| s.nodes.clone())),
        backup: observation
            .backup
            .clone()
            .or_else(|| old.and_then(|s| s.backup.clone())),
        gitops: match &observation.gitops {
            GitOpsSeen::Seen(status) => status.clone(),
            GitOpsSeen::Unseen => old.and_then(|s| s.gitops.clone()),
        },
        certificates: observation
            .certificates
            .clone()
            .or_else(|| old.and_then(|s| s.certificates.clone())),
        service_account_key: observation
            .service_account_key
            .clone()
            .or_else(|| old.and_then(|s| s.service_account_key.clone())),
        ca_rotation: observation
            .ca_rotation
            .clone()
            .or_else(|| old.and_then(|s| s.ca_rotation.clone())),
    };
    if !status::needs_write(old, &new) {
        return Ok(());
    }
    patch_status(tcp, ctx, &new).await?;
    if let (Some(from), Some(to)) = (old.and_then(|s| s.version.as_deref()), &new.version)
        && from != to
    {
        let note = format!("every control-plane component runs {to} (was {from})");
        info!(from, to = %to, "upgraded");
        publish(tcp, ctx, EventType::Normal, "Upgraded", Some(note)).await;
    }
    if old.and_then(|s| s.phase) != Some(phase) {
        let ready = observation.conditions.iter().find(|c| c.type_ == READY);
        let type_ = if failed {
            EventType::Warning
        } else {
            EventType::Normal
        };
        let note = ready.map(|c| c.message.clone());
        publish(tcp, ctx, type_, &format!("{phase:?}"), note).await;
        info!(phase = ?phase, "phase changed");
    }
    Ok(())
}

/// Writes `status` (a merge patch of the status subresource, from the status `tcp` has: fields
/// it has that `status` has not are removed).
async fn patch_status(
    tcp: &TenantControlPlane,
    ctx: &Context,
    status: &TenantControlPlaneStatus,
) -> Result<(), Error> {
    let name = tcp.name_any();
    let api: Api<TenantControlPlane> =
        Api::namespaced(ctx.client.clone(), &tcp.namespace().unwrap_or_default());
    api.patch_status(
        &name,
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({
            "status": crate::status::merge_patch(
                &serde_json::to_value(&tcp.status).unwrap_or_default(),
                &serde_json::to_value(status).unwrap_or_default(),
            )
        })),
    )
    .await
    .map_err(Error::kube("patch status of", "TenantControlPlane", &name))?;
    Ok(())
}

/// Publishes an Event about the TCP; a failure is logged, never the pass's error.
async fn publish(
    tcp: &TenantControlPlane,
    ctx: &Context,
    type_: EventType,
    reason: &str,
    note: Option<String>,
) {
    publish_action(tcp, ctx, type_, reason, "Reconcile", note).await;
}

/// An Event with its own action. kube-runtime's recorder folds Events of the same object, type,
/// reason and action into one series that keeps the first note: steps of one procedure that
/// follow each other within minutes need an action each, or only the first step's note shows.
async fn publish_action(
    tcp: &TenantControlPlane,
    ctx: &Context,
    type_: EventType,
    reason: &str,
    action: &str,
    note: Option<String>,
) {
    let event = Event {
        type_,
        reason: reason.to_owned(),
        note,
        action: action.to_owned(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &tcp.object_ref(&())).await {
        warn!(error = %e, "publishing an Event failed");
    }
}

/// Per-object exponential backoff (kube-runtime has none): 5 s doubling to 5 minutes. An error
/// no retry can fix waits for a change of the object instead.
#[expect(
    clippy::needless_pass_by_value,
    reason = "the signature kube-runtime calls"
)]
fn error_policy(tcp: Arc<TenantControlPlane>, error: &Error, ctx: Arc<Context>) -> Action {
    if error.is_permanent() {
        return Action::await_change();
    }
    let n = ctx.failures.lock().map_or(1, |mut f| {
        let n = f.entry(ObjectRef::from(tcp.as_ref())).or_insert(0);
        *n = n.saturating_add(1);
        *n
    });
    let secs = 5u64
        .saturating_mul(1u64 << n.min(6).saturating_sub(1))
        .min(300);
    Action::requeue(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{Next, jittered};

    #[test]
    fn pods_that_are_not_ready_are_looked_at_again_within_a_minute_problem_or_not() {
        // workloads ready, tenant ready, settling, a problem named
        for stuck in [false, true] {
            let next = Next::after(false, false, false, stuck);
            assert_eq!(next, Next::PodsNotReady);
            assert!(next.wait(Some("uid")) <= Duration::from_secs(66));
        }
        assert_eq!(Next::after(true, false, false, false), Next::TenantAnswer);
        assert_eq!(Next::after(true, true, true, false), Next::NodesSettling);
        assert_eq!(Next::after(true, true, false, false), Next::Resync);
        assert!(Next::Resync.wait(Some("uid")) >= Duration::from_secs(540));
    }

    #[test]
    fn resyncs_spread_between_nine_and_eleven_tenths_of_the_period() {
        let periods: Vec<Duration> = (0..200)
            .map(|i| jittered(600, Some(&format!("uid-{i}"))))
            .collect();
        assert!(
            periods
                .iter()
                .all(|p| (Duration::from_secs(540)..=Duration::from_secs(660)).contains(p))
        );
        let (min, max) = (periods.iter().min(), periods.iter().max());
        assert!(
            max.zip(min)
                .is_some_and(|(max, min)| max.saturating_sub(*min) > Duration::from_secs(100)),
            "200 tenants should spread over most of the window: {min:?}..{max:?}"
        );
        // The same tenant, the same period: no drift from pass to pass.
        assert_eq!(jittered(600, Some("a")), jittered(600, Some("a")));
    }
}
