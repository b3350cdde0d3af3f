//! Faults on the provider's side: a stalled endpoint costs at most the step's total budget
//! (and the error says the time really spent), a 200 chat body that is not an event stream
//! is reported as such, and `ask` sets partial streamed text apart from the extractive
//! fallback. Against the fake OpenRouter of `support/fake_provider.rs`.

use crate::fake_provider;
use crate::provider_fixture;

use fake_provider::{Endpoint, Failure, FakeProvider};
use provider_fixture::*;
use ragls::config::ProviderConfig;
use ragls::provider::chat::{ChatClient, ChatMessage};
use ragls::provider::{Provider, ProviderError};
use std::time::Duration;

const KEY_ENV: &str = "RAGLS_FAULT_TESTS_KEY";

fn provider(fake: &FakeProvider, config: ProviderConfig) -> Provider {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| std::env::set_var(KEY_ENV, KEY));
    let config = ProviderConfig {
        base_url: fake.base_url(),
        api_key_env: KEY_ENV.to_string(),
        ..config
    };
    Provider::from_config(&config).expect("a remote provider is configured")
}

fn messages() -> Vec<ChatMessage> {
    vec![ChatMessage {
        role: "user".into(),
        content: "Sources:\n\n[1] src/a.rs:1-2 (rust) fn a\n```rust\nfn a() {}\n```\n\nQuestion: what is a?".into(),
    }]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_endpoint_costs_at_most_the_total_budget_and_the_error_says_the_real_figure() {
    let fake = FakeProvider::start();
    fake.set_expected_key(Some(KEY));
    fake.fail_next(Endpoint::Chat, Failure::Slow(Duration::from_secs(30)), 50);
    let config = ProviderConfig {
        timeout_s: 1,
        max_retries: 10,
        total_timeout_s: 3,
        ..ProviderConfig::default()
    };
    let chat = ChatClient::new(provider(&fake, config), CHAT_MODEL);
    let mut on_delta = |_: &str| {};
    let result = chat.stream(&messages(), &mut on_delta).await;
    let Err(
        err @ ProviderError::Timeout {
            seconds, attempts, ..
        },
    ) = &result
    else {
        panic!("a stalled chat ends in a timeout: {result:?}");
    };
    let sent = fake.requests_to(Endpoint::Chat).len();
    assert!(
        (1..=4).contains(&sent),
        "a 3 s budget at 1 s per attempt leaves room for a few attempts, not 11: {sent}"
    );
    assert_eq!(*attempts as usize, sent, "{err}");
    // A bound against the old behaviour (11 attempts x 1 s plus backoff), not a timing.
    assert!(*seconds < 10, "{err}");
    let message = err.to_string();
    assert!(
        message.contains(&format!("within {seconds} s")) && message.contains("total_timeout_s"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_chat_body_that_is_not_an_event_stream_is_reported_as_such() {
    let fake = FakeProvider::start();
    fake.set_expected_key(Some(KEY));
    fake.fail_next(Endpoint::Chat, Failure::NotAStream, 1);
    let chat = ChatClient::new(provider(&fake, ProviderConfig::default()), CHAT_MODEL);
    let mut on_delta = |_: &str| {};
    let result = chat.stream(&messages(), &mut on_delta).await;
    let Err(err) = result else {
        panic!("a plain JSON body is not an answer stream");
    };
    let message = err.to_string();
    assert!(
        message.contains("without an event stream") && message.contains("application/json"),
        "{message}"
    );
    assert!(!message.contains("connection closed"), "{message}");
}

#[test]
fn ask_sets_partial_streamed_text_apart_from_the_extractive_fallback() {
    let fake = FakeProvider::start();
    fake.set_expected_key(Some(KEY));
    fake.set_event_gap(Duration::from_millis(5));
    let sb = Sandbox::with_project(&fake, &Settings::retries(0));
    sb.index();
    fake.fail_next(Endpoint::Chat, Failure::DropStream { after_events: 4 }, 5);
    let run = sb.ragls("ask", &["how are failed requests retried?"]).ok();
    let separator = ragls::cli::ASK_FALLBACK_SEPARATOR;
    let Some((partial, fallback)) = run.stdout.split_once(separator) else {
        panic!(
            "no separator between the broken-off text and the fallback:\n{}\n--- stderr\n{}",
            run.stdout, run.stderr
        );
    };
    assert!(
        !partial.trim().is_empty(),
        "the partial text came first: {:?}",
        run.stdout
    );
    assert!(
        !fallback.trim().is_empty(),
        "the extractive answer follows: {:?}",
        run.stdout
    );
}
