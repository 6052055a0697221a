//! The streaming export reads: list_snapshot pages, document_deltas pages, json_schemas and
//! get_table_column_names, computed from a [`Store`] and written straight into response bytes.
//! The endpoints (`crate::endpoint`) parse and check requests; these compute the answers.

mod deltas;
mod schemas;
mod selection;
mod snapshot;

pub use deltas::{document_deltas, DeltasArgs};
pub use schemas::{json_schemas, table_column_names};
pub use selection::Selection;
pub use snapshot::{
    documents_at, list_snapshot, live_documents, log_rows_after, prepare_snapshot, SnapshotArgs,
};

use selection::Columns;

use crate::store::{Store, StoredDoc, TableData};
use crate::value::{write_fields, Format, Value};

/// Per-table decision made once per request: which tables are read and how.
struct TablePlan {
    selected: bool,
    columns: Option<Columns>,
}

fn plan(store: &Store, selection: &Selection) -> Vec<TablePlan> {
    store
        .tables
        .iter()
        .map(|t| {
            if t.system() {
                return TablePlan {
                    selected: false,
                    columns: None,
                };
            }
            match selection.table(&t.component, &t.name) {
                Some(columns) => TablePlan {
                    selected: true,
                    columns,
                },
                None => TablePlan {
                    selected: false,
                    columns: None,
                },
            }
        })
        .collect()
}

/// Appends `{"_component":..,"_table":..,"_ts":<ts>`, optionally `,"_deleted":false`, then
/// the document's fields and `}`.
fn write_value(
    out: &mut Vec<u8>,
    table: &TableData,
    ts: i64,
    with_deleted_false: bool,
    doc: &StoredDoc,
    format: Format,
    columns: &Option<Columns>,
) {
    out.extend_from_slice(&table.prefix);
    out.extend_from_slice(itoa::Buffer::new().format(ts).as_bytes());
    if with_deleted_false {
        out.extend_from_slice(b",\"_deleted\":false");
    }
    match (columns, doc.bytes(format)) {
        (None, Some(bytes)) => {
            // Stored objects always hold `_id`, so there is at least one field after `{`.
            out.push(b',');
            out.extend_from_slice(&bytes[1..]);
        }
        _ => {
            // Slow path (column selection or export_json): decode and re-encode.
            let fields = doc.fields();
            let kept: Vec<(&String, &Value)> = fields
                .iter()
                .filter(|(k, _)| match columns {
                    None => true,
                    Some((other, cols)) => cols.get(k.as_str()).copied().unwrap_or(*other),
                })
                .collect();
            if !kept.is_empty() {
                out.push(b',');
            }
            write_fields(kept.into_iter(), format, out);
            out.push(b'}');
        }
    }
}
