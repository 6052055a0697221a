//! Stream ↔ table naming, in one place: which Airbyte stream a Convex table is, and which
//! table a configured stream reads.

use crate::protocol::StreamDescriptor;
use convex::TableRef;

/// Stream identity of a table. Root tables keep their bare name and no namespace, as before.
/// Component tables are named `<component path>/<table>` *and* carry the component path as
/// namespace: callers that ignore namespaces (PyAirbyte, the platform's "destination default")
/// still see distinct names, and `/` cannot occur in a Convex table name, so names never clash.
pub fn stream_for(table: &TableRef) -> StreamDescriptor {
    if table.component.is_empty() {
        StreamDescriptor {
            name: table.table.clone(),
            namespace: None,
        }
    } else {
        StreamDescriptor {
            name: format!("{}/{}", table.component, table.table),
            namespace: Some(table.component.clone()),
        }
    }
}

/// The table a configured stream reads. The name alone decides (see `stream_for`); a namespace
/// that contradicts it is reported rather than guessed around.
pub fn table_for(stream: &StreamDescriptor) -> Result<TableRef, String> {
    let table = match stream.name.rsplit_once('/') {
        Some((component, table)) if !component.is_empty() && !table.is_empty() => TableRef {
            component: component.to_owned(),
            table: table.to_owned(),
        },
        Some(_) => {
            return Err(format!(
                "stream name {:?} is not a Convex table",
                stream.name
            ))
        }
        None => TableRef::root(stream.name.clone()),
    };
    match stream.namespace.as_deref() {
        None | Some("") => Ok(table),
        Some(ns) if ns == table.component => Ok(table),
        // A namespace on a root table name: the stream of that table inside the component.
        Some(ns) if table.component.is_empty() => Ok(TableRef {
            component: ns.to_owned(),
            table: table.table,
        }),
        Some(ns) => Err(format!(
            "stream {:?} has namespace {ns:?}, which does not match its component {:?}",
            stream.name, table.component
        )),
    }
}
