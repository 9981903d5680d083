//! The Hostplane operator's library: the pure building blocks the controller uses.

pub mod backup;
pub mod build;
pub mod controller;
pub mod diagnose;
pub mod hibernation;
pub mod leader;
pub mod metrics;
pub mod pki;
#[cfg(test)]
mod proptests;
pub mod rollout;
pub mod s3;
pub mod schedule;
pub mod snapshot;
pub mod status;
pub mod upgrade;
