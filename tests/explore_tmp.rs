mod common;
use common::*;
#[test]
fn dump() {
    let sb = Sandbox::with_project();
    let keep = std::path::Path::new("/tmp/ragls-explore");
    let _ = std::fs::remove_dir_all(keep);
    std::fs::create_dir_all(keep).unwrap();
    for (p, t) in FIXTURE { let f = keep.join("ws").join(p); std::fs::create_dir_all(f.parent().unwrap()).unwrap(); std::fs::write(f, t).unwrap(); }
    println!("{}", sb.index());
    for q in ["retry a request with exponential backoff", "evict the least recently used entry", "parse the HTTP request line", "load configuration from a file and environment variables", "token bucket rate limiter allow request", "postpone calling a function until typing stops"] {
        println!("== {q}\n{}", brief(&sb.search(q)));
    }
}
