//! Specifications of the chunker, one language or edge case per test. Every
//! test also runs the structural invariants in [`check`]: chunks in order,
//! non-overlapping, text equal to the source slice, line numbers consistent
//! with byte ranges, within budget, and no non-blank byte left uncovered.

use super::*;

fn budget(max_bytes: usize, min_bytes: usize, max_lines: usize) -> ChunkBudget {
    ChunkBudget { max_bytes, min_bytes, max_lines }
}

/// Chunks `src` and checks the structural invariants.
fn chunks(path: &str, src: &str, budget: &ChunkBudget) -> Vec<Chunk> {
    let out = chunk_file(path, src.as_bytes(), budget);
    check(path, src, &out, budget);
    out
}

/// One line per chunk: `kind | symbol | name | start-end`.
fn summary(chunks: &[Chunk]) -> Vec<String> {
    chunks
        .iter()
        .map(|c| format!("{} | {} | {} | {}-{}", c.kind.as_str(), c.symbol, c.name, c.start_line, c.end_line))
        .collect()
}

fn check(path: &str, src: &str, chunks: &[Chunk], budget: &ChunkBudget) {
    let mut covered = vec![false; src.len()];
    let mut previous_end = 0;
    for c in chunks {
        assert!(c.start_byte < c.end_byte, "empty chunk {c:?}");
        assert!(c.start_byte >= previous_end, "chunks overlap or are out of order at {c:?}");
        previous_end = c.end_byte;
        assert_eq!(c.text, src[c.start_byte..c.end_byte], "text is not the source slice");
        let start_line = 1 + src[..c.start_byte].matches('\n').count() as u32;
        assert_eq!(c.start_line, start_line, "start_line of {c:?}");
        assert_eq!(c.end_line, start_line + c.text.matches('\n').count() as u32, "end_line of {c:?}");
        assert!(c.text.len() <= budget.max_bytes.max(16), "chunk over max_bytes: {c:?}");
        assert!((c.end_line - c.start_line) as usize <= budget.max_lines.max(1) - 1, "chunk over max_lines: {c:?}");
        assert_eq!(c.language, Language::from_path(path));
        covered[c.start_byte..c.end_byte].iter_mut().for_each(|b| *b = true);
    }
    for (i, b) in src.bytes().enumerate() {
        if !b.is_ascii_whitespace() && !covered[i] {
            let line = 1 + src[..i].matches('\n').count();
            panic!("non-blank line {line} not covered: {:?}", src.lines().nth(line - 1));
        }
    }
}

const RUST_SCHEDULER: &str = r#"//! Cooperative task scheduler.

use std::collections::VecDeque;
use std::task::{Context, Poll};

/// A queue of runnable tasks.
#[derive(Debug, Default)]
pub struct Scheduler {
    queue: VecDeque<Task>,
    ticks: u64,
}

impl Scheduler {
    /// Creates an empty scheduler.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs one task to completion or until it yields.
    pub fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.ticks += 1;
        let Some(mut task) = self.queue.pop_front() else {
            return Poll::Ready(());
        };
        match task.step(cx) {
            Poll::Ready(()) => {}
            Poll::Pending => self.queue.push_back(task),
        }
        if self.queue.is_empty() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

pub const MAX_TASKS: usize = 1024;
pub const MAX_TICKS: u64 = 1 << 20;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_works() {
        let s = Scheduler::new();
        assert_eq!(s.ticks, 0);
    }
}
"#;

const PY_SESSION: &str = r#""""HTTP session helpers."""
import json
from dataclasses import dataclass


@dataclass
class Response:
    status: int
    body: bytes

    def json(self):
        return json.loads(self.body)


class Session:
    """Keeps cookies between requests."""

    timeout = 30

    def __init__(self, base_url):
        self.base_url = base_url
        self.cookies = {}

    @retry(times=3)
    @log_calls
    def request(self, method, path, **kwargs):
        url = self.base_url + path
        headers = kwargs.pop("headers", {})
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        response = self.transport.send(method, url, headers=headers, **kwargs)
        self.cookies.update(response.cookies)
        return response

    async def close(self):
        await self.transport.aclose()


def main():
    session = Session("https://example.org")
    print(session.request("GET", "/").json())


if __name__ == "__main__":
    main()
"#;

const JS_CART: &str = r#"import { formatPrice } from "./format.js";

const TAX_RATE = 0.2;

/**
 * Sums the prices of all items.
 */
const subtotal = (items) => items.reduce((sum, item) => sum + item.price * item.qty, 0);

const withTax = function (amount) {
  return amount * (1 + TAX_RATE);
};

export class Cart {
  constructor(owner) {
    this.owner = owner;
    this.items = [];
  }

  add(item) {
    const existing = this.items.find((i) => i.id === item.id);
    if (existing) {
      existing.qty += item.qty;
    } else {
      this.items.push({ ...item });
    }
    return this;
  }

  total() {
    return formatPrice(withTax(subtotal(this.items)));
  }
}

export default function checkout(cart) {
  return fetch("/api/checkout", { method: "POST", body: JSON.stringify(cart) });
}
"#;

const TS_SHAPES: &str = r#"export interface Shape {
  readonly id: string;
  area(): number;
}

export type ShapeKind = "circle" | "square";

enum Unit {
  Px,
  Em,
}

export class Circle implements Shape {
  constructor(public readonly id: string, private radius: number) {}

  area(): number {
    return Math.PI * this.radius ** 2;
  }

  scale(factor: number): Circle {
    return new Circle(this.id, this.radius * factor);
  }
}

namespace Registry {
  export const shapes: Shape[] = [];
  export function register(shape: Shape): void {
    shapes.push(shape);
  }
}
"#;

const TSX_BUTTON: &str = r#"import React, { useState } from "react";

type ButtonProps = {
  label: string;
  onClick?: () => void;
};

export const Button = ({ label, onClick }: ButtonProps) => {
  const [pressed, setPressed] = useState(false);
  return (
    <button
      className={pressed ? "pressed" : ""}
      onClick={() => {
        setPressed(true);
        onClick?.();
      }}
    >
      {label}
    </button>
  );
};

export default function Toolbar() {
  return (
    <div className="toolbar">
      <Button label="Save" />
    </div>
  );
}
"#;

const GO_SERVER: &str = r#"package server

import (
	"fmt"
	"net/http"
)

// Server answers health checks.
type Server struct {
	addr string
	hits int
}

type Handler interface {
	ServeHTTP(w http.ResponseWriter, r *http.Request)
}

// New creates a server listening on addr.
func New(addr string) *Server {
	return &Server{addr: addr}
}

// ServeHTTP counts hits and answers "ok".
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.hits++
	fmt.Fprintf(w, "ok %d", s.hits)
}

func (s Server) String() string {
	return fmt.Sprintf("server(%s)", s.addr)
}
"#;

const JAVA_ACCOUNT: &str = r#"package bank;

import java.util.ArrayList;
import java.util.List;

/** A bank account with a transaction log. */
public class Account {
    private final String owner;
    private long balance;
    private final List<Long> log = new ArrayList<>();

    public Account(String owner) {
        this.owner = owner;
    }

    /** Deposits a positive amount. */
    public void deposit(long amount) {
        if (amount <= 0) {
            throw new IllegalArgumentException("amount must be positive");
        }
        balance += amount;
        log.add(amount);
    }

    @Override
    public String toString() {
        return owner + ": " + balance;
    }

    enum Kind { CHECKING, SAVINGS }
}
"#;

const C_VEC: &str = r#"#include <stdlib.h>
#include <string.h>

/* A growable array of ints. */
struct vec {
    int *data;
    size_t len;
    size_t cap;
};

static int grow(struct vec *v) {
    size_t cap = v->cap ? v->cap * 2 : 8;
    int *data = realloc(v->data, cap * sizeof *data);
    if (!data) {
        return -1;
    }
    v->data = data;
    v->cap = cap;
    return 0;
}

int vec_push(struct vec *v, int x) {
    if (v->len == v->cap && grow(v) != 0) {
        return -1;
    }
    v->data[v->len++] = x;
    return 0;
}
"#;

const CPP_GEOMETRY: &str = r#"#include <cmath>

namespace geo {

class Polygon {
public:
    explicit Polygon(int sides) : sides_(sides) {}

    double interior_angle() const {
        return 180.0 * (sides_ - 2) / sides_;
    }

    int sides() const { return sides_; }

private:
    int sides_;
};

double perimeter(const Polygon &p, double side) {
    return p.sides() * side;
}

}  // namespace geo

double geo_area(double r) {
    return M_PI * r * r;
}
"#;

#[test]
fn dump() {
    let b = budget(300, 80, 40);
    for (p, s) in [("sched.rs", RUST_SCHEDULER), ("session.py", PY_SESSION)] {
        println!("### {p}");
        for l in summary(&chunks(p, s, &b)) { println!("{l}"); }
    }
}

const RUST_ITEMS: &str = r#"use std::fmt;

/// Maximum queue depth.
pub static DEPTH: usize = 64;

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug)]
pub enum Error {
    Closed,
    Full { capacity: usize },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Closed => write!(f, "closed"),
            Error::Full { capacity } => write!(f, "full ({capacity})"),
        }
    }
}

impl<T: Clone> Queue<T> {
    pub fn peek(&self) -> Option<&T> {
        self.items.first()
    }
}

pub trait Sink {
    fn send(&mut self, item: u32) -> Result<()>;
    fn flush(&mut self) -> Result<()> {
        Ok(())
    }
}

macro_rules! bail {
    ($e:expr) => {
        return Err($e)
    };
}
"#;

const RUST_RENDER: &str = r#"/// Renders rows as an HTML table.
fn render(rows: &[Row]) -> String {
    let mut out = String::new();
    out.push_str("<table>\n");
    for row in rows {
        out.push_str("<tr>");
        for cell in &row.cells {
            out.push_str(&format!("<td>{}</td>", escape(cell)));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");
    if rows.is_empty() {
        out.push_str("<p>no rows</p>\n");
    }
    out
}
"#;

const RUST_COLORS: &str = r#"pub const RED: u32 = 0xff0000;
pub const GREEN: u32 = 0x00ff00;
pub const BLUE: u32 = 0x0000ff;

/// Mixes two colours channel by channel.
pub fn mix(a: u32, b: u32) -> u32 {
    let r = ((a >> 16) + (b >> 16)) / 2;
    let g = (((a >> 8) & 0xff) + ((b >> 8) & 0xff)) / 2;
    let b = ((a & 0xff) + (b & 0xff)) / 2;
    (r << 16) | (g << 8) | b
}
pub const ALPHA: u8 = 255;
"#;

const RUST_BROKEN: &str = r#"fn ok() -> u32 { 1 }

impl Broken {
    fn half(&self) {
        if self.x {
            let y = (1 + ;
    }
%%% garbage ### @@@ }}}
fn after() { ok() }
"#;

const MARKDOWN_README: &str = r#"# ragls

A language server for code questions.

## Install

### From source

```sh
# not a heading
cargo install --path .
```

### From crates.io

Run `cargo install ragls`.

## Usage ##

Start the server and point your editor at it.
"#;

#[test]
fn dump2() {
    for (p, s, b) in [
        ("items.rs", RUST_ITEMS, budget(2000, 0, 80)),
        ("items.rs", RUST_ITEMS, budget(150, 0, 80)),
        ("render.rs", RUST_RENDER, budget(160, 0, 80)),
        ("colors.rs", RUST_COLORS, budget(2000, 100, 80)),
        ("broken.rs", RUST_BROKEN, budget(2000, 0, 80)),
        ("README.md", MARKDOWN_README, budget(2000, 0, 80)),
        ("README.md", MARKDOWN_README, budget(2000, 40, 80)),
        ("cart.js", JS_CART, budget(300, 60, 40)),
        ("shapes.ts", TS_SHAPES, budget(2000, 0, 80)),
        ("shapes.ts", TS_SHAPES, budget(200, 0, 80)),
        ("button.tsx", TSX_BUTTON, budget(2000, 0, 80)),
        ("server.go", GO_SERVER, budget(2000, 0, 80)),
        ("Account.java", JAVA_ACCOUNT, budget(2000, 0, 80)),
        ("Account.java", JAVA_ACCOUNT, budget(250, 0, 80)),
        ("vec.c", C_VEC, budget(2000, 0, 80)),
        ("geometry.cpp", CPP_GEOMETRY, budget(200, 0, 80)),
    ] {
        println!("### {p} {:?}", b);
        for l in summary(&chunks(p, s, &b)) { println!("{l}"); }
    }
}
