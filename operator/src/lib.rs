//! The Hostplane operator's library: the pure building blocks the controller uses.

pub mod pki;
