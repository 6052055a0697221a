//! Self-healing: a position Convex no longer serves (a deltas cursor older than the change
//! log's retention, a snapshot older than Convex keeps, a snapshot cursor Convex refuses) is
//! read again from a fresh snapshot with a WARN, the other streams going on; a walk that ages
//! out after it sent documents fails instead, and the next read heals before sending any.

use super::*;

#[test]
fn expired_positions_heal_with_a_fresh_snapshot() {
    let emu = Emu::new(&[("users", 2), ("posts", 1)]);
    let h = emu.head();
    // 5 is far older than the emulator's 14 days of change log.
    let state = json!([
        saved("users", json!({"delta_cursor": 5})),
        saved("posts", json!({ "delta_cursor": h })),
    ])
    .to_string();
    let (ok, messages) = emu.run(
        &[("users", "incremental"), ("posts", "incremental")],
        &state,
    );
    assert!(ok, "{messages:#?}");
    let warn = logs(&messages, "WARN");
    assert!(warn[0].contains("Stream users: the saved position is older"));
    assert_eq!(records(&messages, "users").len(), 2);
    // posts was not too old: it stays in the walk, users re-reads at the walk's end.
    let calls = emu.calls();
    assert_eq!(calls[1], "document_deltas posts, users 5");
    assert_eq!(calls[2], format!("document_deltas posts {h}"));
    assert_eq!(calls[3], walk_call("users", h, None));

    // A snapshot older than Convex keeps; a snapshot cursor Convex refuses.
    for code in [codes::SNAPSHOT_TOO_OLD, codes::INVALID_SNAPSHOT_CURSOR] {
        let emu = Emu::new(&[("users", 2)]);
        let (snapshot, cursor) = match code {
            codes::SNAPSHOT_TOO_OLD => (5, emu.cursor("users", &emu.ids("users")[0])),
            _ => (emu.head(), "users0000".to_owned()),
        };
        let state = json!([saved(
            "users",
            json!({"snapshot_cursor": cursor, "snapshot_has_more": true, "delta_cursor": snapshot})
        )])
        .to_string();
        let (ok, messages) = emu.run(&[("users", "incremental")], &state);
        assert!(ok, "{code}");
        assert_eq!(records(&messages, "users").len(), 2, "{code}");
        assert!(logs(&messages, "WARN").iter().any(|l| l.contains(code)));
        let calls = emu.calls();
        assert!(
            calls
                .last()
                .unwrap()
                .ends_with(&format!("{} None", emu.head())),
            "the new walk takes a fresh snapshot: {calls:?}"
        );
    }
}

/// A walk that ages past Convex's snapshot limit after it sent documents does not start over
/// in the same read (that would send them twice in one read): it fails, and the next read
/// restarts the table before sending anything.
#[test]
fn a_snapshot_too_old_after_records_fails_the_read_and_heals_the_next() {
    let emu = Emu::new(&[("users", 7)]);
    let streams = [("users", "incremental")];
    // The second page of the walk (after the head probe and the first page) is too old.
    emu.fail(
        FaultRule::status("list_snapshot", 400, codes::SNAPSHOT_TOO_OLD, "too old")
            .after(2)
            .times(1),
    );
    let (ok, messages) = emu.run(&streams, "[]");
    assert!(!ok);
    let first = records(&messages, "users").len();
    assert!(first > 0);
    let err = first_error(&messages);
    assert_eq!(err["failure_type"], "transient_error", "{err}");
    assert!(err["message"]
        .as_str()
        .unwrap()
        .starts_with("Stream users: the snapshot is older than Convex keeps (SnapshotTooOld) in the middle of this read"), "{err}");
    let state = state_after(&messages, "[]");
    // Six days on, the saved walk's snapshot is older than Convex's five.
    emu.dep()
        .advance_clock(std::time::Duration::from_secs(6 * 24 * 3600));
    let (ok, next) = emu.run(&streams, &state);
    assert!(ok, "{next:#?}");
    assert!(!logs(&next, "WARN").is_empty());
    assert_eq!(records(&next, "users").len(), 7);
}
