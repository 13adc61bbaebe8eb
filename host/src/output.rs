//! Writing objects as they stream out of a store: as a STIX 2.1 bundle, a
//! TAXII 2.1 envelope, or JSON lines. Each object is written as it comes,
//! so the output never holds more than one object.
//!
//! Projected objects (`_fields`) and quarantine records are not STIX: a
//! bundle or an envelope of them has no `type`/`id` of a bundle and says
//! `"stix": false` with a note; JSON lines carry no header, so the command
//! line prints the note on stderr.

use std::io::{self, Write};

use serde_json::json;

/// How objects are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ObjectFormat {
    /// One STIX 2.1 bundle.
    #[default]
    Bundle,
    /// One TAXII 2.1 envelope (`objects`, `more`, `next`).
    Envelope,
    /// One JSON object per line.
    Jsonl,
}

/// What the written objects are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// STIX 2.1 objects, as stored.
    Stix,
    /// Objects cut down to these properties.
    Projection(Vec<String>),
    /// Quarantine records: `{"reason": ..., "object": ...}`.
    Quarantine,
    /// Objects as the server sent them before conversion (STIX 2.0).
    Original,
}

impl Content {
    /// Why the output is not STIX, if it is not.
    pub fn note(&self) -> Option<String> {
        match self {
            Self::Stix | Self::Original => None,
            Self::Projection(fields) => Some(format!(
                "objects projected to the properties {}: not STIX",
                fields.join(", ")
            )),
            Self::Quarantine => Some(
                "objects the plugin rejected, each with its reason: quarantine records, not STIX"
                    .into(),
            ),
        }
    }

    /// The members that open a bundle or an envelope of this content.
    fn header(&self, format: ObjectFormat) -> String {
        let mut header = match (self, format) {
            (Self::Stix, ObjectFormat::Bundle) => {
                format!(
                    r#""type":"bundle","id":"bundle--{}","#,
                    uuid::Uuid::new_v4()
                )
            }
            (Self::Stix, _) => String::new(),
            (Self::Original, ObjectFormat::Bundle) => {
                format!(
                    r#""type":"bundle","id":"bundle--{}","spec_version":"2.0","#,
                    uuid::Uuid::new_v4()
                )
            }
            (Self::Original, _) => String::new(),
            (content, _) => {
                let mut members = json!({ "stix": false, "note": content.note() });
                if let Self::Projection(fields) = content {
                    members["fields"] = json!(fields);
                }
                let text = members.to_string();
                format!("{},", &text[1..text.len() - 1])
            }
        };
        header.insert(0, '{');
        header.push_str(r#""objects":["#);
        header
    }
}

/// Writes objects one at a time.
pub struct ObjectWriter<'w, W: Write> {
    format: ObjectFormat,
    out: &'w mut W,
    written: u64,
}

impl<'w, W: Write> ObjectWriter<'w, W> {
    /// Starts the output.
    pub fn new(format: ObjectFormat, content: &Content, out: &'w mut W) -> io::Result<Self> {
        if format != ObjectFormat::Jsonl {
            out.write_all(content.header(format).as_bytes())?;
        }
        Ok(Self {
            format,
            out,
            written: 0,
        })
    }

    /// Writes one object (JSON).
    pub fn write(&mut self, object: &[u8]) -> io::Result<()> {
        match self.format {
            ObjectFormat::Jsonl => {
                self.out.write_all(object)?;
                self.out.write_all(b"\n")?;
            }
            _ => {
                let separator: &[u8] = if self.written == 0 { b"\n" } else { b",\n" };
                self.out.write_all(separator)?;
                self.out.write_all(object)?;
            }
        }
        self.written += 1;
        Ok(())
    }

    /// Ends the output: whether more objects follow, and the cursor of the
    /// next page if there is one. Returns how many objects were written.
    pub fn finish(self, more: bool, next: Option<&str>) -> io::Result<u64> {
        match self.format {
            ObjectFormat::Jsonl => {}
            ObjectFormat::Bundle => self.out.write_all(b"\n]}\n")?,
            ObjectFormat::Envelope => {
                write!(self.out, "\n],\"more\":{more}")?;
                if let Some(next) = next {
                    write!(self.out, ",\"next\":{}", json!(next))?;
                }
                self.out.write_all(b"}\n")?;
            }
        }
        self.out.flush()?;
        Ok(self.written)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    fn written(format: ObjectFormat, content: Content, next: Option<&str>) -> String {
        let mut out = Vec::new();
        let mut writer = ObjectWriter::new(format, &content, &mut out).unwrap();
        writer.write(br#"{"id":"x--1"}"#).unwrap();
        writer.write(br#"{"id":"x--2"}"#).unwrap();
        assert_eq!(writer.finish(next.is_some(), next).unwrap(), 2);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_bundle_is_a_stix_bundle() {
        let bundle: Value =
            serde_json::from_str(&written(ObjectFormat::Bundle, Content::Stix, None)).unwrap();
        assert_eq!(bundle["type"], "bundle");
        assert!(bundle["id"].as_str().unwrap().starts_with("bundle--"));
        assert_eq!(bundle["objects"][1]["id"], "x--2");
    }

    #[test]
    fn an_envelope_says_whether_there_is_more() {
        let text = written(ObjectFormat::Envelope, Content::Stix, Some("abc"));
        let envelope: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(envelope["more"], true);
        assert_eq!(envelope["next"], "abc");
        assert_eq!(envelope["objects"].as_array().unwrap().len(), 2);
        let last: Value =
            serde_json::from_str(&written(ObjectFormat::Envelope, Content::Stix, None)).unwrap();
        assert_eq!(last["more"], false);
        assert!(last.get("next").is_none());
    }

    #[test]
    fn projections_and_quarantine_say_they_are_not_stix() {
        let fields = Content::Projection(vec!["id".into(), "name".into()]);
        for format in [ObjectFormat::Bundle, ObjectFormat::Envelope] {
            let doc: Value = serde_json::from_str(&written(format, fields.clone(), None)).unwrap();
            assert_eq!(doc["stix"], false);
            assert!(doc.get("type").is_none(), "not a bundle: {doc}");
            assert_eq!(doc["fields"], json!(["id", "name"]));
            assert!(doc["note"].as_str().unwrap().contains("not STIX"));
        }
        let doc: Value =
            serde_json::from_str(&written(ObjectFormat::Bundle, Content::Quarantine, None))
                .unwrap();
        assert_eq!(doc["stix"], false);
        assert!(doc["note"].as_str().unwrap().contains("quarantine"));
        let lines = written(ObjectFormat::Jsonl, fields, None);
        assert_eq!(lines, "{\"id\":\"x--1\"}\n{\"id\":\"x--2\"}\n");
    }
}
