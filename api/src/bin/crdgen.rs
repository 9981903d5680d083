//! Prints the TenantControlPlane CRD as YAML. Regenerate the checked-in copy from the workspace
//! root with:
//!
//! ```sh
//! cargo run -q -p hostplane-api --bin crdgen > crds/hostplane.dev_tenantcontrolplanes.yaml
//! ```

use std::io::Write as _;
use std::process::ExitCode;

fn main() -> ExitCode {
    let yaml = match hostplane_api::crd_yaml() {
        Ok(yaml) => yaml,
        Err(err) => {
            eprintln!("crdgen: cannot serialise the CRD: {err}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(err) = std::io::stdout().lock().write_all(yaml.as_bytes()) {
        eprintln!("crdgen: cannot write the CRD: {err}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
