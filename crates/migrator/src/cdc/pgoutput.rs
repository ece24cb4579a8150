//! The messages of PostgreSQL's built-in logical decoding plugin, `pgoutput` (protocol version 1,
//! https://www.postgresql.org/docs/15/protocol-logicalrep-message-formats.html), as
//! `pg_logical_slot_peek_binary_changes` returns them: one message per row. Column values come in
//! PostgreSQL's text form, which is what `COPY` and a `$1::type` cast read back, so a value is
//! applied exactly as the legacy database printed it.
//!
//! Parsing is strict: a message that does not parse is an error naming what was wrong, never a
//! guess. It allocates only the values it returns.

use std::fmt;

/// A log sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xffff_ffff)
    }
}

impl std::str::FromStr for Lsn {
    type Err = String;

    /// `16/B374D848`, as PostgreSQL prints a `pg_lsn`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (hi, lo) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not an LSN"))?;
        let hi = u64::from_str_radix(hi, 16).map_err(|_| format!("{s:?} is not an LSN"))?;
        let lo = u64::from_str_radix(lo, 16).map_err(|_| format!("{s:?} is not an LSN"))?;
        if hi > u64::from(u32::MAX) || lo > u64::from(u32::MAX) {
            return Err(format!("{s:?} is not an LSN"));
        }
        Ok(Lsn(hi << 32 | lo))
    }
}

/// One column of a tuple.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Null,
    /// A TOASTed value the change did not touch: the old one stays (never write it as NULL).
    Unchanged,
    /// The value in PostgreSQL's text form.
    Text(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationColumn {
    /// Part of the replica identity (the primary key).
    pub key: bool,
    pub name: String,
    pub type_oid: u32,
    pub type_modifier: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    pub oid: u32,
    pub namespace: String,
    pub name: String,
    pub columns: Vec<RelationColumn>,
}

/// The old row an update or delete names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OldRow {
    /// The replica identity's columns only (`K`); the others are `Null` placeholders.
    Key(Vec<Value>),
    /// The whole old row (`O`, REPLICA IDENTITY FULL).
    Full(Vec<Value>),
}

impl OldRow {
    pub fn values(&self) -> &[Value] {
        match self {
            OldRow::Key(v) | OldRow::Full(v) => v,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Begin {
        /// Where the transaction's commit record ends: its position in the stream.
        final_lsn: Lsn,
        /// Microseconds since 2000-01-01 (PostgreSQL's epoch).
        commit_time: i64,
        xid: u32,
    },
    Commit {
        commit_lsn: Lsn,
        end_lsn: Lsn,
        commit_time: i64,
    },
    Relation(Relation),
    Insert {
        relation: u32,
        new: Vec<Value>,
    },
    Update {
        relation: u32,
        /// Present when the key changed (`K`) or the table is REPLICA IDENTITY FULL (`O`).
        old: Option<OldRow>,
        new: Vec<Value>,
    },
    Delete {
        relation: u32,
        old: OldRow,
    },
    Truncate {
        relations: Vec<u32>,
        cascade: bool,
        restart_identity: bool,
    },
    /// `pg_logical_emit_message` (with the `messages` option).
    Logical {
        transactional: bool,
        lsn: Lsn,
        prefix: String,
        content: Vec<u8>,
    },
    /// A type's name (for types outside pg_catalog); the applier casts by the table's catalog.
    Type,
    /// The origin of a replicated transaction; not used by the platform.
    Origin,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a pgoutput message does not parse: {0}")]
pub struct ParseError(String);

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], ParseError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|end| *end <= self.buf.len())
            .ok_or_else(|| ParseError(format!("it ends inside {what}")))?;
        let bytes = &self.buf[self.at..end];
        self.at = end;
        Ok(bytes)
    }

    fn u8(&mut self, what: &str) -> Result<u8, ParseError> {
        Ok(self.take(1, what)?[0])
    }

    fn i16(&mut self, what: &str) -> Result<i16, ParseError> {
        let b = self.take(2, what)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self, what: &str) -> Result<i32, ParseError> {
        let b = self.take(4, what)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u32(&mut self, what: &str) -> Result<u32, ParseError> {
        Ok(self.i32(what)? as u32)
    }

    fn i64(&mut self, what: &str) -> Result<i64, ParseError> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_be_bytes(a))
    }

    fn lsn(&mut self, what: &str) -> Result<Lsn, ParseError> {
        Ok(Lsn(self.i64(what)? as u64))
    }

    fn string(&mut self, what: &str) -> Result<String, ParseError> {
        let rest = &self.buf[self.at..];
        let len = rest
            .iter()
            .position(|b| *b == 0)
            .ok_or_else(|| ParseError(format!("{what} has no terminating zero")))?;
        let s = std::str::from_utf8(&rest[..len])
            .map_err(|_| ParseError(format!("{what} is not UTF-8")))?
            .to_string();
        self.at += len + 1;
        Ok(s)
    }

    fn tuple(&mut self) -> Result<Vec<Value>, ParseError> {
        let n = self.i16("a tuple's column count")?;
        if n < 0 {
            return Err(ParseError(format!("a tuple has {n} columns")));
        }
        let mut values = Vec::with_capacity(n as usize);
        for _ in 0..n {
            values.push(match self.u8("a column's kind")? {
                b'n' => Value::Null,
                b'u' => Value::Unchanged,
                b't' => {
                    let len = self.i32("a value's length")?;
                    if len < 0 {
                        return Err(ParseError(format!("a value is {len} bytes long")));
                    }
                    let bytes = self.take(len as usize, "a value")?;
                    Value::Text(
                        String::from_utf8(bytes.to_vec())
                            .map_err(|_| ParseError("a text value is not UTF-8".into()))?,
                    )
                }
                other => {
                    return Err(ParseError(format!(
                        "a column of kind {:?} (binary values need protocol 2)",
                        other as char
                    )));
                }
            });
        }
        Ok(values)
    }

    fn done(&self, what: &str) -> Result<(), ParseError> {
        if self.at == self.buf.len() {
            Ok(())
        } else {
            Err(ParseError(format!(
                "{} bytes left after {what}",
                self.buf.len() - self.at
            )))
        }
    }
}

/// Parses one message.
pub fn parse(data: &[u8]) -> Result<Message, ParseError> {
    let mut r = Reader { buf: data, at: 0 };
    let message = match r.u8("the message type")? {
        b'B' => Message::Begin {
            final_lsn: r.lsn("Begin")?,
            commit_time: r.i64("Begin")?,
            xid: r.u32("Begin")?,
        },
        b'C' => {
            let _flags = r.u8("Commit")?;
            Message::Commit {
                commit_lsn: r.lsn("Commit")?,
                end_lsn: r.lsn("Commit")?,
                commit_time: r.i64("Commit")?,
            }
        }
        b'R' => Message::Relation(r.relation()?),
        b'I' => {
            let relation = r.u32("Insert")?;
            match r.u8("Insert")? {
                b'N' => Message::Insert {
                    relation,
                    new: r.tuple()?,
                },
                other => return Err(ParseError(format!("Insert with {:?}", other as char))),
            }
        }
        b'U' => r.update()?,
        b'D' => {
            let relation = r.u32("Delete")?;
            let old = match r.u8("Delete")? {
                b'K' => OldRow::Key(r.tuple()?),
                b'O' => OldRow::Full(r.tuple()?),
                other => return Err(ParseError(format!("Delete with {:?}", other as char))),
            };
            Message::Delete { relation, old }
        }
        b'T' => r.truncate()?,
        b'M' => r.logical()?,
        b'Y' => {
            let _oid = r.u32("Type")?;
            let _namespace = r.string("a type's schema")?;
            let _name = r.string("a type's name")?;
            Message::Type
        }
        b'O' => {
            let _lsn = r.lsn("Origin")?;
            let _name = r.string("an origin's name")?;
            Message::Origin
        }
        other => {
            return Err(ParseError(format!(
                "unknown message type {:?}",
                other as char
            )));
        }
    };
    r.done("the message")?;
    Ok(message)
}

/// The bodies of the longer messages.
impl Reader<'_> {
    fn relation(&mut self) -> Result<Relation, ParseError> {
        let oid = self.u32("Relation")?;
        let namespace = self.string("a relation's schema")?;
        let name = self.string("a relation's name")?;
        let _identity = self.u8("a relation's replica identity")?;
        let n = self.i16("a relation's column count")?;
        let mut columns = Vec::with_capacity(n.max(0) as usize);
        for _ in 0..n.max(0) {
            columns.push(RelationColumn {
                key: self.u8("a column's flags")? & 1 == 1,
                name: self.string("a column's name")?,
                type_oid: self.u32("a column's type")?,
                type_modifier: self.i32("a column's type modifier")?,
            });
        }
        Ok(Relation {
            oid,
            // An empty schema means pg_catalog.
            namespace: if namespace.is_empty() {
                "pg_catalog".into()
            } else {
                namespace
            },
            name,
            columns,
        })
    }

    fn update(&mut self) -> Result<Message, ParseError> {
        let relation = self.u32("Update")?;
        let mut old = None;
        let mut kind = self.u8("Update")?;
        if kind == b'K' || kind == b'O' {
            let values = self.tuple()?;
            old = Some(if kind == b'K' {
                OldRow::Key(values)
            } else {
                OldRow::Full(values)
            });
            kind = self.u8("Update")?;
        }
        if kind != b'N' {
            return Err(ParseError(format!("Update with {:?}", kind as char)));
        }
        Ok(Message::Update {
            relation,
            old,
            new: self.tuple()?,
        })
    }

    fn truncate(&mut self) -> Result<Message, ParseError> {
        let n = self.i32("Truncate")?;
        let options = self.u8("Truncate")?;
        let mut relations = Vec::with_capacity(n.max(0) as usize);
        for _ in 0..n.max(0) {
            relations.push(self.u32("Truncate")?);
        }
        Ok(Message::Truncate {
            relations,
            cascade: options & 1 == 1,
            restart_identity: options & 2 == 2,
        })
    }

    fn logical(&mut self) -> Result<Message, ParseError> {
        let flags = self.u8("Message")?;
        let lsn = self.lsn("Message")?;
        let prefix = self.string("a message's prefix")?;
        let len = self.i32("a message's length")?;
        if len < 0 {
            return Err(ParseError(format!("a message is {len} bytes long")));
        }
        let content = self.take(len as usize, "a message")?.to_vec();
        Ok(Message::Logical {
            transactional: flags & 1 == 1,
            lsn,
            prefix,
            content,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tuple(values: &[Option<&str>]) -> Vec<u8> {
        let mut b = (values.len() as i16).to_be_bytes().to_vec();
        for v in values {
            match v {
                None => b.push(b'n'),
                Some("<unchanged>") => b.push(b'u'),
                Some(s) => {
                    b.push(b't');
                    b.extend((s.len() as i32).to_be_bytes());
                    b.extend(s.as_bytes());
                }
            }
        }
        b
    }

    #[test]
    fn an_lsn_reads_and_prints_as_postgresql_does() {
        let lsn: Lsn = "16/B374D848".parse().unwrap();
        assert_eq!(lsn.0, 0x16_B374_D848);
        assert_eq!(lsn.to_string(), "16/B374D848");
        assert!("16-B3".parse::<Lsn>().is_err());
        assert!("1FFFFFFFF/0".parse::<Lsn>().is_err());
    }

    #[test]
    fn begin_and_commit_carry_the_commit_position() {
        let mut b = vec![b'B'];
        b.extend(0x10_0000_0200u64.to_be_bytes());
        b.extend(5i64.to_be_bytes());
        b.extend(77u32.to_be_bytes());
        assert_eq!(
            parse(&b).unwrap(),
            Message::Begin {
                final_lsn: Lsn(0x10_0000_0200),
                commit_time: 5,
                xid: 77
            }
        );
        let mut c = vec![b'C', 0];
        c.extend(0x200u64.to_be_bytes());
        c.extend(0x228u64.to_be_bytes());
        c.extend(5i64.to_be_bytes());
        assert_eq!(
            parse(&c).unwrap(),
            Message::Commit {
                commit_lsn: Lsn(0x200),
                end_lsn: Lsn(0x228),
                commit_time: 5
            }
        );
    }

    #[test]
    fn a_relation_names_its_columns_and_key() {
        let mut b = vec![b'R'];
        b.extend(16384u32.to_be_bytes());
        b.extend(b"public\0users\0");
        b.push(b'd');
        b.extend(2i16.to_be_bytes());
        b.push(1);
        b.extend(b"id\0");
        b.extend(25u32.to_be_bytes());
        b.extend((-1i32).to_be_bytes());
        b.push(0);
        b.extend(b"name\0");
        b.extend(25u32.to_be_bytes());
        b.extend((-1i32).to_be_bytes());
        let Message::Relation(rel) = parse(&b).unwrap() else {
            panic!("a relation")
        };
        assert_eq!(rel.name, "users");
        assert!(rel.columns[0].key && !rel.columns[1].key);
        assert_eq!(rel.columns[1].name, "name");
    }

    #[test]
    fn an_update_keeps_unchanged_toast_apart_from_null_and_may_carry_the_old_key() {
        let mut b = vec![b'U'];
        b.extend(16384u32.to_be_bytes());
        b.push(b'K');
        b.extend(tuple(&[Some("old-id"), None]));
        b.push(b'N');
        b.extend(tuple(&[Some("new-id"), Some("<unchanged>"), None]));
        assert_eq!(
            parse(&b).unwrap(),
            Message::Update {
                relation: 16384,
                old: Some(OldRow::Key(vec![Value::Text("old-id".into()), Value::Null])),
                new: vec![Value::Text("new-id".into()), Value::Unchanged, Value::Null],
            }
        );
    }

    #[test]
    fn truncate_and_logical_messages_parse() {
        let mut t = vec![b'T'];
        t.extend(2i32.to_be_bytes());
        t.push(1);
        t.extend(1u32.to_be_bytes());
        t.extend(2u32.to_be_bytes());
        assert_eq!(
            parse(&t).unwrap(),
            Message::Truncate {
                relations: vec![1, 2],
                cascade: true,
                restart_identity: false
            }
        );
        let mut m = vec![b'M', 1];
        m.extend(9u64.to_be_bytes());
        m.extend(b"mfe-cutover\0");
        m.extend(3i32.to_be_bytes());
        m.extend(b"abc");
        assert_eq!(
            parse(&m).unwrap(),
            Message::Logical {
                transactional: true,
                lsn: Lsn(9),
                prefix: "mfe-cutover".into(),
                content: b"abc".to_vec()
            }
        );
    }

    #[test]
    fn a_broken_message_is_an_error_not_a_guess() {
        assert!(parse(b"").is_err());
        assert!(parse(b"Z").is_err());
        let mut b = vec![b'I'];
        b.extend(1u32.to_be_bytes());
        b.push(b'N');
        b.extend(1i16.to_be_bytes());
        b.push(b't');
        b.extend(100i32.to_be_bytes());
        b.extend(b"short");
        assert!(parse(&b).is_err(), "a value longer than the message");
        let mut extra = vec![b'B'];
        extra.extend([0u8; 20]);
        extra.push(0);
        assert!(parse(&extra).is_err(), "bytes left over");
    }
}
