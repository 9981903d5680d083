//! How long one tenant PKI takes: `cargo run --release -p hostplane-operator --example pki_bench`.
//!
//! Measures, each averaged over 20 runs after one warm-up run:
//! - a full PKI from nothing (`plan` on no Secrets + `execute`: 14 ECDSA P-256 keys, 13 certs);
//! - the steady state every reconcile pays: `plan` on a complete PKI (read 14 Secrets, verify 10
//!   signatures, all kept), and `execute` of that all-keep plan.
//!
//! Wall time from `std::time::Instant`; process CPU time from `clock_gettime`
//! (`CLOCK_PROCESS_CPUTIME_ID`, through the `cpu-time` crate).

use std::error::Error;
use std::time::{Duration, Instant};

use cpu_time::ProcessTime;
use hostplane_operator::pki::{ExistingSecrets, Pki, PkiInputs, Plan, execute, plan};
use time::OffsetDateTime;

const RUNS: u32 = 20;

type BoxResult<T> = Result<T, Box<dyn Error>>;

/// Runs `f` `RUNS` times; prints average wall and CPU time per run.
fn bench<T>(what: &str, mut f: impl FnMut() -> BoxResult<T>) -> BoxResult<()> {
    let mut wall = Vec::new();
    let cpu_start = ProcessTime::try_now()?;
    for _ in 0..RUNS {
        let start = Instant::now();
        std::hint::black_box(f()?);
        wall.push(start.elapsed());
    }
    let cpu = cpu_start.try_elapsed()?;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let total: Duration = wall.iter().sum();
    let min = wall.iter().min().copied().unwrap_or_default();
    let max = wall.iter().max().copied().unwrap_or_default();
    println!("{what}");
    println!(
        "  wall: avg {:.3} ms (min {:.3}, max {:.3}); CPU: avg {:.3} ms",
        ms(total / RUNS),
        ms(min),
        ms(max),
        ms(cpu / RUNS)
    );
    Ok(())
}

fn main() -> BoxResult<()> {
    let mut inputs = PkiInputs::new("bench", "tenants", "10.96.0.1".parse()?);
    inputs.endpoint_host = Some("bench.example.com".to_owned());
    let now = OffsetDateTime::now_utc();
    let nothing = ExistingSecrets::new();
    let full = || -> BoxResult<Pki> { Ok(execute(plan(&inputs, &nothing, now)?, now)?) };

    // Warm-up (page faults, lazy statics), and the Secrets of a complete PKI.
    let stored = full()?.to_secret_data();
    let steady_plan = || -> BoxResult<Plan> {
        let kept = plan(&inputs, &stored, now)?;
        if !kept.is_all_keep() {
            return Err("a complete PKI did not plan all-keep".into());
        }
        Ok(kept)
    };

    println!("pki_bench: {RUNS} runs each, one thread");
    bench(
        "full PKI from nothing (plan + execute: 14 P-256 keys, 13 certificates)",
        full,
    )?;
    bench(
        "steady state: plan on a complete PKI (all keep)",
        steady_plan,
    )?;
    let mut plans = (0..RUNS)
        .map(|_| steady_plan())
        .collect::<BoxResult<Vec<_>>>()?;
    bench(
        "steady state: execute an all-keep plan (no key generated)",
        || Ok(execute(plans.pop().ok_or("no plan left")?, now)?),
    )?;
    Ok(())
}
