//! What the subcommands print: hits, answers, status, eval reports and progress.

use super::*;

/// `ragls ask`'s sink: generated text to stdout as it comes (unless printing JSON),
/// notes to stderr.
pub(super) struct StdoutSink {
    pub(super) json: bool,
    pub(super) streamed: bool,
}

impl AskSink for StdoutSink {
    fn delta(&mut self, text: &str) {
        if !self.json {
            self.streamed = true;
            let mut out = std::io::stdout();
            let _ = out.write_all(shown_text(text).as_bytes());
            let _ = out.flush();
        }
    }

    fn note(&mut self, note: &str) {
        eprintln!("ragls: note: {note}");
    }
}

pub(super) fn hit_json(h: &SearchHit, explain: bool) -> serde_json::Value {
    let mut v = serde_json::json!({
        "path": h.chunk.path,
        "start_line": h.chunk.start_line,
        "end_line": h.chunk.end_line,
        "score": h.score,
        "symbol": h.chunk.symbol,
        "kind": h.chunk.kind,
    });
    if explain {
        v["explain"] = crate::retrieve::explain::to_json(h);
    }
    v
}

pub(super) fn print_hits(hits: &[SearchHit], json: bool, explain: bool) -> Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        let results: Vec<serde_json::Value> = hits
            .iter()
            .map(|h| {
                let mut v = hit_json(h, explain);
                v["language"] = h.chunk.language.as_str().into();
                v["snippet"] = answer::snippet(&h.chunk.text).into();
                v
            })
            .collect();
        writeln!(out, "{}", serde_json::json!({ "results": results })).map_err(stdout_error)?;
        return Ok(());
    }
    if hits.is_empty() {
        writeln!(out, "no results").map_err(stdout_error)?;
    }
    for h in hits {
        let c = &h.chunk;
        let what = if c.symbol.is_empty() {
            c.kind.to_string()
        } else {
            format!("{} ({})", c.symbol, c.kind)
        };
        writeln!(
            out,
            "{}:{}-{}  {:.3}  {}",
            shown(&c.path),
            c.start_line,
            c.end_line,
            h.score,
            shown(&what)
        )
        .map_err(stdout_error)?;
        if explain {
            for line in crate::retrieve::explain::lines(h) {
                writeln!(out, "    {line}").map_err(stdout_error)?;
            }
        }
    }
    Ok(())
}

pub(super) fn print_eval(out: &mut impl Write, r: &crate::eval::EvalReport) -> std::io::Result<()> {
    writeln!(
        out,
        "{} {} queries, {} chunks indexed{}",
        r.queries,
        r.source,
        r.chunks,
        if r.settings.is_empty() {
            String::new()
        } else {
            format!(", with {}", r.settings.join(" "))
        }
    )?;
    writeln!(out, "level  recall@1  recall@5  recall@10  MRR@10  nDCG@10")?;
    for (level, s) in [("chunk", &r.chunk), ("file", &r.file)] {
        writeln!(
            out,
            "{level:<5}  {:<8.4}  {:<8.4}  {:<9.4}  {:<6.4}  {:.4}",
            s.recall_1, s.recall_5, s.recall_10, s.mrr_10, s.ndcg_10
        )?;
    }
    Ok(())
}

pub(super) fn print_status(out: &mut impl Write, s: &engine::Status) -> std::io::Result<()> {
    writeln!(out, "workspace   {}", s.workspace)?;
    writeln!(
        out,
        "index       {} ({:.1} MB)",
        s.index_dir,
        s.index_bytes as f64 / 1e6
    )?;
    writeln!(out, "state       {}", s.state)?;
    if let Some(shared) = &s.shared {
        writeln!(
            out,
            "shared      {shared} (the index above holds local changes only)"
        )?;
    }
    if let Some(e) = &s.last_error {
        writeln!(out, "last error  {e}")?;
        return Ok(());
    }
    writeln!(
        out,
        "files       {} indexed, {} pending",
        s.files, s.pending_files
    )?;
    writeln!(out, "chunks      {}", s.chunks)?;
    writeln!(
        out,
        "embedding   {} {} ({} dimensions)",
        s.embedding.provider, s.embedding.model, s.embedding.dimensions
    )?;
    if let Some(m) = &s.model_vectors {
        writeln!(
            out,
            "model       {}/{} chunks embedded by {}{}",
            m.done,
            m.total,
            m.model,
            if m.done < m.total {
                " (the rest in the background or with `ragls index`)"
            } else {
                ""
            }
        )?;
    }
    writeln!(out, "skipped     {}", skipped_text(&s.skipped))?;
    if let Some(t) = &s.last_indexed {
        writeln!(out, "last index  {t}")?;
    }
    Ok(())
}

pub(super) fn skipped_text(skipped: &std::collections::BTreeMap<String, u64>) -> String {
    if skipped.is_empty() {
        return "none".into();
    }
    skipped
        .iter()
        .map(|(r, n)| format!("{r} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn summary(root: &Path, r: &IndexReport, engine: &Engine) -> String {
    // Counts only: `status()` would walk the tree a second time.
    let chunks = engine.chunk_count().unwrap_or(0);
    let mut s = format!(
        "indexed {}: {} files ({} new or changed, {} removed, {} unchanged), {} chunks; embedded {}, from cache {}; skipped {}; {:.2} s",
        root.display(),
        r.files_seen - r.failed.len() as u64,
        r.files_changed,
        r.files_removed,
        r.files_unchanged,
        chunks,
        r.embedded,
        r.cached,
        skipped_text(&r.skipped),
        r.elapsed_ms as f64 / 1000.0
    );
    if let Some(m) = &r.model_vectors {
        s.push_str(&format!(
            "; {} of {} chunks have vectors of {}",
            m.done, m.total, m.model
        ));
    }
    if r.truncated > 0 {
        s.push_str(&format!(
            "; {} chunks too long for the embedding model were embedded truncated",
            r.truncated
        ));
    }
    if let Some(reason) = &r.degraded {
        s.push_str(&format!(
            "; DEGRADED: {reason} (search is lexical until `ragls index` succeeds)"
        ));
    }
    if !r.failed.is_empty() {
        s.push_str(&format!(
            "; {} files FAILED (see below), they will be retried next run",
            r.failed.len()
        ));
    }
    s
}

pub(super) fn warn_failed(r: &IndexReport) {
    for (path, reason) in r.failed.iter().take(20) {
        eprintln!(
            "ragls: warning: could not index {}: {}",
            shown(path),
            shown(reason)
        );
    }
    if r.failed.len() > 20 {
        eprintln!("ragls: warning: ... and {} more files", r.failed.len() - 20);
    }
}

/// A name (a path, a symbol) as printed: control characters (a newline, an escape
/// sequence in a file name) are escaped, so a name can never drive the terminal.
pub(super) fn shown(name: &str) -> std::borrow::Cow<'_, str> {
    if !name.chars().any(char::is_control) {
        return name.into();
    }
    name.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect::<String>()
        .into()
}

/// Text as printed (an answer, streamed pieces): line breaks and tabs stay, every other
/// control character is escaped.
pub(super) fn shown_text(text: &str) -> std::borrow::Cow<'_, str> {
    if !text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return text.into();
    }
    text.chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect::<String>()
        .into()
}

pub(super) fn to_json<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| Error::Other(format!("cannot write JSON: {e}")))
}

pub(super) fn stdout_error(e: std::io::Error) -> Error {
    Error::io("cannot write to stdout", e)
}

/// A progress bar on stderr; indicatif hides it when stderr is not a terminal.
pub(super) struct BarProgress {
    bar: ProgressBar,
}

impl BarProgress {
    pub(super) fn new() -> Self {
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template(
            "{spinner} indexing [{bar:30}] {pos}/{len} files {per_sec} eta {eta}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        BarProgress { bar }
    }
}

impl IndexProgress for BarProgress {
    fn start(&self, total_files: u64) {
        self.bar.set_length(total_files);
    }
    fn advance(&self, files: u64) {
        self.bar.inc(files);
    }
    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// The bar of a local model's backlog (`ragls index`): chunks with the model's vectors.
pub(super) struct ModelBar {
    bar: ProgressBar,
}

impl ModelBar {
    pub(super) fn new() -> Self {
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template(
            "{spinner} embedding with {msg} [{bar:30}] {pos}/{len} chunks {per_sec} eta {eta}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        ModelBar { bar }
    }
}

impl engine::ModelProgress for ModelBar {
    fn update(&self, m: &engine::ModelVectors) {
        if self.bar.length() != Some(m.total) {
            self.bar.set_length(m.total);
            self.bar.set_message(m.model.clone());
            // The rate and eta count from where this run started, not from zero.
            self.bar.set_position(m.done);
            self.bar.reset_eta();
        }
        self.bar.set_position(m.done);
        if m.done >= m.total {
            self.bar.finish_and_clear();
        }
    }
}
