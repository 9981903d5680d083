//! `hostplane.dev/v1alpha1`.

mod gitops;
mod tenant_control_plane;

pub use gitops::*;
pub use tenant_control_plane::*;
