//! Speed of the measurement machinery itself (not of links): summaries of a window of samples,
//! the contended aggregate, and host TCP transfers over loopback (the transport's own ceiling).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use linkcal::control::WindowResult;
use linkcal::transport::{FlowSpec, TransportKind};

fn stats(c: &mut Criterion) {
    let x: Vec<f64> = (0..1000).map(|n| 1e8 + (n as f64 * 7919.0) % 1e6).collect();
    c.bench_function("summarize_rate_1000", |b| b.iter(|| linkcal::stats::summarize_rate(black_box(&x))));
    let w: Vec<WindowResult> = (0..8)
        .map(|f| WindowResult {
            starts_s: (0..100).map(|n| n as f64 * 0.01 + f as f64 * 1e-4).collect(),
            times_s: vec![0.0099; 100],
            // Samples every 5 ms over the window's 1 s, as the agents take them.
            delivered: (0..200).map(|n| (n as f64 * 0.005, n * 5_000_000)).collect(),
            ..WindowResult::empty(f)
        })
        .collect();
    let refs: Vec<&WindowResult> = w.iter().collect();
    c.bench_function("window_aggregate_8x100", |b| {
        b.iter(|| linkcal::runner::measure::window_aggregate(black_box(&refs), 1 << 20))
    });
}

fn loopback(c: &mut Criterion) {
    for kind in [TransportKind::HostTcp, TransportKind::StagedTcp] {
        let bytes = 16u64 << 20;
        let flow = FlowSpec {
            id: 1,
            transport: kind,
            local_addr: Some("127.0.0.1".into()),
            max_bytes: bytes,
            timeout_s: 10.0,
            options: serde_json::Value::Null,
            tcp_congestion: None,
        };
        let t = kind.instance();
        let prepared = t.prepare_receiver(&flow).expect("listen on loopback");
        let server = std::thread::spawn(move || prepared.receiver.serve());
        let mut sender = t.connect_sender(&flow, &prepared.endpoint).expect("connect over loopback");
        let mut g = c.benchmark_group("loopback");
        g.throughput(Throughput::Bytes(bytes));
        g.sample_size(20);
        g.bench_function(format!("{kind}_16MiB"), |b| {
            b.iter_batched(|| (), |_| sender.transfer(bytes).expect("transfer"), BatchSize::SmallInput)
        });
        g.finish();
        sender.finish().expect("finish");
        server.join().expect("receiver thread").expect("receiver");
    }
}

criterion_group!(benches, stats, loopback);
criterion_main!(benches);
