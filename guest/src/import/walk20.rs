//! The TAXII 2.0 walk: pages by `Range: items a-b`.
//!
//! `206` with `Content-Range: items a-b/N` (or `a-b/*` when the server does
//! not count) gives the next range; `200` without `Content-Range` is
//! everything; `416` is past the end. A server that refuses the first
//! range (400, or 416 before any item) is asked once with the other
//! spelling of the header.

use url::Url;

use super::{Run, malformed};
use crate::http::{Response, Transport};
use crate::report::{ImportError, NoteLevel};
use crate::store::EventStore;
use crate::taxii::page::parse_page;
use crate::taxii::range::{ContentRange, RangeSpelling, parse_content_range};

/// Where a 2.0 walk stands.
struct Cursor20 {
    /// Index of the next item to ask for.
    first: u64,
    spelling: RangeSpelling,
    /// Whether the server has accepted a spelling.
    settled: bool,
    /// The status of a refused first range, once the other spelling is
    /// being tried.
    refused: Option<u16>,
}

impl<T: Transport, S: EventStore> Run<'_, T, S> {
    /// Pages from the committed cursor to the end of the collection (or the
    /// page limit). The filters stay the same for the whole walk; the
    /// range moves.
    pub(super) fn walk_20(&mut self, collection: &Url) -> Result<(), ImportError> {
        let url = self.start_query().url(collection, None, None);
        let size = u64::from(self.config.page_size());
        let mut at = Cursor20 {
            first: 0,
            spelling: RangeSpelling::Space,
            settled: false,
            refused: None,
        };
        self.sent_token = false;
        loop {
            if self.page_limit_reached() {
                return Ok(());
            }
            let range = at.spelling.header(at.first, at.first + size - 1);
            let extra = vec![("range".to_string(), range.clone())];
            let response = self.send(&url, self.version.objects_accept(), extra)?;
            match (response.status, at.refused) {
                (400 | 416, None) if !at.settled => {
                    at.refused = Some(response.status);
                    at.spelling = at.spelling.other();
                    let message = format!(
                        "the server answered {} to `Range: {range}`; asking once with `{}`",
                        response.status,
                        at.spelling.header(at.first, at.first + size - 1)
                    );
                    self.report.note(NoteLevel::Debug, message);
                    continue;
                }
                (416, _) => {
                    self.report.complete = true;
                    return Ok(());
                }
                (400, Some(416)) if !at.settled => {
                    // The first spelling said "nothing there"; this one is refused.
                    self.report.complete = true;
                    return Ok(());
                }
                (400, Some(_)) if !at.settled => {
                    return Err(ImportError::Other(format!(
                        "{url} answered 400 to both spellings of the Range header \
                         (`items a-b` and `items=a-b`): it does not page TAXII 2.0 objects by \
                         item range"
                    )));
                }
                _ => {}
            }
            let response = self.check_status(&url, response)?;
            self.check_media(&url, &response)?;
            at.settled = true;
            if self.page_20(&url, &response, &mut at)? {
                self.report.complete = true;
                return Ok(());
            }
        }
    }

    /// Commits one 2.0 page and moves the range; true when it was the last.
    fn page_20(
        &mut self,
        url: &Url,
        response: &Response,
        at: &mut Cursor20,
    ) -> Result<bool, ImportError> {
        let page = parse_page(&response.body).map_err(|e| malformed(url, e))?;
        self.note_page_shape(&page);
        let cursor = self.page_cursor(response, !page.objects.is_empty());
        self.commit_page(&page, cursor)?;
        let received = page.objects.len() as u64;
        let content_range = response
            .header("content-range")
            .and_then(parse_content_range);
        let range = match content_range {
            Some(range) => range,
            None if response.status == 200 => return Ok(true),
            None if received == 0 => return Ok(true),
            None => {
                let message = "a 206 came without a usable Content-Range; counted its objects \
                               to find the next range";
                self.note_once("no-content-range", NoteLevel::Warn, message);
                ContentRange {
                    first: at.first,
                    last: at.first + received - 1,
                    total: None,
                }
            }
        };
        let next = range.last + 1;
        if received == 0 || range.total.is_some_and(|total| next >= total) {
            return Ok(true);
        }
        if next <= at.first {
            return Err(malformed(
                url,
                format!(
                    "asked for items from {}, the server answered items {}-{} again: the \
                     range does not advance; stopped to avoid a paging loop after storing \
                     what came",
                    at.first, range.first, range.last
                ),
            ));
        }
        at.first = next;
        Ok(false)
    }
}
