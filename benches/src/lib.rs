//! Benchmarks of mesh. The benches live in `benches/`; run them with
//! `cargo bench -p mesh-benches`. Results are recorded in `docs/performance.md`.
