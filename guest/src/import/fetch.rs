//! Requests of a run: sending, checking status and media type, and finding
//! the TAXII version the server speaks.

use std::time::SystemTime;

use serde::Deserialize;
use url::Url;

use super::{Run, malformed, store_error};
use crate::http::{Request, Response, Transport, TransportError};
use crate::report::{ImportError, NoteLevel};
use crate::store::{EventStore, TAXII_VERSION_KEY};
use crate::taxii::{self, ContentType, TaxiiVersion};
use crate::{PLUGIN_NAME, PLUGIN_VERSION};

/// What asking for the collection in one TAXII version gave.
enum Asked {
    /// The server answered in this version.
    Spoken(TaxiiVersion, Response),
    /// The server refused the media type (406 or 415).
    Refused(u16),
}

impl<T: Transport, S: EventStore> Run<'_, T, S> {
    /// Reads the collection resource in the TAXII version the server
    /// speaks, records that version, and refuses `can_read: false`.
    ///
    /// The version recorded by an earlier run is asked first; else 2.1.
    /// A 406 or 415 makes the run ask once in the other version; an answer
    /// with a 2.0 media type means 2.0 whatever was asked.
    ///
    /// Returns the collection's URL: where redirects led, if they did.
    pub(super) fn negotiate(&mut self, collection: &Url) -> Result<Url, ImportError> {
        let stored = self.stored_version()?;
        let first = stored.unwrap_or(TaxiiVersion::V21);
        let (version, response) = match self.ask_collection(collection, first)? {
            Asked::Spoken(version, response) => (version, response),
            Asked::Refused(status) => {
                let other = first.other();
                let message = format!(
                    "{collection} answered {status} to TAXII {}; asking in TAXII {}",
                    first.as_str(),
                    other.as_str()
                );
                self.report.note(NoteLevel::Debug, message);
                match self.ask_collection(collection, other)? {
                    Asked::Spoken(version, response) => (version, response),
                    Asked::Refused(again) => {
                        return Err(ImportError::UnsupportedVersion(format!(
                            "{collection} answered {status} to TAXII {} and {again} to TAXII \
                             {}: the server speaks no TAXII version this plugin reads",
                            first.as_str(),
                            other.as_str()
                        )));
                    }
                }
            }
        };
        self.version = version;
        self.report.taxii_version = version.as_str().into();
        self.check_collection(collection, &response)?;
        if stored != Some(version) {
            self.record_version(version, stored)?;
        }
        Ok(self.moved_to(collection, response.redirected_to))
    }

    /// The collection's URL after redirects, noted for the operator.
    fn moved_to(&mut self, configured: &Url, redirected: Option<Url>) -> Url {
        let Some(mut moved) = redirected else {
            return configured.clone();
        };
        moved.set_query(None);
        if !moved.path().ends_with('/') {
            let path = format!("{}/", moved.path());
            moved.set_path(&path);
        }
        if moved != *configured {
            let message = format!(
                "the collection at {configured} redirects to {moved}; objects are read from \
                 there (update the feed's Collection URL to skip the redirect)"
            );
            self.report.note(NoteLevel::Info, message);
        }
        moved
    }

    fn stored_version(&mut self) -> Result<Option<TaxiiVersion>, ImportError> {
        let value = self.store.get(TAXII_VERSION_KEY).map_err(store_error)?;
        Ok(value.and_then(|bytes| TaxiiVersion::parse(&String::from_utf8_lossy(&bytes))))
    }

    fn record_version(
        &mut self,
        version: TaxiiVersion,
        before: Option<TaxiiVersion>,
    ) -> Result<(), ImportError> {
        let entry = (TAXII_VERSION_KEY.to_string(), version.as_str().into());
        self.store.set_many(vec![entry]).map_err(store_error)?;
        let message = match before {
            Some(before) => format!(
                "the server now speaks TAXII {} (it spoke {}); recorded",
                version.as_str(),
                before.as_str()
            ),
            None => format!(
                "the server speaks TAXII {}; recorded, so later runs ask in it first",
                version.as_str()
            ),
        };
        self.report.note(NoteLevel::Info, message);
        Ok(())
    }

    fn ask_collection(&mut self, url: &Url, version: TaxiiVersion) -> Result<Asked, ImportError> {
        let response = self.send(url, version.resource_accept(), Vec::new())?;
        if matches!(response.status, 406 | 415) {
            return Ok(Asked::Refused(response.status));
        }
        let response = self.check_status(url, response)?;
        let spoken = match taxii::classify_content_type(response.header("content-type")) {
            ContentType::Taxii21 => TaxiiVersion::V21,
            ContentType::Taxii20(_) => TaxiiVersion::V20,
            ContentType::Json(media) => {
                self.note_lenient_media(url, &media, version);
                version
            }
            ContentType::Other(media) => {
                return Err(malformed(
                    url,
                    format!("answered with {media}, not TAXII JSON"),
                ));
            }
        };
        Ok(Asked::Spoken(spoken, response))
    }

    /// Refuses a collection that says `can_read: false`.
    fn check_collection(&mut self, url: &Url, response: &Response) -> Result<(), ImportError> {
        #[derive(Deserialize)]
        struct Collection {
            id: Option<String>,
            title: Option<String>,
            can_read: Option<bool>,
        }
        let collection: Collection = serde_json::from_slice(&response.body)
            .map_err(|e| malformed(url, format!("not a TAXII collection ({e})")))?;
        let name = match (&collection.title, &collection.id) {
            (Some(title), Some(id)) => format!("{title:?} ({id})"),
            (Some(title), None) => format!("{title:?}"),
            (None, Some(id)) => id.clone(),
            (None, None) => url.to_string(),
        };
        match collection.can_read {
            Some(false) => Err(ImportError::Forbidden(format!(
                "the collection {name} at {url} says can_read: false, so these credentials \
                 may not read its objects; use a collection you may read, or ask the \
                 server's operator for read access"
            ))),
            Some(true) => Ok(()),
            None => {
                let message = format!("the collection {name} does not say can_read; trying anyway");
                self.report.note(NoteLevel::Warn, message);
                Ok(())
            }
        }
    }

    /// Sends a Get Objects request in the negotiated version and checks
    /// its status and media type.
    pub(super) fn fetch_objects(
        &mut self,
        url: &Url,
        extra: Vec<(String, String)>,
    ) -> Result<Response, ImportError> {
        let response = self.send(url, self.version.objects_accept(), extra)?;
        let response = self.check_status(url, response)?;
        self.check_media(url, &response)?;
        Ok(response)
    }

    /// Sends one GET; any status comes back.
    pub(super) fn send(
        &mut self,
        url: &Url,
        accept: &str,
        extra: Vec<(String, String)>,
    ) -> Result<Response, ImportError> {
        let mut headers = vec![
            ("accept".to_string(), accept.to_string()),
            (
                "user-agent".into(),
                format!("{PLUGIN_NAME}/{PLUGIN_VERSION}"),
            ),
        ];
        headers.extend(extra);
        let request = Request {
            url: url.clone(),
            headers,
        };
        let started = std::time::Instant::now();
        let response = self.http.get(&request).map_err(|e| transport_error(e, url));
        self.last_fetch = started.elapsed();
        response
    }

    /// Passes 200 and 206; turns any other status into its error.
    pub(super) fn check_status(
        &mut self,
        url: &Url,
        response: Response,
    ) -> Result<Response, ImportError> {
        if matches!(response.status, 200 | 206) {
            return Ok(response);
        }
        Err(taxii::error_for_status(
            response.status,
            response.header("retry-after"),
            &response.body,
            url,
            SystemTime::now(),
        ))
    }

    /// Checks that an objects response is JSON of the negotiated version.
    pub(super) fn check_media(
        &mut self,
        url: &Url,
        response: &Response,
    ) -> Result<(), ImportError> {
        let at = taxii::redact_query(url);
        match (
            self.version,
            taxii::classify_content_type(response.header("content-type")),
        ) {
            (TaxiiVersion::V21, ContentType::Taxii21)
            | (TaxiiVersion::V20, ContentType::Taxii20(_)) => Ok(()),
            (version, ContentType::Json(media)) => {
                self.note_lenient_media(url, &media, version);
                Ok(())
            }
            (TaxiiVersion::V20, ContentType::Taxii21) => {
                let media = response
                    .header("content-type")
                    .unwrap_or_default()
                    .to_string();
                self.note_lenient_media(url, &media, TaxiiVersion::V20);
                Ok(())
            }
            (TaxiiVersion::V21, ContentType::Taxii20(media)) => {
                Err(ImportError::UnsupportedVersion(format!(
                    "{at} answered a TAXII 2.1 request with Content-Type {media}, which is \
                     TAXII 2.0"
                )))
            }
            (_, ContentType::Other(media)) => Err(ImportError::MalformedResponse(format!(
                "{at} answered with {media}, not TAXII JSON"
            ))),
        }
    }

    fn note_lenient_media(&mut self, url: &Url, media: &str, version: TaxiiVersion) {
        let message = format!(
            "{} answered with Content-Type {media}; read it as TAXII {}",
            taxii::redact_query(url),
            version.as_str()
        );
        self.note_once("lenient-media-type", NoteLevel::Debug, message);
    }
}

fn transport_error(error: TransportError, url: &Url) -> ImportError {
    let at = taxii::redact_query(url);
    match error {
        TransportError::Denied(m) => ImportError::Denied(format!("{at}: {m}")),
        TransportError::Unreachable(m) => ImportError::Unavailable(format!("{at}: {m}")),
        TransportError::TooLarge(m) => ImportError::MalformedResponse(format!("{at}: {m}")),
        TransportError::Other(m) => ImportError::Other(format!("{at}: {m}")),
    }
}
