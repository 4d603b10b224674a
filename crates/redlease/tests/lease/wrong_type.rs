//! Keys that hold something other than a lock give a clear error, never "taken".

use redis::AsyncCommands;
use redlease::Error;

use crate::{SECOND, get, raw, setup};

#[tokio::test]
async fn a_list_at_the_lock_key_is_a_wrong_type_error() {
    let (server, client) = setup().await;
    let mut conn = raw(&server).await;
    let _: () = conn.rpush("redlease:{listy}", "x").await.unwrap();
    match client.try_acquire("listy", SECOND).await {
        Err(Error::WrongType { key, found }) => {
            assert_eq!(key, "redlease:{listy}");
            assert_eq!(found, "list");
        }
        other => panic!("expected WrongType, got {other:?}"),
    }
}

#[tokio::test]
async fn a_hash_at_the_fence_key_is_a_wrong_type_error_and_leaves_no_lock_behind() {
    let (server, client) = setup().await;
    let mut conn = raw(&server).await;
    let _: () = conn.hset("redlease:{hashy}:fence", "f", "v").await.unwrap();
    match client.try_acquire("hashy", 10 * SECOND).await {
        Err(Error::WrongType { key, found }) => {
            assert_eq!(key, "redlease:{hashy}:fence");
            assert_eq!(found, "hash");
        }
        other => panic!("expected WrongType, got {other:?}"),
    }
    assert_eq!(
        get(&mut conn, "redlease:{hashy}").await,
        None,
        "the SET was undone"
    );
}

#[tokio::test]
async fn a_non_numeric_fence_counter_is_a_wrong_type_error() {
    let (server, client) = setup().await;
    let mut conn = raw(&server).await;
    let _: () = conn.set("redlease:{texty}:fence", "hello").await.unwrap();
    let err = client.try_acquire("texty", SECOND).await.unwrap_err();
    assert!(
        matches!(&err, Error::WrongType { found, .. } if found.starts_with("string")),
        "{err}"
    );
}

#[tokio::test]
async fn release_and_extend_report_a_key_overwritten_with_another_type() {
    let (server, client) = setup().await;
    let mut conn = raw(&server).await;
    let mut guard = client.try_acquire("clobbered", 10 * SECOND).await.unwrap();
    let _: () = conn.del("redlease:{clobbered}").await.unwrap();
    let _: () = conn.sadd("redlease:{clobbered}", "m").await.unwrap();
    assert!(matches!(
        guard.extend(SECOND).await,
        Err(Error::WrongType { .. })
    ));
    assert!(matches!(
        guard.release().await,
        Err(Error::WrongType { .. })
    ));
    let members: Vec<String> = conn.smembers("redlease:{clobbered}").await.unwrap();
    assert_eq!(members, ["m"], "foreign data is never deleted");
    // A plain string that is not our token is someone else's lock, not a type error.
    let _: () = conn.set("redlease:{s}", "foreign").await.unwrap();
    let err = client.try_acquire("s", SECOND).await.unwrap_err();
    assert!(err.is_contended());
}
