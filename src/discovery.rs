//! Describing a deployment's tables for `check`, `discover` and `read`.
//!
//! `json_schemas` refuses the whole deployment as soon as one table's inferred shape is not an
//! object it can describe (64 fields, a non-identifier key, a union too wide) and no
//! `schema.ts` describes it. One such table must not make every table unreadable: the column
//! names Convex can always list stand in, with open types, and a warning says why.

use convex::{ConvexApi, ConvexError, DeploymentSchemas, UNDESCRIBABLE_CODES};

pub struct Described {
    pub schemas: DeploymentSchemas,
    /// Set when the fallback was taken: what happened and what to do, for a WARN.
    pub warning: Option<String>,
}

pub async fn describe<A: ConvexApi + ?Sized>(api: &A) -> Result<Described, ConvexError> {
    let refusal = match api.json_schemas().await {
        Ok(schemas) => {
            return Ok(Described {
                schemas,
                warning: None,
            })
        }
        Err(e) if e.code().is_some_and(|c| UNDESCRIBABLE_CODES.contains(&c)) => e,
        Err(e) => return Err(e),
    };
    let schemas = api.table_columns().await?;
    let warning = format!(
        "Convex could not describe this deployment's table shapes ({}). Streams are listed from get_table_column_names instead, with open types: every column accepts any value, and destinations store nested values as JSON or text. To get typed columns, declare the tables in the deployment's schema.ts (defineSchema), or keep documents narrower (at most 62 user fields per object, identifier-like keys, and few distinct shapes per table).",
        refusal.detail()
    );
    Ok(Described {
        schemas,
        warning: Some(warning),
    })
}
