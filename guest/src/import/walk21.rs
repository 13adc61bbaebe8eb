//! The TAXII 2.1 walk: pages by `limit` and `next`, or by `added_after`
//! when a server says `more` without a `next`.

use url::Url;

use super::commit::PageOutcome;
use super::{MAX_STALLED_PAGES, Run, malformed};
use crate::config::MAX_PAGE_SIZE;
use crate::http::Transport;
use crate::report::{ImportError, NoteLevel};
use crate::store::EventStore;
use crate::taxii::ObjectsQuery;
use crate::taxii::page::parse_page;

impl<T: Transport, S: EventStore> Run<'_, T, S> {
    /// Pages from the committed cursor to the end of the collection (or the
    /// page limit), every filter sent on every page.
    pub(super) fn walk_21(&mut self, collection: &Url) -> Result<(), ImportError> {
        let mut query = self.start_query();
        let mut limit = self.config.page_size();
        let mut next: Option<String> = None;
        let mut stalled = 0;
        loop {
            if self.page_limit_reached() {
                return Ok(());
            }
            let url = query.url(collection, Some(limit), next.as_deref());
            self.sent_token = next.is_some();
            let response = self.fetch_objects(&url, Vec::new())?;
            let page = parse_page(&response.body).map_err(|e| malformed(&url, e))?;
            self.note_page_shape(&page);
            let cursor = self.page_cursor(&response, !page.objects.is_empty());
            let outcome = self.commit_page(&page, cursor)?;
            if !page.more {
                self.report.complete = true;
                return Ok(());
            }
            let Some(token) = page.next else {
                let received = page.objects.len();
                self.continue_after(&url, &mut query, &mut limit, &outcome, received)?;
                next = None;
                continue;
            };
            let repeated = next.as_ref() == Some(&token);
            let progressed = outcome.stored > 0 || outcome.cursor_moved || !repeated;
            if page.objects.is_empty() || !progressed {
                stalled += 1;
            } else {
                stalled = 0;
            }
            if stalled >= MAX_STALLED_PAGES {
                return Err(malformed(
                    &url,
                    format!(
                        "the server keeps answering `more: true` with nothing new \
                         ({stalled} pages in a row{}); stopped to avoid a paging loop after \
                         storing what came",
                        if repeated {
                            ", with the same `next`"
                        } else {
                            ""
                        }
                    ),
                ));
            }
            next = Some(token);
        }
    }

    /// `more` without `next`: continues with `added_after` from the page's
    /// cursor. Servers whose `added_after` includes the boundary answer its
    /// objects again (stored once, counted as duplicates); when a whole
    /// page shares the boundary the cursor cannot move, so the page grows
    /// until it gets past them.
    fn continue_after(
        &mut self,
        url: &Url,
        query: &mut ObjectsQuery,
        limit: &mut u32,
        outcome: &PageOutcome,
        received: usize,
    ) -> Result<(), ImportError> {
        if outcome.cursor_moved {
            let message = "the server set `more` without `next`; continuing with `added_after`";
            self.note_once("no-next", NoteLevel::Debug, message);
            query.added_after = self.latest_cursor().cloned();
            *limit = self.config.page_size();
            return Ok(());
        }
        let cursor = self
            .latest_cursor()
            .cloned()
            .unwrap_or_else(|| "none".into());
        if received > 0 && received >= *limit as usize && *limit < MAX_PAGE_SIZE {
            let grown = limit.saturating_mul(2).min(MAX_PAGE_SIZE);
            let message = format!(
                "a full page of {received} objects did not move the cursor past {cursor}: they \
                 share one date_added and the server's added_after includes it; asking for \
                 {grown} objects per page to get past them"
            );
            self.report.note(NoteLevel::Info, message);
            *limit = grown;
            return Ok(());
        }
        Err(malformed(
            url,
            format!(
                "the server says there is more but gives neither `next` nor an \
                 X-TAXII-Date-Added-Last past the cursor ({cursor}) to continue from; stopped \
                 to avoid a paging loop after storing what came"
            ),
        ))
    }
}
