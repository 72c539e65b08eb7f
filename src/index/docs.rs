//! Single-document reads and writes: get/mget with `_seq_no`/`_primary_term`,
//! external-version writes, compare-and-set writes, partial updates.

use super::client::{doc_path, segment, status_error, Body, IndexClient, IndexError, Target};
use crate::types::{DocId, IndexName, SeqTerm, Version};
use reqwest::Method;
use serde_json::{json, Value};

/// A document as stored, with the token that detects concurrent changes.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredDoc {
    /// Concrete index the document was read from.
    pub index: String,
    /// Its id.
    pub id: DocId,
    /// Sequence number of its last change.
    pub seq_no: u64,
    /// Primary term of its last change.
    pub primary_term: u64,
    /// The document body.
    pub source: Value,
}

impl StoredDoc {
    /// Where the document stood when read (for compare-and-set).
    pub fn seq_term(&self) -> SeqTerm {
        SeqTerm {
            seq_no: self.seq_no,
            primary_term: self.primary_term,
        }
    }

    /// The primary-store version the document carries (0 for legacy
    /// documents without one).
    pub fn version(&self) -> u64 {
        self.source
            .get("version")
            .and_then(Value::as_u64)
            .unwrap_or(0)
    }

    /// A document from a search hit or a `GET` reply (None when not found).
    pub(crate) fn from_hit(hit: &Value) -> Option<Self> {
        if hit.get("found").and_then(Value::as_bool) == Some(false) {
            return None;
        }
        Some(Self {
            index: hit.get("_index")?.as_str()?.to_string(),
            id: DocId::parse(hit.get("_id")?.as_str()?).ok()?,
            seq_no: hit.get("_seq_no")?.as_u64()?,
            primary_term: hit.get("_primary_term")?.as_u64()?,
            source: hit.get("_source").cloned().unwrap_or(Value::Null),
        })
    }
}

/// A conditional write's outcome and the concrete index it reached (from
/// the reply's `_index`; `None` when the reply names none, e.g. a missing
/// alias). The edit path needs the index to know which indices it covered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Landed {
    /// What happened.
    pub write: Write,
    /// Where it happened.
    pub index: Option<IndexName>,
}

impl PartialEq<Write> for Landed {
    fn eq(&self, other: &Write) -> bool {
        self.write == *other
    }
}

/// A document looked up through an alias: the concrete index the alias
/// resolved to (also when the document is absent) and the document.
#[derive(Debug, Clone, PartialEq)]
pub struct Lookup {
    /// The concrete index that answered.
    pub index: Option<IndexName>,
    /// The document, if present.
    pub doc: Option<StoredDoc>,
}

/// What happened to a conditional write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    /// Written (or, for deletes, the tombstone recorded).
    Done,
    /// Refused because the stored version is as new or newer (409 on an
    /// external-version write): the index is already ahead, which is success.
    Stale,
    /// Refused because the document changed since it was read (409 on
    /// `if_seq_no`): read again and retry.
    Conflict,
    /// A partial update found no document: it was deleted meanwhile.
    Missing,
    /// The alias does not exist (no migration, no historical index): skipped.
    NoAlias,
}

impl IndexClient {
    /// Reads one document with its `_seq_no`/`_primary_term`; `None` if absent.
    pub async fn get(
        &self,
        index: &IndexName,
        id: &DocId,
    ) -> Result<Option<StoredDoc>, IndexError> {
        Ok(self.lookup(index, id).await?.doc)
    }

    /// Reads one document and the concrete index that answered.
    pub async fn lookup(&self, index: &IndexName, id: &DocId) -> Result<Lookup, IndexError> {
        let path = doc_path(index, "_doc", id);
        let reply = self.send(Method::GET, &path, None).await?;
        let answered = concrete(&reply.body);
        match reply.status.as_u16() {
            200 => StoredDoc::from_hit(&reply.body)
                .map(|doc| Lookup {
                    index: answered,
                    doc: Some(doc),
                })
                .ok_or_else(|| IndexError::Decode {
                    op: "GET document".into(),
                    detail: "hit without _seq_no/_primary_term".into(),
                }),
            404 if reply.body.get("found").and_then(Value::as_bool) == Some(false) => Ok(Lookup {
                index: answered,
                doc: None,
            }),
            _ => Err(status_error("GET document", reply.status, &reply.body)),
        }
    }

    /// Reads many documents in one request; absent ones are left out.
    pub async fn mget(
        &self,
        index: &IndexName,
        ids: &[DocId],
    ) -> Result<Vec<StoredDoc>, IndexError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let path = format!("/{}/_mget", segment(index.as_str()));
        let body = json!({ "ids": ids });
        let reply = self
            .call(Method::POST, &path, Some(Body::Json(body)))
            .await?;
        let docs =
            reply
                .get("docs")
                .and_then(Value::as_array)
                .ok_or_else(|| IndexError::Decode {
                    op: "POST _mget".into(),
                    detail: "no docs array".into(),
                })?;
        let mut out = Vec::with_capacity(docs.len());
        for d in docs {
            if let Some(err) = d.get("error") {
                return Err(status_error(
                    "POST _mget item",
                    reqwest::StatusCode::INTERNAL_SERVER_ERROR,
                    &json!({ "error": err }),
                ));
            }
            if let Some(doc) = StoredDoc::from_hit(d) {
                out.push(doc);
            }
        }
        Ok(out)
    }

    /// Writes a document with `version_type=external`; 409 means the index
    /// already holds this version or a newer one ([`Write::Stale`]).
    pub async fn put_external(
        &self,
        to: &Target,
        id: &DocId,
        version: Version,
        doc: &Value,
    ) -> Result<Landed, IndexError> {
        let path = format!(
            "{}?version={}&version_type=external{}",
            doc_path(to.name(), "_doc", id),
            version.get(),
            alias_flag(to)
        );
        let reply = self
            .send(Method::PUT, &path, Some(Body::Json(doc.clone())))
            .await?;
        landed("PUT external", reply, Write::Stale)
    }

    /// Writes a document only if it is unchanged since it was read
    /// (`if_seq_no`/`if_primary_term`), or only if absent (`seen = None`).
    pub async fn put_cas(
        &self,
        to: &Target,
        id: &DocId,
        seen: Option<SeqTerm>,
        doc: &Value,
    ) -> Result<Landed, IndexError> {
        let path = match seen {
            Some(seen) => format!(
                "{}?{}{}",
                doc_path(to.name(), "_doc", id),
                seen.condition(),
                alias_flag(to)
            ),
            None => format!(
                "{}?op_type=create{}",
                doc_path(to.name(), "_doc", id),
                alias_flag(to)
            ),
        };
        let reply = self
            .send(Method::PUT, &path, Some(Body::Json(doc.clone())))
            .await?;
        landed("PUT if_seq_no", reply, Write::Conflict)
    }

    /// Deletes with an external version, leaving a tombstone that refuses
    /// older writes; a missing document still records the tombstone.
    pub async fn delete_external(
        &self,
        to: &Target,
        id: &DocId,
        version: Version,
    ) -> Result<Landed, IndexError> {
        let Some(resolved) = self.delete_target(to).await? else {
            return Ok(Landed {
                write: Write::NoAlias,
                index: None,
            });
        };
        let path = format!(
            "{}?version={}&version_type=external",
            doc_path(&resolved.index, "_doc", id),
            version.get()
        );
        let reply = self.send(Method::DELETE, &path, None).await?;
        let nothing_there = reply.status.as_u16() == 404;
        let out = landed("DELETE external", reply, Write::Stale)?;
        if nothing_there {
            self.remove_if_recreated(&resolved).await?;
        }
        Ok(out)
    }

    /// Deletes only if unchanged since it was read.
    pub async fn delete_cas(
        &self,
        to: &Target,
        id: &DocId,
        seen: SeqTerm,
    ) -> Result<Landed, IndexError> {
        let path = format!("{}?{}", doc_path(to.name(), "_doc", id), seen.condition());
        let reply = self.send(Method::DELETE, &path, None).await?;
        landed("DELETE if_seq_no", reply, Write::Conflict)
    }

    /// Merges `partial` into an existing document, never creating one;
    /// with `seen`, only if the document is unchanged since it was read.
    pub async fn update_partial(
        &self,
        to: &Target,
        id: &DocId,
        partial: &Value,
        seen: Option<SeqTerm>,
    ) -> Result<Write, IndexError> {
        let condition = seen.map_or("retry_on_conflict=0".into(), SeqTerm::condition);
        let path = format!(
            "{}?{condition}{}",
            doc_path(to.name(), "_update", id),
            alias_flag(to)
        );
        let reply = self
            .send(
                Method::POST,
                &path,
                Some(Body::Json(json!({ "doc": partial }))),
            )
            .await?;
        write_outcome("POST _update", reply.status, &reply.body, Write::Conflict)
    }
}

/// The index an external-version delete resolved its alias to, with the
/// index's identity at that moment.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    /// The concrete index.
    pub index: IndexName,
    /// Its `index.uuid`, when the target was an alias.
    uuid: Option<String>,
}

impl IndexClient {
    /// Where an external-version delete must go. Such deletes ignore
    /// `require_alias` and auto-create a missing index, so a delete through
    /// an alias that does not exist would create a stray index named like the
    /// alias (or fail with 400 for a mixed-case alias name). The alias is
    /// therefore resolved right before the delete, with the index's uuid:
    /// `None` when it does not exist (skipped, like every write through a
    /// missing alias).
    pub(crate) async fn delete_target(&self, to: &Target) -> Result<Option<Resolved>, IndexError> {
        let alias = match to {
            Target::Index(index) => {
                return Ok(Some(Resolved {
                    index: index.clone(),
                    uuid: None,
                }))
            }
            Target::Alias(alias) => alias,
        };
        let reply = self
            .send(
                Method::GET,
                &format!("/{}/_settings/index.uuid", segment(alias.as_str())),
                None,
            )
            .await?;
        match reply.status.as_u16() {
            404 => Ok(None),
            200 => {
                let indices = reply.body.as_object();
                match indices.map(|m| m.iter().collect::<Vec<_>>()).as_deref() {
                    Some([]) => Ok(None),
                    // The name is an index, not an alias: skipped, as a
                    // `require_alias` write would be.
                    Some([(only, _)]) if only.as_str() == alias.as_str() => Ok(None),
                    Some([(only, settings)]) => {
                        let index =
                            IndexName::parse(only.as_str()).map_err(|e| IndexError::Decode {
                                op: "GET _settings".into(),
                                detail: e.to_string(),
                            })?;
                        let uuid = settings
                            .pointer("/settings/index/uuid")
                            .and_then(Value::as_str)
                            .map(str::to_string);
                        Ok(Some(Resolved { index, uuid }))
                    }
                    // Several indices: the server picks the write index (or refuses).
                    _ => Ok(Some(Resolved {
                        index: alias.clone(),
                        uuid: None,
                    })),
                }
            }
            _ => Err(status_error("GET _settings", reply.status, &reply.body)),
        }
    }

    /// After a delete that found nothing: if the resolved index was deleted
    /// between the resolve and the delete (`abandon --delete-index`), the
    /// delete auto-created a new, empty index of the same name. It has
    /// another uuid and no alias; remove it, so no stray index is left.
    pub(crate) async fn remove_if_recreated(&self, resolved: &Resolved) -> Result<(), IndexError> {
        let Some(uuid) = &resolved.uuid else {
            return Ok(());
        };
        let name = segment(resolved.index.as_str());
        let reply = self
            .send(Method::GET, &format!("/{name}/_settings/index.uuid"), None)
            .await?;
        let now = reply
            .body
            .get(resolved.index.as_str())
            .and_then(|i| i.pointer("/settings/index/uuid"))
            .and_then(Value::as_str);
        if reply.status.as_u16() != 200 || now.is_none_or(|now| now == uuid) {
            return Ok(());
        }
        let aliases = self
            .call(Method::GET, &format!("/{name}/_alias"), None)
            .await?;
        let has_alias = aliases
            .get(resolved.index.as_str())
            .and_then(|i| i.get("aliases"))
            .and_then(Value::as_object)
            .is_some_and(|a| !a.is_empty());
        if has_alias {
            return Ok(());
        }
        tracing::warn!(index = %resolved.index, "a late delete re-created an index that had just been deleted; removing it again");
        let reply = self.send(Method::DELETE, &format!("/{name}"), None).await?;
        match reply.status.as_u16() {
            200 | 404 => Ok(()),
            _ => Err(status_error("DELETE index", reply.status, &reply.body)),
        }
    }
}

/// The concrete index named by a document reply.
fn concrete(body: &Value) -> Option<IndexName> {
    body.get("_index")
        .and_then(Value::as_str)
        .and_then(|i| IndexName::parse(i).ok())
}

/// A write reply as a [`Landed`].
fn landed(op: &str, reply: super::client::Reply, on_409: Write) -> Result<Landed, IndexError> {
    let write = write_outcome(op, reply.status, &reply.body, on_409)?;
    Ok(Landed {
        write,
        index: concrete(&reply.body),
    })
}

fn alias_flag(to: &Target) -> &'static str {
    if to.require_alias() {
        "&require_alias=true"
    } else {
        ""
    }
}

/// Maps a write reply to its outcome; `on_409` says what a conflict means.
pub(crate) fn write_outcome(
    op: &str,
    status: reqwest::StatusCode,
    body: &Value,
    on_409: Write,
) -> Result<Write, IndexError> {
    let (kind, _) = super::client::error_kind_reason(body);
    match status.as_u16() {
        200 | 201 => Ok(Write::Done),
        409 => Ok(on_409),
        404 if body.get("result").and_then(Value::as_str) == Some("not_found") => Ok(Write::Done),
        404 if kind == "document_missing_exception" => Ok(Write::Missing),
        404 if matches!(
            kind.as_str(),
            "index_not_found_exception" | "aliases_not_found_exception"
        ) =>
        {
            Ok(Write::NoAlias)
        }
        _ => Err(status_error(op, status, body)),
    }
}
