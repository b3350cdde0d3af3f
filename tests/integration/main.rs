//! The integration tests, in one test binary (it links once instead of once per file); each
//! module is one area, so a test is named e.g. `cli::...` or `lsp::...`:
//!
//! * `cli`: the CLI on the fixture project of `tests/common`.
//! * `crash`: `ragls index` killed mid-way leaves an index that opens and resumes.
//! * `eval`: `ragls eval` on a hand-made query set and on a generated one.
//! * `fake_provider_selftest`: the fake OpenRouter server, checked with a real HTTP client.
//! * `lsp`: `ragls serve --stdio` over JSON-RPC.
//! * `mcp`: `ragls mcp` driven by the official MCP SDKs (scripts in `tests/mcp/`) and raw
//!   JSON-RPC.
//! * `provider`: the remote provider (embeddings, rerank, streamed chat) against the fake.
//! * `faults`, `faults_cli`, `faults_provider`: the fault suite (malformed LSP frames, a
//!   damaged or unusual index and workspace, a stalled or odd provider).
//! * `chunk_props`: property tests of the chunkers and the tokenizer (proptest).
//! * `reproducible`: two fresh builds (and a cached rebuild) rank every query alike.
//! * `team`: the shared team index on a real PostgreSQL with pgvector (`scripts/pg.sh`):
//!   refs, incremental updates, atomic switches, the local overlay, roles, replica, outage.
//! * `lazy_vectors`: an unchanged tree is re-indexed without the vector graph; a lazy
//!   (server) engine answers at once and loads the graph in the background.
//!
//! The helpers stay where test files outside this binary include them from: the sandbox in
//! `tests/common/mod.rs`, the fake provider and the LSP client in `tests/support/`.

#[path = "../common/mod.rs"]
mod common;
#[path = "../support/fake_provider.rs"]
mod fake_provider;
#[path = "../support/lsp_client.rs"]
mod lsp_client;
#[path = "../support/provider_fixture.rs"]
mod provider_fixture;

mod chunk_props;
mod cli;
mod crash;
mod eval;
mod fake_provider_selftest;
mod faults;
mod faults_cli;
mod faults_provider;
mod lazy_vectors;
mod lsp;
mod mcp;
mod provider;
mod reproducible;
mod team;
