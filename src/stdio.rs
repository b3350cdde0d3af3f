//! Standard streams for the JSON-RPC servers (the language server and the MCP server).

/// The stream a JSON-RPC server writes to. On Unix the real stdout is kept for it alone and
/// file descriptor 1 is pointed at stderr, so that a stray `println!` in a dependency
/// (hnsw_rs prints on some errors) can never corrupt the protocol stream.
pub fn protocol_stdout() -> Box<dyn tokio::io::AsyncWrite + Unpin + Send> {
    #[cfg(unix)]
    {
        use std::os::fd::FromRawFd;
        // SAFETY: dup/dup2 on the process's own standard descriptors; the duplicate is
        // owned by the File from here on.
        let fd = unsafe { libc::dup(1) };
        if fd >= 0 && unsafe { libc::dup2(2, 1) } >= 0 {
            let file = unsafe { std::fs::File::from_raw_fd(fd) };
            return Box::new(tokio::fs::File::from_std(file));
        }
    }
    Box::new(tokio::io::stdout())
}
