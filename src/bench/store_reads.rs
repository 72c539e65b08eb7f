//! P, the store-read ceiling: every original from S3 and every edits item
//! from DynamoDB, read exactly as the scanner reads them —
//! [`Stores::project_many`](crate::stores::Stores::project_many) over pages
//! of `scan_page` ids, one page after another (the scanner projects one
//! page at a time), with the configured store concurrency inside a page —
//! and nothing else: no index reads or writes, no queue.

use super::throughput::Throughput;
use crate::context::Ctx;
use crate::ops::OpsError;
use crate::types::DocId;
use std::time::Instant;

/// Reads and projects every id; fails if any document does not project
/// (the bench seeds no broken documents, so that would be a real fault).
pub async fn measure(ctx: &Ctx, ids: &[DocId]) -> Result<Throughput, OpsError> {
    let page = ctx.settings.scan_page.max(1);
    let clock = Instant::now();
    let mut read = 0;
    for chunk in ids.chunks(page) {
        for (id, projected) in ctx.stores.project_many(chunk).await? {
            if let Err(e) = projected {
                return Err(OpsError::Refused(format!(
                    "document {id} did not project during the store-read measurement: {e}"
                )));
            }
            read += 1;
        }
    }
    Ok(Throughput::new(read, clock.elapsed().as_secs_f64()))
}
