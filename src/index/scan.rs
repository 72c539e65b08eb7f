//! Reading many documents: a consistent scan (an Elasticsearch point in
//! time paged with `search_after`, or a scroll) as a stream of pages
//! (memory stays one page whatever the index size), the first matches of
//! one search (a scanner pass), counts, and terms aggregations.

use super::client::{segment, Body, IndexClient, IndexError};
use super::docs::StoredDoc;
use super::flavor::FullRead;
use crate::types::{DocId, IndexName};
use futures::Stream;
use reqwest::Method;
use serde_json::{json, Value};

/// How long the server keeps a point in time or a scroll between two pages.
const KEEP_ALIVE: &str = "5m";

/// The most hits one search may return (`index.max_result_window`'s default).
pub const MAX_RESULT_WINDOW: usize = 10_000;

/// One scan: which documents, how many per page, which source fields.
#[derive(Debug, Clone)]
pub struct ScanRequest {
    /// The query selecting documents.
    pub query: Value,
    /// Documents per page.
    pub page_size: usize,
    /// `_source` filter: `false`, or a list of fields.
    pub source: Value,
}

/// An open consistent read of a whole index, as the engine offers it
/// (see [`super::flavor::FullRead`]).
#[derive(Debug, Clone)]
enum Cursor {
    /// An Elasticsearch point in time and the last page's sort values.
    Pit { id: String, after: Option<Value> },
    /// A scroll.
    Scroll { id: String },
}

struct ScanState {
    client: IndexClient,
    request: ScanRequest,
    cursor: Option<Cursor>,
    index: IndexName,
    done: bool,
}

impl IndexClient {
    /// Streams every matching document, one page at a time, from one
    /// consistent view of `index` (a point in time or a scroll, whichever
    /// the engine offers): documents written after the scan started are
    /// not seen (the next pass will see them).
    pub fn scan(
        &self,
        index: &IndexName,
        request: ScanRequest,
    ) -> impl Stream<Item = Result<Vec<StoredDoc>, IndexError>> + Send + 'static {
        let state = ScanState {
            client: self.clone(),
            request,
            cursor: None,
            index: index.clone(),
            done: false,
        };
        futures::stream::try_unfold(state, |mut st| async move {
            if st.done {
                return Ok(None);
            }
            let (page, hits) = match st.next_page().await {
                Ok(p) => p,
                Err(e) => {
                    st.close().await;
                    return Err(e);
                }
            };
            // By hits, not documents: one id ferry cannot address must not
            // end the read early.
            if hits < st.request.page_size {
                st.done = true;
                st.close().await;
            }
            if hits == 0 {
                return Ok(None);
            }
            Ok(Some((page, st)))
        })
    }

    /// The first `size` documents matching `query` in index order, with
    /// their version tokens and no source: one request, no point in time.
    /// `size` is capped at the server's default result window (10,000).
    pub async fn first(
        &self,
        index: &IndexName,
        query: Value,
        size: usize,
    ) -> Result<Vec<StoredDoc>, IndexError> {
        let body = json!({
            "size": size.min(MAX_RESULT_WINDOW),
            "query": query,
            "sort": ["_doc"],
            "seq_no_primary_term": true,
            "_source": false,
            "track_total_hits": false,
        });
        let reply = self.search(index, body).await?;
        Ok(stored_docs(hits(&reply)))
    }

    /// Counts documents matching `query`.
    pub async fn count(&self, index: &IndexName, query: Value) -> Result<u64, IndexError> {
        let body = self
            .call(
                Method::POST,
                &format!("/{}/_count", segment(index.as_str())),
                Some(Body::Json(json!({ "query": query }))),
            )
            .await?;
        body.get("count")
            .and_then(Value::as_u64)
            .ok_or_else(|| IndexError::Decode {
                op: "POST _count".into(),
                detail: "no count".into(),
            })
    }

    /// Documents in an index from its statistics (no query: cheap enough to
    /// sample every second while it is being written).
    pub async fn doc_count(&self, index: &IndexName) -> Result<u64, IndexError> {
        let body = self
            .call(
                Method::GET,
                &format!("/{}/_stats/docs", segment(index.as_str())),
                None,
            )
            .await?;
        body.pointer("/_all/primaries/docs/count")
            .and_then(Value::as_u64)
            .ok_or_else(|| IndexError::Decode {
                op: "GET _stats/docs".into(),
                detail: "no _all.primaries.docs.count".into(),
            })
    }

    /// Groups matching documents by the values of a keyword field: each
    /// bucket with its count and up to `examples` document ids.
    pub async fn terms(
        &self,
        index: &IndexName,
        field: &str,
        query: Value,
        size: usize,
        examples: usize,
    ) -> Result<Vec<TermBucket>, IndexError> {
        let mut body = json!({
            "size": 0,
            "query": query,
            "aggs": { "t": { "terms": { "field": field, "size": size } } }
        });
        // top_hits refuses size 0: ask for examples only when some are wanted.
        if examples > 0 {
            body["aggs"]["t"]["aggs"] =
                json!({ "ex": { "top_hits": { "size": examples, "_source": false } } });
        }
        let reply = self.search(index, body).await?;
        let buckets = reply
            .pointer("/aggregations/t/buckets")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        Ok(buckets
            .iter()
            .map(|b| TermBucket {
                key: b
                    .get("key")
                    .map(|k| {
                        k.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| k.to_string())
                    })
                    .unwrap_or_default(),
                count: b.get("doc_count").and_then(Value::as_u64).unwrap_or(0),
                examples: b
                    .pointer("/ex/hits/hits")
                    .and_then(Value::as_array)
                    .map(|hits| {
                        hits.iter()
                            .filter_map(|h| h.get("_id").and_then(Value::as_str))
                            .filter_map(|id| DocId::parse(id).ok())
                            .collect()
                    })
                    .unwrap_or_default(),
            })
            .collect())
    }

    /// Runs a search request and returns the raw reply.
    pub async fn search(&self, index: &IndexName, body: Value) -> Result<Value, IndexError> {
        self.call(
            Method::POST,
            &format!("/{}/_search", segment(index.as_str())),
            Some(Body::Json(body)),
        )
        .await
    }
}

/// One group of a terms aggregation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TermBucket {
    /// The field value.
    pub key: String,
    /// How many documents carry it.
    pub count: u64,
    /// A few of their ids.
    pub examples: Vec<DocId>,
}

impl ScanState {
    /// The next page and its number of hits: the first one opens the
    /// cursor the engine offers.
    async fn next_page(&mut self) -> Result<(Vec<StoredDoc>, usize), IndexError> {
        let mut body = json!({
            "size": self.request.page_size,
            "query": self.request.query,
            "seq_no_primary_term": true,
            "_source": self.request.source,
        });
        if self.cursor.is_none() && self.client.flavor().await?.full_read() == FullRead::PointInTime
        {
            let id = self.open_pit().await?;
            self.cursor = Some(Cursor::Pit { id, after: None });
        }
        let reply = match self.cursor.clone() {
            None => {
                body["sort"] = json!(["_doc"]);
                let path = format!(
                    "/{}/_search?scroll={KEEP_ALIVE}",
                    segment(self.index.as_str())
                );
                let reply = self
                    .client
                    .call(Method::POST, &path, Some(Body::Json(body)))
                    .await?;
                // Without an id the next call would start over from page 1.
                let id = scroll_id(&reply).ok_or_else(|| IndexError::Decode {
                    op: "POST _search?scroll".into(),
                    detail: "no _scroll_id in reply".into(),
                })?;
                self.cursor = Some(Cursor::Scroll { id });
                reply
            }
            Some(Cursor::Pit { id, after }) => {
                // Scrolls refuse it; a point in time need not count either.
                body["track_total_hits"] = json!(false);
                body["pit"] = json!({ "id": id, "keep_alive": KEEP_ALIVE });
                body["sort"] = json!([{ "_shard_doc": "asc" }]);
                if let Some(after) = after {
                    body["search_after"] = after;
                }
                let reply = self
                    .client
                    .call(Method::POST, "/_search", Some(Body::Json(body)))
                    .await?;
                // The server may hand out a new id with every page.
                let id = reply
                    .get("pit_id")
                    .and_then(Value::as_str)
                    .map_or(id, str::to_string);
                let after = hits(&reply).last().and_then(|h| h.get("sort")).cloned();
                self.cursor = Some(Cursor::Pit { id, after });
                reply
            }
            Some(Cursor::Scroll { id }) => {
                let next = json!({ "scroll": KEEP_ALIVE, "scroll_id": id });
                let reply = self
                    .client
                    .call(Method::POST, "/_search/scroll", Some(Body::Json(next)))
                    .await?;
                if let Some(id) = scroll_id(&reply) {
                    self.cursor = Some(Cursor::Scroll { id });
                }
                reply
            }
        };
        let hits = hits(&reply);
        Ok((stored_docs(hits), hits.len()))
    }

    async fn open_pit(&self) -> Result<String, IndexError> {
        let path = format!(
            "/{}/_pit?keep_alive={KEEP_ALIVE}",
            segment(self.index.as_str())
        );
        let reply = self.client.call(Method::POST, &path, None).await?;
        reply
            .get("id")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| IndexError::Decode {
                op: "open point in time".into(),
                detail: "no id in reply".into(),
            })
    }

    async fn close(&mut self) {
        if let Some(cursor) = self.cursor.take() {
            close_cursor(&self.client, cursor).await;
        }
    }
}

/// A scan dropped before its end (a verify cut short, a failed page)
/// closes its cursor in the background rather than leave it open on the
/// cluster until it expires.
impl Drop for ScanState {
    fn drop(&mut self) {
        if let (Some(cursor), Ok(rt)) = (self.cursor.take(), tokio::runtime::Handle::try_current())
        {
            let client = self.client.clone();
            rt.spawn(async move { close_cursor(&client, cursor).await });
        }
    }
}

fn scroll_id(reply: &Value) -> Option<String> {
    reply
        .get("_scroll_id")
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// The hits of a search reply (none when it has none).
fn hits(reply: &Value) -> &[Value] {
    reply
        .pointer("/hits/hits")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// The documents of a search reply's hits, skipping ids ferry cannot address.
fn stored_docs(hits: &[Value]) -> Vec<StoredDoc> {
    let mut out = Vec::with_capacity(hits.len());
    for h in hits {
        let id = h.get("_id").and_then(Value::as_str).unwrap_or_default();
        match DocId::parse(id) {
            Ok(id) => out.push(StoredDoc {
                index: h
                    .get("_index")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                id,
                seq_no: h.get("_seq_no").and_then(Value::as_u64).unwrap_or(0),
                primary_term: h.get("_primary_term").and_then(Value::as_u64).unwrap_or(0),
                source: h.get("_source").cloned().unwrap_or(Value::Null),
            }),
            Err(e) => {
                tracing::warn!(id, error = %e, "skipping a document whose id ferry cannot address")
            }
        }
    }
    out
}

async fn close_cursor(client: &IndexClient, cursor: Cursor) {
    let (path, body) = match cursor {
        Cursor::Pit { id, .. } => ("/_pit", json!({ "id": id })),
        Cursor::Scroll { id } => ("/_search/scroll", json!({ "scroll_id": [id] })),
    };
    if let Err(e) = client
        .send(Method::DELETE, path, Some(Body::Json(body)))
        .await
    {
        // The server expires it by itself after KEEP_ALIVE.
        tracing::debug!(error = %e, "closing a scan cursor failed");
    }
}
