//! ragls: answers questions about a codebase, grounded in its code, with citations.
//!
//! The parts, one module each (see ARCHITECTURE.md for the map and the invariants):
//! `config` -> `workspace` (what to index) -> `chunk` (tree-sitter chunks) -> `embed`
//! (vectors) -> `store` (the durable truth) and `ann` (derived vector index) ->
//! `retrieve` (hybrid fusion) -> `rerank` -> `answer`; `engine` wires them for one
//! workspace and `cli` puts them on the command line.

pub mod ann;
pub mod answer;
pub mod ask;
pub mod chunk;
pub mod cli;
pub mod config;
pub mod embed;
pub mod engine;
pub mod error;
pub mod eval;
pub mod lsp;
pub mod mcp;
pub mod provider;
pub mod rerank;
pub mod retrieve;
pub mod stdio;
pub mod store;
pub mod tokenize;
pub mod workspace;
