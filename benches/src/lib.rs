//! Benchmarks of mesh. The benches live in `benches/`; run them with
//! `cargo bench -p mesh-benches`. Results are recorded in `docs/performance.md`.
//!
//! What the benches share: the choice between criterion's figures and the paired measurement,
//! and the summary of a paired measurement's rounds.

/// A bench binary's `main`: runs its criterion group (`criterion`, as `criterion_group!`
/// names it) and then its paired measurement (`paired`), as the arguments ask. `-- paired`
/// runs only the paired measurement; a criterion filter or `--list` runs only criterion.
pub fn run(criterion: impl FnOnce(), paired: impl FnOnce()) {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let filters: Vec<&String> = args.iter().filter(|arg| !arg.starts_with('-')).collect();
    let paired_only = filters.iter().any(|filter| *filter == "paired");
    if !paired_only {
        criterion();
        criterion::Criterion::default()
            .configure_from_args()
            .final_summary();
    }
    let listing = args.iter().any(|arg| arg == "--list");
    let in_bench_mode = args.iter().any(|arg| arg == "--bench");
    if in_bench_mode && !listing && (filters.is_empty() || paired_only) {
        paired();
    }
}

/// The lower quartile, the median and the upper quartile of `values` (sorted in place).
///
/// ```
/// let mut values = vec![5.0, 1.0, 3.0, 2.0, 4.0];
/// assert_eq!(mesh_benches::quartiles(&mut values), (2.0, 3.0, 4.0));
/// ```
///
/// # Panics
///
/// When `values` is empty.
pub fn quartiles(values: &mut [f64]) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    let at = |quarter: usize| values[(values.len() - 1) * quarter / 4];
    (at(1), at(2), at(3))
}

/// Times each of `candidates` candidates once per round (`time(candidate)` runs one and
/// returns its time), for `rounds` rounds, starting each round from the next candidate so that
/// none always runs right after the same other one. Returns, per candidate, its time in each
/// counted round; the first tenth of the rounds warm up and are not counted. Round `r` of
/// every candidate ran within the same short stretch, so differences and ratios taken per
/// round are not moved by the machine's drifting speed.
pub fn paired_rounds(
    rounds: usize,
    candidates: usize,
    mut time: impl FnMut(usize) -> f64,
) -> Vec<Vec<f64>> {
    let mut times = vec![Vec::with_capacity(rounds); candidates];
    for round in 0..rounds {
        for turn in 0..candidates {
            let candidate = (round + turn) % candidates;
            let elapsed = time(candidate);
            if round >= rounds / 10 {
                times[candidate].push(elapsed);
            }
        }
    }
    times
}
