//! `convex-bench` has no main program of its own: the benchmark is driven by `bench/run.sh`
//! (orchestration in `bench/bench.py`), and the Rust part is the `transfer-only` baseline client
//! in `src/bin/transfer-only.rs`.
fn main() {
    eprintln!("convex-bench: run bench/run.sh [--smoke]; the baseline client is the `transfer-only` binary");
    std::process::exit(2);
}
