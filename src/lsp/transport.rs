//! The bytes between the editor and tower-lsp: LSP's `Content-Length` framing, checked
//! before tower-lsp sees it.
//!
//! tower-lsp's reader stops serving at the first frame whose body is not JSON. Here a bad
//! frame is answered with a JSON-RPC parse error (`-32700`, id null) and dropped, and the
//! server goes on. Frames pass through whole and in order; writes to stdout are whole
//! frames, so our error replies never interleave with tower-lsp's output.

use tokio::io::{
    AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, DuplexStream,
};
use tokio::sync::mpsc;

/// The largest frame accepted (a huge buffer is skipped by the server, not by this).
const MAX_FRAME: usize = 256 << 20;

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
        let mut reader = BufReader::new(input);
        while let Some(frame) = read_frame(&mut reader).await {
            match frame {
                Frame::Body(body) => {
                    if serde_json::from_slice::<serde_json::Value>(&body).is_ok() {
                        let header = format!("Content-Length: {}\r\n\r\n", body.len());
                        if to_server.write_all(header.as_bytes()).await.is_err()
                            || to_server.write_all(&body).await.is_err()
                        {
                            break;
                        }
                    } else {
                        eprintln!(
                            "ragls: dropped a message that is not JSON ({} bytes)",
                            body.len()
                        );
                        let _ = errors_tx.send(parse_error());
                    }
                }
                Frame::BadHeader => {
                    eprintln!("ragls: dropped a message without a valid Content-Length header");
                    let _ = errors_tx.send(parse_error());
                }
            }
        }
        // End of input: tower-lsp sees the end of its stdin too.
        let _ = to_server.shutdown().await;
    });
    tokio::spawn(write_frames(from_server, output, errors_rx));
    (server_in, server_out)
}

enum Frame {
    Body(Vec<u8>),
    BadHeader,
}

/// Reads one frame; `None` at the end of input.
async fn read_frame<R: AsyncRead + Unpin>(reader: &mut BufReader<R>) -> Option<Frame> {
    let mut length: Option<usize> = None;
    let mut saw_header = false;
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        let trimmed = line.trim_end_matches(['\r', '\n']);
        if trimmed.is_empty() {
            if saw_header {
                break;
            }
            continue; // stray blank lines between frames
        }
        saw_header = true;
        if let Some((name, value)) = trimmed.split_once(':') {
            if name.trim().eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().ok();
            }
        }
    }
    let Some(length) = length.filter(|l| *l <= MAX_FRAME) else {
        return Some(Frame::BadHeader);
    };
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).await.ok()?;
    Some(Frame::Body(body))
}

fn parse_error() -> Vec<u8> {
    let body = serde_json::json!({
        "jsonrpc": "2.0",
        "id": null,
        "error": { "code": -32700, "message": "Parse error: the message is not valid JSON" }
    })
    .to_string();
    format!("Content-Length: {}\r\n\r\n{body}", body.len()).into_bytes()
}

/// Copies tower-lsp's frames to stdout whole, with our own error frames in between.
async fn write_frames<W: AsyncWrite + Unpin>(
    from_server: DuplexStream,
    mut output: W,
    mut errors: mpsc::UnboundedReceiver<Vec<u8>>,
) {
    let mut reader = BufReader::new(from_server);
    loop {
        tokio::select! {
            frame = read_frame(&mut reader) => match frame {
                Some(Frame::Body(body)) => {
                    let header = format!("Content-Length: {}\r\n\r\n", body.len());
                    if output.write_all(header.as_bytes()).await.is_err() || output.write_all(&body).await.is_err() {
                        return;
                    }
                    let _ = output.flush().await;
                }
                Some(Frame::BadHeader) => {}
                None => return,
            },
            Some(error) = errors.recv() => {
                if output.write_all(&error).await.is_err() {
                    return;
                }
                let _ = output.flush().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_are_read_whole_and_bad_headers_are_reported() {
        let input: &[u8] =
            b"Content-Length: 2\r\n\r\n{}\r\nX-Junk: 1\r\n\r\nContent-Length: 4\r\n\r\nnull";
        let mut reader = BufReader::new(input);
        assert!(matches!(read_frame(&mut reader).await, Some(Frame::Body(b)) if b == b"{}"));
        assert!(matches!(
            read_frame(&mut reader).await,
            Some(Frame::BadHeader)
        ));
        assert!(matches!(read_frame(&mut reader).await, Some(Frame::Body(b)) if b == b"null"));
        assert!(read_frame(&mut reader).await.is_none());
    }
}
