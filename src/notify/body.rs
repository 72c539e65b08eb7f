//! What a notification says and how it is sent: the event, its body in
//! either format, and its signature.

use super::NotifyFormat;
use crate::stores::control::AuditEntry;
use chrono::{DateTime, SecondsFormat, Utc};
use hmac::{Hmac, Mac};
use serde::Serialize;
use serde_json::{json, Value};
use sha2::Sha256;

/// Why a notification is sent (`event` in the body, `X-Ferry-Event`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// An operator action (an operations record entry).
    Action,
    /// The migration can be completed: nothing left, nothing failed.
    ReadyToComplete,
    /// Failed documents crossed the threshold.
    FailuresRising,
    /// No progress for a while although documents remain.
    Stalled,
    /// A worker has been degraded (a dependency down) for a while.
    Degraded,
}

impl Kind {
    /// The name used in the body and the `X-Ferry-Event` header.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Action => "action",
            Kind::ReadyToComplete => "ready_to_complete",
            Kind::FailuresRising => "failures_rising",
            Kind::Stalled => "stalled",
            Kind::Degraded => "degraded",
        }
    }
}

/// One notification, before it is rendered in a format.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Notice {
    /// Why it is sent.
    pub event: Kind,
    /// When it happened, RFC 3339.
    pub at: String,
    /// Which deployment (the queue prefix): several may share a channel.
    pub deployment: String,
    /// One line for people.
    pub text: String,
    /// The facts behind it.
    pub detail: Value,
}

impl Notice {
    /// A condition noticed now.
    pub fn now(event: Kind, deployment: &str, text: String, detail: Value) -> Self {
        Self {
            event,
            at: rfc3339(Utc::now()),
            deployment: deployment.to_string(),
            text,
            detail,
        }
    }

    /// An operator action, with the record entry as its detail.
    pub fn action(deployment: &str, e: &AuditEntry) -> Self {
        let at = DateTime::from_timestamp_millis(e.at_ms as i64).unwrap_or_else(Utc::now);
        let outcome = serde_json::to_value(e.outcome).unwrap_or(Value::Null);
        let text = format!(
            "{} ran {}: {} ({})",
            e.by,
            e.action,
            outcome.as_str().unwrap_or("?"),
            e.message
        );
        Self {
            event: Kind::Action,
            at: rfc3339(at),
            deployment: deployment.to_string(),
            text,
            detail: json!({
                "at_ms": e.at_ms,
                "by": e.by,
                "action": e.action,
                "detail": e.detail,
                "outcome": outcome,
                "message": e.message,
            }),
        }
    }

    /// The exact body bytes sent (and signed) in `format`.
    pub fn body(&self, format: NotifyFormat) -> Vec<u8> {
        let v = match format {
            NotifyFormat::Json => serde_json::to_value(self).unwrap_or(Value::Null),
            NotifyFormat::Slack => {
                json!({ "text": format!("[{}] {}", self.deployment, self.text) })
            }
        };
        v.to_string().into_bytes()
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The `X-Ferry-Signature` value of `body` under `secret`:
/// `sha256=<hex of HMAC-SHA256>`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    // HMAC accepts keys of any length; the error case cannot happen.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stores::control::AuditOutcome;

    #[test]
    fn signature_matches_a_known_hmac() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    fn entry() -> AuditEntry {
        AuditEntry {
            at_ms: 1_700_000_000_123,
            by: "ann".into(),
            action: "start".into(),
            detail: "mapping m.json".into(),
            outcome: AuditOutcome::Done,
            message: "started images_1".into(),
        }
    }

    #[test]
    fn an_action_body_carries_the_record_entry() {
        let n = Notice::action("prod", &entry());
        let v: Value = serde_json::from_slice(&n.body(NotifyFormat::Json)).unwrap();
        assert_eq!(
            v,
            json!({
                "event": "action",
                "at": "2023-11-14T22:13:20.123Z",
                "deployment": "prod",
                "text": "ann ran start: done (started images_1)",
                "detail": {
                    "at_ms": 1_700_000_000_123u64, "by": "ann", "action": "start",
                    "detail": "mapping m.json", "outcome": "done",
                    "message": "started images_1",
                },
            })
        );
    }

    #[test]
    fn a_condition_body_names_its_event() {
        let n = Notice::now(Kind::Stalled, "prod", "stuck".into(), json!({"to_go": 3}));
        let v: Value = serde_json::from_slice(&n.body(NotifyFormat::Json)).unwrap();
        assert_eq!(v["event"], "stalled");
        assert_eq!(v["detail"]["to_go"], 3);
        assert!(DateTime::parse_from_rfc3339(v["at"].as_str().unwrap()).is_ok());
    }

    #[test]
    fn a_slack_body_is_one_text() {
        let n = Notice::action("prod", &entry());
        let v: Value = serde_json::from_slice(&n.body(NotifyFormat::Slack)).unwrap();
        assert_eq!(
            v,
            json!({"text": "[prod] ann ran start: done (started images_1)"})
        );
    }
}
