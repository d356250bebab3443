//! The history: append-only, hash-chained, filterable, and verification that names the broken row.

use chrono::Duration;
use lapse_core::GrantKind;
use lapse_store::{
    Batch, Checkpoint, CheckpointKey, Finding, GENESIS_HASH, HistoryFilter, NewHistory, Role,
    append_checkpoint, history_hash, read_checkpoints,
};
use serde_json::json;

use crate::fixture::{GrantBuilder, TestDb, V, backends, resource, t0, user};

/// A store with a real mixed history: grants, engine events and a token. Returns the row count.
async fn populate(db: &TestDb) -> i64 {
    for n in 0..4u32 {
        let g = GrantBuilder::new(u128::from(n))
            .created_plus(i64::from(n) * 60)
            .kind(
                GrantKind::EphemeralGroup,
                vec![user(n)],
                vec![resource(&format!("res{n}"))],
            )
            .build();
        db.store
            .insert_grant(&g, None)
            .await
            .expect("populating the history");
        db.store
            .commit(Batch {
                history: vec![NewHistory {
                    at: g.created_at + Duration::seconds(1),
                    grant_id: Some(g.id),
                    actor: "lapse".into(),
                    event: "active".into(),
                    detail: json!({ "note": "applied" }),
                }],
                ..Default::default()
            })
            .await
            .expect("populating the history");
    }
    db.store
        .create_token("auditor-1", Role::Auditor)
        .await
        .expect("populating the history");
    9
}

#[tokio::test]
async fn the_chain_links_every_row_and_verifies() {
    for kind in backends() {
        let db = TestDb::open(kind).await;
        let n = populate(&db).await;
        let rows = db.store.history(&HistoryFilter::default()).await.unwrap();
        assert_eq!(rows.len() as i64, n);
        assert_eq!(rows[0].prev_hash, GENESIS_HASH);
        for (i, pair) in rows.windows(2).enumerate() {
            assert_eq!(pair[0].seq, i as i64 + 1);
            assert_eq!(pair[1].prev_hash, pair[0].hash);
        }
        let report = db.store.verify_history().await.unwrap();
        assert_eq!(report.rows_checked, n as u64);
        assert_eq!(report.first_broken, None);
    }
}

#[tokio::test]
async fn an_empty_history_verifies() {
    for kind in backends() {
        let db = TestDb::open(kind).await;
        let report = db.store.verify_history().await.unwrap();
        assert_eq!(report.rows_checked, 0);
        assert!(report.is_ok());
    }
}

#[tokio::test]
async fn triggers_refuse_update_and_delete() {
    for kind in backends() {
        let db = TestDb::open(kind).await;
        populate(&db).await;
        let mut conn = db.raw().await;
        let err = conn
            .exec(
                "UPDATE history SET actor = 'someone-else' WHERE seq = 2",
                &[],
            )
            .await
            .unwrap_err();
        assert!(err.to_string().contains("history is append-only"), "{err}");
        let err = conn
            .exec("DELETE FROM history WHERE seq = 2", &[])
            .await
            .unwrap_err();
        assert!(err.to_string().contains("history is append-only"), "{err}");
        conn.close().await;
        assert!(db.store.verify_history().await.unwrap().is_ok());
    }
}

#[tokio::test]
async fn verify_names_the_row_altered_behind_the_triggers() {
    for kind in backends() {
        let db = TestDb::open(kind).await;
        let n = populate(&db).await;
        let mut conn = db.raw().await;
        conn.exec("DROP TRIGGER history_no_update", &[])
            .await
            .unwrap();
        conn.exec(
            "UPDATE history SET detail = '{\"note\":\"nothing happened\"}' WHERE seq = 4",
            &[],
        )
        .await
        .unwrap();
        conn.close().await;

        let report = db.store.verify_history().await.unwrap();
        assert_eq!(report.rows_checked, n as u64);
        let broken = report.first_broken.unwrap();
        assert_eq!(broken.seq, 4);
        assert!(broken.reason.contains("altered"), "{}", broken.reason);
    }
}

#[tokio::test]
async fn verify_names_the_row_after_a_rehashed_edit() {
    // Someone who edits a row and recomputes its hash still breaks the next row's link.
    for kind in backends() {
        let db = TestDb::open(kind).await;
        populate(&db).await;
        let rows = db.store.history(&HistoryFilter::default()).await.unwrap();
        let r = &rows[2];
        let at = lapse_store::format_ts(r.at);
        let grant = r.grant_id.map(|g| g.to_string());
        let forged = history_hash(
            &r.prev_hash,
            r.seq,
            &at,
            grant.as_deref(),
            "mallory",
            &r.event,
            "{}",
        );
        let mut conn = db.raw().await;
        conn.exec("DROP TRIGGER history_no_update", &[])
            .await
            .unwrap();
        conn.exec(
            "UPDATE history SET actor = 'mallory', detail = '{}', hash = ? WHERE seq = ?",
            &[V::S(&forged), V::I(r.seq)],
        )
        .await
        .unwrap();
        conn.close().await;

        let broken = db
            .store
            .verify_history()
            .await
            .unwrap()
            .first_broken
            .unwrap();
        assert_eq!(broken.seq, r.seq + 1);
        assert!(broken.reason.contains("prev_hash"), "{}", broken.reason);
    }
}

#[tokio::test]
async fn verify_names_the_row_after_a_deleted_one() {
    for kind in backends() {
        let db = TestDb::open(kind).await;
        populate(&db).await;
        let mut conn = db.raw().await;
        conn.exec("DROP TRIGGER history_no_delete", &[])
            .await
            .unwrap();
        conn.exec("DELETE FROM history WHERE seq = 5", &[])
            .await
            .unwrap();
        conn.close().await;

        let broken = db
            .store
            .verify_history()
            .await
            .unwrap()
            .first_broken
            .unwrap();
        assert_eq!(broken.seq, 6);
        assert!(broken.reason.contains("missing"), "{}", broken.reason);
    }
}

#[tokio::test]
async fn concurrent_writers_never_fork_the_chain() {
    for kind in backends() {
        let db = TestDb::open(kind).await;
        let mut tasks = Vec::new();
        for n in 0..40u128 {
            let store = db.store.clone();
            tasks.push(tokio::spawn(async move {
                let g = GrantBuilder::new(n).build();
                store.insert_grant(&g, None).await.unwrap();
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let rows = db.store.history(&HistoryFilter::default()).await.unwrap();
        assert_eq!(
            rows.iter().map(|r| r.seq).collect::<Vec<_>>(),
            (1..=40).collect::<Vec<_>>()
        );
        assert!(db.store.verify_history().await.unwrap().is_ok());
    }
}

#[tokio::test]
async fn filters_by_grant_user_resource_and_time() {
    for kind in backends() {
        let db = TestDb::open(kind).await;
        populate(&db).await;
        let all = db.store.history(&HistoryFilter::default()).await.unwrap();
        let seqs = |rows: Vec<lapse_store::HistoryRow>| {
            rows.into_iter().map(|r| r.seq).collect::<Vec<_>>()
        };

        let by_user = HistoryFilter {
            user: Some("USER2@example.com".into()),
            ..Default::default()
        };
        assert_eq!(seqs(db.store.history(&by_user).await.unwrap()), vec![5, 6]);
        let by_resource = HistoryFilter {
            resource: Some("res3".into()),
            ..Default::default()
        };
        assert_eq!(
            seqs(db.store.history(&by_resource).await.unwrap()),
            vec![7, 8]
        );
        let by_grant = HistoryFilter {
            grant: all[0].grant_id,
            ..Default::default()
        };
        assert_eq!(seqs(db.store.history(&by_grant).await.unwrap()), vec![1, 2]);

        // Grants were created a minute apart: [since, until) picks the second grant's rows.
        let window = HistoryFilter {
            since: Some(t0() + Duration::seconds(60)),
            until: Some(t0() + Duration::seconds(120)),
            ..Default::default()
        };
        assert_eq!(seqs(db.store.history(&window).await.unwrap()), vec![3, 4]);
        let limited = HistoryFilter {
            limit: Some(3),
            ..Default::default()
        };
        assert_eq!(
            seqs(db.store.history(&limited).await.unwrap()),
            vec![1, 2, 3]
        );
    }
}

#[test]
fn the_hash_encoding_has_no_ambiguous_boundaries() {
    let base = history_hash(
        GENESIS_HASH,
        1,
        "2030-01-01T00:00:00.000000Z",
        None,
        "ab",
        "c",
        "{}",
    );
    assert_eq!(base.len(), 64);
    let shifted = history_hash(
        GENESIS_HASH,
        1,
        "2030-01-01T00:00:00.000000Z",
        None,
        "a",
        "bc",
        "{}",
    );
    assert_ne!(base, shifted);
    let empty_grant = history_hash(
        GENESIS_HASH,
        1,
        "2030-01-01T00:00:00.000000Z",
        Some(""),
        "ab",
        "c",
        "{}",
    );
    assert_ne!(base, empty_grant);
    let other_seq = history_hash(
        GENESIS_HASH,
        2,
        "2030-01-01T00:00:00.000000Z",
        None,
        "ab",
        "c",
        "{}",
    );
    assert_ne!(base, other_seq);
    // Stable across builds: a chain written by one release verifies in the next.
    assert_eq!(
        base,
        history_hash(
            GENESIS_HASH,
            1,
            "2030-01-01T00:00:00.000000Z",
            None,
            "ab",
            "c",
            "{}"
        )
    );
}

fn key(byte: u8) -> CheckpointKey {
    CheckpointKey::new(vec![byte; 32]).expect("a 32-byte key")
}

/// Runs SQL on the file behind the store's back, as someone with the sqlite3 shell would.
async fn tamper(db: &TestDb, statements: &[&str]) {
    let mut conn = db.raw().await;
    for s in statements {
        conn.exec(s, &[])
            .await
            .unwrap_or_else(|e| panic!("{s}: {e}"));
    }
    conn.close().await;
}

#[tokio::test]
async fn deleting_the_last_rows_is_named_by_the_mark_and_by_a_checkpoint_after_the_mark_is_rewound()
{
    for kind in backends() {
        let db = TestDb::open(kind).await;
        let n = populate(&db).await;
        let k = key(1);
        let cp = db.store.checkpoint(&k, t0()).await.unwrap();
        assert_eq!(cp.seq, n);

        tamper(
            &db,
            &[
                "DROP TRIGGER history_no_delete",
                "DELETE FROM history WHERE seq > 6",
            ],
        )
        .await;
        // The high-water mark still says row 9 was written.
        let broken = db
            .store
            .verify_history()
            .await
            .unwrap()
            .first_broken
            .unwrap();
        assert_eq!(broken.seq, 7);
        assert!(
            broken.reason.contains("rows after 6 were removed"),
            "{}",
            broken.reason
        );

        // Someone who knows about the mark rewinds it too: the chain alone now looks whole.
        tamper(
            &db,
            &[
                "DROP TRIGGER history_head_forward_only",
                "UPDATE history_head SET last_seq = 6, \
             last_at = (SELECT at FROM history WHERE seq = 6)",
            ],
        )
        .await;
        let report = db.store.verify_history().await.unwrap();
        assert!(report.is_ok(), "{report:?}");
        assert_eq!(report.rows_checked, 6);

        let checked = db.store.verify_history_with(&[cp], &k).await.unwrap();
        assert!(!checked.is_ok());
        assert_eq!(
            checked.findings,
            [Finding::Truncated {
                checkpoint_seq: 9,
                last_seq: 6
            }]
        );
        assert!(
            checked.findings[0]
                .to_string()
                .contains("rows after 6 were removed"),
            "{}",
            checked.findings[0]
        );
    }
}

#[tokio::test]
async fn an_edited_row_with_the_whole_chain_recomputed_is_named_by_a_checkpoint() {
    for kind in backends() {
        let db = TestDb::open(kind).await;
        populate(&db).await;
        let k = key(1);
        let rows = db.store.history(&HistoryFilter::default()).await.unwrap();
        // One checkpoint made along the way (row 5) and one of the head (row 9).
        let mid = Checkpoint::new(5, rows[4].hash.clone(), t0(), &k);
        let head = db.store.checkpoint(&k, t0()).await.unwrap();

        // Edit row 4's actor, then recompute every hash from there on so the chain links up.
        let mut conn = db.raw().await;
        conn.exec("DROP TRIGGER history_no_update", &[])
            .await
            .unwrap();
        let mut prev = rows[2].hash.clone();
        for r in &rows[3..] {
            let actor = if r.seq == 4 {
                "mallory"
            } else {
                r.actor.as_str()
            };
            let detail = serde_json::to_string(&r.detail).unwrap();
            let grant = r.grant_id.map(|g| g.to_string());
            let hash = history_hash(
                &prev,
                r.seq,
                &lapse_store::format_ts(r.at),
                grant.as_deref(),
                actor,
                &r.event,
                &detail,
            );
            conn.exec(
                "UPDATE history SET actor = ?, prev_hash = ?, hash = ? WHERE seq = ?",
                &[V::S(actor), V::S(&prev), V::S(&hash), V::I(r.seq)],
            )
            .await
            .unwrap();
            prev = hash;
        }
        conn.close().await;

        // Without checkpoints the rewrite is invisible.
        assert!(db.store.verify_history().await.unwrap().is_ok());

        let checked = db
            .store
            .verify_history_with(&[mid, head], &k)
            .await
            .unwrap();
        assert!(checked.chain.is_ok());
        assert_eq!(checked.checkpoints_genuine, 2);
        let rewritten: Vec<i64> = checked
            .findings
            .iter()
            .map(|f| match f {
                Finding::Rewritten { seq, .. } => *seq,
                other => panic!("expected only rewrites, got {other}"),
            })
            .collect();
        assert_eq!(rewritten, [5, 9]);
        assert!(
            checked.findings[0].to_string().contains("rewritten: row 5"),
            "{}",
            checked.findings[0]
        );
    }
}

#[tokio::test]
async fn a_checkpoint_not_made_with_the_key_is_named_as_forged() {
    for kind in backends() {
        let db = TestDb::open(kind).await;
        populate(&db).await;
        let genuine = db.store.checkpoint(&key(1), t0()).await.unwrap();
        let wrong_key = db.store.checkpoint(&key(2), t0()).await.unwrap();
        let mut moved = genuine.clone();
        moved.seq = 100;

        let checked = db
            .store
            .verify_history_with(&[genuine.clone(), wrong_key, moved], &key(1))
            .await
            .unwrap();
        assert_eq!(
            checked.findings,
            [
                Finding::ForgedCheckpoint { index: 1, seq: 9 },
                Finding::ForgedCheckpoint { index: 2, seq: 100 },
            ]
        );
        assert!(
            checked.findings[0]
                .to_string()
                .contains("checkpoint 2 (row 9) is forged")
        );
        // The forged one claiming row 100 is not read as truncation.
        assert_eq!(checked.checkpoints_genuine, 1);

        // And an intact history with its genuine checkpoint is whole.
        let ok = db
            .store
            .verify_history_with(&[genuine], &key(1))
            .await
            .unwrap();
        assert!(ok.is_ok(), "{ok:?}");
    }
}

#[tokio::test]
async fn checkpoints_written_to_a_file_verify_the_history_they_were_made_of() {
    for kind in backends() {
        let db = TestDb::open(kind).await;
        let k = key(3);
        let file = db.dir.path().join("checkpoints.jsonl");
        // An empty history checkpoints as row 0 with the genesis hash.
        let empty = db.store.checkpoint(&k, t0()).await.unwrap();
        assert_eq!((empty.seq, empty.hash.as_str()), (0, GENESIS_HASH));
        append_checkpoint(&file, &empty).unwrap();
        populate(&db).await;
        append_checkpoint(&file, &db.store.checkpoint(&k, t0()).await.unwrap()).unwrap();

        let read = read_checkpoints(&file).unwrap();
        assert_eq!(read.len(), 2);
        let checked = db.store.verify_history_with(&read, &k).await.unwrap();
        assert!(checked.is_ok(), "{checked:?}");
        assert_eq!(checked.checkpoints_genuine, 2);
    }
}

#[tokio::test]
async fn the_next_append_after_deleted_rows_takes_a_fresh_number_and_verify_names_the_gap() {
    for kind in backends() {
        let db = TestDb::open(kind).await;
        populate(&db).await;
        tamper(
            &db,
            &[
                "DROP TRIGGER history_no_delete",
                "DELETE FROM history WHERE seq > 6",
            ],
        )
        .await;
        db.store
            .commit(Batch {
                history: vec![NewHistory {
                    at: t0(),
                    grant_id: None,
                    actor: "lapse".into(),
                    event: "drift".into(),
                    detail: json!({}),
                }],
                ..Default::default()
            })
            .await
            .unwrap();
        let seqs: Vec<i64> = db
            .store
            .history(&HistoryFilter::default())
            .await
            .unwrap()
            .iter()
            .map(|r| r.seq)
            .collect();
        assert_eq!(seqs, [1, 2, 3, 4, 5, 6, 10]);
        let broken = db
            .store
            .verify_history()
            .await
            .unwrap()
            .first_broken
            .unwrap();
        assert_eq!(broken.seq, 10);
        assert!(
            broken.reason.contains("expected row 7 here"),
            "{}",
            broken.reason
        );
    }
}

#[tokio::test]
async fn a_row_is_never_earlier_than_the_row_before_it_under_concurrent_appends() {
    for kind in backends() {
        let db = TestDb::open(kind).await;
        let mut tasks = Vec::new();
        // Each writer's clock reads earlier than the one before: whatever order the writes land
        // in, most arrive with a time before the head's.
        for n in 0..40i64 {
            let store = db.store.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .commit(Batch {
                        history: vec![NewHistory {
                            at: t0() - Duration::microseconds(n),
                            grant_id: None,
                            actor: "lapse".into(),
                            event: "drift".into(),
                            detail: json!({ "n": n }),
                        }],
                        ..Default::default()
                    })
                    .await
                    .unwrap();
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let rows = db.store.history(&HistoryFilter::default()).await.unwrap();
        assert_eq!(rows.len(), 40);
        for pair in rows.windows(2) {
            assert!(
                pair[1].at >= pair[0].at,
                "row {} at {} is earlier than row {} at {}",
                pair[1].seq,
                pair[1].at,
                pair[0].seq,
                pair[0].at
            );
        }
        // The first row keeps its own time; later ones are never moved earlier than their own.
        let first_n = rows[0].detail["n"].as_i64().unwrap();
        assert_eq!(rows[0].at, t0() - Duration::microseconds(first_n));
        assert!(db.store.verify_history().await.unwrap().is_ok());
    }
}

#[tokio::test]
async fn a_checkpointed_row_removed_from_the_middle_and_disagreeing_checkpoints_are_named() {
    for kind in backends() {
        let db = TestDb::open(kind).await;
        populate(&db).await;
        let k = key(1);
        let rows = db.store.history(&HistoryFilter::default()).await.unwrap();
        let five = Checkpoint::new(5, rows[4].hash.clone(), t0(), &k);
        let five_other = Checkpoint::new(5, rows[5].hash.clone(), t0(), &k);
        tamper(
            &db,
            &[
                "DROP TRIGGER history_no_delete",
                "DELETE FROM history WHERE seq = 5",
            ],
        )
        .await;
        let checked = db
            .store
            .verify_history_with(&[five, five_other], &k)
            .await
            .unwrap();
        assert_eq!(checked.chain.first_broken.as_ref().map(|b| b.seq), Some(6));
        assert_eq!(
            checked.findings,
            [
                Finding::ConflictingCheckpoints {
                    seq: 5,
                    first: 0,
                    second: 1
                },
                Finding::Missing { seq: 5 },
            ]
        );
        assert!(
            checked.findings[1]
                .to_string()
                .contains("row 5, which a checkpoint recorded, was removed"),
            "{}",
            checked.findings[1]
        );
    }
}

#[tokio::test]
async fn an_unknown_event_is_refused_on_write_and_on_read() {
    for kind in backends() {
        let db = TestDb::open(kind).await;
        let n = populate(&db).await;
        let refused = db
            .store
            .commit(Batch {
                history: vec![NewHistory {
                    at: t0(),
                    grant_id: None,
                    actor: "lapse".into(),
                    event: "activated".into(),
                    detail: json!({}),
                }],
                ..Default::default()
            })
            .await
            .unwrap_err()
            .to_string();
        assert!(
            refused.contains("unknown history event `activated`"),
            "{refused}"
        );
        assert_eq!(
            db.store.last_history_seq().await.unwrap(),
            n,
            "nothing was written"
        );

        // A row renamed behind the triggers is refused when read, naming the row.
        let mut conn = db.raw().await;
        conn.exec("DROP TRIGGER history_no_update", &[])
            .await
            .unwrap();
        conn.exec("UPDATE history SET event = 'activated' WHERE seq = 2", &[])
            .await
            .unwrap();
        conn.close().await;
        let err = db
            .store
            .history(&HistoryFilter::default())
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("history.event") && err.contains("(row 2) activated"),
            "{err}"
        );
    }
}
