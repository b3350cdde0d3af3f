//! Server-Sent Events decoding for streamed chat completions, in two layers.
//!
//! [`SseDecoder`] turns a byte stream, fed in chunks split anywhere (inside a UTF-8
//! character, between the `\r` and `\n` of a line ending), into complete [`SseEvent`]s,
//! following the WHATWG `text/event-stream` rules: `\n`, `\r\n` and `\r` line endings,
//! `:` comment lines (OpenRouter's `: OPENROUTER PROCESSING` keep-alives), `field: value`
//! lines, multi-line `data`, a leading BOM. [`parse_chat_event`] then reads one event's data
//! as an OpenAI-style `chat.completion.chunk` and yields [`ChatStreamItem`]s: text deltas,
//! the finish reason, token usage, `[DONE]`, and errors sent mid-stream with HTTP 200.
//!
//! Pure: no I/O, no HTTP, no retries, no reconnection (`retry` fields are ignored). It is not
//! for non-streamed responses or for HTTP-level errors (a non-200 status with a JSON body),
//! which the provider reads before any stream exists.

use serde_json::Value;

/// One dispatched event of an SSE stream.
#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    /// The `event:` field of this event; `None` when absent or empty (the spec's "message").
    pub event: Option<String>,
    /// The `data:` lines of this event, joined with `\n` (no trailing newline).
    pub data: String,
    /// The stream's last event ID when this event was dispatched, as the spec defines it: set
    /// by an `id:` field and kept for later events until another `id:` changes it (an empty
    /// `id:` clears it). `None` when no ID is set.
    pub id: Option<String>,
}

/// The UTF-8 byte order mark, skipped when it starts the stream.
const BOM: [u8; 3] = [0xEF, 0xBB, 0xBF];

/// Incremental SSE decoder: feed arbitrary byte chunks (split anywhere, even inside a UTF-8
/// char or a line ending), get complete events.
///
/// Bytes are buffered until a line ends, and a line is decoded as UTF-8 only once complete
/// (line endings are ASCII, so a complete line never ends inside a character); invalid
/// UTF-8 becomes U+FFFD rather than an error.
#[derive(Debug, Default)]
pub struct SseDecoder {
    /// Bytes of the line being read (no line ending).
    line: Vec<u8>,
    /// The previous byte was a `\r`: a `\n` right after it belongs to the same line ending.
    after_cr: bool,
    /// Whether the start of the stream has been checked for a BOM.
    bom_checked: bool,
    /// How many bytes of a BOM have been seen at the start of the stream so far.
    bom_seen: usize,
    /// The event being built: its data buffer (each `data` line plus `\n`, as in the spec).
    data: String,
    /// The event being built: its `event` field.
    event: Option<String>,
    /// The last event ID (persists across events).
    last_id: Option<String>,
}

impl SseDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds the next chunk of the stream; returns the events it completed, in order.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        let mut out = Vec::new();
        for &b in bytes {
            if !self.bom_checked {
                if b == BOM[self.bom_seen] {
                    self.bom_seen += 1;
                    if self.bom_seen == BOM.len() {
                        self.bom_checked = true;
                    }
                    continue;
                }
                // Not a BOM after all: the bytes held back are ordinary line content.
                self.bom_checked = true;
                self.line.extend_from_slice(&BOM[..self.bom_seen]);
            }
            if self.after_cr {
                self.after_cr = false;
                if b == b'\n' {
                    continue;
                }
            }
            match b {
                b'\n' => self.end_line(&mut out),
                b'\r' => {
                    self.end_line(&mut out);
                    self.after_cr = true;
                }
                _ => self.line.push(b),
            }
        }
        out
    }

    /// End of stream. An event still pending (an unterminated line, or data not yet followed
    /// by the blank line that dispatches it) is discarded, as the SSE spec says: a stream cut
    /// mid-event may have lost part of it. So this always returns no events; it exists so
    /// callers need not know that, and it resets the decoder to its initial state.
    pub fn finish(&mut self) -> Vec<SseEvent> {
        *self = Self::new();
        Vec::new()
    }

    /// Processes one complete line (without its ending).
    fn end_line(&mut self, out: &mut Vec<SseEvent>) {
        let bytes = std::mem::take(&mut self.line);
        if bytes.is_empty() {
            self.dispatch(out);
            return;
        }
        let line = String::from_utf8_lossy(&bytes);
        if line.starts_with(':') {
            return; // a comment
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line.as_ref(), ""),
        };
        match field {
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
            }
            "event" => self.event = Some(value.to_string()),
            "id" if !value.contains('\0') => {
                self.last_id = (!value.is_empty()).then(|| value.to_string());
            }
            _ => {} // `retry` and unknown fields
        }
    }

    /// A blank line: dispatches the event being built, unless its data buffer is empty.
    fn dispatch(&mut self, out: &mut Vec<SseEvent>) {
        let event = self.event.take().filter(|e| !e.is_empty());
        if self.data.is_empty() {
            return;
        }
        let mut data = std::mem::take(&mut self.data);
        if data.ends_with('\n') {
            data.pop();
        }
        out.push(SseEvent {
            event,
            data,
            id: self.last_id.clone(),
        });
    }
}

/// What one event of a streamed chat completion means.
#[derive(Debug, Clone, PartialEq)]
pub enum ChatStreamItem {
    /// Answer text: `choices[0].delta.content` (empty deltas are skipped).
    Delta(String),
    /// Token usage, from a chunk's `usage` object (OpenRouter sends it in the final chunk;
    /// `cost`, in credits, may be absent). Missing token counts read as 0.
    Usage {
        prompt_tokens: u64,
        completion_tokens: u64,
        cost: Option<f64>,
    },
    /// `data: [DONE]`: the stream is complete.
    Done,
    /// The generation failed mid-stream (the message, with its code when one was given), or
    /// an event was not JSON.
    Error(String),
    /// `choices[0].finish_reason`, when non-null (`stop`, `length`, ...).
    FinishReason(String),
}

/// How much of a malformed event's data an error message quotes, in characters.
const QUOTE_CHARS: usize = 100;

/// Interprets one SSE event's data. Unparseable JSON -> `Error("malformed stream event:
/// ...")` quoting at most ~100 characters of the data. A chunk may yield several items, in
/// the order delta, finish reason, usage. A chunk carrying an error (`{"error": {...}}`, or
/// vLLM's `{"object": "error", "message": ...}`) yields only that error: the answer has
/// failed, and the rest of the chunk is not meaningful. Valid JSON that is none of these
/// (say, a chunk with no choices and no usage) yields nothing.
pub fn parse_chat_event(data: &str) -> Vec<ChatStreamItem> {
    let trimmed = data.trim();
    if trimmed == "[DONE]" {
        return vec![ChatStreamItem::Done];
    }
    let value: Value = match serde_json::from_str(trimmed) {
        Ok(value) => value,
        Err(_) => {
            return vec![ChatStreamItem::Error(format!(
                "malformed stream event: {:?}",
                quote(trimmed)
            ))]
        }
    };
    if let Some(message) = error_message(&value) {
        return vec![ChatStreamItem::Error(message)];
    }

    let mut items = Vec::new();
    if let Some(choice) = value.get("choices").and_then(|c| c.get(0)) {
        if let Some(text) = choice.pointer("/delta/content").and_then(Value::as_str) {
            if !text.is_empty() {
                items.push(ChatStreamItem::Delta(text.to_string()));
            }
        }
        if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
            items.push(ChatStreamItem::FinishReason(reason.to_string()));
        }
    }
    if let Some(usage) = value.get("usage").filter(|u| u.is_object()) {
        items.push(ChatStreamItem::Usage {
            prompt_tokens: usage
                .get("prompt_tokens")
                .and_then(Value::as_u64)
                .unwrap_or(0),
            completion_tokens: usage
                .get("completion_tokens")
                .and_then(Value::as_u64)
                .unwrap_or(0),
            cost: usage.get("cost").and_then(Value::as_f64),
        });
    }
    items
}

/// The error a chunk carries, if any, as "message (code N)".
fn error_message(value: &Value) -> Option<String> {
    let (message, code) = match value.get("error") {
        // OpenRouter / OpenAI: {"error": {"message": ..., "code": ...}}
        Some(Value::Object(error)) => {
            let message = match error.get("message").and_then(Value::as_str) {
                Some(m) if !m.trim().is_empty() => m.to_string(),
                _ => Value::Object(error.clone()).to_string(),
            };
            (message, error.get("code"))
        }
        Some(Value::String(message)) => (message.clone(), None),
        Some(Value::Null) | None => {
            // vLLM: {"object": "error", "message": ..., "type": ..., "code": ...}
            if value.get("object").and_then(Value::as_str) != Some("error") {
                return None;
            }
            let message = value
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("the server reported an error")
                .to_string();
            (message, value.get("code"))
        }
        Some(other) => (other.to_string(), None),
    };
    let code = match code {
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        _ => None,
    };
    Some(match code {
        Some(code) => format!("{message} (code {code})"),
        None => message,
    })
}

/// At most [`QUOTE_CHARS`] characters of `text`, with `…` when cut.
fn quote(text: &str) -> String {
    let mut chars = text.chars();
    let head: String = chars.by_ref().take(QUOTE_CHARS).collect();
    if chars.next().is_some() {
        format!("{head}…")
    } else {
        head
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ChatStreamItem::*;

    /// A realistic OpenRouter stream: a keep-alive comment before and between chunks, a role-only
    /// first chunk with empty content, a chunk whose JSON spans two `data:` lines, multibyte
    /// text, a final chunk with finish reason and usage, then `[DONE]`.
    const STREAM: &str = concat!(
        ": OPENROUTER PROCESSING\n",
        "\n",
        "data: {\"id\":\"gen-1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n",
        "\n",
        "data: {\"id\":\"gen-1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Retries back off \"},\"finish_reason\":null}]}\n",
        "\n",
        ": OPENROUTER PROCESSING\n",
        "\n",
        "data: {\"id\":\"gen-1\",\"choices\":[{\"index\":0,\"delta\":\n",
        "data: {\"content\":\"exponentially — ✓ [1].\"},\"finish_reason\":null}]}\n",
        "\n",
        "data: {\"id\":\"gen-1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\"},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":812,\"completion_tokens\":42,\"total_tokens\":854,\"cost\":0.00031}}\n",
        "\n",
        "data: [DONE]\n",
        "\n",
    );

    fn expected_items() -> Vec<ChatStreamItem> {
        vec![
            Delta("Retries back off ".into()),
            Delta("exponentially — ✓ [1].".into()),
            FinishReason("stop".into()),
            Usage {
                prompt_tokens: 812,
                completion_tokens: 42,
                cost: Some(0.00031),
            },
            Done,
        ]
    }

    /// Decodes `chunks` in order and interprets every event.
    fn items_of(chunks: &[&[u8]]) -> Vec<ChatStreamItem> {
        let mut decoder = SseDecoder::new();
        let mut events = Vec::new();
        for chunk in chunks {
            events.extend(decoder.feed(chunk));
        }
        events.extend(decoder.finish());
        events
            .iter()
            .flat_map(|e| parse_chat_event(&e.data))
            .collect()
    }

    fn events_of(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut decoder = SseDecoder::new();
        let mut events = Vec::new();
        for chunk in chunks {
            events.extend(decoder.feed(chunk));
        }
        events.extend(decoder.finish());
        events
    }

    fn data_event(data: &str) -> SseEvent {
        SseEvent {
            event: None,
            data: data.into(),
            id: None,
        }
    }

    #[test]
    fn a_whole_openrouter_stream_yields_deltas_finish_reason_usage_and_done() {
        assert_eq!(items_of(&[STREAM.as_bytes()]), expected_items());
    }

    #[test]
    fn splitting_the_stream_at_any_byte_gives_the_same_items() {
        let bytes = STREAM.as_bytes();
        for at in 0..=bytes.len() {
            let (a, b) = bytes.split_at(at);
            assert_eq!(items_of(&[a, b]), expected_items(), "split at byte {at}");
        }
    }

    #[test]
    fn feeding_one_byte_at_a_time_gives_the_same_items() {
        let chunks: Vec<&[u8]> = STREAM.as_bytes().chunks(1).collect();
        assert_eq!(items_of(&chunks), expected_items());
    }

    #[test]
    fn crlf_line_endings_work_even_when_split_between_cr_and_lf() {
        let crlf = STREAM.replace('\n', "\r\n");
        let bytes = crlf.as_bytes();
        for at in 0..=bytes.len() {
            let (a, b) = bytes.split_at(at);
            assert_eq!(items_of(&[a, b]), expected_items(), "split at byte {at}");
        }
    }

    #[test]
    fn bare_cr_line_endings_work() {
        let cr = STREAM.replace('\n', "\r");
        let bytes = cr.as_bytes();
        for at in 0..=bytes.len() {
            let (a, b) = bytes.split_at(at);
            assert_eq!(items_of(&[a, b]), expected_items(), "split at byte {at}");
        }
    }

    #[test]
    fn a_multibyte_character_split_across_feeds_is_decoded_whole() {
        let stream = "data: {\"choices\":[{\"delta\":{\"content\":\"é✓🦀\"}}]}\n\n".as_bytes();
        let crab = stream.len() - "\"}}]}\n\n".len() - 2; // inside the 4-byte 🦀
        let tick = crab - 3; // inside the 3-byte ✓
        let events = events_of(&[&stream[..tick], &stream[tick..crab], &stream[crab..]]);
        assert_eq!(events.len(), 1);
        assert_eq!(
            parse_chat_event(&events[0].data),
            vec![Delta("é✓🦀".into())]
        );
    }

    #[test]
    fn several_data_lines_are_joined_with_newlines() {
        let events = events_of(&[b"data: first\ndata:second\ndata\ndata:  fourth\n\n"]);
        // One leading space is stripped, a bare `data` is an empty line, further spaces stay.
        assert_eq!(events, vec![data_event("first\nsecond\n\n fourth")]);
    }

    #[test]
    fn comments_and_blank_lines_alone_dispatch_nothing() {
        assert_eq!(
            events_of(&[b": OPENROUTER PROCESSING\n\n:\n\n\n\n"]),
            vec![]
        );
    }

    #[test]
    fn an_empty_data_line_dispatches_an_event_with_empty_data() {
        // The data buffer is "\n" (non-empty), so the event is dispatched with data "".
        assert_eq!(events_of(&[b"data\n\n"]), vec![data_event("")]);
    }

    #[test]
    fn event_and_id_fields_are_reported_and_unknown_fields_ignored() {
        let events = events_of(&[
            b"event: update\nid: 7\nretry: 1000\nfoo: bar\ndata: a\n\ndata: b\n\nid\ndata: c\n\n",
        ]);
        assert_eq!(
            events,
            vec![
                SseEvent {
                    event: Some("update".into()),
                    data: "a".into(),
                    id: Some("7".into())
                },
                // The event type is per event; the last event ID persists until changed.
                SseEvent {
                    event: None,
                    data: "b".into(),
                    id: Some("7".into())
                },
                SseEvent {
                    event: None,
                    data: "c".into(),
                    id: None
                },
            ]
        );
    }

    #[test]
    fn an_event_field_without_data_is_not_dispatched_and_does_not_leak() {
        let events = events_of(&[b"event: ping\n\ndata: x\n\n"]);
        assert_eq!(events, vec![data_event("x")]);
    }

    #[test]
    fn a_bom_at_the_very_start_is_skipped_even_when_split() {
        let stream = b"\xEF\xBB\xBFdata: x\n\n";
        for at in 0..=stream.len() {
            let (a, b) = stream.split_at(at);
            assert_eq!(
                events_of(&[a, b]),
                vec![data_event("x")],
                "split at byte {at}"
            );
        }
        // Only at the start: a line beginning with a BOM later is a field named "\u{FEFF}data".
        assert_eq!(
            events_of(&[b"data: x\n\n\xEF\xBB\xBFdata: y\n\n"]),
            vec![data_event("x")]
        );
    }

    #[test]
    fn a_partial_bom_is_ordinary_content() {
        // "\xEF\xBB" then "d": not a BOM; the bytes become part of the (unknown) field name.
        assert_eq!(
            events_of(&[b"\xEF\xBB", b"data: x\n\ndata: y\n\n"]),
            vec![data_event("y")]
        );
    }

    #[test]
    fn invalid_utf8_becomes_replacement_characters() {
        assert_eq!(
            events_of(&[b"data: a\xFFb\n\n"]),
            vec![data_event("a\u{FFFD}b")]
        );
    }

    #[test]
    fn pending_data_at_end_of_stream_is_discarded() {
        let mut decoder = SseDecoder::new();
        assert_eq!(decoder.feed(b"data: {\"choices\":[]}\n"), vec![]);
        assert_eq!(decoder.finish(), vec![]);
        // finish resets: nothing of the discarded event leaks into a reused decoder.
        assert_eq!(decoder.feed(b"data: x"), vec![]);
        assert_eq!(decoder.finish(), vec![]);
        assert_eq!(decoder.feed(b"data: y\n\n"), vec![data_event("y")]);
    }

    #[test]
    fn an_error_object_mid_stream_becomes_an_error_with_its_code() {
        let items = items_of(&[concat!(
            "data: {\"choices\":[{\"delta\":{\"content\":\"Partial\"}}]}\n\n",
            "data: {\"id\":\"gen-1\",\"error\":{\"code\":502,\"message\":\"Upstream provider went away\"},",
            "\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\"},\"finish_reason\":\"error\"}]}\n\n",
        )
        .as_bytes()]);
        assert_eq!(
            items,
            vec![
                Delta("Partial".into()),
                Error("Upstream provider went away (code 502)".into())
            ]
        );
    }

    #[test]
    fn error_codes_may_be_strings_or_absent() {
        assert_eq!(
            parse_chat_event(r#"{"error":{"code":"server_error","message":"Overloaded"}}"#),
            vec![Error("Overloaded (code server_error)".into())]
        );
        assert_eq!(
            parse_chat_event(r#"{"error":{"message":"Overloaded"}}"#),
            vec![Error("Overloaded".into())]
        );
        assert_eq!(
            parse_chat_event(r#"{"error":"Overloaded"}"#),
            vec![Error("Overloaded".into())]
        );
        // An error object with no message still fails the answer, showing what was sent.
        assert_eq!(
            parse_chat_event(r#"{"error":{"code":500}}"#),
            vec![Error(r#"{"code":500} (code 500)"#.into())]
        );
    }

    #[test]
    fn a_vllm_style_error_becomes_an_error() {
        let data = r#"{"object":"error","message":"This model's maximum context length is 4096 tokens","type":"BadRequestError","param":null,"code":400}"#;
        assert_eq!(
            parse_chat_event(data),
            vec![Error(
                "This model's maximum context length is 4096 tokens (code 400)".into()
            )]
        );
    }

    #[test]
    fn a_null_error_is_not_an_error() {
        assert_eq!(
            parse_chat_event(r#"{"error":null,"choices":[{"delta":{"content":"ok"}}]}"#),
            vec![Delta("ok".into())]
        );
    }

    #[test]
    fn malformed_data_is_an_error_quoting_a_truncated_excerpt() {
        assert_eq!(
            parse_chat_event("{\"choices\": ["),
            vec![Error(
                "malformed stream event: \"{\\\"choices\\\": [\"".into()
            )]
        );
        let long = format!("not json {}", "é".repeat(500));
        match parse_chat_event(&long).as_slice() {
            [Error(message)] => {
                assert!(message.starts_with("malformed stream event: \"not json éé"));
                assert!(message.ends_with("…\""), "{message}");
                assert!(message.chars().count() < 140, "{message}");
            }
            other => panic!("expected one error, got {other:?}"),
        }
    }

    #[test]
    fn empty_and_missing_deltas_are_skipped() {
        assert_eq!(
            parse_chat_event(r#"{"choices":[{"delta":{"content":""}}]}"#),
            vec![]
        );
        assert_eq!(
            parse_chat_event(r#"{"choices":[{"delta":{"content":null}}]}"#),
            vec![]
        );
        assert_eq!(
            parse_chat_event(r#"{"choices":[{"delta":{"role":"assistant"}}]}"#),
            vec![]
        );
        assert_eq!(parse_chat_event(r#"{"choices":[]}"#), vec![]);
        assert_eq!(
            parse_chat_event(r#"{"choices":[{"delta":{}, "finish_reason":null}]}"#),
            vec![]
        );
    }

    #[test]
    fn one_chunk_can_carry_delta_finish_reason_and_usage() {
        let data = r#"{"choices":[{"delta":{"content":"end."},"finish_reason":"length"}],"usage":{"prompt_tokens":10,"completion_tokens":2}}"#;
        assert_eq!(
            parse_chat_event(data),
            vec![
                Delta("end.".into()),
                FinishReason("length".into()),
                Usage {
                    prompt_tokens: 10,
                    completion_tokens: 2,
                    cost: None
                },
            ]
        );
    }

    #[test]
    fn a_null_usage_is_ignored() {
        assert_eq!(
            parse_chat_event(r#"{"choices":[{"delta":{"content":"a"}}],"usage":null}"#),
            vec![Delta("a".into())]
        );
    }

    #[test]
    fn done_tolerates_surrounding_whitespace() {
        assert_eq!(parse_chat_event(" [DONE] "), vec![Done]);
    }
}
