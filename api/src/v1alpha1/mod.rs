//! `hostplane.dev/v1alpha1`.

mod tenant_control_plane;

pub use tenant_control_plane::*;
