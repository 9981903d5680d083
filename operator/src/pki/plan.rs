//! Deciding what to keep, issue or re-issue — without generating anything.

use std::collections::BTreeMap;

use time::OffsetDateTime;

use super::action::{Action, CaRenewal, ReissueReason};
use super::ca_rotation::{self, CaRotation};
use super::error::{PkiError, RootDefect, RootProblem};
use super::inputs::{PkiInputs, Validity};
use super::inspect::{CertInfo, is_signed_by};
use super::issue::CertKeyPair;
use super::item::{ByCa, CaItem, Item, ItemKind};
use super::key::PrivateKey;
use super::profile::{CertSpec, Usage, cert_spec};
use super::sa_keys::SaRotation;
use super::secrets::{ExistingSecrets, load_cert, load_service_account, rotation_id};

/// What [`execute`](super::execute) will do, item by item.
#[derive(Debug)]
pub struct Plan {
    pub(crate) cas: ByCa<Planned<CertStep>>,
    pub(crate) service_account: Planned<SaStep>,
    /// Every leaf item with the CA that signs it.
    pub(crate) leaves: BTreeMap<Item, (CaItem, Planned<CertStep>)>,
    pub(crate) ca_renewals: Vec<CaRenewal>,
    /// The rotation state beside each CA (a CA issued now keeps only the last rotation's name).
    pub(crate) ca_rotations: ByCa<CaRotation>,
    pub(crate) validity: Validity,
}

#[derive(Debug)]
pub(crate) struct Planned<S> {
    pub(crate) action: Action,
    pub(crate) step: S,
}

#[derive(Debug)]
pub(crate) enum CertStep {
    Keep(CertKeyPair),
    Issue(CertSpec),
}

#[derive(Debug)]
pub(crate) enum SaStep {
    Keep(PrivateKey, SaRotation),
    /// A new key; the name of the last rotation, if the replaced Secret told it.
    Generate(Option<String>),
}

impl Plan {
    /// The action for every item, roots first.
    #[must_use]
    pub fn actions(&self) -> Vec<(Item, &Action)> {
        let cas = CaItem::ALL.map(|ca| (ca.item(), &self.cas.get(ca).action));
        cas.into_iter()
            .chain([(Item::ServiceAccount, &self.service_account.action)])
            .chain(
                self.leaves
                    .iter()
                    .map(|(item, (_, planned))| (*item, &planned.action)),
            )
            .collect()
    }

    /// The action for `item`.
    #[must_use]
    pub fn action(&self, item: Item) -> Option<&Action> {
        match item.kind() {
            ItemKind::Ca(ca) => Some(&self.cas.get(ca).action),
            ItemKind::ServiceAccountKey => Some(&self.service_account.action),
            ItemKind::Leaf { .. } => self.leaves.get(&item).map(|(_, planned)| &planned.action),
        }
    }

    /// The items [`execute`](super::execute) will generate, roots first.
    #[must_use]
    pub fn to_generate(&self) -> Vec<Item> {
        self.actions()
            .into_iter()
            .filter(|(_, action)| **action != Action::Keep)
            .map(|(item, _)| item)
            .collect()
    }

    /// Whether everything is kept: executing the plan generates nothing.
    #[must_use]
    pub fn is_all_keep(&self) -> bool {
        self.to_generate().is_empty()
    }

    /// CAs due for renewal: reported, not rotated.
    #[must_use]
    pub fn ca_renewals(&self) -> &[CaRenewal] {
        &self.ca_renewals
    }
}

/// Decides, for every item of the PKI described by `inputs`, whether the Secret data in
/// `existing` is kept, issued or re-issued at `now`. Generates nothing.
///
/// Fails with [`PkiError::RootsUnavailable`] — and plans nothing — when a CA or the
/// service-account key is missing while any other PKI Secret exists, or is present but unusable,
/// unless `inputs.accept_new_roots` names it.
pub fn plan(
    inputs: &PkiInputs,
    existing: &ExistingSecrets,
    now: OffsetDateTime,
) -> Result<Plan, PkiError> {
    inputs.validate()?;
    let ctx = Ctx {
        inputs,
        existing,
        now,
    };
    let mut ca_renewals = Vec::new();
    let cas = ByCa::try_new(|ca| {
        Ok::<_, PkiError>(ctx.plan_ca(ca, spec(ca.item(), inputs)?, &mut ca_renewals))
    })?;
    let service_account = ctx.plan_service_account();
    let problems: Vec<RootProblem> = [&cas.cluster, &cas.front_proxy, &cas.etcd]
        .into_iter()
        .filter_map(|planned| planned.as_ref().err())
        .chain(service_account.as_ref().err())
        .cloned()
        .collect();
    if !problems.is_empty() {
        return Err(PkiError::RootsUnavailable(problems));
    }
    let cas =
        cas.into_map(|_, planned| planned.map_err(|p| PkiError::RootsUnavailable(vec![p])))?;
    let service_account = service_account.map_err(|p| PkiError::RootsUnavailable(vec![p]))?;
    let leaves = Item::ALL
        .into_iter()
        .filter_map(|item| match item.kind() {
            ItemKind::Leaf { issuer } => Some((item, issuer)),
            _ => None,
        })
        .map(|(item, issuer)| {
            let planned = ctx.plan_leaf(item, spec(item, inputs)?, cas.get(issuer));
            Ok((item, (issuer, planned)))
        })
        .collect::<Result<_, PkiError>>()?;
    // A CA issued now (first creation, or a lost one replaced with consent) keeps the name of the
    // last rotation, from its old Secret or the other CAs': the annotation that asked for it is
    // not taken as a new request.
    let last_rotation = CaItem::ALL
        .iter()
        .find_map(|ca| existing.get(&ca.item()).and_then(rotation_id));
    let ca_rotations = ByCa::try_new(|ca| {
        let data = existing.get(&ca.item());
        Ok::<_, PkiError>(match (&cas.get(ca).step, data) {
            (CertStep::Keep(signer), Some(data)) => ca_rotation::load(ca.item(), data, signer),
            (_, data) => CaRotation::named(data.and_then(rotation_id).or(last_rotation.clone())),
        })
    })?;
    Ok(Plan {
        cas,
        service_account,
        leaves,
        ca_rotations,
        ca_renewals,
        validity: inputs.validity,
    })
}

fn spec(item: Item, inputs: &PkiInputs) -> Result<CertSpec, PkiError> {
    cert_spec(item, inputs)?
        .ok_or_else(|| PkiError::InvalidInput(format!("{item} has no certificate")))
}

struct Ctx<'a> {
    inputs: &'a PkiInputs,
    existing: &'a ExistingSecrets,
    now: OffsetDateTime,
}

impl Ctx<'_> {
    /// A root cannot be kept: replace it if the user accepted that, else it is a problem.
    fn replace_root(&self, item: Item, defect: RootDefect) -> Result<Action, RootProblem> {
        if self.inputs.accept_new_roots.contains(&item) {
            Ok(Action::Reissue(ReissueReason::ReplacementAccepted(defect)))
        } else {
            Err(RootProblem {
                item,
                secret: item.secret_name(&self.inputs.tcp_name),
                defect,
            })
        }
    }

    /// The action for a root whose Secret is absent: issue on first creation (no PKI Secret at
    /// all), else a replacement that needs consent.
    fn missing_root(&self, item: Item) -> Result<Action, RootProblem> {
        if self.existing.is_empty() {
            return Ok(Action::Issue);
        }
        let present = self
            .existing
            .keys()
            .map(|other| other.secret_name(&self.inputs.tcp_name))
            .collect();
        self.replace_root(item, RootDefect::Missing { present })
    }

    fn plan_ca(
        &self,
        ca: CaItem,
        spec: CertSpec,
        ca_renewals: &mut Vec<CaRenewal>,
    ) -> Result<Planned<CertStep>, RootProblem> {
        let item = ca.item();
        let issue = |action| Planned {
            action,
            step: CertStep::Issue(spec),
        };
        let Some(data) = self.existing.get(&item) else {
            return self.missing_root(item).map(issue);
        };
        let loaded = load_cert(item, data)
            .map_err(|err| err.to_string())
            .and_then(|(cert, info)| match info.usage {
                Some(Usage::Ca) => Ok((cert, info)),
                _ => Err("its certificate is not a CA (basicConstraints CA:true)".to_owned()),
            });
        match loaded {
            Ok((cert, info)) => {
                let renew_at = self.renew_at(&info);
                if self.now >= renew_at {
                    ca_renewals.push(CaRenewal {
                        item,
                        renew_at,
                        not_after: info.not_after,
                        expired: self.now >= info.not_after,
                    });
                }
                Ok(Planned {
                    action: Action::Keep,
                    step: CertStep::Keep(cert),
                })
            }
            Err(reason) => self
                .replace_root(item, RootDefect::Unusable(reason))
                .map(issue),
        }
    }

    fn plan_service_account(&self) -> Result<Planned<SaStep>, RootProblem> {
        let item = Item::ServiceAccount;
        let Some(data) = self.existing.get(&item) else {
            return self.missing_root(item).map(|action| Planned {
                action,
                step: SaStep::Generate(None),
            });
        };
        match load_service_account(data) {
            Ok((key, rotation)) => Ok(Planned {
                action: Action::Keep,
                step: SaStep::Keep(key, rotation),
            }),
            Err(err) => self
                .replace_root(item, RootDefect::Unusable(err.to_string()))
                .map(|action| Planned {
                    action,
                    step: SaStep::Generate(rotation_id(data)),
                }),
        }
    }

    fn plan_leaf(
        &self,
        item: Item,
        spec: CertSpec,
        issuer: &Planned<CertStep>,
    ) -> Planned<CertStep> {
        let action = match self.existing.get(&item) {
            None => Action::Issue,
            Some(data) => match load_cert(item, data) {
                Err(err) => Action::Reissue(err.into()),
                Ok((cert, info)) => match self.leaf_defect(&spec, &cert, &info, issuer) {
                    Some(reason) => Action::Reissue(reason),
                    None => {
                        return Planned {
                            action: Action::Keep,
                            step: CertStep::Keep(cert),
                        };
                    }
                },
            },
        };
        Planned {
            action,
            step: CertStep::Issue(spec),
        }
    }

    /// Why a readable leaf cannot be kept, if it cannot.
    fn leaf_defect(
        &self,
        spec: &CertSpec,
        cert: &CertKeyPair,
        info: &CertInfo,
        issuer: &Planned<CertStep>,
    ) -> Option<ReissueReason> {
        let CertStep::Keep(ca) = &issuer.step else {
            return Some(ReissueReason::IssuerReplaced);
        };
        if !is_signed_by(&cert.der, &ca.der) {
            return Some(ReissueReason::NotSignedByCurrentCa);
        }
        let organizations: Vec<&str> = spec.organization.into_iter().collect();
        if info.common_name.as_deref() != Some(spec.common_name)
            || info.organizations != organizations
        {
            return Some(ReissueReason::SubjectChanged);
        }
        if info.usage != Some(spec.usage) {
            return Some(ReissueReason::UsageChanged);
        }
        if info.sans != spec.sans {
            return Some(ReissueReason::SansChanged {
                added: spec.sans.difference(&info.sans).cloned().collect(),
                removed: info.sans.difference(&spec.sans).cloned().collect(),
            });
        }
        let renew_at = self.renew_at(info);
        if self.now >= renew_at {
            return Some(ReissueReason::InRenewalWindow {
                renew_at,
                not_after: info.not_after,
            });
        }
        None
    }

    fn renew_at(&self, info: &CertInfo) -> OffsetDateTime {
        self.inputs
            .validity
            .renewal
            .renew_at(info.not_before, info.not_after)
    }
}
