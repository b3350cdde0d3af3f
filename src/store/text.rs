//! Chunk text as the local index stores it: LZ4-compressed.
//!
//! Chunk text is most of an index (45 MB of the 128 MB a 1.15M-line corpus took), and
//! source code compresses about 2x in chunk-sized pieces. LZ4 because it costs little
//! where it runs: the writer compresses every chunk of a cold index (~0.1 s for 45 MB),
//! and a search decompresses only the few dozen candidates it shows or reranks.
//!
//! The column's SQLite type tells the two forms apart, so indexes written before this
//! (plain TEXT) read as they are and nothing needs rebuilding: TEXT is the text itself,
//! a BLOB is the text's length (little-endian u32) and its LZ4 block. Short texts, and
//! texts that do not shrink, stay TEXT.

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};

/// Texts shorter than this stay plain: LZ4 gains nothing on them.
const COMPRESS_FROM: usize = 64;

/// A chunk's text on its way into the `chunks.text` column.
pub(super) struct Compressed<'a>(pub &'a str);

impl ToSql for Compressed<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        let text = self.0;
        if text.len() >= COMPRESS_FROM {
            let packed = lz4_flex::block::compress_prepend_size(text.as_bytes());
            if packed.len() < text.len() {
                return Ok(ToSqlOutput::from(packed));
            }
        }
        Ok(ToSqlOutput::from(text))
    }
}

/// A chunk's text read back from the `chunks.text` column, in either form.
pub(super) struct Stored(pub String);

impl FromSql for Stored {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        match value {
            ValueRef::Text(bytes) => String::from_utf8(bytes.to_vec())
                .map(Stored)
                .map_err(|e| FromSqlError::Other(Box::new(e))),
            ValueRef::Blob(packed) => {
                let bytes = lz4_flex::block::decompress_size_prepended(packed)
                    .map_err(|e| FromSqlError::Other(Box::new(e)))?;
                // The decoder stops at the end of its input: a truncated or damaged
                // block can decode to fewer bytes than the length it was stored with.
                let stored_len = packed
                    .get(..4)
                    .map(|n| u32::from_le_bytes([n[0], n[1], n[2], n[3]]) as usize);
                if stored_len != Some(bytes.len()) {
                    return Err(FromSqlError::Other(
                        "a chunk's compressed text is damaged (rebuild the index with `ragls index --rebuild`)".into(),
                    ));
                }
                String::from_utf8(bytes)
                    .map(Stored)
                    .map_err(|e| FromSqlError::Other(Box::new(e)))
            }
            _ => Err(FromSqlError::InvalidType),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;

    fn round_trip(conn: &Connection, text: &str) -> (String, String) {
        conn.execute("DELETE FROM t", []).unwrap();
        conn.execute("INSERT INTO t(text) VALUES (?1)", [Compressed(text)])
            .unwrap();
        conn.query_row("SELECT text, typeof(text) FROM t", [], |r| {
            Ok((r.get::<_, Stored>(0)?.0, r.get::<_, String>(1)?))
        })
        .unwrap()
    }

    #[test]
    fn code_is_stored_compressed_and_reads_back_unchanged() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute("CREATE TABLE t (text TEXT NOT NULL)", [])
            .unwrap();
        let code = "fn parse(input: &str) -> Result<Ast, Error> {\n    let tokens = lex(input)?;\n    let tokens = lex(input)?;\n    Parser::new(tokens).parse()\n}\n".repeat(4);
        let (text, kind) = round_trip(&conn, &code);
        assert_eq!(text, code);
        assert_eq!(kind, "blob");
        let stored: i64 = conn
            .query_row("SELECT length(text) FROM t", [], |r| r.get(0))
            .unwrap();
        assert!(
            (stored as usize) < code.len() / 2,
            "{stored} of {}",
            code.len()
        );
    }

    #[test]
    fn short_text_and_incompressible_text_stay_plain() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute("CREATE TABLE t (text TEXT NOT NULL)", [])
            .unwrap();
        assert_eq!(
            round_trip(&conn, "fn a() {}"),
            ("fn a() {}".into(), "text".into())
        );
        // No repeated 4-byte sequence: LZ4 cannot shrink it.
        let noise: String = (0..200u32)
            .map(|i| char::from_u32(0x4E00 + (i * 7919) % 20000).unwrap())
            .collect();
        assert_eq!(round_trip(&conn, &noise), (noise.clone(), "text".into()));
    }

    #[test]
    fn text_written_by_an_older_index_reads_as_it_is() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute("CREATE TABLE t (text TEXT NOT NULL)", [])
            .unwrap();
        let long = "plain text from before compression ".repeat(10);
        conn.execute("INSERT INTO t(text) VALUES (?1)", [&long])
            .unwrap();
        let back: Stored = conn
            .query_row("SELECT text FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(back.0, long);
    }

    #[test]
    fn a_damaged_blob_is_an_error_not_garbage() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute("CREATE TABLE t (text TEXT NOT NULL)", [])
            .unwrap();
        conn.execute("INSERT INTO t(text) VALUES (x'ff00000001')", [])
            .unwrap();
        let back = conn.query_row("SELECT text FROM t", [], |r| r.get::<_, Stored>(0));
        assert!(back.is_err(), "{:?}", back.map(|s| s.0));
        // A block cut short decodes to fewer bytes than it was stored with.
        let packed = lz4_flex::block::compress_prepend_size("abcdefgh".repeat(20).as_bytes());
        conn.execute("UPDATE t SET text=?1", [&packed[..packed.len() - 3]])
            .unwrap();
        let back = conn.query_row("SELECT text FROM t", [], |r| r.get::<_, Stored>(0));
        assert!(back.is_err(), "{:?}", back.map(|s| s.0));
    }
}
