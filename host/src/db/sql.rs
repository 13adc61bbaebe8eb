//! The few types that let one statement run on either backend: the values
//! bound to a statement's parameters and the columns read from its rows.
//!
//! Statements are written once, with SQLite's `?N` placeholders; the
//! PostgreSQL backend rewrites them to `$N`. Integers are `BIGINT` on
//! PostgreSQL and read as `i64`, then narrowed with a check.

use std::borrow::Cow;

use anyhow::{Context, Result};
use postgres::types::{IsNull, ToSql, Type, to_sql_checked};

/// A value bound to a statement parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    /// SQL `NULL`.
    Null,
    /// An integer.
    Int(i64),
    /// Text.
    Text(Cow<'a, str>),
    /// Bytes.
    Bytes(Cow<'a, [u8]>),
}

impl From<i64> for Value<'_> {
    fn from(value: i64) -> Self {
        Self::Int(value)
    }
}

impl From<u32> for Value<'_> {
    fn from(value: u32) -> Self {
        Self::Int(value.into())
    }
}

/// Saturates at `i64::MAX`: counts and milliseconds never get near it.
impl From<u64> for Value<'_> {
    fn from(value: u64) -> Self {
        Self::Int(i64::try_from(value).unwrap_or(i64::MAX))
    }
}

impl<'a> From<&'a str> for Value<'a> {
    fn from(value: &'a str) -> Self {
        Self::Text(Cow::Borrowed(value))
    }
}

impl<'a> From<&'a String> for Value<'a> {
    fn from(value: &'a String) -> Self {
        Self::Text(Cow::Borrowed(value))
    }
}

impl From<String> for Value<'_> {
    fn from(value: String) -> Self {
        Self::Text(Cow::Owned(value))
    }
}

impl<'a> From<&'a [u8]> for Value<'a> {
    fn from(value: &'a [u8]) -> Self {
        Self::Bytes(Cow::Borrowed(value))
    }
}

impl<'a> From<&'a Vec<u8>> for Value<'a> {
    fn from(value: &'a Vec<u8>) -> Self {
        Self::Bytes(Cow::Borrowed(value))
    }
}

impl<'a, T: Into<Value<'a>>> From<Option<T>> for Value<'a> {
    fn from(value: Option<T>) -> Self {
        value.map_or(Self::Null, Into::into)
    }
}

impl rusqlite::ToSql for Value<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match self {
            Self::Null => ValueRef::Null,
            Self::Int(i) => ValueRef::Integer(*i),
            Self::Text(t) => ValueRef::Text(t.as_bytes()),
            Self::Bytes(b) => ValueRef::Blob(b),
        }))
    }
}

/// Binds to whatever type PostgreSQL inferred for the parameter, as long
/// as the value fits it.
impl ToSql for Value<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Self::Null => Ok(IsNull::Yes),
            Self::Int(i) => match *ty {
                Type::INT2 => i16::try_from(*i)?.to_sql(ty, out),
                Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
                _ => i.to_sql(ty, out),
            },
            Self::Text(t) => t.as_ref().to_sql(ty, out),
            Self::Bytes(b) => b.as_ref().to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// One row of a result, from either backend.
pub enum Row<'a> {
    /// A SQLite row.
    Sqlite(&'a rusqlite::Row<'a>),
    /// A PostgreSQL row.
    Postgres(&'a postgres::Row),
}

impl Row<'_> {
    /// The column of this name.
    pub fn get<T: Column>(&self, name: &str) -> Result<T> {
        match self {
            Self::Sqlite(row) => T::sqlite(row, Index::Name(name)),
            Self::Postgres(row) => T::postgres(row, Index::Name(name)),
        }
        .with_context(|| format!("cannot read the column {name}"))
    }

    /// The column at this position, from 0.
    pub fn at<T: Column>(&self, position: usize) -> Result<T> {
        match self {
            Self::Sqlite(row) => T::sqlite(row, Index::At(position)),
            Self::Postgres(row) => T::postgres(row, Index::At(position)),
        }
        .with_context(|| format!("cannot read column {position}"))
    }
}

/// A column by name or by position.
#[derive(Debug, Clone, Copy)]
pub enum Index<'a> {
    /// By name.
    Name(&'a str),
    /// By position, from 0.
    At(usize),
}

/// A Rust type a column can be read as.
pub trait Column: Sized {
    /// Reads it from a SQLite row.
    fn sqlite(row: &rusqlite::Row<'_>, index: Index<'_>) -> Result<Self>;
    /// Reads it from a PostgreSQL row.
    fn postgres(row: &postgres::Row, index: Index<'_>) -> Result<Self>;
}

fn sqlite_get<T: rusqlite::types::FromSql>(row: &rusqlite::Row<'_>, index: Index<'_>) -> Result<T> {
    Ok(match index {
        Index::Name(name) => row.get(name)?,
        Index::At(at) => row.get(at)?,
    })
}

fn postgres_get<'r, T: postgres::types::FromSql<'r>>(
    row: &'r postgres::Row,
    index: Index<'_>,
) -> Result<T> {
    Ok(match index {
        Index::Name(name) => row.try_get(name)?,
        Index::At(at) => row.try_get(at)?,
    })
}

impl Column for String {
    fn sqlite(row: &rusqlite::Row<'_>, index: Index<'_>) -> Result<Self> {
        sqlite_get(row, index)
    }
    fn postgres(row: &postgres::Row, index: Index<'_>) -> Result<Self> {
        postgres_get(row, index)
    }
}

impl Column for Option<String> {
    fn sqlite(row: &rusqlite::Row<'_>, index: Index<'_>) -> Result<Self> {
        sqlite_get(row, index)
    }
    fn postgres(row: &postgres::Row, index: Index<'_>) -> Result<Self> {
        postgres_get(row, index)
    }
}

/// Bytes; on SQLite a text value too (one an operator wrote with the
/// `sqlite3` shell is text).
impl Column for Vec<u8> {
    fn sqlite(row: &rusqlite::Row<'_>, index: Index<'_>) -> Result<Self> {
        let value = match index {
            Index::Name(name) => row.get_ref(name)?,
            Index::At(at) => row.get_ref(at)?,
        };
        Ok(value.as_bytes()?.to_vec())
    }
    fn postgres(row: &postgres::Row, index: Index<'_>) -> Result<Self> {
        postgres_get(row, index)
    }
}

macro_rules! integer_column {
    ($($t:ty),*) => {$(
        impl Column for $t {
            fn sqlite(row: &rusqlite::Row<'_>, index: Index<'_>) -> Result<Self> {
                let wide: i64 = sqlite_get(row, index)?;
                Ok(<$t>::try_from(wide)?)
            }
            fn postgres(row: &postgres::Row, index: Index<'_>) -> Result<Self> {
                let wide: i64 = postgres_get(row, index)?;
                Ok(<$t>::try_from(wide)?)
            }
        }

        impl Column for Option<$t> {
            fn sqlite(row: &rusqlite::Row<'_>, index: Index<'_>) -> Result<Self> {
                let wide: Option<i64> = sqlite_get(row, index)?;
                Ok(wide.map(<$t>::try_from).transpose()?)
            }
            fn postgres(row: &postgres::Row, index: Index<'_>) -> Result<Self> {
                let wide: Option<i64> = postgres_get(row, index)?;
                Ok(wide.map(<$t>::try_from).transpose()?)
            }
        }
    )*};
}

integer_column!(i64, u64, u32);

/// A statement with `?N` placeholders rewritten to PostgreSQL's `$N`
/// (outside quoted text).
pub fn postgres_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut quoted = false;
    for c in sql.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                out.push(c);
            }
            '?' if !quoted => out.push('$'),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_rewritten_outside_quotes_only() {
        assert_eq!(
            postgres_placeholders("SELECT '?1', x FROM t WHERE a = ?1 AND b > ?12"),
            "SELECT '?1', x FROM t WHERE a = $1 AND b > $12"
        );
    }
}
