//! The provider tests' sandbox, kept under its old path and names: the sandbox itself lives in
//! `tests/common/mod.rs` ([`ProviderSandbox`](common::ProviderSandbox), exported here as
//! `Sandbox`); this file only builds it from a [`FakeProvider`].
//!
//! Include it after the fake (it needs no `mod common;` beside it):
//!
//! ```ignore
//! #[path = "support/fake_provider.rs"]
//! mod fake_provider;
//! #[path = "support/provider_fixture.rs"]
//! mod provider_fixture;
//! ```

#![allow(dead_code, unused_imports)]

#[path = "../common/mod.rs"]
mod common;

use super::fake_provider::FakeProvider;

pub use common::ProviderSandbox as Sandbox;
pub use common::{
    chat_messages, contains_bytes, files_under, http_date, poll_until, prompt_headers, u, Header,
    Run, Settings, BIN, CHAT_MODEL, EMBEDDING_MODEL, KEY, PROJECT, RERANK_MODEL,
};

impl common::ProviderSandbox {
    /// An empty workspace (only `.ragls.toml`) wired to `fake`.
    pub fn empty(fake: &FakeProvider, settings: &Settings) -> Sandbox {
        Sandbox::empty_at(&fake.base_url(), settings)
    }

    /// The fixture project of [`PROJECT`], plus `.ragls.toml`, wired to `fake`.
    pub fn with_project(fake: &FakeProvider, settings: &Settings) -> Sandbox {
        Sandbox::with_project_at(&fake.base_url(), settings)
    }
}
