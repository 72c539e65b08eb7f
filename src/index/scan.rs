//! Reading many documents: a point-in-time + `search_after` scan as a
//! stream of pages (memory stays one page whatever the index size), the
//! first matches of one search (a scanner pass), counts, and terms
//! aggregations.

use super::client::{segment, Body, IndexClient, IndexError};
use super::docs::StoredDoc;
use crate::types::{DocId, IndexName};
use futures::Stream;
use reqwest::Method;
use serde_json::{json, Value};

/// How long the server keeps a point in time between two pages.
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

/// The two point-in-time dialects: OpenSearch and Elasticsearch.
#[derive(Debug, Clone, Copy)]
enum Dialect {
    OpenSearch,
    Elasticsearch,
}

struct ScanState {
    client: IndexClient,
    request: ScanRequest,
    pit: Option<(String, Dialect)>,
    after: Option<Value>,
    index: IndexName,
    done: bool,
}

impl IndexClient {
    /// Streams every matching document, one page at a time, from a point in
    /// time of `index`: documents written after the scan started are not
    /// seen (the next pass will see them).
    pub fn scan(
        &self,
        index: &IndexName,
        request: ScanRequest,
    ) -> impl Stream<Item = Result<Vec<StoredDoc>, IndexError>> + Send + 'static {
        let state = ScanState {
            client: self.clone(),
            request,
            pit: None,
            after: None,
            index: index.clone(),
            done: false,
        };
        futures::stream::try_unfold(state, |mut st| async move {
            if st.done {
                return Ok(None);
            }
            if st.pit.is_none() {
                st.pit = Some(st.client.open_pit(&st.index).await?);
            }
            let page = st.next_page().await;
            let page = match page {
                Ok(p) => p,
                Err(e) => {
                    st.close().await;
                    return Err(e);
                }
            };
            if page.len() < st.request.page_size {
                st.done = true;
                st.close().await;
            }
            if page.is_empty() {
                return Ok(None);
            }
            Ok(Some((page, st)))
        })
    }

    async fn open_pit(&self, index: &IndexName) -> Result<(String, Dialect), IndexError> {
        let idx = segment(index.as_str());
        let os = self
            .send(
                Method::POST,
                &format!("/{idx}/_search/point_in_time?keep_alive={KEEP_ALIVE}"),
                None,
            )
            .await?;
        if let Some(id) = os.body.get("pit_id").and_then(Value::as_str) {
            return Ok((id.to_string(), Dialect::OpenSearch));
        }
        // OpenSearch understood the request and failed (missing index,
        // overload): that is the answer. Asking the Elasticsearch endpoint
        // would only replace it with a permanent "no handler found" 400.
        let os_error = super::client::status_error("open point in time", os.status, &os.body);
        if os_error.is_missing_index() || crate::retry::Transient::is_transient(&os_error) {
            return Err(os_error);
        }
        let es = self
            .call(
                Method::POST,
                &format!("/{idx}/_pit?keep_alive={KEEP_ALIVE}"),
                None,
            )
            .await?;
        es.get("id")
            .and_then(Value::as_str)
            .map(|id| (id.to_string(), Dialect::Elasticsearch))
            .ok_or_else(|| IndexError::Decode {
                op: "open point in time".into(),
                detail: "no pit id in reply".into(),
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
    async fn next_page(&mut self) -> Result<Vec<StoredDoc>, IndexError> {
        let Some((pit, _)) = &self.pit else {
            return Ok(Vec::new());
        };
        let mut body = json!({
            "size": self.request.page_size,
            "query": self.request.query,
            "pit": { "id": pit, "keep_alive": KEEP_ALIVE },
            "sort": [{ "_shard_doc": "asc" }],
            "seq_no_primary_term": true,
            "_source": self.request.source,
            "track_total_hits": false,
        });
        if let Some(after) = &self.after {
            body["search_after"] = after.clone();
        }
        let reply = self
            .client
            .call(Method::POST, "/_search", Some(Body::Json(body)))
            .await?;
        if let (Some(new_pit), Some((pit, _))) = (
            reply
                .get("pit_id")
                .or(reply.get("id"))
                .and_then(Value::as_str),
            self.pit.as_mut(),
        ) {
            *pit = new_pit.to_string();
        }
        let hits = hits(&reply);
        self.after = hits.last().and_then(|h| h.get("sort")).cloned();
        Ok(stored_docs(hits))
    }

    async fn close(&mut self) {
        if let Some(pit) = self.pit.take() {
            close_pit(&self.client, pit).await;
        }
    }
}

/// A scan dropped before its end (a pass cut short by a pause or a lost
/// lease) closes its point in time in the background rather than leave it
/// open on the cluster until it expires.
impl Drop for ScanState {
    fn drop(&mut self) {
        if let (Some(pit), Ok(rt)) = (self.pit.take(), tokio::runtime::Handle::try_current()) {
            let client = self.client.clone();
            rt.spawn(async move { close_pit(&client, pit).await });
        }
    }
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

async fn close_pit(client: &IndexClient, (pit, dialect): (String, Dialect)) {
    let result = match dialect {
        Dialect::OpenSearch => {
            client
                .send(
                    Method::DELETE,
                    "/_search/point_in_time",
                    Some(Body::Json(json!({ "pit_id": [pit] }))),
                )
                .await
        }
        Dialect::Elasticsearch => {
            client
                .send(
                    Method::DELETE,
                    "/_pit",
                    Some(Body::Json(json!({ "id": pit }))),
                )
                .await
        }
    };
    if let Err(e) = result {
        // The server expires it by itself after KEEP_ALIVE.
        tracing::debug!(error = %e, "closing a point in time failed");
    }
}
