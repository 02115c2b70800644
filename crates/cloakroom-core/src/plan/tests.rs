//! The end-of-request rules as a table: one row per rule, from the recorded state, the
//! status and the settings to the plan.

use time::macros::datetime;
use time::{Duration, OffsetDateTime};

use super::*;
use crate::recorded::Recorded;

const NOW: OffsetDateTime = datetime!(2030-01-01 12:00 UTC);
/// Django's default `SESSION_COOKIE_AGE`: two weeks.
const TWO_WEEKS: i64 = 1_209_600;

/// A session loaded under key `k`, holding `{"a": 1}`, that expires in `left` seconds.
fn loaded(st: &mut Recorded, left: i64) {
    st.key = Some("k".into());
    st.token = Some(r#"{"a":1}"#.into());
    st.data.insert("a".into(), 1.into());
    st.expires_at = Some(NOW + Duration::seconds(left));
    st.accessed = true;
}

/// What `Session::flush` leaves.
fn flushed(st: &mut Recorded) {
    loaded(st, 100);
    st.key = None;
    st.token = None;
    st.data.clear();
    st.doomed.push("k".into());
    st.flushed = true;
    st.modified = true;
}

/// What `Session::cycle_key` leaves, with a rotation grace window or without.
fn cycled(st: &mut Recorded, grace: bool) {
    loaded(st, 100);
    let old = (
        st.key.take().unwrap_or_default(),
        st.token.take().unwrap_or_default(),
    );
    if grace {
        st.cycled_from = Some(old);
    } else {
        st.doomed.push(old.0);
    }
    st.modified = true;
    st.must_persist = true;
}

fn modified(st: &mut Recorded) {
    st.modified = true;
}

const LEAVE: Plan = Plan::leave(Cookie::Keep);
const SAVED: Plan = Plan {
    write: Write::Update,
    index: Index::Relink,
    cookie: Cookie::Written,
    ..LEAVE
};
const CREATED: Plan = Plan {
    write: Write::Create { deadline: None },
    ..SAVED
};

struct Row {
    rule: &'static str,
    state: fn(&mut Recorded),
    settings: fn(&mut Settings),
    status: u16,
    had_cookie: bool,
    expect: Plan,
}

fn defaults(_: &mut Settings) {}

fn rolling(s: &mut Settings) {
    s.session.idle_timeout = Some(600);
}

/// One row per rule.
const ROWS: &[Row] = &[
    Row {
        rule: "a 5xx without flush writes nothing and leaves the cookie",
        state: |st| {
            loaded(st, 100);
            modified(st);
        },
        settings: defaults,
        status: 500,
        had_cookie: true,
        expect: LEAVE,
    },
    Row {
        rule: "a 5xx after cycle_key deletes nothing (the old session stays)",
        state: |st| cycled(st, false),
        settings: defaults,
        status: 503,
        had_cookie: true,
        expect: LEAVE,
    },
    Row {
        rule: "a 5xx after flush still deletes, and deletes the cookie",
        state: flushed,
        settings: defaults,
        status: 500,
        had_cookie: true,
        expect: Plan {
            delete: true,
            index: Index::Unlink,
            cookie: Cookie::Delete,
            ..LEAVE
        },
    },
    Row {
        rule: "a 5xx after flush and new data deletes and saves nothing more",
        state: |st| {
            flushed(st);
            st.data.insert("b".into(), 2.into());
        },
        settings: defaults,
        status: 500,
        had_cookie: true,
        expect: Plan {
            delete: true,
            ..LEAVE
        },
    },
    Row {
        rule: "flush deletes the record and the cookie",
        state: flushed,
        settings: defaults,
        status: 200,
        had_cookie: true,
        expect: Plan {
            delete: true,
            index: Index::Unlink,
            cookie: Cookie::Delete,
            ..LEAVE
        },
    },
    Row {
        rule: "flush then new data: size checked, old deleted, new key created",
        state: |st| {
            flushed(st);
            st.data.insert("b".into(), 2.into());
        },
        settings: defaults,
        status: 200,
        had_cookie: true,
        expect: Plan {
            check_size: true,
            delete: true,
            ..CREATED
        },
    },
    Row {
        rule: "an empty session without a cookie sends nothing",
        state: |_| {},
        settings: defaults,
        status: 200,
        had_cookie: false,
        expect: Plan {
            index: Index::Unlink,
            ..LEAVE
        },
    },
    Row {
        rule: "an empty session with a cookie the store does not know deletes it",
        state: |_| {},
        settings: defaults,
        status: 200,
        had_cookie: true,
        expect: Plan {
            index: Index::Unlink,
            cookie: Cookie::Delete,
            ..LEAVE
        },
    },
    Row {
        rule: "an emptied session keeps its key and is saved as {}",
        state: |st| {
            loaded(st, 100);
            st.data.clear();
            modified(st);
        },
        settings: defaults,
        status: 200,
        had_cookie: true,
        expect: SAVED,
    },
    Row {
        rule: "a changed session is saved by compare-and-swap",
        state: |st| {
            loaded(st, 100);
            modified(st);
        },
        settings: defaults,
        status: 200,
        had_cookie: true,
        expect: SAVED,
    },
    Row {
        rule: "a new session is created under a fresh key",
        state: |st| {
            st.data.insert("a".into(), 1.into());
            modified(st);
        },
        settings: defaults,
        status: 201,
        had_cookie: false,
        expect: CREATED,
    },
    Row {
        rule: "a new session starts its absolute lifetime",
        state: |st| {
            st.data.insert("a".into(), 1.into());
            modified(st);
        },
        settings: |s| s.session.absolute_lifetime = Some(3600),
        status: 200,
        had_cookie: false,
        expect: Plan {
            write: Write::Create {
                deadline: Some(datetime!(2030-01-01 13:00 UTC)),
            },
            ..CREATED
        },
    },
    Row {
        rule: "a deadline the handler set is kept",
        state: |st| {
            st.data
                .insert(DEADLINE_KEY.into(), "2030-01-01T13:00:00+00:00".into());
            modified(st);
        },
        settings: |s| s.session.absolute_lifetime = Some(3600),
        status: 200,
        had_cookie: false,
        expect: CREATED,
    },
    Row {
        rule: "a saved session's absolute lifetime does not restart",
        state: |st| {
            loaded(st, 100);
            modified(st);
        },
        settings: |s| s.session.absolute_lifetime = Some(3600),
        status: 200,
        had_cookie: true,
        expect: SAVED,
    },
    Row {
        rule: "cycle_key without grace: size checked, old deleted, new key created",
        state: |st| cycled(st, false),
        settings: defaults,
        status: 200,
        had_cookie: true,
        expect: Plan {
            check_size: true,
            delete: true,
            ..CREATED
        },
    },
    Row {
        rule: "cycle_key with grace: new key created, snapshot parked under the old",
        state: |st| cycled(st, true),
        settings: |s| s.session.rotation_grace = 10,
        status: 200,
        had_cookie: true,
        expect: Plan {
            snapshot: true,
            ..CREATED
        },
    },
    Row {
        rule: "cycle_key of an empty session still stores it under a new key",
        state: |st| {
            cycled(st, false);
            st.data.clear();
        },
        settings: defaults,
        status: 200,
        had_cookie: true,
        expect: Plan {
            delete: true,
            ..CREATED
        },
    },
    Row {
        rule: "save_every_request saves an unchanged session",
        state: |st| loaded(st, 100),
        settings: |s| s.session.save_every_request = true,
        status: 200,
        had_cookie: true,
        expect: SAVED,
    },
    Row {
        rule: "an unchanged session without an idle timeout writes nothing",
        state: |st| loaded(st, 100),
        settings: defaults,
        status: 200,
        had_cookie: true,
        expect: LEAVE,
    },
    Row {
        rule: "an unchanged rolling session is touched once its refresh is due",
        state: |st| loaded(st, 100),
        settings: rolling,
        status: 200,
        had_cookie: true,
        expect: Plan {
            write: Write::Touch {
                expires_at: datetime!(2030-01-01 12:10 UTC),
                max_age: Some(600),
                otherwise: Cookie::Keep,
            },
            index: Index::Relink,
            cookie: Cookie::Written,
            ..LEAVE
        },
    },
    Row {
        rule: "an unchanged rolling session is not touched before its refresh is due",
        state: |st| loaded(st, 590),
        settings: rolling,
        status: 200,
        had_cookie: true,
        expect: LEAVE,
    },
    Row {
        rule: "a touch that finds the record changed falls back to re-sending the cookie",
        state: |st| {
            loaded(st, 100);
            st.resend = true;
        },
        settings: rolling,
        status: 200,
        had_cookie: true,
        expect: Plan {
            write: Write::Touch {
                expires_at: datetime!(2030-01-01 12:10 UTC),
                max_age: Some(600),
                otherwise: Cookie::Resend { max_age: Some(100) },
            },
            index: Index::Relink,
            cookie: Cookie::Written,
            ..LEAVE
        },
    },
    Row {
        rule: "after Session::save the cookie is re-sent with the stored expiry",
        state: |st| {
            loaded(st, TWO_WEEKS);
            st.resend = true;
        },
        settings: defaults,
        status: 200,
        had_cookie: false,
        expect: Plan::leave(Cookie::Resend {
            max_age: Some(TWO_WEEKS),
        }),
    },
    Row {
        rule: "a browser-session cookie is re-sent without Max-Age",
        state: |st| {
            loaded(st, 100);
            st.resend = true;
        },
        settings: |s| s.session.expire_at_browser_close = true,
        status: 200,
        had_cookie: true,
        expect: Plan::leave(Cookie::Resend { max_age: None }),
    },
    Row {
        rule: "a rotated-away key that only reads writes nothing and sends no cookie",
        state: |st| {
            loaded(st, 10);
            st.rotated = true;
        },
        settings: rolling,
        status: 200,
        had_cookie: true,
        expect: LEAVE,
    },
    Row {
        rule: "a rotated-away key refuses a change",
        state: |st| {
            loaded(st, 10);
            st.rotated = true;
            modified(st);
        },
        settings: defaults,
        status: 200,
        had_cookie: true,
        expect: Plan {
            write: Write::Refuse,
            ..LEAVE
        },
    },
    Row {
        rule: "a 5xx on a rotated-away key is a 5xx, not a refusal",
        state: |st| {
            loaded(st, 10);
            st.rotated = true;
            modified(st);
        },
        settings: defaults,
        status: 500,
        had_cookie: true,
        expect: LEAVE,
    },
    Row {
        rule: "a session whose load failed under fail-open is never saved",
        state: |st| {
            st.detached = true;
            st.data.insert("a".into(), 1.into());
            modified(st);
        },
        settings: defaults,
        status: 200,
        had_cookie: true,
        expect: LEAVE,
    },
];

#[test]
fn each_rule_of_the_end_of_a_request_plans_as_the_table_says() {
    let mut failures = Vec::new();
    for row in ROWS {
        let mut st = Recorded::default();
        (row.state)(&mut st);
        let mut settings = Settings::default();
        (row.settings)(&mut settings);
        let got = plan(&st, row.status, row.had_cookie, &settings, NOW);
        if got != row.expect {
            failures.push(format!(
                "{}:\n  want {:?}\n  got  {:?}",
                row.rule, row.expect, got
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_user_index_is_called_only_when_its_entry_changes_or_needs_a_refresh() {
    let entry = |user: &str, key: &str| Some((user.to_owned(), key.to_owned()));
    let steps = |unlink, link, cap| IndexSteps { unlink, link, cap };
    let table = [
        (
            "no user before or after: no call",
            None,
            None,
            steps(false, false, false),
        ),
        (
            "a login links and caps",
            None,
            entry("u", "k"),
            steps(false, true, true),
        ),
        (
            "the same user and key refreshes",
            entry("u", "k"),
            entry("u", "k"),
            steps(false, true, false),
        ),
        (
            "a logout unlinks",
            entry("u", "k"),
            None,
            steps(true, false, false),
        ),
        (
            "another user: unlink, link, cap",
            entry("u", "k"),
            entry("v", "k"),
            steps(true, true, true),
        ),
        (
            "a new key: unlink, link, cap",
            entry("u", "k"),
            entry("u", "k2"),
            steps(true, true, true),
        ),
    ];
    for (rule, linked, next, want) in table {
        assert_eq!(index_steps(linked.as_ref(), next.as_ref()), want, "{rule}");
    }
}
