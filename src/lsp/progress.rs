//! From the folders' indexers to the editor: work-done progress, `rag/statusChanged`,
//! log lines; and the file watchers the server registers.

use super::*;

/// `rag/statusChanged`: the `rag/status` object, sent when the state changes.
pub(super) enum StatusChanged {}
impl Notification for StatusChanged {
    type Params = Value;
    const METHOD: &'static str = "rag/statusChanged";
}
/// Asks the client to create a progress `token` and, if it agrees, begins it. Returns
/// whether the progress was begun (reports and the end go to begun tokens only).
async fn begin_progress(
    client: &Client,
    token: &NumberOrString,
    begin: WorkDoneProgressBegin,
) -> bool {
    let created = client
        .send_request::<request::WorkDoneProgressCreate>(WorkDoneProgressCreateParams {
            token: token.clone(),
        })
        .await
        .is_ok();
    if created {
        send_progress(client, token, WorkDoneProgress::Begin(begin)).await;
    }
    created
}

pub(super) async fn send_progress(
    client: &Client,
    token: &NumberOrString,
    value: WorkDoneProgress,
) {
    client
        .send_notification::<notification::Progress>(ProgressParams {
            token: token.clone(),
            value: ProgressParamsValue::WorkDone(value),
        })
        .await;
}

impl Backend {
    /// Forwards indexer events to the editor: progress, status changes, log lines.
    pub(super) fn start_event_pump(&self) {
        let Some(mut rx) = self.events_rx.lock().ok().and_then(|mut r| r.take()) else {
            return;
        };
        let client = self.client.clone();
        let progress = self.flags().work_done_progress;
        tokio::spawn(async move {
            let mut tokens: HashMap<Url, NumberOrString> = HashMap::new();
            // The local model's background pass has a progress of its own per folder.
            let mut model_tokens: HashMap<Url, NumberOrString> = HashMap::new();
            let mut counter = 0u32;
            while let Some(event) = rx.recv().await {
                match event {
                    FolderEvent::ProgressBegin { folder, total } if progress => {
                        counter += 1;
                        let token = NumberOrString::String(format!("ragls/index/{counter}"));
                        let begin = WorkDoneProgressBegin {
                            title: "Indexing".into(),
                            cancellable: Some(false),
                            message: Some(format!("0/{total} files")),
                            percentage: Some(0),
                        };
                        if begin_progress(&client, &token, begin).await {
                            tokens.insert(folder, token);
                        }
                    }
                    FolderEvent::ProgressReport {
                        folder,
                        done,
                        total,
                    } => {
                        if let Some(token) = tokens.get(&folder) {
                            let report = WorkDoneProgressReport {
                                cancellable: Some(false),
                                message: Some(format!("{done}/{total} files")),
                                percentage: Some(if total == 0 {
                                    100
                                } else {
                                    (done * 100 / total) as u32
                                }),
                            };
                            send_progress(&client, token, WorkDoneProgress::Report(report)).await;
                        }
                    }
                    FolderEvent::ProgressEnd { folder, message } => {
                        if let Some(token) = tokens.remove(&folder) {
                            send_progress(
                                &client,
                                &token,
                                WorkDoneProgress::End(WorkDoneProgressEnd {
                                    message: Some(message),
                                }),
                            )
                            .await;
                        }
                    }
                    FolderEvent::ModelProgress { folder, coverage } if progress => {
                        let (done, total) = (coverage.done, coverage.total);
                        let percentage = if total == 0 {
                            100
                        } else {
                            (done * 100 / total) as u32
                        };
                        let message = format!("{done}/{total} chunks");
                        match model_tokens.get(&folder) {
                            Some(token) if done >= total => {
                                let end = WorkDoneProgressEnd {
                                    message: Some(format!(
                                        "{total} chunks embedded by {}",
                                        coverage.model
                                    )),
                                };
                                send_progress(&client, token, WorkDoneProgress::End(end)).await;
                                model_tokens.remove(&folder);
                            }
                            Some(token) => {
                                let report = WorkDoneProgressReport {
                                    cancellable: Some(false),
                                    message: Some(message),
                                    percentage: Some(percentage),
                                };
                                send_progress(&client, token, WorkDoneProgress::Report(report))
                                    .await;
                            }
                            None if done < total => {
                                counter += 1;
                                let token =
                                    NumberOrString::String(format!("ragls/model/{counter}"));
                                let begin = WorkDoneProgressBegin {
                                    title: format!("Embedding with {}", coverage.model),
                                    cancellable: Some(false),
                                    message: Some(message),
                                    percentage: Some(percentage),
                                };
                                if begin_progress(&client, &token, begin).await {
                                    model_tokens.insert(folder, token);
                                }
                            }
                            None => {}
                        }
                    }
                    FolderEvent::ModelProgress { .. } => {}
                    FolderEvent::Status { status, .. } => {
                        let value = protocol::status_json(std::slice::from_ref(&status));
                        client.send_notification::<StatusChanged>(value).await;
                    }
                    FolderEvent::Log { error, message } => {
                        eprintln!("ragls: {message}");
                        let typ = if error {
                            MessageType::WARNING
                        } else {
                            MessageType::INFO
                        };
                        client.log_message(typ, message).await;
                    }
                    FolderEvent::ProgressBegin { .. } => {}
                }
            }
        });
    }

    pub(super) async fn register_watchers(&self) {
        if !self.flags().watch_files_dynamically {
            return;
        }
        let options = DidChangeWatchedFilesRegistrationOptions {
            watchers: vec![FileSystemWatcher {
                glob_pattern: GlobPattern::String("**/*".into()),
                kind: None,
            }],
        };
        let registration = Registration {
            id: "ragls-watch-files".into(),
            method: "workspace/didChangeWatchedFiles".into(),
            register_options: serde_json::to_value(options).ok(),
        };
        if let Err(e) = self.client.register_capability(vec![registration]).await {
            self.log(
                true,
                format!("the editor refused file watching ({e}); saves still update the index"),
            )
            .await;
        }
    }
}
