//! Fault injection for `/api/` requests: what a flaky network, proxy or overloaded backend
//! does to a client, and answers a broken backend gives (rows of tables not asked for, a
//! cursor that does not move on). Rules are matched per endpoint (and, if they name one, per
//! table the request selects) by request count or probability.

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::ids::Rng;

/// What a matching rule does to the response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// Any status with a Convex error body `{"code","message"}`.
    Status,
    /// Any status with an HTML body, as a proxy or load balancer sends.
    Html,
    /// 429 with `Retry-After: <retry_after_secs>`.
    RateLimit,
    /// Wait `ms` before handling the request normally (other rules still apply).
    Latency,
    /// Never answer (`after_headers: false`), or send headers and part of the body and then
    /// nothing (`after_headers: true`), for `ms` (default one hour), then close.
    Stall,
    /// Send headers and part of the body, then reset the connection (TCP RST).
    Reset,
    /// Declare the full Content-Length, send part of the body, then close.
    Truncate,
    /// Serve the request as if it selected every table (every column): rows of tables it
    /// did not ask for come back. `list_snapshot`, `document_deltas`, `data_sync` only.
    SelectionIgnored,
    /// Serve the request, then replace the answer's `cursor` by `cursor`, or with
    /// `repeat_cursor` by the request's own cursor (the previous answer's, for a client
    /// that follows them): a backend stuck at one position. A `null` cursor (list_snapshot's
    /// last page), and a request without a cursor for `repeat_cursor`, keep theirs.
    /// `list_snapshot`, `document_deltas` only.
    Cursor,
}

/// The endpoints whose requests carry a table selection.
const SELECTING: [&str; 3] = ["list_snapshot", "document_deltas", "data_sync"];
/// The endpoints whose answers carry a `cursor` field.
const CURSORS: [&str; 2] = ["list_snapshot", "document_deltas"];

impl FaultKind {
    /// Whether a rule of this kind answers instead of the endpoint (or mangles its answer),
    /// rather than delaying or rewriting it.
    fn is_terminal(&self) -> bool {
        !matches!(
            self,
            FaultKind::Latency | FaultKind::SelectionIgnored | FaultKind::Cursor
        )
    }

    /// The endpoints a rule of this kind can hit (`None` = every one).
    fn endpoints(&self) -> Option<&'static [&'static str]> {
        match self {
            FaultKind::SelectionIgnored => Some(&SELECTING),
            FaultKind::Cursor => Some(&CURSORS),
            _ => None,
        }
    }
}

/// A fault rule, e.g. `{"endpoint":"list_snapshot","kind":"status","status":503,
/// "code":"Overloaded","message":"...","after":2,"times":1}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRule {
    /// `list_snapshot`, `document_deltas`, `json_schemas`, `test_streaming_export_connection`,
    /// `get_table_column_names`, `data_sync` (`/api/v1/data/sync`),
    /// `data_sync_cursor_from_deltas`, `list_active_syncs`, or `*` for every `/api/` endpoint
    /// (every one the kind can hit).
    #[serde(default = "any_endpoint")]
    pub endpoint: String,
    pub kind: FaultKind,
    /// If set, the rule only matches requests whose selection includes this table (of
    /// `component`): `list_snapshot`, `document_deltas` and `data_sync` requests, their
    /// selection read as a proxy would, before any check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    /// The component of `table` (default `""`, the root component).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
    /// Skip the first `after` matching requests.
    #[serde(default)]
    pub after: u64,
    /// Apply to this many requests, then stop; 0 = forever.
    #[serde(default)]
    pub times: u64,
    /// If set, each eligible request is hit with this probability (seeded RNG).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// HTML body for `html` (a generic 502 page if absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_secs: Option<u64>,
    /// Delay for `latency`, stall duration for `stall`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ms: Option<u64>,
    /// For `stall`: send the headers and part of the body before stalling.
    #[serde(default)]
    pub after_headers: bool,
    /// For `cursor`: the cursor answered instead (an integer for document_deltas, a string
    /// for list_snapshot, or anything else a broken backend might send).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<Json>,
    /// For `cursor`: answer the request's own cursor instead.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub repeat_cursor: bool,
}

fn any_endpoint() -> String {
    "*".into()
}

impl FaultRule {
    /// A rule of the given kind for one endpoint (`"*"` for all), applied forever.
    pub fn new(endpoint: &str, kind: FaultKind) -> FaultRule {
        FaultRule {
            endpoint: endpoint.into(),
            kind,
            after: 0,
            times: 0,
            rate: None,
            status: None,
            code: None,
            message: None,
            body: None,
            retry_after_secs: None,
            ms: None,
            after_headers: false,
            table: None,
            component: None,
            cursor: None,
            repeat_cursor: false,
        }
    }

    /// A `cursor` rule answering `cursor` instead of the real one.
    pub fn fixed_cursor(endpoint: &str, cursor: Json) -> FaultRule {
        FaultRule {
            cursor: Some(cursor),
            ..FaultRule::new(endpoint, FaultKind::Cursor)
        }
    }

    /// A `cursor` rule answering the request's own cursor instead of the real one.
    pub fn repeated_cursor(endpoint: &str) -> FaultRule {
        FaultRule {
            repeat_cursor: true,
            ..FaultRule::new(endpoint, FaultKind::Cursor)
        }
    }

    /// Status fault with a Convex error body.
    pub fn status(endpoint: &str, status: u16, code: &str, message: &str) -> FaultRule {
        FaultRule {
            status: Some(status),
            code: Some(code.into()),
            message: Some(message.into()),
            ..FaultRule::new(endpoint, FaultKind::Status)
        }
    }

    pub fn after(mut self, n: u64) -> FaultRule {
        self.after = n;
        self
    }

    pub fn times(mut self, n: u64) -> FaultRule {
        self.times = n;
        self
    }

    pub fn rate(mut self, p: f64) -> FaultRule {
        self.rate = Some(p);
        self
    }

    pub fn ms(mut self, ms: u64) -> FaultRule {
        self.ms = Some(ms);
        self
    }

    /// Only requests whose selection includes `table` (of the root component).
    pub fn table(mut self, table: &str) -> FaultRule {
        self.table = Some(table.into());
        self
    }

    /// Whether the rule can hit a request to `endpoint` (its table aside).
    fn matches(&self, endpoint: &str) -> bool {
        (self.endpoint == "*" || self.endpoint == endpoint)
            && self
                .kind
                .endpoints()
                .is_none_or(|hit| hit.contains(&endpoint))
            && (self.table.is_none() || SELECTING.contains(&endpoint))
    }

    /// What a fired `cursor` rule answers.
    fn cursor_rewrite(&self) -> Option<CursorRewrite> {
        match &self.cursor {
            Some(c) => Some(CursorRewrite::Fixed(c.clone())),
            None if self.repeat_cursor => Some(CursorRewrite::Repeat),
            None => None,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        let named = |list: &[&str]| self.endpoint == "*" || list.contains(&self.endpoint.as_str());
        if let Some(hit) = self.kind.endpoints() {
            if !named(hit) {
                return Err(format!(
                    "a {} rule applies to {} only, not {}",
                    serde_json::to_string(&self.kind).unwrap_or_default(),
                    hit.join(", "),
                    self.endpoint
                ));
            }
        }
        if self.kind == FaultKind::Cursor && self.cursor.is_some() == self.repeat_cursor {
            return Err("a cursor rule takes either `cursor` or `repeat_cursor: true`".into());
        }
        if self.kind != FaultKind::Cursor && (self.cursor.is_some() || self.repeat_cursor) {
            return Err("`cursor` and `repeat_cursor` belong to cursor rules".into());
        }
        if self.table.is_none() && self.component.is_some() {
            return Err("`component` goes with `table`".into());
        }
        if self.table.is_some() && !named(&SELECTING) {
            return Err(format!(
                "`table` applies to {} only, not {}",
                SELECTING.join(", "),
                self.endpoint
            ));
        }
        if let Some(s) = self.status {
            // 1xx would be taken as an interim response, not a final answer.
            if !(200..=999).contains(&s) {
                return Err(format!("invalid status {s}"));
            }
        }
        if let Some(r) = self.rate {
            if !(0.0..=1.0).contains(&r) {
                return Err(format!("rate must be within [0, 1], got {r}"));
            }
        }
        Ok(())
    }
}

struct ActiveRule {
    rule: FaultRule,
    seen: u64,
    applied: u64,
}

/// Installed rules with their counters.
pub struct Faults {
    rules: Vec<ActiveRule>,
    rng: Rng,
}

/// The decision for one request.
#[derive(Default, Debug)]
pub struct Decision {
    /// Total delay from `latency` rules.
    pub delay_ms: u64,
    /// The first terminal rule that fired.
    pub terminal: Option<FaultRule>,
    /// What `selection_ignored` and `cursor` rules change in the answer.
    pub rewrites: Rewrites,
}

/// What fired `selection_ignored` and `cursor` rules change in an answer that is served.
#[derive(Default, Debug, Clone, PartialEq)]
pub struct Rewrites {
    /// Serve every table's rows, whatever the request selected.
    pub selection_ignored: bool,
    /// Replace the answer's cursor (the first `cursor` rule that fired says how).
    pub cursor: Option<CursorRewrite>,
}

/// How a `cursor` rule replaces an answer's cursor.
#[derive(Debug, Clone, PartialEq)]
pub enum CursorRewrite {
    /// By this value.
    Fixed(Json),
    /// By the request's own cursor.
    Repeat,
}

impl Faults {
    pub fn new(seed: u64) -> Faults {
        Faults {
            rules: Vec::new(),
            rng: Rng::derive(seed, &[0xfa017]),
        }
    }

    pub fn add(&mut self, rule: FaultRule) {
        self.rules.push(ActiveRule {
            rule,
            seen: 0,
            applied: 0,
        });
    }

    pub fn clear(&mut self) {
        self.rules.clear();
    }

    pub fn list(&self) -> Vec<FaultRule> {
        self.rules.iter().map(|r| r.rule.clone()).collect()
    }

    /// Counts the request against every matching rule and decides what happens to it.
    /// `selects(component, table)` says whether the request's selection includes a table
    /// (asked only for rules that name one).
    pub fn decide(
        &mut self,
        endpoint: &str,
        selects: &mut dyn FnMut(&str, &str) -> bool,
    ) -> Decision {
        let mut d = Decision::default();
        for ar in &mut self.rules {
            if !ar.rule.matches(endpoint) {
                continue;
            }
            if let Some(table) = &ar.rule.table {
                if !selects(ar.rule.component.as_deref().unwrap_or(""), table) {
                    continue;
                }
            }
            ar.seen += 1;
            if ar.seen <= ar.rule.after {
                continue;
            }
            if ar.rule.times != 0 && ar.applied >= ar.rule.times {
                continue;
            }
            // A terminal rule already fired: later rules do not consume their budget.
            if d.terminal.is_some() && ar.rule.kind.is_terminal() {
                continue;
            }
            if let Some(p) = ar.rule.rate {
                if !self.rng.chance(p) {
                    continue;
                }
            }
            ar.applied += 1;
            match ar.rule.kind {
                FaultKind::Latency => d.delay_ms += ar.rule.ms.unwrap_or(0),
                FaultKind::SelectionIgnored => d.rewrites.selection_ignored = true,
                FaultKind::Cursor => {
                    if d.rewrites.cursor.is_none() {
                        d.rewrites.cursor = ar.rule.cursor_rewrite();
                    }
                }
                _ => d.terminal = Some(ar.rule.clone()),
            }
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_and_times_are_counted_per_rule() {
        let mut f = Faults::new(1);
        f.add(
            FaultRule::status("list_snapshot", 503, "Overloaded", "x")
                .after(2)
                .times(1),
        );
        let hits: Vec<bool> = (0..5)
            .map(|_| {
                f.decide("list_snapshot", &mut |_, _| true)
                    .terminal
                    .is_some()
            })
            .collect();
        assert_eq!(hits, [false, false, true, false, false]);
        assert!(f
            .decide("document_deltas", &mut |_, _| true)
            .terminal
            .is_none());
    }

    #[test]
    fn table_rules_count_only_requests_selecting_their_table() {
        let mut f = Faults::new(1);
        f.add(FaultRule::status("*", 500, "InternalServerError", "x").table("posts"));
        let mut hit = |endpoint: &str, table: &str| {
            f.decide(endpoint, &mut |c, t| c.is_empty() && t == table)
                .terminal
                .is_some()
        };
        assert!(hit("list_snapshot", "posts"));
        assert!(!hit("list_snapshot", "users"));
        assert!(hit("data_sync", "posts"));
        // No selection to read: never.
        assert!(!hit("json_schemas", "posts"));
    }

    #[test]
    fn rewrites_combine_with_other_rules() {
        let mut f = Faults::new(1);
        f.add(FaultRule::new("*", FaultKind::SelectionIgnored).times(1));
        f.add(FaultRule::repeated_cursor("*"));
        f.add(FaultRule::status("list_snapshot", 503, "Overloaded", "x").times(1));
        let d = f.decide("list_snapshot", &mut |_, _| true);
        assert!(d.terminal.is_some());
        assert_eq!(
            d.rewrites,
            Rewrites {
                selection_ignored: true,
                cursor: Some(CursorRewrite::Repeat),
            }
        );
        // `*` covers only the endpoints the kind can hit.
        let d = f.decide("data_sync", &mut |_, _| true);
        assert_eq!(d.rewrites, Rewrites::default());
        let d = f.decide("json_schemas", &mut |_, _| true);
        assert_eq!(d.rewrites, Rewrites::default());
    }

    #[test]
    fn rules_that_could_never_fire_are_refused() {
        let bad = [
            FaultRule::new("json_schemas", FaultKind::SelectionIgnored),
            FaultRule::repeated_cursor("data_sync"),
            FaultRule::new("list_snapshot", FaultKind::Cursor),
            FaultRule {
                repeat_cursor: true,
                ..FaultRule::fixed_cursor("document_deltas", Json::from(5))
            },
            FaultRule::status("json_schemas", 500, "x", "y").table("t"),
            FaultRule {
                component: Some("c".into()),
                ..FaultRule::status("*", 500, "x", "y")
            },
            FaultRule {
                repeat_cursor: true,
                ..FaultRule::status("*", 500, "x", "y")
            },
        ];
        for rule in bad {
            assert!(rule.validate().is_err(), "{rule:?}");
        }
        let good = FaultRule::fixed_cursor("*", Json::from(5)).table("t");
        assert_eq!(good.validate(), Ok(()));
    }

    #[test]
    fn rule_json_parses() {
        let r: FaultRule = serde_json::from_str(
            r#"{"endpoint":"*","kind":"rate_limit","retry_after_secs":1,"times":2}"#,
        )
        .unwrap();
        assert_eq!(r.kind, FaultKind::RateLimit);
        assert_eq!(r.times, 2);
    }
}
