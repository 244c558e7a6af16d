//! Deterministic simulation of a district's phones syncing through lost
//! requests, lost replies, 503s, captive portals, truncated replies and
//! app kills (see gridwork_tests::sim).
//!
//! Replay one seed:    GRIDWORK_SIM_SEED=1234 cargo nextest run -p gridwork-tests --test simulation
//! More seeds:         GRIDWORK_SIM_SEEDS=50 (runs the default seeds and more)
//! Longer runs:        GRIDWORK_SIM_STEPS=3000
//! Print the trace:    GRIDWORK_SIM_TRACE=1 (with a single seed)
//! No clock jumps:     GRIDWORK_SIM_NO_CLOCK_JUMPS=1
//! Damaged chunks:     GRIDWORK_SIM_CORRUPT=1 (off by default; TLS makes it rare)

use gridwork_tests::sim::{self, Outcome, SimConfig};

/// Fixed so CI is reproducible; widen with GRIDWORK_SIM_SEEDS.
const DEFAULT_SEEDS: [u64; 5] = [0x6772_6964_0001, 0x6772_6964_0002, 0x6772_6964_0003, 0x6772_6964_0004, 0x6772_6964_0005];

fn env_u64(name: &str) -> Option<u64> {
    let text = std::env::var(name).ok()?;
    let text = text.trim();
    let parsed = match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    };
    Some(parsed.unwrap_or_else(|_| panic!("{name} must be an integer (decimal or 0x hex), got {text:?}")))
}

fn seeds() -> Vec<u64> {
    if let Some(seed) = env_u64("GRIDWORK_SIM_SEED") {
        return vec![seed];
    }
    let wanted = env_u64("GRIDWORK_SIM_SEEDS").unwrap_or(DEFAULT_SEEDS.len() as u64) as usize;
    let mut seeds: Vec<u64> = DEFAULT_SEEDS.iter().copied().take(wanted).collect();
    seeds.extend((DEFAULT_SEEDS.len()..wanted).map(|i| 0x6772_6964_0000 + 1 + i as u64));
    seeds
}

fn config(seed: u64) -> SimConfig {
    let mut config = SimConfig::new(seed);
    if let Some(steps) = env_u64("GRIDWORK_SIM_STEPS") {
        config.steps = steps as usize;
    }
    config.keep_trace = std::env::var_os("GRIDWORK_SIM_TRACE").is_some();
    if std::env::var_os("GRIDWORK_SIM_NO_CLOCK_JUMPS").is_some() {
        config.clock_jumps = false;
    }
    if std::env::var_os("GRIDWORK_SIM_CORRUPT").is_some() {
        config.faults.corrupted_chunk = 0.03;
    }
    config
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "non-text panic".into())
}

/// Run one seed; a panic inside core or server becomes a failure that
/// names the seed too.
fn run_seed(seed: u64, config: SimConfig) -> Result<Outcome, String> {
    let root = tempfile::tempdir().unwrap();
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sim::run(root.path(), config)))
        .map_err(|payload| format!("seed {seed:#x} panicked: {}", panic_text(payload.as_ref())))
}

fn replay_hint(seed: u64) -> String {
    format!("replay with GRIDWORK_SIM_SEED={seed:#x} cargo nextest run -p gridwork-tests --test simulation")
}

#[test]
fn devices_converge_with_nothing_lost_or_doubled_under_faults() {
    let mut failures = Vec::new();
    for seed in seeds() {
        let config = config(seed);
        let keep_trace = config.keep_trace;
        match run_seed(seed, config) {
            Ok(outcome) => {
                println!("{}", outcome.summary());
                if keep_trace {
                    for line in &outcome.full_trace {
                        println!("  {line}");
                    }
                }
                if !outcome.violations.is_empty() {
                    let trails: Vec<String> = outcome
                        .devices_in_violation
                        .iter()
                        .map(|d| format!("last events of d{d}:\n    {}", outcome.device_trail(*d, 20).join("\n    ")))
                        .collect();
                    let trails = if trails.is_empty() { format!("last events:\n    {}", outcome.trace_tail.join("\n    ")) } else { trails.join("\n  ") };
                    failures.push(format!(
                        "seed {seed:#x} broke {} invariant(s):\n  {}\n  {trails}\n{}",
                        outcome.violations.len(),
                        outcome.violations.join("\n  "),
                        replay_hint(seed)
                    ));
                }
            }
            Err(message) => failures.push(format!("{message}\n{}", replay_hint(seed))),
        }
    }
    assert!(failures.is_empty(), "simulation failed:\n\n{}", failures.join("\n\n"));
}

#[test]
fn a_seed_replays_exactly() {
    let seed = env_u64("GRIDWORK_SIM_SEED").unwrap_or(DEFAULT_SEEDS[0]);
    let small = || {
        let mut config = SimConfig::new(seed);
        config.devices = 5;
        config.steps = 150;
        config
    };
    let first = run_seed(seed, small()).unwrap_or_else(|e| panic!("{e}"));
    let second = run_seed(seed, small()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        first.trace_digest,
        second.trace_digest,
        "seed {seed:#x} did not replay identically; last lines:\n{}\n---\n{}",
        first.trace_tail.join("\n"),
        second.trace_tail.join("\n")
    );
    assert!(first.stats.requests > 100, "the run did something: {}", first.summary());
}
