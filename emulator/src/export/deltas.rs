//! document_deltas pages: the document log after a cursor, whole transactions only, with
//! every table's rows counting toward the rows a page reads.

use super::selection::Selection;
use super::{plan, write_value};
use crate::api_error::ApiError;
use crate::store::Store;
use crate::value::{write_str, Format};

pub struct DeltasArgs {
    pub cursor: i64,
    pub selection: Selection,
    pub format: Format,
    /// A backend from before 2026-08-11 skipped the rows of non-root components' tables
    /// (after counting them as read).
    pub skip_components: bool,
}

/// One document_deltas page as response bytes, and the number of log rows it read.
pub fn document_deltas(
    store: &Store,
    args: &DeltasArgs,
    page_limit: usize,
    retention_ns: i64,
) -> Result<(Vec<u8>, usize), ApiError> {
    let cursor = args.cursor;
    if cursor < 0 {
        return Err(ApiError::internal());
    }
    if cursor < store.head.saturating_sub(retention_ns) {
        return Err(ApiError::new(
            400,
            "InvalidWindowToReadDocuments",
            format!(
                "Trying to synchronize from timestamp {cursor}, which is older than the \
                 database\u{2019}s retention window. This may happen if you paused your Fivetran \
                 or Airbyte connector for a long period of time. Please perform a full sync of \
                 the connector. See https://docs.convex.dev/production/integrations/ for more \
                 information."
            ),
        ));
    }
    args.selection.validate()?;
    let plans = plan(store, &args.selection);
    let upper = store.head;
    let limit = page_limit.max(1);
    let start = store.log.partition_point(|e| e.ts <= cursor);
    let mut out = Vec::with_capacity(16 * 1024);
    out.extend_from_slice(b"{\"values\":[");
    let (mut read, mut returned) = (0usize, 0usize);
    let mut cutoff: Option<i64> = None;
    let mut has_more = false;
    for e in &store.log[start..] {
        if e.ts > upper {
            break;
        }
        if let Some(c) = cutoff {
            // Never split a transaction: stop only at the first row of a later commit.
            if e.ts > c {
                has_more = true;
                break;
            }
        }
        // Rows of every table count toward the read limit, selected or not, like Convex.
        read += 1;
        let table = &store.tables[e.table as usize];
        let p = &plans[e.table as usize];
        // Rows of tables deleted since are skipped, even historical ones.
        let exported = !args.skip_components || table.component.is_empty();
        if p.selected && table.active() && exported {
            if returned > 0 {
                out.push(b',');
            }
            match &e.doc {
                Some(doc) => write_value(&mut out, table, e.ts, true, doc, args.format, &p.columns),
                None => {
                    out.extend_from_slice(&table.prefix);
                    out.extend_from_slice(itoa::Buffer::new().format(e.ts).as_bytes());
                    out.extend_from_slice(b",\"_deleted\":true,\"_id\":");
                    write_str(&table.doc_id(&e.internal), &mut out);
                    out.push(b'}');
                }
            }
            returned += 1;
        }
        if cutoff.is_none() && (read >= limit || returned >= limit) {
            cutoff = Some(e.ts);
        }
    }
    out.extend_from_slice(b"],\"cursor\":");
    // A cursor past head yields an empty page whose cursor is head (smaller than the input).
    let next = cutoff.unwrap_or(upper);
    out.extend_from_slice(itoa::Buffer::new().format(next).as_bytes());
    out.extend_from_slice(if has_more {
        b",\"hasMore\":true}"
    } else {
        b",\"hasMore\":false}"
    });
    Ok((out, read))
}
