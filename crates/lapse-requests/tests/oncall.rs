//! The PagerDuty client against the `chat-sim` stand-in of `GET /oncalls` on loopback.

use std::time::Duration;

use chat_sim::pagerduty::Shift;
use chat_sim::{PagerDutySim, PdMode};
use lapse_requests::oncall::{OnCall, PagerDuty};
use secrecy::SecretString;

fn client(sim: &PagerDutySim, key: &str) -> PagerDuty {
    PagerDuty::new(
        &sim.base_url(),
        SecretString::from(key.to_owned()),
        Duration::from_millis(500),
    )
    .expect("client")
}

fn shift(schedule: &str, n: usize, hours: (i64, i64)) -> Shift {
    let now = chrono::Utc::now();
    Shift {
        schedule_id: schedule.into(),
        schedule_name: format!("{schedule} rota"),
        user_id: format!("PU{n}"),
        user_name: format!("user {n}"),
        email: format!("user{n}@x.io"),
        start: Some(now + chrono::Duration::hours(hours.0)),
        end: Some(now + chrono::Duration::hours(hours.1)),
    }
}

#[tokio::test]
async fn the_on_call_person_is_found_across_pages_by_email_and_nobody_else_is() {
    let sim = PagerDutySim::start("k3y").await.expect("sim");
    // 150 people on call now on PA: the one asked for is on the second page of 100.
    for n in 0..150 {
        sim.add_shift(shift("PA", n, (-1, 1)));
    }
    // On call later today, and on another schedule: neither counts.
    sim.add_shift(shift("PA", 500, (2, 3)));
    sim.add_shift(shift("PB", 600, (-1, 1)));
    let pd = client(&sim, "k3y");
    let schedules = vec!["PA".to_owned()];
    let m = pd
        .on_call(&schedules, " USER149@x.io ")
        .await
        .expect("answer")
        .expect("on call");
    assert_eq!(m.schedule_id, "PA");
    assert_eq!(m.schedule_name, "PA rota");
    assert_eq!(m.user_id, "PU149");
    assert_eq!(m.user_email, "user149@x.io");
    assert!(sim.calls().len() >= 2, "pages: {:?}", sim.calls());
    assert!(
        sim.calls()
            .iter()
            .all(|q| q.contains("include%5B%5D=users"))
    );
    for who in ["user500@x.io", "user600@x.io", "nobody@x.io"] {
        assert_eq!(
            pd.on_call(&schedules, who).await.expect("answer"),
            None,
            "{who}"
        );
    }
}

#[tokio::test]
async fn a_wrong_key_an_outage_an_error_and_a_slow_answer_are_errors_not_a_yes() {
    let sim = PagerDutySim::start("k3y").await.expect("sim");
    sim.add_shift(shift("PA", 1, (-1, 1)));
    let schedules = vec!["PA".to_owned()];
    let e = client(&sim, "wrong")
        .on_call(&schedules, "user1@x.io")
        .await
        .expect_err("refused");
    assert!(e.contains("401"), "{e}");
    let pd = client(&sim, "k3y");
    for mode in [
        PdMode::Down,
        PdMode::Erroring,
        PdMode::Slow(Duration::from_secs(2)),
    ] {
        sim.set_mode(mode);
        let got = pd.on_call(&schedules, "user1@x.io").await;
        assert!(got.is_err(), "{mode:?}: {got:?}");
    }
    // Nothing listening at all.
    let gone = PagerDuty::new(
        "http://127.0.0.1:9",
        SecretString::from("k3y".to_owned()),
        Duration::from_millis(500),
    )
    .expect("client");
    assert!(gone.on_call(&schedules, "user1@x.io").await.is_err());
    sim.set_mode(PdMode::Up);
    assert!(
        pd.on_call(&schedules, "user1@x.io")
            .await
            .expect("up")
            .is_some()
    );
}
