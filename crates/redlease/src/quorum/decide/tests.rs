use proptest::prelude::*;

use super::*;
use crate::error::BackendErrorKind;

fn down() -> BackendError {
    BackendError::new(BackendErrorKind::Connection, "n", "test", None)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// How counting a round's votes ended.
#[derive(Debug)]
enum Counted {
    /// Won, with the largest fence of the granting majority.
    Won(u64),
    Refused(Refused),
}

impl Counted {
    fn unwrap(self) -> u64 {
        match self {
            Self::Won(fence) => fence,
            Self::Refused(refused) => panic!("refused: {refused:?}"),
        }
    }

    fn unwrap_err(self) -> Refused {
        match self {
            Self::Won(fence) => panic!("won with fence {fence}"),
            Self::Refused(refused) => refused,
        }
    }
}

/// Counts `votes` in order the way a round does: stops at the first win.
fn run(n: usize, votes: &[Vote]) -> Counted {
    run_with_arbiter(n, None, votes)
}

/// [`run`] for a client whose waiters are listed on node `arbiter`.
fn run_with_arbiter(n: usize, arbiter: Option<usize>, votes: &[Vote]) -> Counted {
    let mut tally = AcquireVotes::with_arbiter(n, arbiter);
    for (node, vote) in votes.iter().enumerate() {
        tally.count(node, vote.clone());
        if tally.won() {
            return Counted::Won(tally.granted().iter().map(|&(_, f)| f).max().unwrap_or(0));
        }
    }
    Counted::Refused(tally.refused())
}

#[test]
fn a_majority_of_grants_wins_with_the_largest_fence() {
    let votes = [Vote::Granted(4), Vote::Failed(down()), Vote::Granted(7)];
    assert_eq!(run(3, &votes).unwrap(), 7);
    assert_eq!(run(1, &[Vote::Granted(1)]).unwrap(), 1);
}

#[test]
fn an_unreachable_minority_does_not_stop_a_grant() {
    let votes = [
        Vote::Failed(down()),
        Vote::Granted(1),
        Vote::Failed(down()),
        Vote::Granted(1),
        Vote::Granted(1),
    ];
    assert!(matches!(run(5, &votes), Counted::Won(_)));
}

#[test]
fn held_by_enough_nodes_is_contention_with_the_longest_hold() {
    let votes = [
        Vote::Held(Some(ms(5))),
        Vote::Granted(1),
        Vote::Held(Some(ms(9))),
    ];
    let refused = run(3, &votes).unwrap_err();
    assert!(matches!(
        refused.error,
        Error::Contended { remaining_ttl: Some(t) } if t == ms(9)
    ));
    assert_eq!(refused.granted_on, vec![1], "the grant is given back");
    let unknown = run(1, &[Vote::Held(None)]).unwrap_err();
    assert!(matches!(
        unknown.error,
        Error::Contended {
            remaining_ttl: None
        }
    ));
}

#[test]
fn a_split_vote_among_the_reachable_majority_is_contention() {
    // 5 nodes: 2 granted to us, 2 held by another, 1 down: nobody can win, nobody is down
    // enough to blame.
    let votes = [
        Vote::Granted(3),
        Vote::Held(Some(ms(1))),
        Vote::Granted(3),
        Vote::Held(Some(ms(1))),
        Vote::Failed(down()),
    ];
    let refused = run(5, &votes).unwrap_err();
    assert!(matches!(refused.error, Error::Contended { .. }));
    assert_eq!(refused.granted_on, vec![0, 2]);
}

#[test]
fn too_few_answers_is_no_quorum_and_one_node_reports_its_own_error() {
    let votes = [Vote::Granted(1), Vote::Failed(down()), Vote::Failed(down())];
    let refused = run(3, &votes).unwrap_err();
    assert!(matches!(
        refused.error,
        Error::NoQuorum { needed: 2, reached: 1, ref errors } if errors.len() == 2
    ));
    let single = run(1, &[Vote::Failed(down())]).unwrap_err();
    assert!(matches!(single.error, Error::Backend(_)));
}

#[test]
fn a_fatal_answer_before_the_majority_ends_the_attempt() {
    let wrong = Error::WrongType {
        key: "k".to_owned(),
        found: "list".to_owned(),
    };
    let votes = [Vote::Granted(1), Vote::Fatal(wrong), Vote::Granted(1)];
    let refused = run(3, &votes).unwrap_err();
    assert!(matches!(refused.error, Error::WrongType { .. }));
    assert_eq!(refused.granted_on, vec![0, 2]);
}

#[test]
fn a_late_majority_is_not_a_lease() {
    let sent = Instant::now();
    let valid_until = sent + ms(100);
    assert!(in_time(sent + ms(99), valid_until));
    assert!(!in_time(valid_until, valid_until));
    assert!(!in_time(sent + ms(500), valid_until));
}

#[test]
fn extensions_decide_early_and_report_why_a_lease_is_lost() {
    let mut votes = ExtendVotes::new(3);
    votes.count(Ok(Ok(())));
    assert!(votes.decided().is_none());
    votes.count(Ok(Ok(())));
    assert!(matches!(votes.decided(), Some(Extended::Yes)));

    let mut votes = ExtendVotes::new(3);
    votes.count(Ok(Err(Lost::Expired)));
    votes.count(Ok(Err(Lost::HeldByOther)));
    assert!(matches!(
        votes.decided(),
        Some(Extended::Lost(Lost::HeldByOther))
    ));

    let mut votes = ExtendVotes::new(3);
    votes.count(Ok(Ok(())));
    votes.count(Err(Error::Backend(down())));
    votes.count(Ok(Err(Lost::Expired)));
    assert!(matches!(
        votes.outcome(),
        Extended::Failed(Error::NoQuorum { .. })
    ));
}

#[test]
fn releases_say_what_they_found() {
    let mut votes = ReleaseVotes::with_arbiter(1, None);
    votes.count(0, Ok(Ok(()))).unwrap();
    assert!(votes.released());

    let mut votes = ReleaseVotes::with_arbiter(3, None);
    votes.count(0, Ok(Err(Lost::Expired))).unwrap();
    votes.count(1, Ok(Err(Lost::HeldByOther))).unwrap();
    votes.count(2, Ok(Err(Lost::Expired))).unwrap();
    assert_eq!(votes.outcome().unwrap(), ReleaseOutcome::HeldByOther);

    // One released, one silent: the silent one might have held ours, so it is not "expired".
    let mut votes = ReleaseVotes::with_arbiter(3, None);
    votes.count(0, Ok(Ok(()))).unwrap();
    votes.count(1, Err(Error::Backend(down()))).unwrap();
    votes.count(2, Ok(Err(Lost::Expired))).unwrap();
    assert!(votes.outcome().is_err());
}

#[test]
fn a_release_waits_for_the_arbiter_unless_it_fails() {
    let mut votes = ReleaseVotes::with_arbiter(3, Some(0));
    votes.count(1, Ok(Ok(()))).unwrap();
    votes.count(2, Ok(Ok(()))).unwrap();
    assert!(!votes.released(), "the arbiter has not answered");
    votes.count(0, Err(Error::Backend(down()))).unwrap();
    assert!(votes.released(), "a failed arbiter does not hold it up");

    let mut votes = ReleaseVotes::with_arbiter(3, Some(0));
    votes.count(0, Ok(Ok(()))).unwrap();
    votes.count(2, Ok(Ok(()))).unwrap();
    assert!(votes.released(), "the arbiter among the majority");
    let mut votes = ReleaseVotes::with_arbiter(1, Some(0));
    votes.count(0, Ok(Ok(()))).unwrap();
    assert!(votes.released(), "one node has no arbiter to wait for");
}

// ---- Property tests: the tallies against a plain reading of the rules. ----

/// What the rules say, written as directly as possible over the whole answer sequence.
#[derive(Debug, PartialEq)]
enum Expected {
    Granted { fence: u64, grants: usize },
    Fatal,
    Contended,
    Unreachable,
}

fn reference(n: usize, votes: &[Vote]) -> Expected {
    let quorum = n / 2 + 1;
    for end in 1..=votes.len() {
        let prefix = &votes[..end];
        let grants: Vec<u64> = prefix
            .iter()
            .filter_map(|v| match v {
                Vote::Granted(f) | Vote::GrantedAfterHeld(f) => Some(*f),
                _ => None,
            })
            .collect();
        let fatal = prefix.iter().any(|v| matches!(v, Vote::Fatal(_)));
        if grants.len() >= quorum && !fatal {
            return Expected::Granted {
                fence: grants.iter().copied().max().unwrap_or(0),
                grants: grants.len(),
            };
        }
    }
    let count = |f: fn(&Vote) -> bool| votes.iter().filter(|v| f(v)).count();
    let held = count(|v| matches!(v, Vote::Held(_)));
    let granted = count(|v| matches!(v, Vote::Granted(_) | Vote::GrantedAfterHeld(_)));
    if count(|v| matches!(v, Vote::Fatal(_))) > 0 {
        Expected::Fatal
    } else if held > 0 && (held > n - quorum || granted + held >= quorum) {
        Expected::Contended
    } else {
        Expected::Unreachable
    }
}

fn vote() -> impl Strategy<Value = Vote> {
    prop_oneof![
        4 => (0u64..100).prop_map(Vote::Granted),
        1 => (0u64..100).prop_map(Vote::GrantedAfterHeld),
        3 => proptest::option::of(0u64..1000).prop_map(|r| Vote::Held(r.map(Duration::from_millis))),
        2 => Just(Vote::Failed(BackendError::new(BackendErrorKind::Timeout, "n", "test", None))),
        1 => Just(Vote::Fatal(Error::WrongType { key: "k".to_owned(), found: "hash".to_owned() })),
    ]
}

fn answers() -> impl Strategy<Value = (usize, Vec<Vote>)> {
    (1usize..=7).prop_flat_map(|n| (Just(n), proptest::collection::vec(vote(), n)))
}

#[test]
fn a_majority_without_the_arbiter_held_by_another_is_given_back() {
    // The releasing worker comes back while the arbiter's copy is handed to a waiter.
    let votes = [Vote::Granted(3), Vote::Granted(3), Vote::Held(Some(ms(40)))];
    let refused = run_with_arbiter(3, Some(2), &votes).unwrap_err();
    assert!(
        matches!(refused.error, Error::Contended { .. }),
        "{refused:?}"
    );
    assert_eq!(refused.granted_on, [0, 1]);
    // Without an arbiter, or with the arbiter among the grants, the majority wins.
    assert_eq!(run(3, &votes).unwrap(), 3);
    assert_eq!(run_with_arbiter(3, Some(0), &votes).unwrap(), 3);
}

#[test]
fn an_arbiter_granted_only_after_it_was_found_held_objects_but_is_given_back() {
    // The releasing worker's first look found the arbiter handed to a waiter; the waiter gave
    // it back (it lost the other nodes to this round) before the worker's second request.
    let votes = [
        Vote::Granted(3),
        Vote::Granted(3),
        Vote::GrantedAfterHeld(4),
    ];
    let refused = run_with_arbiter(3, Some(2), &votes).unwrap_err();
    assert!(
        matches!(refused.error, Error::Contended { .. }),
        "{refused:?}"
    );
    assert_eq!(refused.granted_on, [0, 1, 2], "every grant is given back");
    // Elsewhere it is a grant like any other.
    let votes = [
        Vote::GrantedAfterHeld(4),
        Vote::Held(None),
        Vote::Granted(3),
    ];
    assert_eq!(run_with_arbiter(3, Some(2), &votes).unwrap(), 4);
    assert_eq!(run(3, &votes).unwrap(), 4);
}

#[test]
fn the_majority_waits_for_the_arbiter_unless_it_fails() {
    let mut tally = AcquireVotes::with_arbiter(3, Some(0));
    tally.count(1, Vote::Granted(1));
    tally.count(2, Vote::Granted(1));
    assert!(!tally.won(), "the arbiter has not answered");
    tally.count(0, Vote::Failed(down()));
    assert!(
        tally.won(),
        "an unreachable arbiter does not block a majority"
    );
    // One node has no arbiter to wait for.
    assert_eq!(
        run_with_arbiter(1, Some(0), &[Vote::Granted(5)]).unwrap(),
        5
    );
}

proptest! {
    #[test]
    fn an_arbiter_only_ever_refuses_what_a_plain_majority_grants(
        (n, votes) in answers(),
        arbiter in 0usize..7,
    ) {
        let arbiter = arbiter % n;
        if let Counted::Won(fence) = run_with_arbiter(n, Some(arbiter), &votes)
            && n > 1
        {
            // Waiting for the arbiter may count more grants, so the fence is no smaller.
            prop_assert!(run(n, &votes).unwrap() <= fence);
            prop_assert!(
                !matches!(votes[arbiter], Vote::Held(_) | Vote::GrantedAfterHeld(_)),
                "won with the arbiter held"
            );
        }
    }

    #[test]
    fn acquire_votes_follow_the_rules((n, votes) in answers()) {
        let expected = reference(n, &votes);
        match run(n, &votes) {
            Counted::Won(fence) => {
                let Expected::Granted { fence: want, grants } = expected else {
                    return Err(TestCaseError::fail(format!("granted, expected {expected:?}")));
                };
                prop_assert_eq!(fence, want);
                prop_assert!(grants > n / 2, "a grant needs a majority");
            }
            Counted::Refused(refused) => {
                let kind = match refused.error {
                    Error::WrongType { .. } => Expected::Fatal,
                    Error::Contended { .. } => Expected::Contended,
                    Error::NoQuorum { .. } | Error::Backend(_) => Expected::Unreachable,
                    ref other => return Err(TestCaseError::fail(format!("{other:?}"))),
                };
                prop_assert_eq!(kind, expected);
                let grants = votes
                    .iter()
                    .filter(|v| matches!(v, Vote::Granted(_) | Vote::GrantedAfterHeld(_)))
                    .count();
                prop_assert_eq!(refused.granted_on.len(), grants, "every grant is given back");
            }
        }
    }

    #[test]
    fn extend_votes_follow_the_rules(n in 1usize..=7, answers in proptest::collection::vec(0usize..4, 7)) {
        let answer = |a: usize| match a {
            0 => Ok(Ok(())),
            1 => Ok(Err(Lost::Expired)),
            2 => Ok(Err(Lost::HeldByOther)),
            _ => Err(Error::Backend(BackendError::new(BackendErrorKind::Timeout, "n", "t", None))),
        };
        let quorum = n / 2 + 1;
        let answers = &answers[..n];
        let mut votes = ExtendVotes::new(n);
        let mut decided_at = None;
        for (i, a) in answers.iter().enumerate() {
            votes.count(answer(*a));
            if decided_at.is_none() && votes.decided().is_some() {
                decided_at = Some(i);
            }
        }
        let extended = answers.iter().filter(|&&a| a == 0).count();
        let against = answers.iter().filter(|&&a| a == 1 || a == 2).count();
        let outcome = votes.outcome();
        match &outcome {
            Extended::Yes => prop_assert!(extended >= quorum),
            Extended::Lost(reason) => {
                prop_assert!(against > n - quorum, "lost only when no majority can extend");
                prop_assert_eq!(*reason == Lost::HeldByOther, answers.contains(&2));
            }
            Extended::Failed(_) => prop_assert!(extended < quorum && against <= n - quorum),
        }
        // Once decided, a decision never changes with later answers.
        if let Some(at) = decided_at {
            let mut early = ExtendVotes::new(n);
            for a in &answers[..=at] {
                early.count(answer(*a));
            }
            prop_assert_eq!(
                std::mem::discriminant(&early.outcome()),
                std::mem::discriminant(&outcome)
            );
        }
    }
}
