//! The bytes between the editor and tower-lsp: LSP's `Content-Length` framing and a screen
//! of every message, before tower-lsp sees it. Not for protocol semantics beyond what keeps
//! the server alive (handlers decide everything else).
//!
//! tower-lsp stops serving at the first frame it cannot decode (a body that is not JSON, or
//! JSON that is not a JSON-RPC 2.0 message), and its own framing drops every later message
//! after one bad header. Here the framing resynchronises on the next `Content-Length`
//! header (an announced length that runs into the next header is cut there; garbage
//! between frames is skipped with one error), a length over [`MAX_FRAME`] is refused
//! without waiting for its body, and each body is screened: what tower-lsp could not decode
//! or would mishandle (batches, `"jsonrpc": "1.0"`, object ids, numeric methods, `$/`
//! requests, `exit` with an id, `shutdown` with params) is answered here with a JSON-RPC
//! error and never reaches it. Writes to stdout are whole frames, so our error replies
//! never interleave with tower-lsp's output.

use serde_json::{json, Map, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc;
use tower_lsp::jsonrpc;

/// The largest message accepted; a larger announcement is refused before its body arrives.
pub const MAX_FRAME: u64 = 64 << 20;
/// The longest header line; a longer one is garbage.
const MAX_HEADER_LINE: usize = 1024;
/// How many bytes a `Content-Length: <digits>\n` pattern may span (for scans across reads).
const PATTERN_SPAN: usize = 64;

const PARSE_ERROR: i64 = -32700;
const INVALID_REQUEST: i64 = -32600;
const METHOD_NOT_FOUND: i64 = -32601;
const INVALID_PARAMS: i64 = -32602;

/// Starts the filters; returns the (stdin, stdout) pair to hand to tower-lsp.
pub fn filtered<R, W>(input: R, output: W) -> (DuplexStream, DuplexStream)
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (server_in, mut to_server) = tokio::io::duplex(1 << 20);
    let (server_out, from_server) = tokio::io::duplex(1 << 20);
    let (errors_tx, errors_rx) = mpsc::unbounded_channel::<Vec<u8>>();
    tokio::spawn(async move {
        let mut frames = FrameReader::new(input);
        while let Some(event) = frames.next().await {
            let reply = match event {
                Event::Body(body) => match screen_with_tail(&body) {
                    (Verdict::Forward(message), tail) => {
                        if let Some(tail) = tail {
                            let _ = errors_tx.send(frame_bytes(&tail));
                        }
                        let header = format!("Content-Length: {}\r\n\r\n", message.len());
                        if to_server.write_all(header.as_bytes()).await.is_err()
                            || to_server.write_all(&message).await.is_err()
                        {
                            break;
                        }
                        continue;
                    }
                    (Verdict::Reply(reply), _) => {
                        frames.quiet();
                        reply
                    }
                },
                Event::Bad(what) => error_reply(None, PARSE_ERROR, &format!("Parse error: {what}")),
                Event::TooLarge(length) => error_reply(
                    None,
                    INVALID_REQUEST,
                    &format!(
                        "Invalid request: a message of {length} bytes is over the {} MiB limit",
                        MAX_FRAME >> 20
                    ),
                ),
            };
            eprintln!(
                "ragls: dropped a malformed message: {}",
                reply["error"]["message"].as_str().unwrap_or("?")
            );
            let _ = errors_tx.send(frame_bytes(&reply));
        }
        // End of input: tower-lsp sees the end of its stdin too.
        let _ = to_server.shutdown().await;
    });
    tokio::spawn(write_frames(from_server, output, errors_rx));
    (server_in, server_out)
}

/// What the screen decided for one body.
#[derive(Debug, PartialEq)]
enum Verdict {
    /// Pass these bytes (the body, or a normalised copy) to tower-lsp.
    Forward(Vec<u8>),
    /// Answer this error and drop the message.
    Reply(Value),
}

/// Decides whether tower-lsp may see a body. tower-lsp decodes a message as a JSON-RPC 2.0
/// response or request; anything else ends its reader, so it is answered here.
fn screen(body: &[u8]) -> Verdict {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return Verdict::Reply(error_reply(
            None,
            PARSE_ERROR,
            "Parse error: the message is not valid JSON",
        ));
    };
    let invalid = |id: Option<Value>, why: &str| {
        Verdict::Reply(error_reply(
            id,
            INVALID_REQUEST,
            &format!("Invalid request: {why}"),
        ))
    };
    let mut message = match value {
        Value::Object(map) => map,
        Value::Array(_) => {
            return invalid(
                None,
                "batches are not supported; send one message per frame",
            )
        }
        _ => return invalid(None, "a message must be a JSON object"),
    };
    let id = match message.get("id") {
        None => None,
        Some(Value::String(s)) => Some(Value::String(s.clone())),
        Some(Value::Number(n)) if n.is_i64() => Some(Value::Number(n.clone())),
        Some(Value::Null) => Some(Value::Null),
        Some(_) => return invalid(None, "the id must be an integer or a string"),
    };
    let reply_id = id.clone().filter(|i| !i.is_null());
    if message.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return invalid(reply_id, "\"jsonrpc\" must be \"2.0\"");
    }
    let Some(method) = message.get("method") else {
        // A response to one of our requests.
        let has_outcome = message.contains_key("result") || message.contains_key("error");
        return match serde_json::from_slice::<Decodable>(body) {
            Ok(_) if has_outcome => Verdict::Forward(body.to_vec()),
            _ => invalid(
                reply_id,
                "a message needs a method, or an id with a result or an error",
            ),
        };
    };
    let Some(method) = method.as_str().map(str::to_string) else {
        return invalid(reply_id, "the method must be a string");
    };
    let mut rewritten = false;
    if id.is_some() {
        if method.starts_with("$/") {
            return Verdict::Reply(error_reply(
                reply_id,
                METHOD_NOT_FOUND,
                &format!("Method not found: {method} (a `$/` notification sent as a request)"),
            ));
        }
        if method == "exit" {
            return invalid(reply_id, "exit is a notification; send it without an id");
        }
        if method == "shutdown" {
            // tower-lsp marks the server shut down before it checks the params, so a
            // `shutdown` it would refuse must not reach it; empty params mean none.
            match message.get("params") {
                None | Some(Value::Null) => {}
                Some(Value::Object(m)) if m.is_empty() => rewritten = true,
                Some(Value::Array(a)) if a.is_empty() => rewritten = true,
                Some(_) => {
                    return Verdict::Reply(error_reply(
                        reply_id,
                        INVALID_PARAMS,
                        "Invalid params: shutdown takes no params",
                    ))
                }
            }
            if rewritten {
                message.remove("params");
            }
        }
    } else if method == "shutdown" {
        return invalid(None, "shutdown is a request; send it with an id");
    }
    let normalised = if rewritten {
        serde_json::to_vec(&Value::Object(message)).unwrap_or_else(|_| body.to_vec())
    } else {
        body.to_vec()
    };
    match serde_json::from_slice::<Decodable>(&normalised) {
        Ok(_) => Verdict::Forward(normalised),
        Err(_) => invalid(reply_id, "not a JSON-RPC 2.0 request or notification"),
    }
}

/// What tower-lsp's decoder accepts (its private `Message`: a response, else a request).
/// A body that does not decode as this would end its reader, so none is forwarded.
#[derive(serde::Deserialize)]
#[serde(untagged)]
#[allow(dead_code)] // only whether it decodes matters
enum Decodable {
    Response(jsonrpc::Response),
    Request(jsonrpc::Request),
}

/// [`screen`], answering what it can: a body that is not JSON as a whole but starts with
/// a whole JSON object (its announced length ran on into garbage) is screened as that
/// object; the garbage after it gets a parse error of its own (the second value).
fn screen_with_tail(body: &[u8]) -> (Verdict, Option<Value>) {
    let verdict = screen(body);
    let Verdict::Reply(reply) = &verdict else {
        return (verdict, None);
    };
    if reply["error"]["code"] != PARSE_ERROR || body.first() != Some(&b'{') {
        return (verdict, None);
    }
    let mut values =
        serde_json::Deserializer::from_slice(body).into_iter::<serde::de::IgnoredAny>();
    if !matches!(values.next(), Some(Ok(_))) {
        return (verdict, None);
    }
    let end = values.byte_offset();
    match screen(&body[..end]) {
        Verdict::Forward(message) => (
            Verdict::Forward(message),
            Some(error_reply(
                None,
                PARSE_ERROR,
                "Parse error: bytes after a message (its Content-Length was too long) were skipped",
            )),
        ),
        Verdict::Reply(_) => (verdict, None),
    }
}

/// A JSON-RPC error response (id null where the message's id is unusable).
fn error_reply(id: Option<Value>, code: i64, message: &str) -> Value {
    let mut reply = Map::new();
    reply.insert("jsonrpc".into(), json!("2.0"));
    reply.insert("id".into(), id.unwrap_or(Value::Null));
    reply.insert("error".into(), json!({ "code": code, "message": message }));
    Value::Object(reply)
}

fn frame_bytes(message: &Value) -> Vec<u8> {
    let body = message.to_string();
    format!("Content-Length: {}\r\n\r\n{body}", body.len()).into_bytes()
}

/// What the framing layer read.
#[derive(Debug, PartialEq)]
enum Event {
    /// A body (cut short where its announced length ran into the next header).
    Body(Vec<u8>),
    /// Bytes that are not a usable frame (a bad header block, garbage between frames).
    Bad(&'static str),
    /// A header announcing more than [`MAX_FRAME`]; its body is skipped.
    TooLarge(u64),
}

/// Reads LSP frames from a byte stream, resynchronising after anything malformed.
struct FrameReader<R> {
    source: R,
    buf: Vec<u8>,
    /// Bytes still to skip (the body of a refused frame).
    skip: u64,
    /// Set after an error was reported, so the bytes that follow it (a bad frame's body)
    /// are skipped without a second report.
    quiet: bool,
    /// The largest body accepted.
    max_frame: u64,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// A reader of the client's input: bodies over [`MAX_FRAME`] are refused.
    fn new(source: R) -> FrameReader<R> {
        FrameReader {
            source,
            buf: Vec::new(),
            skip: 0,
            quiet: false,
            max_frame: MAX_FRAME,
        }
    }

    /// A reader of tower-lsp's own output, which is trusted with any size.
    fn unlimited(source: R) -> FrameReader<R> {
        FrameReader {
            max_frame: usize::MAX as u64,
            ..FrameReader::new(source)
        }
    }

    /// The last event was answered with an error: skip what follows it quietly.
    fn quiet(&mut self) {
        self.quiet = true;
    }

    /// Reads more input; false at the end of it.
    async fn fill(&mut self) -> bool {
        self.buf.reserve(64 * 1024);
        matches!(self.source.read_buf(&mut self.buf).await, Ok(n) if n > 0)
    }

    /// The next event; `None` at the end of input.
    async fn next(&mut self) -> Option<Event> {
        if !self.skip_body().await {
            return None;
        }
        loop {
            let blank = self
                .buf
                .iter()
                .take_while(|b| b.is_ascii_whitespace())
                .count();
            self.buf.drain(..blank);
            if self.buf.is_empty() {
                if !self.fill().await {
                    return None;
                }
                continue;
            }
            match header_start(&self.buf) {
                Start::NeedMore => {
                    if !self.fill().await {
                        return None;
                    }
                }
                Start::Garbage => {
                    let report = !self.quiet;
                    if !self.resync().await {
                        return None;
                    }
                    if report {
                        self.quiet = true;
                        return Some(Event::Bad("bytes outside a frame were skipped"));
                    }
                }
                Start::Header => return self.frame().await,
            }
        }
    }

    /// Drops bytes up to the next `Content-Length` after the first byte; false at the end
    /// of input.
    async fn resync(&mut self) -> bool {
        // The first byte starts what is being skipped; once it is gone, search from 0.
        let mut from = 1;
        loop {
            let start = from.min(self.buf.len());
            if let Some(at) = find_ci(&self.buf[start..], b"content-length") {
                self.buf.drain(..at + start);
                return true;
            }
            // Keep a tail: the next header may be arriving in pieces.
            let keep = self.buf.len().min(PATTERN_SPAN);
            if keep < self.buf.len() {
                self.buf.drain(..self.buf.len() - keep);
                from = 0;
            }
            if !self.fill().await {
                return false;
            }
        }
    }

    /// Reads a header block (the buffer starts with a header line) and its body.
    async fn frame(&mut self) -> Option<Event> {
        let mut at = 0;
        let mut length: Option<Option<u64>> = None;
        loop {
            let Some(nl) = self.buf[at..].iter().position(|&b| b == b'\n') else {
                if self.buf.len() - at > MAX_HEADER_LINE {
                    return self.bad_header("a header line is too long").await;
                }
                if !self.fill().await {
                    return None;
                }
                continue;
            };
            let line = &self.buf[at..at + nl];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                self.buf.drain(..at + nl + 1);
                return match length {
                    Some(Some(n)) if n > self.max_frame => {
                        self.skip = n;
                        self.quiet = true;
                        Some(Event::TooLarge(n))
                    }
                    Some(Some(n)) => self.body(n as usize).await,
                    _ => {
                        self.quiet = true;
                        Some(Event::Bad("a header block without a valid Content-Length"))
                    }
                };
            }
            if line.len() > MAX_HEADER_LINE {
                return self.bad_header("a header line is too long").await;
            }
            if let Some(i) = find_ci(&line[1..], b"content-length") {
                // Garbage ran into the next frame's header: resynchronise on it.
                self.buf.drain(..at + 1 + i);
                self.quiet = false;
                return Some(Event::Bad("garbage before a Content-Length header"));
            }
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                return self.bad_header("a header line without a colon").await;
            };
            let (name, value) = (&line[..colon], &line[colon + 1..]);
            if name.is_empty() || !name.iter().all(|&b| is_token(b)) {
                return self.bad_header("a malformed header name").await;
            }
            if name.eq_ignore_ascii_case(b"content-length") {
                if length.is_some() {
                    // The previous block never ended: a new frame starts here.
                    self.buf.drain(..at);
                    self.quiet = false;
                    return Some(Event::Bad("a header block without its blank line"));
                }
                length = Some(parse_length(value));
            }
            at += nl + 1;
        }
    }

    /// Reports a bad header block and resynchronises after it.
    async fn bad_header(&mut self, what: &'static str) -> Option<Event> {
        if !self.resync().await {
            return None;
        }
        self.quiet = false;
        Some(Event::Bad(what))
    }

    /// Reads a body of the announced length, cut short where the next frame's header
    /// shows up inside it (the length was too long).
    async fn body(&mut self, length: usize) -> Option<Event> {
        let mut scanned: usize = 0;
        loop {
            let from = scanned.saturating_sub(PATTERN_SPAN);
            let scan = scan_headers(&self.buf[from..]);
            if let Some(at) = scan.full.map(|a| a + from).filter(|&a| a < length) {
                return Some(self.take_body(at));
            }
            if self.buf.len() >= length {
                // A header that is still arriving may start inside an invalid body (its
                // length was too long): wait for it rather than swallow its start.
                let arriving = scan.partial.map(|a| a + from).is_some_and(|a| a < length)
                    && serde_json::from_slice::<serde::de::IgnoredAny>(&self.buf[..length])
                        .is_err();
                if !arriving {
                    return Some(self.take_body(length));
                }
            }
            scanned = self.buf.len();
            if !self.fill().await {
                return (self.buf.len() >= length).then(|| self.take_body(length));
            }
        }
    }

    fn take_body(&mut self, length: usize) -> Event {
        self.quiet = false;
        Event::Body(self.buf.drain(..length).collect())
    }

    /// Skips the rest of a refused frame's body without keeping it, stopping early at the
    /// next frame's header; false at the end of input.
    async fn skip_body(&mut self) -> bool {
        while self.skip > 0 {
            if self.buf.is_empty() && !self.fill().await {
                return false;
            }
            let window = (self.buf.len() as u64).min(self.skip) as usize;
            let look = self.buf.len().min(window + PATTERN_SPAN);
            if let Some(at) = scan_headers(&self.buf[..look]).full.filter(|&a| a < window) {
                self.buf.drain(..at);
                self.skip = 0;
                break;
            }
            // Keep a tail while more body is due: a header may straddle two reads.
            let keep = if (window as u64) < self.skip {
                window.min(PATTERN_SPAN)
            } else {
                0
            };
            let dropped = window - keep;
            self.buf.drain(..dropped);
            self.skip -= dropped as u64;
            if dropped == 0 && !self.fill().await {
                return false;
            }
        }
        true
    }
}

enum Start {
    Header,
    Garbage,
    NeedMore,
}

/// Whether the buffer starts with `Name:` (a header line), something else, or can't tell yet.
fn header_start(buf: &[u8]) -> Start {
    let name = buf.iter().take_while(|&&b| is_token(b)).count();
    match buf.get(name) {
        None if name < MAX_HEADER_LINE => Start::NeedMore,
        Some(b':') if name > 0 => Start::Header,
        _ => Start::Garbage,
    }
}

fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// A `Content-Length` value: ASCII digits with optional blanks around them.
fn parse_length(value: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(value).ok()?.trim_matches([' ', '\t']);
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Where `needle` (lowercase ASCII) first occurs in `hay`, ignoring ASCII case.
fn find_ci(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let first = needle.first()?;
    let last_start = hay.len().checked_sub(needle.len())?;
    (0..=last_start).find(|&i| {
        hay[i].to_ascii_lowercase() == *first
            && hay[i..i + needle.len()].eq_ignore_ascii_case(needle)
    })
}

/// Where `Content-Length: <digits>` and a line end occur in a buffer: the first whole
/// match, and the first place where one may be arriving (cut off by the buffer's end).
/// Such bytes never occur inside a JSON text (a raw line break cannot be inside a
/// string, and outside one the name would not be a string), so inside a body they are
/// the next frame's header.
struct Scan {
    full: Option<usize>,
    partial: Option<usize>,
}

fn scan_headers(hay: &[u8]) -> Scan {
    let mut partial = None;
    for at in 0..hay.len() {
        if hay[at] | 0x20 != b'c' {
            continue;
        }
        match header_at(hay, at) {
            Some(true) => {
                return Scan {
                    full: Some(at),
                    partial,
                }
            }
            None if partial.is_none() => partial = Some(at),
            _ => {}
        }
    }
    Scan {
        full: None,
        partial,
    }
}

/// Whether `Content-Length: <digits>\r?\n` starts at `at`; `None` when the buffer ends
/// before that can be told.
fn header_at(hay: &[u8], at: usize) -> Option<bool> {
    let mut i = at;
    for &expected in b"content-length" {
        match hay.get(i) {
            None => return None,
            Some(b) if b.to_ascii_lowercase() == expected => i += 1,
            Some(_) => return Some(false),
        }
    }
    let blanks = |i: &mut usize| {
        while matches!(hay.get(*i), Some(b' ' | b'\t')) {
            *i += 1;
        }
    };
    blanks(&mut i);
    match hay.get(i) {
        None => return None,
        Some(b':') => i += 1,
        Some(_) => return Some(false),
    }
    blanks(&mut i);
    let digits_from = i;
    while hay.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    if i == hay.len() {
        return None;
    }
    if i == digits_from {
        return Some(false);
    }
    if hay[i] == b'\r' {
        i += 1;
    }
    hay.get(i).map(|&b| b == b'\n')
}

/// Copies tower-lsp's frames to stdout whole, with our own error frames in between.
async fn write_frames<W: AsyncWrite + Unpin>(
    from_server: DuplexStream,
    mut output: W,
    mut errors: mpsc::UnboundedReceiver<Vec<u8>>,
) {
    let mut frames = FrameReader::unlimited(from_server);
    let mut errors_open = true;
    loop {
        tokio::select! {
            // Our replies first: they answer input that came before anything tower-lsp
            // is answering now, so the client sees them in order.
            biased;
            error = errors.recv(), if errors_open => match error {
                Some(error) => {
                    if output.write_all(&error).await.is_err() {
                        return;
                    }
                    let _ = output.flush().await;
                }
                None => errors_open = false,
            },
            event = frames.next() => match event {
                Some(Event::Body(body)) => {
                    let header = format!("Content-Length: {}\r\n\r\n", body.len());
                    if output.write_all(header.as_bytes()).await.is_err() || output.write_all(&body).await.is_err() {
                        return;
                    }
                    let _ = output.flush().await;
                }
                Some(_) => {}
                None => return,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn events(input: &[u8]) -> Vec<Event> {
        let mut reader = FrameReader::new(input);
        let mut out = Vec::new();
        while let Some(event) = reader.next().await {
            out.push(event);
        }
        out
    }

    /// Events of `input` delivered in pieces of `piece` bytes (a pipe's chunking).
    async fn events_in_pieces(input: &[u8], piece: usize) -> Vec<Event> {
        let (mut tx, rx) = tokio::io::duplex(1 << 16);
        let input = input.to_vec();
        let writer = tokio::spawn(async move {
            for chunk in input.chunks(piece.max(1)) {
                tx.write_all(chunk).await.unwrap();
                tokio::task::yield_now().await;
            }
        });
        let mut reader = FrameReader::new(rx);
        let mut out = Vec::new();
        while let Some(event) = reader.next().await {
            out.push(event);
        }
        writer.await.unwrap();
        out
    }

    #[tokio::test]
    async fn events_do_not_depend_on_how_the_input_is_chunked() {
        let long = "x".repeat(90);
        let input = format!(
            "Content-Length: 5000\r\n\r\n{{\"a\":1}}Content-Length: 2\r\n\r\n{{}}\
             Content-Length abc {long}Content-Length: 4\r\n\r\nnull\
             Content-Length: 3\r\n\r\n{{\"b\":2}}\r\nContent-Length: 2\r\n\r\n[]"
        );
        let whole = events(input.as_bytes()).await;
        assert_eq!(whole.len(), 7, "{whole:?}");
        for piece in [1, 2, 3, 5, 7, 13, 64, 100] {
            assert_eq!(
                events_in_pieces(input.as_bytes(), piece).await,
                whole,
                "pieces of {piece}"
            );
        }
    }

    fn body(text: &str) -> Event {
        Event::Body(text.as_bytes().to_vec())
    }

    #[tokio::test]
    async fn frames_are_read_whole_and_bad_headers_are_reported() {
        let input: &[u8] =
            b"Content-Length: 2\r\n\r\n{}\r\nX-Junk: 1\r\n\r\nContent-Length: 4\r\n\r\nnull";
        assert_eq!(
            events(input).await,
            vec![
                body("{}"),
                Event::Bad("a header block without a valid Content-Length"),
                body("null"),
            ]
        );
    }

    #[tokio::test]
    async fn a_bad_header_is_reported_once_and_the_next_frame_is_read() {
        let next = "Content-Length: 7\r\n\r\n[1,2,3]";
        for bad in [
            "Content-Length: abc\r\n\r\n{\"x\":1}",
            "Content-Length: 1\x002\r\n\r\n{\"x\":1}",
            "Content\x00-Length: 7\r\n\r\n{\"x\":1}",
            "\u{ff}\u{fe}garbage",
            "\r\n\r\n{\"jsonrpc\":\"2.0\"}",
            "x: 1}",
        ] {
            let input = format!("{bad}{next}");
            let got = events(input.as_bytes()).await;
            assert_eq!(got.len(), 2, "{bad:?}: {got:?}");
            assert!(matches!(got[0], Event::Bad(_)), "{bad:?}: {got:?}");
            assert_eq!(got[1], body("[1,2,3]"), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn a_length_too_long_is_cut_at_the_next_header_and_too_short_resynchronises() {
        let input = b"Content-Length: 500\r\n\r\n{\"a\":1}Content-Length: 2\r\n\r\n{}";
        assert_eq!(events(input).await, vec![body("{\"a\":1}"), body("{}")]);
        let input = b"Content-Length: 3\r\n\r\n{\"a\":1}\r\nContent-Length: 2\r\n\r\n{}";
        let got = events(input).await;
        assert_eq!(got[0], body("{\"a"));
        // The rest of the short frame is garbage, reported once (the screen already
        // answered the cut body, so the filter marks the reader quiet in the server).
        assert_eq!(got.last(), Some(&body("{}")));
    }

    #[tokio::test]
    async fn an_oversized_announcement_is_refused_before_its_body() {
        let input = format!(
            "Content-Length: {}\r\n\r\n{{\"a\":\"xxxx\"}}Content-Length: 2\r\n\r\n{{}}",
            MAX_FRAME + 1
        );
        assert_eq!(
            events(input.as_bytes()).await,
            vec![Event::TooLarge(MAX_FRAME + 1), body("{}")]
        );
        // A huge body that really follows is skipped, not kept.
        let mut input = format!("Content-Length: {}\r\n\r\n", 70 << 20).into_bytes();
        input.extend(std::iter::repeat_n(b'x', 70 << 20));
        input.extend_from_slice(b"Content-Length: 2\r\n\r\n{}");
        assert_eq!(
            events(&input).await,
            vec![Event::TooLarge(70 << 20), body("{}")]
        );
    }

    fn code(v: &Verdict) -> Option<(i64, Value)> {
        match v {
            Verdict::Reply(r) => Some((r["error"]["code"].as_i64()?, r["id"].clone())),
            Verdict::Forward(_) => None,
        }
    }

    #[test]
    fn bodies_tower_lsp_cannot_decode_are_answered_here() {
        let cases: &[(&str, i64, Value)] = &[
            ("{}", INVALID_REQUEST, Value::Null),
            ("null", INVALID_REQUEST, Value::Null),
            ("[]", INVALID_REQUEST, Value::Null),
            ("123", INVALID_REQUEST, Value::Null),
            ("\"s\"", INVALID_REQUEST, Value::Null),
            ("", PARSE_ERROR, Value::Null),
            ("{ not json", PARSE_ERROR, Value::Null),
            (
                r#"[{"jsonrpc":"2.0","id":1,"method":"shutdown"}]"#,
                INVALID_REQUEST,
                Value::Null,
            ),
            (
                r#"{"jsonrpc":"1.0","id":3,"method":"rag/status"}"#,
                INVALID_REQUEST,
                json!(3),
            ),
            (
                r#"{"jsonrpc":"2.0","id":{"a":1},"method":"rag/status"}"#,
                INVALID_REQUEST,
                Value::Null,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1.5,"method":"rag/status"}"#,
                INVALID_REQUEST,
                Value::Null,
            ),
            (
                r#"{"jsonrpc":"2.0","id":4,"method":42}"#,
                INVALID_REQUEST,
                json!(4),
            ),
            (
                r#"{"jsonrpc":"2.0","id":"x","method":"$/anything"}"#,
                METHOD_NOT_FOUND,
                json!("x"),
            ),
            (
                r#"{"jsonrpc":"2.0","id":5,"method":"shutdown","params":{"a":1}}"#,
                INVALID_PARAMS,
                json!(5),
            ),
            (
                r#"{"jsonrpc":"2.0","method":"shutdown"}"#,
                INVALID_REQUEST,
                Value::Null,
            ),
            (
                r#"{"jsonrpc":"2.0","id":6,"method":"exit"}"#,
                INVALID_REQUEST,
                json!(6),
            ),
            (r#"{"jsonrpc":"2.0","id":7}"#, INVALID_REQUEST, json!(7)),
            (
                r#"{"jsonrpc":"2.0","id":8,"method":"rag/status","method":"x"}"#,
                INVALID_REQUEST,
                json!(8),
            ),
            (
                r#"{"jsonrpc":"2.0","id":18446744073709551615,"method":"rag/status"}"#,
                INVALID_REQUEST,
                Value::Null,
            ),
        ];
        for (text, want, id) in cases {
            let got = code(&screen(text.as_bytes()));
            assert_eq!(got, Some((*want, id.clone())), "{text}");
        }
    }

    #[test]
    fn a_message_followed_by_garbage_is_served_and_the_garbage_reported() {
        let body = br#"{"jsonrpc":"2.0","id":1,"method":"rag/status"}\x01\x02garbage"#;
        let (verdict, tail) = screen_with_tail(body);
        assert_eq!(
            verdict,
            Verdict::Forward(br#"{"jsonrpc":"2.0","id":1,"method":"rag/status"}"#.to_vec())
        );
        assert_eq!(
            tail.map(|t| t["error"]["code"].clone()),
            Some(json!(PARSE_ERROR))
        );
        // A body that is broken inside its first value stays a parse error.
        let (verdict, tail) = screen_with_tail(br#"{"jsonrpc":"2.0","id":1,"meth"#);
        assert!(matches!(verdict, Verdict::Reply(_)) && tail.is_none());
    }

    #[test]
    fn good_messages_pass_and_shutdown_with_empty_params_is_normalised() {
        for text in [
            r#"{"jsonrpc":"2.0","id":1,"method":"rag/status"}"#,
            r#"{"jsonrpc":"2.0","method":"$/cancelRequest","params":{"id":1}}"#,
            r#"{"jsonrpc":"2.0","id":"a","result":null}"#,
            r#"{"jsonrpc":"2.0","id":2,"error":{"code":-1,"message":"no"}}"#,
        ] {
            assert_eq!(
                screen(text.as_bytes()),
                Verdict::Forward(text.as_bytes().to_vec()),
                "{text}"
            );
        }
        let Verdict::Forward(out) =
            screen(br#"{"jsonrpc":"2.0","id":9,"method":"shutdown","params":{}}"#)
        else {
            panic!("shutdown with {{}} is accepted");
        };
        let out: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(out, json!({"jsonrpc":"2.0","id":9,"method":"shutdown"}));
    }
}
