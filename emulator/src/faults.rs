//! Fault injection for `/api/` requests: what a flaky network, proxy or overloaded backend
//! does to a client. Rules are matched per endpoint by request count or probability.

use serde::{Deserialize, Serialize};

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
}

/// A fault rule, e.g. `{"endpoint":"list_snapshot","kind":"status","status":503,
/// "code":"Overloaded","message":"...","after":2,"times":1}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRule {
    /// `list_snapshot`, `document_deltas`, `json_schemas`, `test_streaming_export_connection`,
    /// `get_table_column_names`, `data_sync` (`/api/v1/data/sync`),
    /// `data_sync_cursor_from_deltas`, `list_active_syncs`, or `*` for every `/api/` endpoint.
    #[serde(default = "any_endpoint")]
    pub endpoint: String,
    pub kind: FaultKind,
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

    pub fn validate(&self) -> Result<(), String> {
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
    pub fn decide(&mut self, endpoint: &str) -> Decision {
        let mut d = Decision::default();
        for ar in &mut self.rules {
            if ar.rule.endpoint != "*" && ar.rule.endpoint != endpoint {
                continue;
            }
            ar.seen += 1;
            if ar.seen <= ar.rule.after {
                continue;
            }
            if ar.rule.times != 0 && ar.applied >= ar.rule.times {
                continue;
            }
            // A terminal rule already fired: later rules do not consume their budget.
            if d.terminal.is_some() && ar.rule.kind != FaultKind::Latency {
                continue;
            }
            if let Some(p) = ar.rule.rate {
                if !self.rng.chance(p) {
                    continue;
                }
            }
            ar.applied += 1;
            if ar.rule.kind == FaultKind::Latency {
                d.delay_ms += ar.rule.ms.unwrap_or(0);
            } else {
                d.terminal = Some(ar.rule.clone());
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
            .map(|_| f.decide("list_snapshot").terminal.is_some())
            .collect();
        assert_eq!(hits, [false, false, true, false, false]);
        assert!(f.decide("document_deltas").terminal.is_none());
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
