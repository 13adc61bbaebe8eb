//! The collections the benchmark serves: generated STIX 2.1 objects in
//! TAXII 2.1 envelope pages, and the real ATT&CK data when present.
//!
//! Generated pages are rendered once as a few templates; page `p` is
//! template `p % TEMPLATES` with the last 12 hex digits of every object's
//! UUID overwritten by the object's global index, so every `(id, modified)`
//! of a 1,000,000-object collection is distinct while the server keeps only
//! a few megabytes and answers a page with one copy and 1,000 small writes.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use serde_json::value::RawValue;

/// Objects per page, as the issue asks.
pub const PAGE_SIZE: usize = 1000;

/// Distinct rendered pages that generated collections cycle through.
const TEMPLATES: usize = 8;

/// The slot of an object in a page decides its type (slot % 10).
const KINDS: [&str; 10] = [
    "indicator",
    "indicator",
    "indicator",
    "indicator",
    "malware",
    "attack-pattern",
    "threat-actor",
    "identity",
    "relationship",
    "relationship",
];

/// Objects of `kind` in a generated collection of `count` objects.
pub fn generated_count_of(kind: &str, count: usize) -> usize {
    (0..count)
        .filter(|i| KINDS[(i % PAGE_SIZE) % KINDS.len()] == kind)
        .count()
}

/// A collection's pages.
pub enum Pages {
    /// `count` generated objects.
    Generated {
        count: usize,
        templates: Vec<Template>,
    },
    /// Pages rendered in full.
    Rendered(Vec<Bytes>),
}

/// One rendered page and where its objects' index digits are.
pub struct Template {
    body: Vec<u8>,
    /// Byte offsets of each object's 12-hex-digit index placeholder.
    slots: Vec<usize>,
    /// Byte offset of the `"more": true` value (`true `, five bytes, or
    /// `false`), patched on the last page.
    more_at: usize,
}

impl Pages {
    /// A generated collection of `count` objects.
    pub fn generated(count: usize) -> Self {
        let templates = (0..TEMPLATES).map(|t| render_template(t as u64)).collect();
        Self::Generated { count, templates }
    }

    /// The objects of a STIX bundle file, as they are, in envelopes.
    pub fn from_bundle(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        #[derive(serde::Deserialize)]
        struct Bundle<'a> {
            #[serde(borrow)]
            objects: Vec<&'a RawValue>,
        }
        let bundle: Bundle = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a STIX bundle", path.display()))?;
        if bundle.objects.is_empty() {
            bail!("{} holds no objects", path.display());
        }
        let chunks: Vec<_> = bundle.objects.chunks(PAGE_SIZE).collect();
        let last = chunks.len() - 1;
        let pages = chunks
            .iter()
            .enumerate()
            .map(|(i, objects)| {
                let mut body =
                    String::with_capacity(objects.iter().map(|o| o.get().len() + 1).sum());
                if i < last {
                    write!(
                        body,
                        "{{\"more\": true, \"next\": \"{}\", \"objects\": [",
                        i + 1
                    )
                    .ok();
                } else {
                    body.push_str("{\"more\": false, \"objects\": [");
                }
                for (n, object) in objects.iter().enumerate() {
                    if n > 0 {
                        body.push(',');
                    }
                    body.push_str(object.get());
                }
                body.push_str("]}");
                Bytes::from(body)
            })
            .collect();
        Ok(Self::Rendered(pages))
    }

    /// Objects in the collection.
    pub fn objects(&self) -> usize {
        match self {
            Self::Generated { count, .. } => *count,
            Self::Rendered(pages) => {
                // Counting objects of rendered pages is only needed once.
                pages
                    .iter()
                    .map(|p| {
                        #[derive(serde::Deserialize)]
                        struct Envelope<'a> {
                            #[serde(borrow)]
                            objects: Vec<&'a RawValue>,
                        }
                        serde_json::from_slice::<Envelope>(p).map_or(0, |e| e.objects.len())
                    })
                    .sum()
            }
        }
    }

    /// Pages in the collection.
    pub fn len(&self) -> usize {
        match self {
            Self::Generated { count, .. } => count.div_ceil(PAGE_SIZE),
            Self::Rendered(pages) => pages.len(),
        }
    }

    /// Page `index` (from 0), or `None` past the end.
    pub fn page(&self, index: usize) -> Option<Bytes> {
        match self {
            Self::Rendered(pages) => pages.get(index).cloned(),
            Self::Generated { count, templates } => {
                if index >= self.len() {
                    return None;
                }
                let template = &templates[index % templates.len()];
                let first = index * PAGE_SIZE;
                let here = (count - first).min(PAGE_SIZE);
                let mut body = template.body.clone();
                let mut hex = [0u8; 12];
                for (slot, at) in template.slots.iter().enumerate().take(here) {
                    write_hex12(&mut hex, (first + slot) as u64);
                    body[*at..*at + 12].copy_from_slice(&hex);
                }
                let last = index + 1 == self.len();
                if last {
                    body[template.more_at..template.more_at + 5].copy_from_slice(b"false");
                }
                let mut body = if here < PAGE_SIZE {
                    // A short last page: cut after object `here - 1`.
                    let end = object_end(&body, template.slots[here]);
                    let mut cut = body[..end].to_vec();
                    cut.extend_from_slice(b"]}");
                    cut
                } else {
                    body
                };
                // The `next` token is the page index, padded to fixed width.
                let next = format!("{:08}", index + 1);
                let at = template.more_at + 5 + NEXT_PREFIX.len();
                body[at..at + 8].copy_from_slice(next.as_bytes());
                Some(Bytes::from(body))
            }
        }
    }
}

const NEXT_PREFIX: &str = ", \"next\": \"";

/// The end of the object before the one whose index placeholder is at
/// `slot`: the comma that separates them.
fn object_end(body: &[u8], slot: usize) -> usize {
    // Objects are rendered `,{"type": ...` after the first; the id comes
    // after the type, so walk back to the separator.
    let mut at = slot;
    while !(body[at] == b',' && body[at + 1] == b'{') {
        at -= 1;
    }
    at
}

fn write_hex12(out: &mut [u8; 12], value: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = DIGITS[((value >> ((11 - i) * 4)) & 0xf) as usize];
    }
}

const WORDS: [&str; 24] = [
    "adversary",
    "campaign",
    "beacon",
    "loader",
    "credential",
    "phishing",
    "lateral",
    "movement",
    "exfiltration",
    "persistence",
    "registry",
    "scheduled",
    "task",
    "dropper",
    "command",
    "control",
    "infrastructure",
    "domain",
    "payload",
    "obfuscated",
    "script",
    "observed",
    "telemetry",
    "sector",
];

struct Random(fastrand::Rng);

impl Random {
    fn hex(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| char::from_digit(self.0.u32(0..16), 16).unwrap_or('0'))
            .collect()
    }

    fn uuid(&mut self) -> String {
        let variant = ['8', '9', 'a', 'b'][self.0.usize(0..4)];
        format!(
            "{}-{}-4{}-{variant}{}-{}",
            self.hex(8),
            self.hex(4),
            self.hex(3),
            self.hex(3),
            self.hex(12)
        )
    }

    fn words(&mut self, n: usize) -> String {
        let mut text = String::new();
        for i in 0..n {
            if i > 0 {
                text.push(' ');
            }
            text.push_str(WORDS[self.0.usize(0..WORDS.len())]);
        }
        text
    }

    fn timestamp(&mut self) -> String {
        format!(
            "2025-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            self.0.u32(1..13),
            self.0.u32(1..29),
            self.0.u32(0..24),
            self.0.u32(0..60),
            self.0.u32(0..60),
            self.0.u32(0..1000)
        )
    }
}

/// The `type--uuid` of an object whose last 12 digits are a placeholder;
/// returns the id and the offset of the placeholder inside it.
fn placeholder_id(kind: &str, random: &mut Random) -> (String, usize) {
    let uuid = random.uuid();
    let id = format!("{kind}--{}000000000000", &uuid[..24]);
    let offset = id.len() - 12;
    (id, offset)
}

/// Renders one page of `PAGE_SIZE` objects, about 1 KB each.
fn render_template(seed: u64) -> Template {
    let mut random = Random(fastrand::Rng::with_seed(0x7a11_0000 + seed));
    let identity = format!("identity--{}", random.uuid());
    let mut body = String::with_capacity(PAGE_SIZE * 1100);
    body.push_str("{\"more\": ");
    let more_at = body.len();
    body.push_str("true ");
    body.push_str(NEXT_PREFIX);
    body.push_str("00000000\", \"objects\": [");
    let mut slots = Vec::with_capacity(PAGE_SIZE);
    for slot in 0..PAGE_SIZE {
        if slot > 0 {
            body.push(',');
        }
        let kind = KINDS[slot % KINDS.len()];
        let (id, offset) = placeholder_id(kind, &mut random);
        let created = random.timestamp();
        let start = body.len();
        write!(
            body,
            "{{\"type\": \"{kind}\", \"spec_version\": \"2.1\", \"id\": \"{id}\", \
             \"created\": \"{created}\", \"modified\": \"{created}\", \
             \"created_by_ref\": \"{identity}\", "
        )
        .ok();
        let id_at = start + body[start..].find(&id).unwrap_or(0) + offset;
        slots.push(id_at);
        let name = random.words(3);
        match kind {
            "indicator" => write!(
                body,
                "\"name\": \"{name}\", \"indicator_types\": [\"malicious-activity\"], \
                 \"pattern\": \"[ipv4-addr:value = '198.51.{}.{}'] OR [domain-name:value = '{}.example.com']\", \
                 \"pattern_type\": \"stix\", \"valid_from\": \"{created}\", ",
                random.0.u8(..),
                random.0.u8(..),
                random.hex(10)
            ),
            "malware" => write!(
                body,
                "\"name\": \"{name}\", \"malware_types\": [\"remote-access-trojan\"], \
                 \"is_family\": true, "
            ),
            "attack-pattern" => write!(
                body,
                "\"name\": \"{name}\", \"kill_chain_phases\": [{{\"kill_chain_name\": \
                 \"mitre-attack\", \"phase_name\": \"execution\"}}], "
            ),
            "threat-actor" => write!(
                body,
                "\"name\": \"{name}\", \"threat_actor_types\": [\"crime-syndicate\"], \
                 \"aliases\": [\"{}\"], ",
                random.words(2)
            ),
            "identity" => write!(
                body,
                "\"name\": \"{name}\", \"identity_class\": \"organization\", \
                 \"sectors\": [\"technology\"], "
            ),
            _ => write!(
                body,
                "\"relationship_type\": \"indicates\", \"source_ref\": \"indicator--{}\", \
                 \"target_ref\": \"malware--{}\", ",
                random.uuid(),
                random.uuid()
            ),
        }
        .ok();
        write!(
            body,
            "\"labels\": [\"{}\", \"{}\"], \"confidence\": {}, \"external_references\": \
             [{{\"source_name\": \"bench\", \"url\": \"https://intel.example/{}\", \
             \"external_id\": \"B{}\"}}], \"description\": \"",
            random.words(1),
            random.words(1),
            random.0.u8(0..101),
            random.hex(16),
            random.0.u32(1000..9999)
        )
        .ok();
        // Pad the description so that the object is about 1 KB.
        let target = 1000 + random.0.usize(0..48);
        while body.len() - start < target - 3 {
            body.push_str(WORDS[random.0.usize(0..WORDS.len())]);
            body.push(' ');
        }
        body.push_str("\"}");
    }
    body.push_str("]}");
    Template {
        body: body.into_bytes(),
        slots,
        more_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    struct Envelope {
        more: bool,
        next: Option<String>,
        objects: Vec<serde_json::Value>,
    }

    fn envelope(pages: &Pages, index: usize) -> Envelope {
        serde_json::from_slice(&pages.page(index).unwrap()).unwrap()
    }

    #[test]
    fn generated_pages_are_valid_envelopes_of_distinct_objects() {
        let pages = Pages::generated(2500);
        assert_eq!(pages.len(), 3);
        let mut ids = std::collections::HashSet::new();
        let mut bytes = 0;
        for index in 0..3 {
            let page = envelope(&pages, index);
            assert_eq!(page.more, index < 2, "page {index}");
            if index < 2 {
                assert_eq!(
                    page.next.as_deref(),
                    Some(format!("{:08}", index + 1).as_str())
                );
            }
            assert_eq!(page.objects.len(), if index < 2 { 1000 } else { 500 });
            for object in &page.objects {
                let id = object["id"].as_str().unwrap();
                assert!(id.starts_with(object["type"].as_str().unwrap()));
                assert!(ids.insert(id.to_string()), "{id} twice");
                bytes += serde_json::to_string(object).unwrap().len();
            }
        }
        assert!(pages.page(3).is_none());
        assert_eq!(ids.len(), 2500);
        let average = bytes / 2500;
        assert!((900..1200).contains(&average), "objects of {average} bytes");
        assert_eq!(
            generated_count_of("indicator", 2500),
            ids.iter().filter(|i| i.starts_with("indicator--")).count()
        );
    }

    #[test]
    fn every_generated_object_passes_the_plugins_checks() {
        let pages = Pages::generated(1000);
        let body = pages.page(0).unwrap();
        let page = taxii_feed_guest::taxii::page::parse_page(&body).unwrap();
        assert_eq!(page.objects.len(), 1000);
        for raw in &page.objects {
            let normalized = taxii_feed_guest::stix::normalize(raw);
            assert!(normalized.is_ok(), "{}", raw.get());
        }
    }
}
