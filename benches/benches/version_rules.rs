//! Version parsing and the upgrade rules.
//!
//! Run: `cargo bench -p upkeep-benches --bench version_rules`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use upkeep_common::Version;
use upkeep_common::rules::{check_incremental, check_skew};

fn version_rules(c: &mut Criterion) {
    c.bench_function("parse v1.30.2+k3s1", |b| b.iter(|| black_box("v1.30.2+k3s1").parse::<Version>()));
    c.bench_function("find version in kubelet output", |b| {
        b.iter(|| Version::find_in_text(black_box("Kubernetes v1.30.2\n")))
    });
    let current: Version = "v1.30.2".parse().expect("valid");
    let target: Version = "v1.31.0".parse().expect("valid");
    let previous: Version = "v1.29.9".parse().expect("valid");
    c.bench_function("incremental rule", |b| {
        b.iter(|| check_incremental(black_box(&current), black_box(&target), Some(black_box(&previous))))
    });
    c.bench_function("skew rule", |b| b.iter(|| check_skew(black_box(&target), black_box(&current))));
    let mut versions: Vec<Version> =
        (0..1000).map(|i| format!("v1.{}.{}-r{}", i % 40, i % 17, i % 97).parse().expect("valid")).collect();
    c.bench_function("sort 1000 versions", |b| {
        b.iter(|| {
            versions.reverse();
            versions.sort();
        })
    });
}

criterion_group!(benches, version_rules);
criterion_main!(benches);
