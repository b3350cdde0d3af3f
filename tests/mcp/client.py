#!/usr/bin/env python3
"""Drives `ragls mcp` with the official MCP Python SDK (PyPI `mcp`), as an agent would.

usage: client.py RAGLS_BINARY WORKSPACE OUTSIDE_FILE
Checks, and fails with a message on the first miss: initialize; tools/list (each input
schema is a valid JSON Schema object); search_code finds the fixture's retry function;
ask cites real lines; read_code reads inside the workspace and refuses `../`, an absolute
path outside, a symlink escape and `.env`; related_code and index_status answer;
reindex reports progress; 200 malformed calls are tool errors and the server still answers.
Prints one JSON line with what it saw (tests/integration/mcp.rs checks it too).
"""
import asyncio
import json
import os
import sys

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client


def check(cond, what):
    if not cond:
        raise SystemExit(f"mcp client check failed: {what}")


def text_of(result):
    return "".join(getattr(c, "text", "") for c in result.content)


def check_schema(schema, where):
    """A small structural check of a JSON Schema (draft 2020-12 subset used by ragls)."""
    check(isinstance(schema, dict), f"{where}: schema is an object")
    check(schema.get("type") == "object", f"{where}: type object")
    props = schema.get("properties", {})
    check(isinstance(props, dict), f"{where}: properties is an object")
    for name, p in props.items():
        check(p.get("type") in ("string", "integer", "boolean", "number"), f"{where}.{name}: a known type")
        check(isinstance(p.get("description", ""), str) and p.get("description"), f"{where}.{name}: described")
        if "enum" in p:
            check(isinstance(p["enum"], list) and p["enum"], f"{where}.{name}: enum is a list")
    for r in schema.get("required", []):
        check(r in props, f"{where}: required '{r}' is a property")


async def main():
    binary, workspace, outside = sys.argv[1], sys.argv[2], sys.argv[3]
    params = StdioServerParameters(
        command=binary, args=["mcp", "--workspace", workspace], env=dict(os.environ)
    )
    seen = {}
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            check(init.server_info.name == "ragls", "server name is ragls")
            check(init.capabilities.tools is not None, "tools capability")

            tools = (await session.list_tools()).tools
            names = sorted(t.name for t in tools)
            check(
                names == sorted(["search_code", "ask", "read_code", "related_code", "index_status", "reindex"]),
                f"tool names {names}",
            )
            for t in tools:
                check(t.description and len(t.description) > 60, f"{t.name} has a description")
                check_schema(t.input_schema, t.name)
            seen["tools"] = names

            # Waits for the index (built in the background at start) to be ready.
            for _ in range(100):
                status = json.loads(text_of(await session.call_tool("index_status", {})))
                if status["state"] == "ready" and status["files"] >= 3:
                    break
                await asyncio.sleep(0.1)
            check(status["state"] == "ready", f"index ready: {status}")
            seen["files"] = status["files"]

            r = await session.call_tool("search_code", {"query": "wait longer after each failed attempt, exponential backoff", "top_k": 5})
            check(not r.is_error, f"search_code ok: {text_of(r)}")
            results = r.structured_content["results"]
            check(results, "search_code returns results")
            top = results[0]
            check(top["path"] == "src/net/retry.rs" and "retry_with_backoff" in top["symbol"], f"top hit is retry_with_backoff: {top}")
            check("retry_with_backoff" in text_of(r), "the text names the function")
            seen["search_top"] = f'{top["path"]}:{top["start_line"]}-{top["end_line"]} {top["symbol"]}'

            r = await session.call_tool("search_code", {"query": "parse a request line", "path_glob": "src/**/*.py", "language": "python"})
            check(not r.is_error, f"filtered search ok: {text_of(r)}")
            paths = {x["path"] for x in r.structured_content["results"]}
            check(paths and all(p.endswith(".py") for p in paths), f"filters keep python files only: {paths}")

            r = await session.call_tool("ask", {"question": "How are failed requests retried with backoff?"})
            check(not r.is_error, f"ask ok: {text_of(r)}")
            answer = r.structured_content
            check("[1]" in answer["answer"], "the answer has [n] markers")
            check(answer["citations"], "the answer has citations")
            for c in answer["citations"]:
                with open(os.path.join(workspace, c["path"]), encoding="utf-8") as fh:
                    lines = fh.read().split("\n")
                check(1 <= c["start_line"] <= c["end_line"] <= len(lines), f"citation lines exist: {c}")
                cited = "\n".join(lines[c["start_line"] - 1 : c["end_line"]])
                name = (c.get("symbol") or "").split(" ")[-1]
                check(not name or name in cited, f"cited lines hold {name}: {c}")
            check(any(c["path"] == "src/net/retry.rs" for c in answer["citations"]), "ask cites retry.rs")
            seen["citations"] = [f'{c["path"]}:{c["start_line"]}-{c["end_line"]}' for c in answer["citations"]]

            r = await session.call_tool("read_code", {"path": "src/net/retry.rs", "start_line": 1, "end_line": 3})
            check(not r.is_error and "1\t" in text_of(r), f"read_code reads: {text_of(r)}")
            refusals = {
                "parent": "../outside.txt",
                "absolute": outside,
                "symlink": "escape.txt",
                "secret": ".env",
            }
            seen["refused"] = {}
            for why, path in refusals.items():
                r = await session.call_tool("read_code", {"path": path})
                check(r.is_error, f"read_code refuses {why} ({path}): {text_of(r)}")
                check("SECRET_VALUE" not in text_of(r) and "outside secret" not in text_of(r), f"{why}: nothing leaks")
                seen["refused"][why] = text_of(r)

            retry_line = top["start_line"]
            r = await session.call_tool("related_code", {"path": "src/net/retry.rs", "line": retry_line})
            check(not r.is_error and r.structured_content["results"], f"related_code: {text_of(r)}")

            progress = []

            async def on_progress(done, total, message):
                progress.append((done, total, message))

            r = await session.call_tool("reindex", {"full": True}, progress_callback=on_progress)
            check(not r.is_error, f"reindex ok: {text_of(r)}")
            check(progress and progress[-1][0] == progress[-1][1], f"reindex reported progress: {progress}")
            seen["progress"] = len(progress)

            bad = [
                ("search_code", {}),
                ("search_code", {"query": 42}),
                ("search_code", {"query": ""}),
                ("search_code", {"query": "x", "top_k": 0}),
                ("search_code", {"query": "x", "top_k": 10_000}),
                ("search_code", {"query": "x", "top_k": "ten"}),
                ("search_code", {"query": "x", "top_k": -1}),
                ("search_code", {"query": "x", "language": "klingon"}),
                ("search_code", {"query": "x", "path_glob": "a/[b"}),
                ("search_code", {"query": "x", "extra": True}),
                ("search_code", {"query": ["a", "b"]}),
                ("search_code", {"query": {"nested": 1}}),
                ("search_code", {"query": "x" * 5000}),
                ("ask", {}),
                ("ask", {"question": None}),
                ("read_code", {}),
                ("read_code", {"path": ""}),
                ("read_code", {"path": "src/net/retry.rs", "start_line": 0}),
                ("read_code", {"path": "src/net/retry.rs", "start_line": 5, "end_line": 2}),
                ("read_code", {"path": "src/net/retry.rs", "start_line": 100000}),
                ("read_code", {"path": "no/such/file.rs"}),
                ("read_code", {"path": "src"}),
                ("read_code", {"path": "/etc/passwd"}),
                ("read_code", {"path": "src/../../x"}),
                ("related_code", {"path": "src/net/retry.rs"}),
                ("related_code", {"path": "src/net/retry.rs", "line": 1.5}),
                ("related_code", {"path": "src/net/retry.rs", "line": 99999}),
                ("index_status", {"verbose": True}),
                ("reindex", {"full": "yes"}),
                ("no_such_tool", {"a": 1}),
            ]
            errors = 0
            for i in range(200):
                name, args = bad[i % len(bad)]
                r = await session.call_tool(name, args)
                check(r.is_error, f"malformed call {name} {args} is a tool error, got: {text_of(r)}")
                check(text_of(r).strip(), f"malformed call {name} says what to fix")
                errors += 1
            seen["malformed"] = errors

            r = await session.call_tool("search_code", {"query": "retry_with_backoff"})
            check(not r.is_error and r.structured_content["results"], "the server still answers after 200 malformed calls")
    print(json.dumps(seen))


asyncio.run(main())
