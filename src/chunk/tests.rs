//! Specifications of the chunker, one language or edge case per test. Every
//! test also runs the structural invariants in [`check`]: chunks in order,
//! non-overlapping, text equal to the source slice, line numbers consistent
//! with byte ranges, within budget, and no non-blank byte left uncovered.
//! They are not benchmarks: timing is measured outside the test suite.

use super::*;

fn budget(max_bytes: usize, min_bytes: usize, max_lines: usize) -> ChunkBudget {
    ChunkBudget {
        max_bytes,
        min_bytes,
        max_lines,
    }
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
        .map(|c| {
            format!(
                "{} | {} | {} | {}-{}",
                c.kind.as_str(),
                c.symbol,
                c.name,
                c.start_line,
                c.end_line
            )
        })
        .collect()
}

fn check(path: &str, src: &str, chunks: &[Chunk], budget: &ChunkBudget) {
    let mut covered = vec![false; src.len()];
    let mut previous_end = 0;
    for c in chunks {
        assert!(c.start_byte < c.end_byte, "empty chunk {c:?}");
        assert!(
            c.start_byte >= previous_end,
            "chunks overlap or are out of order at {c:?}"
        );
        previous_end = c.end_byte;
        assert_eq!(
            c.text,
            src[c.start_byte..c.end_byte],
            "text is not the source slice"
        );
        let start_line = 1 + src[..c.start_byte].matches('\n').count() as u32;
        assert_eq!(c.start_line, start_line, "start_line of {c:?}");
        assert_eq!(
            c.end_line,
            start_line + c.text.matches('\n').count() as u32,
            "end_line of {c:?}"
        );
        assert!(
            c.text.len() <= budget.max_bytes.max(16),
            "chunk over max_bytes: {c:?}"
        );
        assert!(
            ((c.end_line - c.start_line) as usize) < budget.max_lines.max(1),
            "chunk over max_lines: {c:?}"
        );
        assert_eq!(c.language, Language::from_path(path));
        covered[c.start_byte..c.end_byte]
            .iter_mut()
            .for_each(|b| *b = true);
    }
    for (i, b) in src.bytes().enumerate() {
        if !b.is_ascii_whitespace() && !covered[i] {
            let line = 1 + src[..i].matches('\n').count();
            panic!(
                "non-blank line {line} not covered: {:?}",
                src.lines().nth(line - 1)
            );
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

const C_HEADER: &str = r#"#ifndef VEC_H
#define VEC_H

#include <stddef.h>

typedef struct {
    int *data;
    size_t len;
} vec_t;

enum growth { GROW_DOUBLE, GROW_LINEAR };

#define VEC_INIT { 0, 0 }

static inline size_t vec_len(const vec_t *v) {
    return v->len;
}

#endif
"#;

const GO_GROUPED: &str = r#"package limits

const (
	MaxConns = 64
	MaxBody  = 1 << 20
)

type (
	ID   string
	Tags []string
)

var defaultTags = Tags{"prod"}
"#;

const JAVA_KINDS: &str = r#"package shop;

public enum Size {
    SMALL, LARGE;

    public int grams() {
        return this == SMALL ? 250 : 500;
    }
}

record Item(String sku, Size size) {
    Item {
        java.util.Objects.requireNonNull(sku);
    }
}
"#;

const PY_CLI: &str = r#"import click

# The command group.


@click.group()
def cli():
    """Entry point."""


@cli.command()
@click.argument("name")
def greet(name):
    click.echo(f"hello {name}")
"#;

const RUST_COMMENTS: &str = r#"// Attached: directly above the item.
fn attached() {}

// Detached: a blank line separates it from the item.

fn detached() {}

fn trailing() {} // Trailing comments stay with their item.
"#;

/// Every snippet above, with the path that selects its language.
const ALL_SNIPPETS: &[(&str, &str)] = &[
    ("src/sched.rs", RUST_SCHEDULER),
    ("src/items.rs", RUST_ITEMS),
    ("src/render.rs", RUST_RENDER),
    ("src/colors.rs", RUST_COLORS),
    ("src/broken.rs", RUST_BROKEN),
    ("src/comments.rs", RUST_COMMENTS),
    ("app/session.py", PY_SESSION),
    ("app/cli.py", PY_CLI),
    ("web/cart.js", JS_CART),
    ("web/shapes.ts", TS_SHAPES),
    ("web/button.tsx", TSX_BUTTON),
    ("server/server.go", GO_SERVER),
    ("server/limits.go", GO_GROUPED),
    ("bank/Account.java", JAVA_ACCOUNT),
    ("shop/Size.java", JAVA_KINDS),
    ("lib/vec.c", C_VEC),
    ("lib/vec.h", C_HEADER),
    ("lib/geometry.cpp", CPP_GEOMETRY),
    ("README.md", MARKDOWN_README),
    ("NOTES.txt", MARKDOWN_README),
];

// ------------------------------------------------------------------ Rust

#[test]
fn rust_oversized_impl_is_split_into_methods_with_doc_comments_attached() {
    let out = chunks("src/sched.rs", RUST_SCHEDULER, &budget(300, 80, 40));
    assert_eq!(
        summary(&out),
        [
            "block |  |  | 1-4",
            "struct | struct Scheduler | Scheduler | 6-11",
            // The one-line header `impl Scheduler {` joins the first method.
            "method | impl Scheduler > fn new | new | 13-17",
            "method | impl Scheduler > fn poll | poll | 19-24",
            "method | impl Scheduler > fn poll | poll | 25-35",
            "const |  | MAX_TASKS | 37-38",
            "module | mod tests | tests | 40-49",
        ]
    );
    // Doc comments and attributes open their item's chunk.
    assert!(out[1]
        .text
        .starts_with("/// A queue of runnable tasks.\n#[derive(Debug, Default)]\npub struct"));
    assert!(out[2]
        .text
        .starts_with("impl Scheduler {\n    /// Creates an empty scheduler.\n    pub fn new()"));
    // The impl's closing brace rides with its last method instead of standing alone.
    assert!(out[4].text.ends_with("        }\n    }\n}"));
}

#[test]
fn rust_nested_module_members_carry_the_module_path() {
    let out = chunks("src/sched.rs", RUST_SCHEDULER, &budget(120, 0, 40));
    let tests: Vec<String> = summary(&out)
        .into_iter()
        .filter(|s| s.contains("mod tests"))
        .collect();
    assert_eq!(
        tests,
        [
            "module | mod tests | tests | 40-42",
            "function | mod tests > fn it_works | it_works | 44-49"
        ]
    );
}

#[test]
fn rust_container_that_fits_is_one_chunk() {
    let out = chunks("src/sched.rs", RUST_SCHEDULER, &budget(2000, 80, 80));
    assert_eq!(
        summary(&out),
        [
            "block |  |  | 1-4",
            "struct | struct Scheduler | Scheduler | 6-11",
            "impl | impl Scheduler | Scheduler | 13-35",
            "const |  | MAX_TASKS | 37-38",
            "module | mod tests | tests | 40-49",
        ]
    );
}

#[test]
fn rust_item_segments_use_rust_keywords() {
    let out = chunks("src/items.rs", RUST_ITEMS, &budget(2000, 0, 80));
    assert_eq!(
        summary(&out),
        [
            "block |  |  | 1-1",
            "const | static DEPTH | DEPTH | 3-4",
            "type | type Result | Result | 6-6",
            "enum | enum Error | Error | 8-12",
            "impl | impl fmt::Display for Error | Error | 14-21",
            "impl | impl Queue<T> | Queue | 23-27",
            "trait | trait Sink | Sink | 29-34",
            "macro | macro bail | bail | 36-40",
        ]
    );
}

#[test]
fn rust_split_trait_impl_keeps_trait_for_type_in_the_path() {
    let out = chunks("src/items.rs", RUST_ITEMS, &budget(150, 0, 80));
    let display: Vec<String> = summary(&out)
        .into_iter()
        .filter(|s| s.contains("Display"))
        .collect();
    assert_eq!(
        display,
        [
            "impl | impl fmt::Display for Error | Error | 14-14",
            "method | impl fmt::Display for Error > fn fmt | fmt | 15-17",
            "method | impl fmt::Display for Error > fn fmt | fmt | 18-21",
        ]
    );
}

#[test]
fn rust_split_trait_lists_signatures_and_default_methods() {
    let out = chunks("src/items.rs", RUST_ITEMS, &budget(70, 0, 80));
    let sink: Vec<String> = summary(&out)
        .into_iter()
        .filter(|s| s.contains("Sink"))
        .collect();
    assert_eq!(
        sink,
        [
            "trait | trait Sink | Sink | 29-29",
            "method | trait Sink > fn send | send | 30-30",
            "method | trait Sink > fn flush | flush | 31-34",
        ]
    );
}

#[test]
fn oversized_function_is_cut_at_statement_boundaries() {
    let out = chunks("src/render.rs", RUST_RENDER, &budget(200, 0, 80));
    assert_eq!(
        summary(&out),
        [
            "function | fn render | render | 1-4",
            "function | fn render | render | 5-11",
            "function | fn render | render | 12-17",
        ]
    );
    // Every piece starts at a statement (or the doc comment), never mid-line.
    assert!(out[0].text.starts_with("/// Renders rows"));
    assert!(out[1].text.starts_with("    for row in rows {"));
    assert!(out[2]
        .text
        .starts_with("    out.push_str(\"</table>\\n\");"));
}

#[test]
fn max_lines_caps_a_long_function() {
    let body: String = (0..30).map(|i| format!("    let v{i} = {i};\n")).collect();
    let src = format!("fn long() {{\n{body}}}\n");
    let out = chunks("long.rs", &src, &budget(10_000, 0, 10));
    assert_eq!(out.len(), 4);
    assert!(out
        .iter()
        .all(|c| c.kind == ChunkKind::Function && c.symbol == "fn long" && c.name == "long"));
    assert_eq!(
        out.iter()
            .map(|c| (c.start_line, c.end_line))
            .collect::<Vec<_>>(),
        [(1, 10), (11, 20), (21, 30), (31, 32)]
    );
}

#[test]
fn small_neighbours_merge_but_not_into_a_big_function() {
    let out = chunks("src/colors.rs", RUST_COLORS, &budget(2000, 100, 80));
    assert_eq!(
        summary(&out),
        [
            // Three one-line consts become one chunk; merged chunks keep the
            // shared kind, the common symbol path (none here) and the first name.
            "const |  | RED | 1-3",
            "function | fn mix | mix | 5-11",
            // Small, but its only neighbour is big: stays alone.
            "const | const ALPHA | ALPHA | 12-12",
        ]
    );
}

#[test]
fn merging_different_kinds_gives_a_block() {
    let src = "use std::io;\nconst A: u8 = 1;\nfn f() {}\n";
    let out = chunks("m.rs", src, &budget(2000, 100, 80));
    assert_eq!(summary(&out), ["block |  | A | 1-3"]);
}

#[test]
fn comments_directly_above_attach_and_detached_ones_do_not() {
    let out = chunks("src/comments.rs", RUST_COMMENTS, &budget(2000, 0, 80));
    assert_eq!(
        summary(&out),
        [
            "function | fn attached | attached | 1-2",
            "block |  |  | 4-4",
            "function | fn detached | detached | 6-6",
            "function | fn trailing | trailing | 8-8",
        ]
    );
    assert!(out[3]
        .text
        .ends_with("// Trailing comments stay with their item."));
}

#[test]
fn broken_rust_still_covers_every_line() {
    let out = chunks("src/broken.rs", RUST_BROKEN, &budget(2000, 0, 80));
    assert_eq!(
        summary(&out),
        ["function | fn ok | ok | 1-1", "block |  |  | 3-9"]
    );
    let tiny = chunks("src/broken.rs", RUST_BROKEN, &budget(40, 0, 3));
    assert!(tiny.len() > 3);
}

// ------------------------------------------------------------------ Python

#[test]
fn python_class_is_split_into_decorated_methods() {
    let out = chunks("app/session.py", PY_SESSION, &budget(300, 80, 40));
    assert_eq!(
        summary(&out),
        [
            "block |  |  | 1-3",
            "class | class Response | Response | 6-12",
            // The class header (docstring, attributes) is small: it joins `__init__`.
            "method | class Session > def __init__ | __init__ | 15-22",
            "method | class Session > def request | request | 24-30",
            "method | class Session > def request | request | 31-33",
            "method | class Session > def close | close | 35-36",
            "function | def main | main | 39-41",
            "block |  |  | 44-45",
        ]
    );
    // Decorators open the method's first piece.
    assert!(out[3]
        .text
        .starts_with("    @retry(times=3)\n    @log_calls\n    def request"));
}

#[test]
fn python_decorated_functions_and_comment_blocks() {
    let out = chunks("app/cli.py", PY_CLI, &budget(2000, 0, 80));
    assert_eq!(
        summary(&out),
        [
            "block |  |  | 1-3",
            "function | def cli | cli | 6-8",
            "function | def greet | greet | 11-14",
        ]
    );
}

// ------------------------------------------------------------------ JavaScript, TypeScript, TSX

#[test]
fn javascript_arrow_consts_function_expressions_and_class_methods() {
    let out = chunks("web/cart.js", JS_CART, &budget(300, 60, 40));
    assert_eq!(
        summary(&out),
        [
            "block |  |  | 1-3",
            "function | function subtotal | subtotal | 5-8",
            "function | function withTax | withTax | 10-12",
            "method | class Cart > method constructor | constructor | 14-18",
            "method | class Cart > method add | add | 20-28",
            "method | class Cart > method total | total | 30-33",
            "function | function checkout | checkout | 35-37",
        ]
    );
    // JSDoc belongs to the arrow function; `export` belongs to the class chunk.
    assert!(out[1].text.starts_with("/**\n * Sums the prices"));
    assert!(out[3].text.starts_with("export class Cart {"));
}

#[test]
fn typescript_interface_type_enum_class_and_namespace() {
    let out = chunks("web/shapes.ts", TS_SHAPES, &budget(2000, 0, 80));
    assert_eq!(
        summary(&out),
        [
            "interface | interface Shape | Shape | 1-4",
            "type | type ShapeKind | ShapeKind | 6-6",
            "enum | enum Unit | Unit | 8-11",
            "class | class Circle | Circle | 13-23",
            "module | namespace Registry | Registry | 25-30",
        ]
    );
    let split = chunks("web/shapes.ts", TS_SHAPES, &budget(200, 0, 80));
    let circle: Vec<String> = summary(&split)
        .into_iter()
        .filter(|s| s.contains("Circle"))
        .collect();
    assert_eq!(
        circle,
        [
            "class | class Circle | Circle | 13-13",
            "method | class Circle > method constructor | constructor | 14-14",
            "method | class Circle > method area | area | 16-18",
            "method | class Circle > method scale | scale | 20-23",
        ]
    );
}

#[test]
fn tsx_component_functions() {
    let out = chunks("web/button.tsx", TSX_BUTTON, &budget(2000, 0, 80));
    assert_eq!(
        summary(&out),
        [
            "block |  |  | 1-1",
            "type | type ButtonProps | ButtonProps | 3-6",
            "function | function Button | Button | 8-21",
            "function | function Toolbar | Toolbar | 23-29",
        ]
    );
    assert!(out.iter().all(|c| c.language == Language::Tsx));
}

// ------------------------------------------------------------------ Go, Java, C, C++

#[test]
fn go_functions_methods_with_receivers_and_types() {
    let out = chunks("server/server.go", GO_SERVER, &budget(2000, 0, 80));
    assert_eq!(
        summary(&out),
        [
            "block |  |  | 1-6",
            "struct | type Server | Server | 8-12",
            "interface | type Handler | Handler | 14-16",
            "function | func New | New | 18-21",
            "method | func (*Server) ServeHTTP | ServeHTTP | 23-27",
            "method | func (Server) String | String | 29-31",
        ]
    );
}

#[test]
fn go_grouped_declarations() {
    let out = chunks("server/limits.go", GO_GROUPED, &budget(2000, 0, 80));
    assert_eq!(
        summary(&out),
        [
            "block |  |  | 1-1",
            "const | const MaxConns | MaxConns | 3-6",
            "type | type ID | ID | 8-11",
            "const | var defaultTags | defaultTags | 13-13",
        ]
    );
}

#[test]
fn java_class_with_constructor_methods_and_nested_enum() {
    let whole = chunks("bank/Account.java", JAVA_ACCOUNT, &budget(2000, 0, 80));
    assert_eq!(
        summary(&whole),
        [
            "block |  |  | 1-4",
            "class | class Account | Account | 6-31"
        ]
    );
    let out = chunks("bank/Account.java", JAVA_ACCOUNT, &budget(250, 0, 80));
    assert_eq!(
        summary(&out),
        [
            "block |  |  | 1-4",
            "class | class Account | Account | 6-10",
            "method | class Account > constructor Account | Account | 12-14",
            "method | class Account > method deposit | deposit | 16-23",
            "method | class Account > method toString | toString | 25-28",
            "enum | class Account > enum Kind | Kind | 30-31",
        ]
    );
    // Annotations are part of the method they annotate.
    assert!(out[4].text.starts_with("    @Override\n"));
}

#[test]
fn java_enum_body_methods_and_records() {
    let out = chunks("shop/Size.java", JAVA_KINDS, &budget(100, 0, 80));
    assert_eq!(
        summary(&out),
        [
            "block |  |  | 1-1",
            "enum | enum Size | Size | 3-4",
            "method | enum Size > method grams | grams | 6-9",
            "class | record Item | Item | 11-11",
            "method | record Item > constructor Item | Item | 12-15",
        ]
    );
}

#[test]
fn c_functions_and_struct() {
    let out = chunks("lib/vec.c", C_VEC, &budget(2000, 0, 80));
    assert_eq!(
        summary(&out),
        [
            "block |  |  | 1-2",
            "struct | struct vec | vec | 4-9",
            "function | function grow | grow | 11-20",
            "function | function vec_push | vec_push | 22-28",
        ]
    );
}

#[test]
fn c_header_items_inside_include_guard() {
    let out = chunks("lib/vec.h", C_HEADER, &budget(2000, 0, 80));
    assert_eq!(
        summary(&out),
        [
            "block |  |  | 1-1",
            "macro | macro VEC_H | VEC_H | 2-2",
            "block |  |  | 4-4",
            "struct | struct vec_t | vec_t | 6-9",
            "enum | enum growth | growth | 11-11",
            "macro | macro VEC_INIT | VEC_INIT | 13-13",
            "function | function vec_len | vec_len | 15-17",
            "block |  |  | 19-19",
        ]
    );
}

#[test]
fn cpp_namespace_class_and_methods() {
    let out = chunks("lib/geometry.cpp", CPP_GEOMETRY, &budget(200, 0, 80));
    assert_eq!(
        summary(&out),
        [
            "block |  |  | 1-1",
            "module | namespace geo | geo | 3-3",
            "class | namespace geo > class Polygon | Polygon | 5-6",
            "method | namespace geo > class Polygon > function Polygon | Polygon | 7-7",
            "method | namespace geo > class Polygon > function interior_angle | interior_angle | 9-11",
            "method | namespace geo > class Polygon > function sides | sides | 13-13",
            "class | namespace geo > class Polygon | Polygon | 15-17",
            "function | namespace geo > function perimeter | perimeter | 19-21",
            "module | namespace geo | geo | 23-23",
            "function | function geo_area | geo_area | 25-27",
        ]
    );
}

#[test]
fn cpp_out_of_class_method_definition() {
    let src = "double geo::Polygon::area() const {\n    return 0.0;\n}\n";
    let out = chunks("poly.cc", src, &ChunkBudget::default());
    assert_eq!(
        summary(&out),
        ["method | function geo::Polygon::area | area | 1-3"]
    );
}

// ------------------------------------------------------------------ Markdown and text

#[test]
fn markdown_sections_follow_headings_outside_fences() {
    let out = chunks("README.md", MARKDOWN_README, &budget(2000, 0, 80));
    assert_eq!(
        summary(&out),
        [
            "section | ragls | ragls | 1-3",
            "section | ragls > Install | Install | 5-5",
            // `# not a heading` sits in a fenced block and does not start a section.
            "section | ragls > Install > From source | From source | 7-12",
            "section | ragls > Install > From crates.io | From crates.io | 14-16",
            // Closing #s are not part of the title.
            "section | ragls > Usage | Usage | 18-20",
        ]
    );
    assert!(out[2].text.contains("# not a heading"));
}

#[test]
fn markdown_tiny_section_joins_the_next() {
    let out = chunks("README.md", MARKDOWN_README, &budget(2000, 40, 80));
    assert_eq!(
        summary(&out),
        [
            "section | ragls | ragls | 1-3",
            "section | ragls > Install | Install | 5-12",
            "section | ragls > Install > From crates.io | From crates.io | 14-16",
            "section | ragls > Usage | Usage | 18-20",
        ]
    );
}

#[test]
fn markdown_oversized_section_splits_at_blank_lines_not_inside_fences() {
    let src = "# Guide\n\nFirst paragraph of the guide.\n\nSecond paragraph, a bit longer.\n\n```\nfenced\n\ncode\n```\n\nLast words.\n";
    let out = chunks("docs/guide.markdown", src, &budget(60, 0, 80));
    assert_eq!(
        summary(&out),
        [
            "section | Guide | Guide | 1-3",
            // The blank line inside the fence (line 9) is not a cut point.
            "section | Guide | Guide | 5-11",
            "section | Guide | Guide | 13-13",
        ]
    );
}

#[test]
fn plain_text_is_cut_at_blank_lines() {
    let paragraph = "word ".repeat(15).trim_end().to_string() + "\n";
    let src = format!("{paragraph}{paragraph}\n{paragraph}\n{paragraph}");
    let out = chunks("LICENSE", &src, &budget(200, 0, 80));
    // Paragraphs are 75 bytes: two fit in 200 bytes, three do not.
    assert_eq!(summary(&out), ["text |  |  | 1-2", "text |  |  | 4-6"]);
}

// ------------------------------------------------------------------ Robustness

#[test]
fn empty_and_whitespace_only_files_give_no_chunks() {
    for path in ["a.rs", "a.py", "a.md", "a.txt", "a.tsx"] {
        assert!(chunk_file(path, b"", &ChunkBudget::default()).is_empty());
        assert!(chunk_file(path, b" \n\t\r\n  \n", &ChunkBudget::default()).is_empty());
    }
}

#[test]
fn invalid_utf8_is_decoded_lossily() {
    let bytes = b"fn a() {\n    let s = \"\xff\xfe\";\n}\n\xc3\n";
    let out = chunk_file("bad.rs", bytes, &ChunkBudget::default());
    let text = String::from_utf8_lossy(bytes);
    check("bad.rs", &text, &out, &ChunkBudget::default());
    assert!(out[0].text.contains('\u{fffd}'));
    assert_eq!(out.last().map(|c| c.end_line), Some(4));
}

#[test]
fn nul_bytes_do_not_truncate_the_file() {
    let src = "def a():\n    return 1\n\0\0\0\ndef b():\n    return '\0'\n";
    for path in ["nul.py", "nul.c", "nul.txt", "nul.md"] {
        let out = chunks(path, src, &budget(30, 0, 80));
        assert_eq!(out.last().map(|c| c.end_line), Some(5), "{path}");
    }
}

#[test]
fn huge_single_line_is_cut_into_budget_sized_pieces() {
    let line = "x = 1; ".repeat(15_000);
    for path in ["min.js", "min.txt", "min.py", "min.md"] {
        let out = chunks(path, &line, &ChunkBudget::default());
        assert!(out.len() >= line.len() / 2000, "{path}");
        assert!(out.iter().all(|c| c.start_line == 1 && c.end_line == 1));
    }
    // Multi-byte characters are never split.
    let wide = "é".repeat(5_000);
    chunks("wide.txt", &wide, &budget(101, 0, 80));
}

#[test]
fn deeply_nested_code_does_not_overflow() {
    let depth = 3_000;
    let js = format!("const x = {}1{};\n", "[".repeat(depth), "]".repeat(depth));
    chunks("deep.js", &js, &budget(200, 0, 20));
    let rust = format!(
        "fn f() {{\n{}\n{}\n}}\n",
        "{\n".repeat(depth),
        "}\n".repeat(depth)
    );
    chunks("deep.rs", &rust, &budget(200, 0, 20));
    let python = format!("x = {}0{}\n", "(".repeat(depth), ")".repeat(depth));
    chunks("deep.py", &python, &budget(200, 0, 20));
}

#[test]
fn garbage_in_every_language_is_covered() {
    let garbage = "}}} ((( fn class def <<< \"unterminated\n/* open comment\n\t#if\n@@@ ~~~ ```\n";
    for (path, _) in ALL_SNIPPETS {
        chunks(path, garbage, &budget(40, 10, 2));
    }
}

#[test]
fn crlf_line_endings() {
    let src = "fn a() {\r\n    1\r\n}\r\n\r\nfn b() {}\r\n";
    let out = chunks("crlf.rs", src, &budget(2000, 0, 80));
    assert_eq!(
        summary(&out),
        ["function | fn a | a | 1-3", "function | fn b | b | 5-5"]
    );
}

#[test]
fn invariants_hold_for_every_snippet_and_budget() {
    let budgets = [
        ChunkBudget::default(),
        budget(400, 100, 30),
        budget(120, 60, 8),
        budget(40, 0, 3),
        budget(1, 0, 1),
        budget(usize::MAX, usize::MAX, usize::MAX),
    ];
    for (path, src) in ALL_SNIPPETS {
        for b in &budgets {
            let out = chunks(path, src, b);
            assert!(!out.is_empty(), "{path}");
        }
    }
}

#[test]
fn chunking_is_deterministic_across_threads() {
    let b = budget(200, 50, 20);
    let expected: Vec<Vec<Chunk>> = ALL_SNIPPETS
        .iter()
        .map(|(p, s)| chunk_file(p, s.as_bytes(), &b))
        .collect();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                ALL_SNIPPETS
                    .iter()
                    .map(|(p, s)| chunk_file(p, s.as_bytes(), &b))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for handle in handles {
        assert!(handle.join().map(|got| got == expected).unwrap_or(false));
    }
}

// ------------------------------------------------------------------ API

#[test]
fn language_from_path_and_names() {
    let cases = [
        ("src/main.rs", Language::Rust),
        ("a/b.pyi", Language::Python),
        ("x.MJS", Language::JavaScript),
        ("x.jsx", Language::JavaScript),
        ("x.cts", Language::TypeScript),
        ("x.tsx", Language::Tsx),
        ("x.go", Language::Go),
        ("X.java", Language::Java),
        ("x.h", Language::C),
        ("x.hxx", Language::Cpp),
        ("docs/x.markdown", Language::Markdown),
        ("Makefile", Language::Text),
        ("dir.rs/notes", Language::Text),
        (".rs", Language::Text),
    ];
    for (path, language) in cases {
        assert_eq!(Language::from_path(path), language, "{path}");
    }
    for language in Language::ALL {
        assert_eq!(Language::from_name(language.as_str()), Some(language));
    }
    assert_eq!(Language::Cpp.as_str(), "cpp");
    assert_eq!(Language::from_name("cobol"), None);
}

#[test]
fn chunk_kind_names_round_trip() {
    for kind in ChunkKind::ALL {
        assert_eq!(ChunkKind::from_name(kind.as_str()), Some(kind));
    }
    assert_eq!(ChunkKind::Impl.as_str(), "impl");
    assert_eq!(ChunkKind::from_name("Impl"), None);
}

#[test]
fn embedding_text_has_path_then_symbol_then_text() {
    let out = chunks("src/sched.rs", RUST_SCHEDULER, &budget(300, 80, 40));
    assert_eq!(
        out[2].embedding_text("src/sched.rs"),
        "src/sched.rs\nimpl Scheduler > fn new\nimpl Scheduler {\n    /// Creates an empty scheduler.\n    pub fn new() -> Self {\n        Self::default()\n    }"
    );
    assert!(out[0]
        .embedding_text("src/sched.rs")
        .starts_with("src/sched.rs\n//! Cooperative"));
}

#[test]
fn default_budget() {
    let b = ChunkBudget::default();
    assert_eq!((b.max_bytes, b.min_bytes, b.max_lines), (2000, 250, 80));
}
