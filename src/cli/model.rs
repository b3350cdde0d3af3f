//! `ragls model`: the local embedding model.

use super::*;

pub(super) fn cmd_model(action: ModelAction) -> Result<()> {
    use crate::embed::local::hub;
    match action {
        ModelAction::List { json } => {
            let models = hub::list()?;
            let mut out = std::io::stdout().lock();
            if json {
                writeln!(out, "{}", to_json(&models)?).map_err(stdout_error)?;
            } else if models.is_empty() {
                eprintln!(
                    "ragls: no models in {}; get one with `ragls model pull {}`",
                    hub::models_dir()?.display(),
                    crate::embed::local::DEFAULT_LOCAL_MODEL
                );
            } else {
                for m in &models {
                    writeln!(
                        out,
                        "{}\t{:.1} MB\t{}",
                        m.name,
                        m.bytes as f64 / 1e6,
                        m.path
                    )
                    .map_err(stdout_error)?;
                }
            }
            Ok(())
        }
        ModelAction::Pull { name, revision } => {
            let dir = hub::pull(&name, &revision, &PullBar::new())?;
            eprintln!(
                "ragls: {name} is in {}; use it with embedding.provider = \"local\" and embedding.model = \"{name}\"",
                dir.display()
            );
            Ok(())
        }
    }
}

/// Download progress: a bar on a terminal, one line per verified file always.
pub(super) struct PullBar {
    bar: ProgressBar,
}

impl PullBar {
    pub(super) fn new() -> PullBar {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{msg} {bytes}/{total_bytes} {bar:30} {bytes_per_sec}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        PullBar { bar }
    }
}

impl Drop for PullBar {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

impl crate::embed::local::hub::PullProgress for PullBar {
    fn start(&self, file: &str, total: Option<u64>) {
        self.bar.reset();
        self.bar.set_length(total.unwrap_or(0));
        self.bar.set_message(file.to_string());
    }
    fn advance(&self, done: u64) {
        self.bar.set_position(done);
    }
    fn finish(&self, file: &str, bytes: u64, check: &str) {
        self.bar
            .suspend(|| eprintln!("ragls: {file}: {:.1} MB, {check}", bytes as f64 / 1e6));
    }
}
