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
    let warning = crate::messages::table_shapes_undescribable(refusal.detail());
    Ok(Described {
        schemas,
        warning: Some(warning),
    })
}
