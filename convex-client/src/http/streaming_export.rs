//! [`ConvexApi`] over HTTP: the streaming export API's endpoints (`json_schemas`,
//! `get_table_column_names`, `list_snapshot`, `document_deltas`), each request built here
//! and its answer read through the rest of the client. Apart from the Data Sync API, with
//! which it shares nothing but that.

use serde::Deserialize;

use super::pages::{Elements, PageDone};
use super::read_ahead::NextPage;
use super::{snapshot_body, walk_body, HttpConvex};
use crate::encoding::ValueFormat;
use crate::{
    parse_json_schemas, parse_table_columns, ConvexApi, ConvexError, DeltaCursor, DeltasPageEnd,
    DeploymentSchemas, PageSink, Selection, SnapshotCursor, SnapshotPageEnd, SnapshotTs, ValueMeta,
};

const JSON_SCHEMAS: &str = "/api/json_schemas";
const TABLE_COLUMNS: &str = "/api/get_table_column_names";
const LIST_SNAPSHOT: &str = "/api/list_snapshot";
const DOCUMENT_DELTAS: &str = "/api/document_deltas";

impl ConvexApi for HttpConvex {
    async fn json_schemas(&self) -> Result<DeploymentSchemas, ConvexError> {
        let query = [
            ("deltaSchema", "true"),
            ("format", "json"),
            ("byComponent", "true"),
        ];
        let what = "the table schemas";
        self.schemas(JSON_SCHEMAS, &query, what, parse_json_schemas)
            .await
    }

    async fn table_columns(&self) -> Result<DeploymentSchemas, ConvexError> {
        let query = [("byComponent", "true")];
        let what = "the table columns";
        self.schemas(TABLE_COLUMNS, &query, what, parse_table_columns)
            .await
    }

    async fn head(&self) -> anyhow::Result<SnapshotTs> {
        // A snapshot page of no table reads nothing and answers the head it would read at.
        let body = walk_body(&Selection::new(), &[], ValueFormat::Json);
        let mut sink = NoValues;
        let done = self
            .page(
                Elements::Documents,
                LIST_SNAPSHOT,
                "reading the head timestamp",
                body,
                None,
                &mut sink,
            )
            .await?;
        Ok(SnapshotTs(field(LIST_SNAPSHOT, &done.fields, "snapshot")?))
    }

    async fn list_snapshot<S: PageSink>(
        &self,
        selection: &Selection,
        snapshot: SnapshotTs,
        cursor: Option<&SnapshotCursor>,
        sink: &mut S,
    ) -> anyhow::Result<SnapshotPageEnd> {
        let body = snapshot_body(
            selection,
            snapshot,
            cursor.map(|c| c.0.as_str()),
            self.format,
        );
        let what = format!("list_snapshot of {selection}");
        let next = NextPage::Snapshot {
            selection: selection.clone(),
            snapshot,
            format: self.format,
        };
        let PageDone { fields, values, .. } = self
            .page(
                Elements::Documents,
                LIST_SNAPSHOT,
                &what,
                body,
                Some(next),
                sink,
            )
            .await?;
        Ok(SnapshotPageEnd {
            snapshot: SnapshotTs(field(LIST_SNAPSHOT, &fields, "snapshot")?),
            cursor: field::<Option<String>>(LIST_SNAPSHOT, &fields, "cursor")?.map(SnapshotCursor),
            has_more: field(LIST_SNAPSHOT, &fields, "hasMore")?,
            values,
        })
    }

    async fn document_deltas<S: PageSink>(
        &self,
        selection: &Selection,
        cursor: DeltaCursor,
        sink: &mut S,
    ) -> anyhow::Result<DeltasPageEnd> {
        let body = walk_body(
            selection,
            &[("cursor", serde_json::Value::from(cursor.0))],
            self.format,
        );
        let what = format!("document_deltas of {selection}");
        let next = NextPage::Deltas {
            selection: selection.clone(),
            format: self.format,
        };
        let PageDone { fields, values, .. } = self
            .page(
                Elements::Documents,
                DOCUMENT_DELTAS,
                &what,
                body,
                Some(next),
                sink,
            )
            .await?;
        Ok(DeltasPageEnd {
            cursor: DeltaCursor(field(DOCUMENT_DELTAS, &fields, "cursor")?),
            has_more: field(DOCUMENT_DELTAS, &fields, "hasMore")?,
            values,
        })
    }
}

impl HttpConvex {
    /// The tables of the deployment, as `endpoint` describes them: its whole JSON answer read
    /// by `parse`, whose refusal is Convex's answer's fault.
    async fn schemas(
        &self,
        endpoint: &'static str,
        query: &[(&str, &str)],
        what: &str,
        parse: fn(serde_json::Value) -> Result<DeploymentSchemas, String>,
    ) -> Result<DeploymentSchemas, ConvexError> {
        let url = self.url(endpoint, query);
        let v = self.get_json(endpoint, &url, what).await?;
        parse(v).map_err(|detail| ConvexError::InvalidResponse { endpoint, detail })
    }
}

fn field<'a, T: Deserialize<'a>>(
    endpoint: &'static str,
    fields: &'a [(String, Vec<u8>)],
    name: &str,
) -> Result<T, ConvexError> {
    let raw = fields
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_slice())
        .ok_or_else(|| ConvexError::InvalidResponse {
            endpoint,
            detail: format!("the page has no `{name}` field"),
        })?;
    serde_json::from_slice(raw).map_err(|e| ConvexError::InvalidResponse {
        endpoint,
        detail: format!("the page's `{name}` field is not what the API documents: {e}"),
    })
}

/// The sink of a page that must hold no values (the head probe): any value is Convex's
/// mistake, reported rather than dropped.
struct NoValues;

impl PageSink for NoValues {
    fn value(&mut self, _raw: &[u8], meta: &ValueMeta<'_>) -> anyhow::Result<()> {
        Err(ConvexError::InvalidResponse {
            endpoint: LIST_SNAPSHOT,
            detail: format!(
                "a snapshot page of no table returned a document of table {}",
                meta.table
            ),
        }
        .into())
    }

    async fn flush(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
}
