//! Get Objects: filtering, TAXII 2.1 paging (consuming sessions, keyset
//! tokens, no `next`) and TAXII 2.0 item ranges.

use std::collections::HashMap;
use std::time::Instant;

use serde_json::{Map, Value, json};

use super::script::{Collection, DateHeader, Entry, Paging, RangeSpellings, Script};
use super::{Recorded, STIX_20, TAXII_21, error, json_reply};
use crate::http_server::Reply;

/// The consuming `next` sessions of a server.
#[derive(Debug, Default)]
pub struct Sessions {
    open: HashMap<String, Session>,
    made: usize,
}

#[derive(Debug)]
struct Session {
    /// The request's parameters but `next`, which later pages must repeat.
    filters: Vec<(String, String)>,
    /// Index of the next object to serve.
    position: usize,
    made_at: Instant,
}

/// A page: the matching objects from `start`, and where it ends.
struct Slice<'c> {
    matching: Vec<(usize, &'c Entry)>,
    start: usize,
    end: usize,
}

/// A TAXII 2.1 page of the collection at `index`.
pub(super) fn page_21(
    script: &Script,
    sessions: &mut Sessions,
    index: usize,
    request: &Recorded,
) -> Reply {
    let mut pager = Pager { script, sessions };
    pager.objects_21(&script.collections[index], request)
}

struct Pager<'s> {
    script: &'s Script,
    sessions: &'s mut Sessions,
}

impl Pager<'_> {
    fn objects_21(&mut self, collection: &Collection, request: &Recorded) -> Reply {
        let matching = matching(collection, request, self.script.inclusive_added_after);
        let limit = request
            .param("limit")
            .and_then(|l| l.parse().ok())
            .unwrap_or(self.script.max_page_size)
            .min(self.script.max_page_size);
        let token = request.param("next").map(String::from);
        let start = match self.start_of(&matching, request, token.as_deref()) {
            Ok(start) => start,
            Err(reply) => return reply,
        };
        let end = (start + limit).min(matching.len());
        let slice = Slice {
            matching,
            start,
            end,
        };
        let quirks = &self.script.quirks;
        let has_more = slice.end < slice.matching.len();
        let more = has_more || quirks.repeat_first_page || quirks.endless_empty_pages;
        let next = if more {
            Some(self.next_token(&slice, request, token))
        } else {
            self.close_session(token);
            None
        };
        self.envelope(&slice, more, next)
    }

    /// Where the page starts: 0, the position of a consuming session, or
    /// after a keyset token.
    fn start_of(
        &mut self,
        matching: &[(usize, &Entry)],
        request: &Recorded,
        token: Option<&str>,
    ) -> Result<usize, Reply> {
        let Some(token) = token else {
            return Ok(0);
        };
        if self.script.quirks.repeat_first_page {
            return Ok(0);
        }
        match self.script.paging {
            Paging::Keyset => Ok(after_keyset(matching, token)),
            Paging::NoNext => Err(error(400, "Bad Request", "this server gives no next")),
            Paging::ConsumingNext { ttl } => {
                let Some(session) = self.sessions.open.get(token) else {
                    return Err(error(400, "Bad Request", "the next token is unknown"));
                };
                if session.made_at.elapsed() > ttl {
                    self.sessions.open.remove(token);
                    return Err(error(400, "Bad Request", "the next token has expired"));
                }
                if self.script.quirks.strict_filters && session.filters != filters(request) {
                    return Err(error(
                        400,
                        "Bad Request",
                        "the filters changed between pages",
                    ));
                }
                Ok(session.position.min(matching.len()))
            }
        }
    }

    fn next_token(
        &mut self,
        slice: &Slice<'_>,
        request: &Recorded,
        token: Option<String>,
    ) -> String {
        if self.script.quirks.repeat_first_page {
            return "the-same-token".into();
        }
        match self.script.paging {
            Paging::Keyset | Paging::NoNext => match slice.end.checked_sub(1) {
                Some(last) if last >= slice.start => {
                    let (seq, entry) = slice.matching[last];
                    format!("{}|{seq}", entry.date_added)
                }
                _ => {
                    self.sessions.made += 1;
                    format!("empty-{}", self.sessions.made)
                }
            },
            Paging::ConsumingNext { .. } => {
                let token = token.unwrap_or_else(|| {
                    self.sessions.made += 1;
                    format!("session-{}", self.sessions.made)
                });
                let session = self.sessions.open.entry(token.clone()).or_insert(Session {
                    filters: filters(request),
                    position: 0,
                    made_at: Instant::now(),
                });
                session.position = slice.end;
                token
            }
        }
    }

    fn close_session(&mut self, token: Option<String>) {
        if let Some(token) = token {
            self.sessions.open.remove(&token);
        }
    }

    fn envelope(&self, slice: &Slice<'_>, more: bool, next: Option<String>) -> Reply {
        let quirks = &self.script.quirks;
        let page = &slice.matching[slice.start..slice.end];
        let mut body = Map::new();
        if !quirks.omit_more && (more || !page.is_empty()) {
            body.insert("more".into(), more.into());
            if let (Some(next), false) = (next, self.script.paging == Paging::NoNext) {
                body.insert("next".into(), next.into());
            }
        }
        if !page.is_empty() {
            let objects = page.iter().map(|(_, e)| e.object.clone()).collect();
            body.insert(quirks.objects_key.clone(), Value::Array(objects));
        }
        let status = if quirks.status_206 { 206 } else { 200 };
        json_reply(
            status,
            TAXII_21,
            &Value::Object(body),
            date_headers(self.script, page),
        )
    }
}

/// `X-TAXII-Date-Added-First` and `-Last` of a page, as the script says.
fn date_headers(script: &Script, page: &[(usize, &Entry)]) -> Vec<(String, String)> {
    let (Some((_, first)), Some((_, last))) = (page.first(), page.last()) else {
        return Vec::new();
    };
    let mut headers = vec![("x-taxii-date-added-first".into(), first.date_added.clone())];
    match &script.quirks.date_added_last {
        DateHeader::Last => {
            headers.push(("x-taxii-date-added-last".into(), last.date_added.clone()))
        }
        DateHeader::Missing => {}
        DateHeader::Fixed(value) => headers.push(("x-taxii-date-added-last".into(), value.clone())),
    }
    headers
}

/// A TAXII 2.0 range of the collection at `index`.
pub(super) fn page_20(script: &Script, index: usize, request: &Recorded) -> Reply {
    let collection = &script.collections[index];
    let ranges = script.ranges.clone();
    let matching = matching(collection, request, script.inclusive_added_after);
    let total = matching.len();
    let asked = match request.header("range") {
        None => None,
        Some(value) => match parse_range(value, ranges.accepts) {
            Some(range) => Some(range),
            None => {
                let status = ranges.refuse_status;
                return error(
                    status,
                    "Bad Range",
                    "this spelling of Range is not accepted",
                );
            }
        },
    };
    let (first, last) = match asked {
        Some(_) if ranges.ignore => (0, total.saturating_sub(1)),
        None => (0, total.saturating_sub(1)),
        Some((first, last)) if ranges.stuck => (0, last.saturating_sub(first)),
        Some((first, last)) => (first, last),
    };
    if asked.is_some() && !ranges.ignore && first >= total {
        let headers = vec![("content-range".into(), format!("items */{total}"))];
        let body = json!({"title": "Range Not Satisfiable"});
        return json_reply(416, TAXII_21, &body, headers);
    }
    let page_last = last
        .min(first + script.max_page_size - 1)
        .min(total.saturating_sub(1));
    let page: Vec<(usize, &Entry)> = if total == 0 {
        Vec::new()
    } else {
        matching[first..=page_last].to_vec()
    };
    let bundle = json!({
        "type": "bundle",
        "id": "bundle--5d0092c5-5f74-4287-9642-33f4c354e56d",
        "spec_version": "2.0",
        "objects": page.iter().map(|(_, e)| e.object.clone()).collect::<Vec<_>>(),
    });
    let mut headers = date_headers(script, &page);
    if asked.is_none() || ranges.ignore {
        return json_reply(200, STIX_20, &bundle, headers);
    }
    let of = if ranges.total {
        total.to_string()
    } else {
        "*".into()
    };
    headers.push((
        "content-range".into(),
        format!("items {first}-{page_last}/{of}"),
    ));
    json_reply(206, STIX_20, &bundle, headers)
}

/// The collection's entries a request asks for, with their positions.
fn matching<'c>(
    collection: &'c Collection,
    request: &Recorded,
    inclusive: bool,
) -> Vec<(usize, &'c Entry)> {
    let after = request.param("added_after").map(canonical);
    let types: Option<Vec<&str>> = request.param("match[type]").map(|t| t.split(',').collect());
    let all_versions = request.param("match[version]") == Some("all");
    let mut matching: Vec<(usize, &Entry)> = collection
        .entries
        .iter()
        .enumerate()
        .filter(|(_, e)| match &after {
            Some(after) if inclusive => canonical(&e.date_added) >= *after,
            Some(after) => canonical(&e.date_added) > *after,
            None => true,
        })
        .filter(|(_, e)| {
            types
                .as_ref()
                .is_none_or(|types| types.contains(&e.object["type"].as_str().unwrap_or_default()))
        })
        .collect();
    if !all_versions {
        let mut latest: HashMap<&str, String> = HashMap::new();
        for (_, e) in &matching {
            let id = e.object["id"].as_str().unwrap_or_default();
            let modified = canonical(e.object["modified"].as_str().unwrap_or_default());
            let newest = latest.entry(id).or_default();
            if modified > *newest {
                *newest = modified;
            }
        }
        matching.retain(|(_, e)| {
            let id = e.object["id"].as_str().unwrap_or_default();
            canonical(e.object["modified"].as_str().unwrap_or_default()) == latest[id]
        });
    }
    matching
}

/// The position after a keyset token `date_added|position`.
fn after_keyset(matching: &[(usize, &Entry)], token: &str) -> usize {
    let (date, seq) = token.split_once('|').unwrap_or((token, ""));
    let date = canonical(date);
    let seq: usize = seq.parse().unwrap_or(usize::MAX);
    matching
        .iter()
        .position(|(s, e)| {
            let d = canonical(&e.date_added);
            d > date || (d == date && *s > seq)
        })
        .unwrap_or(matching.len())
}

/// The parameters that must stay the same from page to page.
fn filters(request: &Recorded) -> Vec<(String, String)> {
    let mut filters: Vec<_> = request
        .params
        .iter()
        .filter(|(k, _)| k != "next")
        .cloned()
        .collect();
    filters.sort();
    filters
}

/// A timestamp that compares in time order: nine fractional digits, `Z`.
fn canonical(stamp: &str) -> String {
    let body = stamp
        .trim()
        .trim_end_matches('Z')
        .trim_end_matches("+00:00");
    let (seconds, fraction) = body.split_once('.').unwrap_or((body, ""));
    format!("{seconds}.{fraction:0<9}Z")
}

/// `items a-b` or `items=a-b`, if spelled as the server accepts.
fn parse_range(value: &str, accepts: RangeSpellings) -> Option<(usize, usize)> {
    let span = match (value.strip_prefix("items "), value.strip_prefix("items=")) {
        (Some(span), _) if accepts != RangeSpellings::Equals => span,
        (_, Some(span)) if accepts != RangeSpellings::Space => span,
        _ => return None,
    };
    let (first, last) = span.split_once('-')?;
    Some((first.trim().parse().ok()?, last.trim().parse().ok()?))
}
