//! `POST /chat/completions` with `stream: true`: sends the prompt, decodes the
//! Server-Sent Events as they arrive (see `provider::sse`), hands each text delta to the
//! caller, and reports usage and cost when the stream carries them.
//!
//! Cancellation is dropping the future: the response, and so the connection, is dropped
//! with it, which stops the upstream generation at once.

use super::{Provider, ProviderError};
use crate::provider::sse::{parse_chat_event, ChatStreamItem, SseDecoder};
use futures_util::StreamExt;

/// One chat message, in the OpenAI `messages` shape.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChatOutcome {
    pub text: String,
    pub usage: Option<Usage>,
    pub generation_id: Option<String>,
    pub finish_reason: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ChatClient {
    provider: Provider,
    model: String,
}

impl ChatClient {
    pub fn new(provider: Provider, model: &str) -> ChatClient {
        ChatClient {
            provider,
            model: model.to_string(),
        }
    }

    pub fn model(&self) -> &str {
        &self.model
    }

    /// Streams the model's answer to `messages`, calling `on_delta` with each piece of
    /// text as it arrives; returns the whole text and the usage.
    pub async fn stream(
        &self,
        messages: &[ChatMessage],
        on_delta: &mut (dyn FnMut(&str) + Send),
    ) -> Result<ChatOutcome, ProviderError> {
        let body = serde_json::json!({
            "model": self.model,
            "messages": messages,
            "stream": true,
            "usage": { "include": true },
        });
        let resp = self.provider.post("chat/completions", &body, false).await?;
        let mut outcome = ChatOutcome {
            generation_id: resp
                .headers()
                .get("x-generation-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            ..ChatOutcome::default()
        };
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none")
            .to_string();
        let mut decoder = SseDecoder::new();
        let mut body = resp.bytes_stream();
        let mut done = false;
        // The start of the body and whether any event came, to tell a body that is not an
        // event stream at all from a stream that broke off.
        let mut head: Vec<u8> = Vec::new();
        let mut saw_event = false;
        while !done {
            let next = tokio::time::timeout(self.provider.timeout, body.next())
                .await
                .map_err(|_| {
                    ProviderError::Stream(format!(
                        "no data for {} s; the model stopped answering",
                        self.provider.timeout.as_secs()
                    ))
                })?;
            let events = match next {
                Some(Ok(bytes)) => {
                    let room = 200usize.saturating_sub(head.len()).min(bytes.len());
                    head.extend_from_slice(&bytes[..room]);
                    decoder.feed(&bytes)
                }
                Some(Err(e)) => {
                    return Err(ProviderError::Stream(
                        self.provider.redact(&super::error_chain(&e)),
                    ))
                }
                None => {
                    let events = decoder.finish();
                    done = true;
                    events
                }
            };
            for event in events {
                saw_event = true;
                for item in parse_chat_event(&event.data) {
                    match item {
                        ChatStreamItem::Delta(text) => {
                            on_delta(&text);
                            outcome.text.push_str(&text);
                        }
                        ChatStreamItem::Usage {
                            prompt_tokens,
                            completion_tokens,
                            cost,
                        } => {
                            outcome.usage = Some(Usage {
                                prompt_tokens,
                                completion_tokens,
                                cost,
                            });
                        }
                        ChatStreamItem::FinishReason(r) => outcome.finish_reason = Some(r),
                        ChatStreamItem::Error(message) => {
                            return Err(ProviderError::Stream(self.provider.redact(&message)))
                        }
                        ChatStreamItem::Done => return Ok(outcome),
                    }
                }
            }
        }
        // The stream closed without `[DONE]`: complete only if the model said it stopped.
        if outcome.finish_reason.is_some() {
            Ok(outcome)
        } else if !saw_event {
            let start = super::one_line(&String::from_utf8_lossy(&head));
            Err(ProviderError::BadResponse(format!(
                "the chat endpoint answered 200 without an event stream (content-type {content_type}): {}",
                self.provider.redact(&start)
            )))
        } else {
            Err(ProviderError::Stream(
                "the connection closed before the answer was complete".into(),
            ))
        }
    }
}
