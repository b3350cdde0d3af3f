//! Benchmark of the remote path against the fake provider (tests/support), with added
//! latency per request: embedding-phase throughput as a share of the ideal, the request
//! count of a re-index (should be 0), and an end-to-end `ask` split by stage.
//!
//! usage: cargo bench --bench provider -- [CORPUS_DIR] [LATENCY_MS]
//!   CORPUS_DIR defaults to /tmp/ragls-perf-corpus/corpus (`../shared/eval/perf-corpus.sh`);
//!   LATENCY_MS defaults to 150. Ideal throughput = batch_size x concurrency / latency.
//! Prints figures only; asserts nothing.

#[path = "../tests/support/fake_provider.rs"]
mod fake_provider;

use fake_provider::{Endpoint, FakeProvider};
use ragls::config::Config;
mod support;

use ragls::ask::{self, AskIndex, AskSink, Question};
use ragls::engine::{Engine, NoProgress, Rerank};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Notes when the first piece of the answer arrives.
struct FirstToken {
    started: Instant,
    first: Option<Duration>,
}

impl AskSink for FirstToken {
    fn delta(&mut self, _: &str) {
        if self.first.is_none() {
            self.first = Some(self.started.elapsed());
        }
    }
}

fn main() {
    let args = support::args();
    let latency_ms: u64 = args.get(1).and_then(|n| n.parse().ok()).unwrap_or(150);
    let root = support::corpus_root(&args, "provider bench");
    let fake = FakeProvider::start();
    fake.set_latency(Duration::from_millis(latency_ms));
    fake.set_dimensions(256);
    fake.set_event_gap(Duration::from_millis(20));
    // The bench process is alone; the key only reaches the fake on loopback.
    std::env::set_var("RAGLS_BENCH_KEY", "sk-bench");
    let mut config = Config::default();
    config.provider.base_url = fake.base_url();
    config.provider.api_key_env = "RAGLS_BENCH_KEY".into();
    let (batch, concurrency) = (config.embedding.batch_size, config.embedding.concurrency);
    let index_dir =
        std::env::temp_dir().join(format!("ragls-provider-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&index_dir);

    let t = Instant::now();
    let mut engine =
        Engine::open_for_writing(&root, config.clone(), index_dir.clone()).expect("open");
    let report = engine.index(false, &NoProgress).expect("index");
    let cold = t.elapsed();
    let embed_s = report.embed_ms as f64 / 1000.0;
    let throughput = report.embedded as f64 / embed_s.max(1e-9);
    let ideal = (batch * concurrency) as f64 / (latency_ms as f64 / 1000.0);
    let requests = fake.requests_to(Endpoint::Embeddings).len();

    fake.reset();
    let again = engine.index(false, &NoProgress).expect("re-index");
    let rerun_requests = fake.requests_to(Endpoint::Embeddings).len();
    drop(engine);

    let engine = Engine::open_for_reading(&root, config, index_dir.clone())
        .expect("open")
        .expect("an index");
    let index: Arc<dyn AskIndex> = Arc::new(Mutex::new(engine));
    let q = "how is a server certificate chain verified?";
    let question = Question {
        text: q.into(),
        query: q.into(),
        top_k: 5,
        rerank: Rerank::Best,
        editor_context: None,
    };
    let t = Instant::now();
    let mut sink = FirstToken {
        started: t,
        first: None,
    };
    let result = ragls::provider::blocking_runtime()
        .expect("runtime")
        .block_on(ask::ask(&[index], &question, &mut sink))
        .expect("ask")
        .expect("an index");
    let total = t.elapsed();
    let first_token = sink.first;

    println!(
        "corpus                 {} ({} chunks embedded)",
        root.display(),
        report.embedded
    );
    println!("fake latency           {latency_ms} ms per request; batch {batch} x {concurrency} in flight");
    println!(
        "cold index             {:.2} s, of which embedding {embed_s:.2} s in {requests} requests",
        cold.as_secs_f64()
    );
    println!(
        "embedding throughput   {throughput:.0} texts/s; ideal {ideal:.0} texts/s; ratio {:.2}",
        throughput / ideal
    );
    println!(
        "re-index               {} embedding requests, {} embedded, {} ms",
        rerun_requests, again.embedded, again.elapsed_ms
    );
    println!(
        "ask (end to end)       {:.3} s: retrieve {} ms, rerank {} ms, generate {} ms (first token {} ms); mode {}, {} citations",
        total.as_secs_f64(),
        result.timings.retrieve_ms,
        result.timings.rerank_ms.unwrap_or(0),
        result.timings.generate_ms.unwrap_or(0),
        first_token.map_or(0, |d| d.as_millis()),
        result.mode,
        result.citations.len()
    );
    let _ = std::fs::remove_dir_all(&index_dir);
}
