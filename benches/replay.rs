//! How long `starcode replay` takes for a recorded 60-second call (the goal: well under
//! a second). Run: `cargo bench --bench replay`.

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};

use starcode::config::Config;
use starcode::replay::{replay, Expectation, ReplayOptions};
use starcode::runtime::load_catalog;

/// A synthetic 60 s call: silence, a wrong key, a re-select, then a confirmed choice.
const CALL: &str = "fixtures/slow_caller.pcap";

fn bench_replay(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::env::set_current_dir(root).expect("project root");
    let config = Config::default();
    let catalog = load_catalog(&config).expect("bundled prompts load");
    let capture = std::fs::read(CALL).expect("fixture exists");
    let expectation =
        Expectation::load(&root.join("fixtures/slow_caller.expect")).expect("expectation");
    let options = ReplayOptions::default();

    // Check once that the benchmarked work is the real decision, not an early error.
    let report = replay(&capture, &config, catalog.clone(), &options).expect("replays");
    assert_eq!(expectation.differences(&report.lines), Vec::<String>::new());
    let call_ms = report.lines.last().map(|l| l.t_ms).unwrap_or(0);
    assert!(call_ms >= 60_000, "the benchmark call lasts {call_ms} ms");

    let mut group = c.benchmark_group("replay");
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("60 s call", |b| {
        b.iter(|| replay(black_box(&capture), &config, catalog.clone(), &options).expect("replays"))
    });
    group.finish();
}

criterion_group!(benches, bench_replay);
criterion_main!(benches);
