//! The staged rotation of a root of trust, as one pure state machine shared by the
//! service-account key (`sa_keys`) and the CAs (`ca_rotation`):
//!
//! 1. *Preparing* — a new root is trusted beside the old one, which still signs; the
//!    components roll.
//! 2. *Rotating* — once every component trusts it, the new root signs; the old one is still
//!    trusted. Once the switch's rollout is over (nothing signs with the old root any more), its
//!    retirement is scheduled: then plus the longest lifetime of what it signed.
//! 3. *Completing* — at that time, or when the user confirms earlier, the old root is no longer
//!    trusted; the components roll and refuse what it signed.

use time::{Duration, OffsetDateTime};

/// Where a rotation is, as the stored state tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotationPhase {
    /// One root signs and is the only one trusted.
    Settled,
    /// A new root is trusted, not yet signing.
    Preparing,
    /// The new root signs; the old one is still trusted.
    Rotating,
}

/// What the user asked, by annotation.
#[derive(Debug, Clone, Copy, Default)]
pub struct RotationRequest<'a> {
    /// A rotation with this id (the rotate annotation).
    pub rotate: Option<&'a str>,
    /// Retire the old root of the rotation with this id now, not at its scheduled time (the
    /// complete annotation).
    pub complete: Option<&'a str>,
}

/// One step of a rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RotationStep {
    /// A new root, trusted only (Settled → Preparing).
    Start(String),
    /// The new root signs; the old one stays trusted (Preparing → Rotating).
    Switch,
    /// Nothing signs with the old root any more: it is retired after this time (a bookkeeping
    /// step inside Rotating; no pod mounts the key `rotation.retire-after`).
    Schedule(OffsetDateTime),
    /// The old root is no longer trusted (Rotating → Settled).
    Retire,
}

/// The state of a root's rotation kept beside it: `N` is the root that will sign (a key, a
/// CA), `previous` what signed before, as trusted (public key or certificate DER).
#[derive(Debug)]
pub struct Rotation<N> {
    /// The root that will sign, trusted already (phase Preparing).
    pub(crate) next: Option<N>,
    /// What signed before the signer, still trusted (phase Rotating).
    pub(crate) previous: Vec<Vec<u8>>,
    /// The last rotation started.
    pub(crate) id: Option<String>,
    /// When `previous` may go.
    pub(crate) retire_after: Option<OffsetDateTime>,
}

impl<N> Default for Rotation<N> {
    fn default() -> Self {
        Self {
            next: None,
            previous: Vec::new(),
            id: None,
            retire_after: None,
        }
    }
}

impl<N> Rotation<N> {
    /// The phase the stored state is in.
    #[must_use]
    pub fn phase(&self) -> RotationPhase {
        if self.next.is_some() {
            RotationPhase::Preparing
        } else if self.previous.is_empty() {
            RotationPhase::Settled
        } else {
            RotationPhase::Rotating
        }
    }

    /// The state [`decide`] reads.
    #[must_use]
    pub fn stage(&self) -> Stage<'_> {
        Stage {
            phase: self.phase(),
            id: self.id(),
            retire_after: self.retire_after,
        }
    }

    /// Carries out `step` on the stored state beside `signer`, the root that signs: `Start`
    /// keeps `new` (made only then) as the next root; `Switch` makes it the signer and keeps what
    /// `trusted` says of the old one as trusted.
    pub(crate) fn take_step<E>(
        &mut self,
        step: &RotationStep,
        signer: &mut N,
        new: impl FnOnce(&N) -> Result<N, E>,
        trusted: impl FnOnce(N) -> Vec<u8>,
    ) -> Result<(), E> {
        match step {
            RotationStep::Start(id) => {
                self.next = Some(new(signer)?);
                self.id = Some(id.clone());
                self.retire_after = None;
            }
            RotationStep::Switch => {
                if let Some(next) = self.next.take() {
                    let old = std::mem::replace(signer, next);
                    self.previous.push(trusted(old));
                    self.retire_after = None;
                }
            }
            RotationStep::Schedule(retire_after) => self.retire_after = Some(*retire_after),
            RotationStep::Retire => {
                self.previous.clear();
                self.retire_after = None;
            }
        }
        Ok(())
    }

    /// The last rotation started, if any.
    #[must_use]
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// When what signed before leaves, while Rotating (None: only when the user confirms).
    #[must_use]
    pub const fn retire_after(&self) -> Option<OffsetDateTime> {
        self.retire_after
    }
}

/// The stored state of one root's rotation, as [`decide`] reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stage<'a> {
    /// The phase.
    pub phase: RotationPhase,
    /// The last rotation started.
    pub id: Option<&'a str>,
    /// When the old root goes, once scheduled.
    pub retire_after: Option<OffsetDateTime>,
}

/// The next step, if one is due. `settled_at`: when every component that trusts or uses the
/// root runs with the state as stored now and the pods of before have stopped (their rollout is
/// over and their grace period passed), if it is known. `max_lifetime`: the longest lifetime of
/// anything the old root signed (a token, a certificate).
#[must_use]
pub fn decide(
    stage: Stage<'_>,
    request: RotationRequest<'_>,
    settled_at: Option<OffsetDateTime>,
    now: OffsetDateTime,
    max_lifetime: Duration,
) -> Option<RotationStep> {
    let current = settled_at.is_some_and(|t| now >= t);
    match stage.phase {
        RotationPhase::Settled => request
            .rotate
            .filter(|id| !id.is_empty() && stage.id != Some(*id))
            .map(|id| RotationStep::Start(id.to_owned())),
        // Until every component trusts the new root, what it signs could be refused.
        RotationPhase::Preparing => current.then_some(RotationStep::Switch),
        // Until nothing signs with the old root, neither the expiry of the last thing it signed
        // is known nor may it go.
        RotationPhase::Rotating if !current => None,
        RotationPhase::Rotating => match (stage.retire_after, settled_at) {
            (None, Some(settled)) => Some(RotationStep::Schedule(settled + max_lifetime)),
            (retire_after, _) => {
                let confirmed = request.complete.is_some() && request.complete == stage.id;
                let due = retire_after.is_some_and(|t| now >= t);
                (confirmed || due).then_some(RotationStep::Retire)
            }
        },
    }
}
