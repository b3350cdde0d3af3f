//! Reading engines kept for reuse by the servers (the language server's folders and the
//! MCP server's workspace).

use super::Engine;
use crate::error::Result;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Idle reading engines, tagged with the settings generation they were opened with.
/// Each request takes one (or opens one), so a slow request (a remote rerank) never
/// holds up the others.
#[derive(Default)]
pub struct ReaderPool {
    readers: Mutex<Vec<(u64, Engine)>>,
    generation: AtomicU64,
}

impl ReaderPool {
    pub fn new() -> Self {
        Self::default()
    }

    /// Drops the idle engines: readers reopen with new settings on their next use.
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut r) = self.readers.lock() {
            r.clear();
        }
    }

    /// Runs `f` on an idle reading engine, or on one `open` opens (blocking: call from a
    /// blocking task). `None` while there is no index yet.
    pub fn with_reader<T>(
        &self,
        open: impl FnOnce() -> Result<Option<Engine>>,
        f: impl FnOnce(&mut Engine) -> Result<T>,
    ) -> Result<Option<T>> {
        const MAX_IDLE_READERS: usize = 4;
        let generation = self.generation.load(Ordering::SeqCst);
        let idle = self.readers.lock().ok().and_then(|mut r| r.pop());
        let mut engine = match idle {
            Some((g, engine)) if g == generation => engine,
            _ => match open()? {
                Some(engine) => engine,
                None => return Ok(None),
            },
        };
        let result = f(&mut engine);
        if let Ok(mut r) = self.readers.lock() {
            if r.len() < MAX_IDLE_READERS && self.generation.load(Ordering::SeqCst) == generation {
                r.push((generation, engine));
            }
        }
        result.map(Some)
    }
}
