//! Read-write locks: readers share, writers (the plain lock) exclude, writers are preferred,
//! shares end on their own, fences, old clients on the same name, cancellation.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use redlease::{Client, LockOptions, Retry};

use crate::{SECOND, ms, pttl, raw, setup, until_waiting};

fn waiting_options(ttl: Duration) -> LockOptions {
    LockOptions::new(ttl).retry(Retry::fixed(SECOND).timeout(60 * SECOND))
}

#[tokio::test]
async fn readers_share_and_exclude_writers_and_the_plain_lock() {
    let (server, client) = setup().await;
    let other = Client::connect(&server.url()).await.unwrap();
    let rw = client.rwlock("doc");
    let first = rw.try_read(10 * SECOND).await.unwrap();
    let second = other.rwlock("doc").try_read(10 * SECOND).await.unwrap();
    assert!(first.is_held() && second.is_held());
    assert!(
        rw.write(&LockOptions::new(SECOND).retry(Retry::none()))
            .await
            .unwrap_err()
            .is_contended()
    );
    assert!(
        other
            .try_acquire("doc", SECOND)
            .await
            .unwrap_err()
            .is_contended(),
        "the plain lock is the writer"
    );
    let info = client.inspect("doc").await.unwrap();
    assert_eq!(
        (info.holder.is_none(), info.readers.len()),
        (true, 2),
        "{info:?}"
    );
    first.release().await.unwrap();
    second.release().await.unwrap();
    let writer = other.try_acquire("doc", 10 * SECOND).await.unwrap();
    assert!(
        rw.try_read(SECOND).await.unwrap_err().is_contended(),
        "a plain lock holder excludes readers"
    );
    writer.release().await.unwrap();
    let reader = rw.try_read(SECOND).await.unwrap();
    reader.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_behind_a_stream_of_readers_gets_the_lock_within_one_reader_hold() {
    const HOLD: Duration = Duration::from_millis(300);
    let (_server, client) = setup().await;
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicUsize::new(0));
    let writing = Arc::new(AtomicBool::new(false));
    // Four readers, staggered, each re-reading at once: the lock is never free of readers.
    let mut readers = Vec::new();
    for i in 0..4u64 {
        let rw = client.rwlock("stream");
        let (stop, reads, writing) = (stop.clone(), reads.clone(), writing.clone());
        readers.push(tokio::spawn(async move {
            tokio::time::sleep(HOLD / 4 * u32::try_from(i).unwrap()).await;
            while !stop.load(Ordering::SeqCst) {
                let reader = rw.read(&waiting_options(10 * SECOND)).await.unwrap();
                assert!(
                    !writing.load(Ordering::SeqCst),
                    "a reader while the writer writes"
                );
                reads.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(HOLD).await;
                assert!(
                    !writing.load(Ordering::SeqCst),
                    "a reader while the writer writes"
                );
                reader.release().await.unwrap();
            }
        }));
    }
    tokio::time::sleep(2 * HOLD).await;
    let before = reads.load(Ordering::SeqCst);
    let started = Instant::now();
    let writer = client
        .rwlock("stream")
        .write(&waiting_options(10 * SECOND))
        .await
        .unwrap();
    let waited = started.elapsed();
    writing.store(true, Ordering::SeqCst);
    assert!(
        waited < HOLD + ms(200),
        "the writer waited {waited:?} behind readers holding {HOLD:?}"
    );
    tokio::time::sleep(ms(100)).await;
    writing.store(false, Ordering::SeqCst);
    writer.release().await.unwrap();
    tokio::time::sleep(2 * HOLD).await;
    stop.store(true, Ordering::SeqCst);
    for reader in readers {
        reader.await.unwrap();
    }
    assert!(
        before >= 4,
        "readers were streaming before the writer came ({before})"
    );
    assert!(
        reads.load(Ordering::SeqCst) > before + 3,
        "readers went on after the writer"
    );
}

#[tokio::test]
async fn a_release_hands_the_lock_to_every_waiting_reader_at_once() {
    let (server, client) = setup().await;
    let writer = client.try_acquire("batch", 30 * SECOND).await.unwrap();
    let patient =
        LockOptions::new(10 * SECOND).retry(Retry::fixed(60 * SECOND).timeout(120 * SECOND));
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let (rw, patient) = (client.rwlock("batch"), patient.clone());
            tokio::spawn(async move { rw.read(&patient).await })
        })
        .collect();
    until_waiting(&server, "redlease:{batch}:waiters", 3).await;
    assert_eq!(client.inspect("batch").await.unwrap().queued_readers, 3);
    let released = Instant::now();
    writer.release().await.unwrap();
    let mut guards = Vec::new();
    for reader in readers {
        guards.push(
            tokio::time::timeout(5 * SECOND, reader)
                .await
                .unwrap()
                .unwrap()
                .unwrap(),
        );
    }
    assert!(released.elapsed() < SECOND, "{:?}", released.elapsed());
    assert!(
        guards.iter().all(|guard| guard.is_held()),
        "all three read at once"
    );
    assert_eq!(client.inspect("batch").await.unwrap().readers.len(), 3);
}

#[tokio::test]
async fn writers_get_fences_and_readers_the_latest_writes() {
    let (_server, client) = setup().await;
    let rw = client.rwlock("fences");
    let writer = rw.write(&LockOptions::new(SECOND)).await.unwrap();
    let fence = writer.fence();
    writer.release().await.unwrap();
    let reader = rw.try_read(SECOND).await.unwrap();
    assert_eq!(reader.fence(), fence, "a reader follows the latest write");
    let another = rw.try_read(SECOND).await.unwrap();
    assert_eq!(another.fence(), fence, "readers take no fence of their own");
    reader.release().await.unwrap();
    another.release().await.unwrap();
    let next = client.try_acquire("fences", SECOND).await.unwrap();
    assert_eq!(next.fence(), fence + 1);
}

#[tokio::test]
async fn a_killed_readers_share_ends_after_its_ttl_while_the_others_renew_only_theirs() {
    let (server, client) = setup().await;
    let rw = client.rwlock("zombie");
    let renewing = rw
        .read(&LockOptions::new(ms(500)).auto_renew(true))
        .await
        .unwrap();
    let dead = Client::connect(&server.url()).await.unwrap();
    let abandoned = dead.rwlock("zombie").try_read(ms(500)).await.unwrap();
    let abandoned_token = abandoned.token().fingerprint();
    std::mem::forget(abandoned);
    drop(dead);
    tokio::time::sleep(ms(1_200)).await;
    let info = client.inspect("zombie").await.unwrap();
    let readers: Vec<&str> = info
        .readers
        .iter()
        .map(|r| r.token_fingerprint.as_str())
        .collect();
    assert_eq!(
        readers,
        [renewing.token().fingerprint()],
        "the renewals did not keep {abandoned_token}"
    );
    assert!(renewing.is_held());
    // The writer gets it once the survivor is done.
    let writer = {
        let client = client.clone();
        tokio::spawn(async move { client.acquire("zombie", &waiting_options(SECOND)).await })
    };
    tokio::time::sleep(ms(100)).await;
    renewing.release().await.unwrap();
    let writer = tokio::time::timeout(2 * SECOND, writer).await.unwrap();
    writer.unwrap().unwrap().release().await.unwrap();
}

#[tokio::test]
async fn a_short_reader_ttl_does_not_shorten_another_readers() {
    let (server, client) = setup().await;
    let mut conn = raw(&server).await;
    let rw = client.rwlock("short");
    let long = rw.try_read(10 * SECOND).await.unwrap();
    let short = rw.try_read(ms(200)).await.unwrap();
    assert!(
        pttl(&mut conn, "redlease:{short}").await > 9_000,
        "the lock key lives as long as the longest share"
    );
    short.release().await.unwrap();
    assert!(pttl(&mut conn, "redlease:{short}").await > 9_000);
    tokio::time::sleep(ms(400)).await;
    assert!(long.is_held());
    assert!(
        client
            .try_acquire("short", SECOND)
            .await
            .unwrap_err()
            .is_contended()
    );
    let info = client.inspect("short").await.unwrap();
    assert_eq!(info.readers.len(), 1);
    assert!(info.readers[0].remaining_ttl.unwrap() > 9 * SECOND);
    long.release().await.unwrap();
    let left: Vec<String> = redis::cmd("KEYS")
        .arg("redlease:{short}*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        left,
        ["redlease:{short}:fence"],
        "nothing but the fence counter (raised by the plain lock's attempt) outlives the last share"
    );
}

#[tokio::test]
async fn dropped_reads_leave_no_share_or_waiter_entry_behind() {
    let (server, client) = setup().await;
    let writer = client
        .try_acquire("dropped-reads", 30 * SECOND)
        .await
        .unwrap();
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let rw = client.rwlock("dropped-reads");
            tokio::spawn(async move { rw.read(&waiting_options(30 * SECOND)).await })
        })
        .collect();
    until_waiting(&server, "redlease:{dropped-reads}:waiters", 4).await;
    for reader in readers {
        reader.abort();
        assert!(reader.await.unwrap_err().is_cancelled());
    }
    until_waiting(&server, "redlease:{dropped-reads}:waiters", 0).await;
    writer.release().await.unwrap();
    tokio::time::sleep(ms(100)).await;
    assert!(!client.inspect("dropped-reads").await.unwrap().is_held());
}
