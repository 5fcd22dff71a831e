use proptest::prelude::*;

use super::*;

fn rev(s: &str) -> Rev {
    s.parse().unwrap()
}

fn path(revs: &[&str]) -> Vec<Rev> {
    revs.iter().map(|r| rev(r)).collect()
}

#[test]
fn canonical_json_sorts_keys() {
    let body: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(r#"{"b":1,"a":{"z":1,"y":2}}"#).unwrap();
    assert_eq!(canonical_json(&body), br#"{"a":{"y":2,"z":1},"b":1}"#);
}

#[test]
fn body_json_keeps_key_order_and_written_numbers() {
    let text = r#"{"b":1.00,"a":{"z":1e+400,"y":0.010},"c":[3,-0,12345678901234567890123]}"#;
    let body: serde_json::Map<String, serde_json::Value> = serde_json::from_str(text).unwrap();
    assert_eq!(body_json(&body), text.as_bytes());
    assert_eq!(
        canonical_json(&body),
        br#"{"a":{"y":0.010,"z":1e+400},"b":1.00,"c":[3,-0,12345678901234567890123]}"#
    );
    // The one normalization serde_json makes (ADR 25): the exponent marker is written `e` with
    // its sign. Digits, precision and trailing zeros are kept.
    let upper: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(r#"{"v":1.000000000000000000E-245,"w":2E5}"#).unwrap();
    assert_eq!(
        body_json(&upper),
        br#"{"v":1.000000000000000000e-245,"w":2e+5}"#
    );
}

#[test]
fn canonical_json_is_the_same_for_any_key_order() {
    let one: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(r#"{"\u00e9":1,"e":{"q":[{"b":2,"a":1}]},"Z":null}"#).unwrap();
    let two: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(r#"{"Z":null,"e":{"q":[{"a":1,"b":2}]},"é":1}"#).unwrap();
    assert_ne!(body_json(&one), body_json(&two));
    assert_eq!(canonical_json(&one), canonical_json(&two));
    assert_eq!(
        canonical_json(&one),
        r#"{"Z":null,"e":{"q":[{"a":1,"b":2}]},"é":1}"#.as_bytes()
    );
}

#[test]
fn linear_history_has_one_leaf() {
    let mut t = RevTree::new();
    t.merge_path(&path(&["1-a"]), false).unwrap();
    t.merge_path(&path(&["2-b", "1-a"]), false).unwrap();
    t.merge_path(&path(&["3-c", "2-b", "1-a"]), false).unwrap();
    assert_eq!(t.leaves().len(), 1);
    assert_eq!(t.winner().unwrap().rev, rev("3-c"));
    assert!(t.conflicts().is_empty());
    assert_eq!(
        t.path_to(&rev("3-c")).unwrap(),
        path(&["3-c", "2-b", "1-a"])
    );
    assert!(t.is_leaf(&rev("3-c")));
    assert!(!t.is_leaf(&rev("2-b")));
}

#[test]
fn winner_prefers_live_then_generation_then_hash() {
    let mut t = RevTree::new();
    t.merge_path(&path(&["2-aaa", "1-x"]), false).unwrap();
    t.merge_path(&path(&["2-bbb", "1-x"]), false).unwrap();
    assert_eq!(t.winner().unwrap().rev, rev("2-bbb"));
    assert_eq!(t.conflicts(), vec![rev("2-aaa")]);

    // A deeper branch wins by generation, compared as a number (10 > 9).
    let mut deep = vec![];
    for g in (2..=10).rev() {
        deep.push(Rev::new(g, format!("d{g}")).unwrap());
    }
    deep.push(rev("1-x"));
    t.merge_path(&deep, false).unwrap();
    assert_eq!(t.winner().unwrap().rev, rev("10-d10"));
    assert_eq!(t.conflicts(), vec![rev("2-bbb"), rev("2-aaa")]);

    // Deleting the deepest branch hands the win back to a live leaf.
    t.merge_path(&[rev("11-tomb"), rev("10-d10")], true)
        .unwrap();
    assert_eq!(t.winner().unwrap().rev, rev("2-bbb"));
    assert_eq!(t.deleted_conflicts(), vec![rev("11-tomb")]);
    assert_eq!(t.conflicts(), vec![rev("2-aaa")]);
}

#[test]
fn all_deleted_means_deleted_winner() {
    let mut t = RevTree::new();
    t.merge_path(&path(&["2-a", "1-x"]), true).unwrap();
    t.merge_path(&path(&["2-b", "1-x"]), true).unwrap();
    let w = t.winner().unwrap();
    assert!(w.deleted);
    assert_eq!(w.rev, rev("2-b"));
    assert_eq!(t.deleted_conflicts(), vec![rev("2-a")]);
}

#[test]
fn rejects_gapped_paths() {
    let mut t = RevTree::new();
    assert!(t.merge_path(&path(&["3-c", "1-a"]), false).is_err());
    assert!(t.merge_path(&[], false).is_err());
    assert!(t.is_empty());
}

#[test]
fn stemming_keeps_limit_revisions_per_leaf_and_never_leaves() {
    let mut t = RevTree::new();
    let mut chain = vec![];
    for g in (1..=8).rev() {
        chain.push(Rev::new(g, format!("h{g}")).unwrap());
    }
    t.merge_path(&chain, false).unwrap();
    let removed = t.stem(3);
    assert_eq!(removed.len(), 5);
    assert_eq!(t.len(), 3);
    assert_eq!(t.winner().unwrap().rev, rev("8-h8"));
    assert_eq!(
        t.path_to(&rev("8-h8")).unwrap(),
        path(&["8-h8", "7-h7", "6-h6"])
    );
    // Re-merging the full history and stemming again lands at the same tree.
    let before = t.clone();
    t.merge_path(&chain, false).unwrap();
    t.stem(3);
    assert_eq!(t, before);
    // A new edit on top still links to the stemmed history.
    t.merge_path(&path(&["9-h9", "8-h8"]), false).unwrap();
    t.stem(3);
    assert_eq!(
        t.path_to(&rev("9-h9")).unwrap(),
        path(&["9-h9", "8-h8", "7-h7"])
    );
}

#[test]
fn encode_decode_round_trip_and_rejects_garbage() {
    let mut t = RevTree::new();
    t.merge_path(&path(&["3-c", "2-b", "1-a"]), false).unwrap();
    t.merge_path(&path(&["2-z", "1-a"]), true).unwrap();
    let bytes = t.encode();
    assert_eq!(RevTree::decode(&bytes).unwrap(), t);
    assert!(RevTree::decode(&bytes[..bytes.len() - 1]).is_err());
    assert!(RevTree::decode(&[]).is_err());
    assert!(RevTree::decode(&[9, 0]).is_err());
    let mut extra = bytes.clone();
    extra.push(0);
    assert!(RevTree::decode(&extra).is_err());
}

/// A random history: a tree of edits where each edit picks an earlier revision as its parent.
/// Returns every leaf path (newest first) with its deleted flag, the form replication delivers.
fn arb_paths() -> impl Strategy<Value = Vec<(Vec<Rev>, bool)>> {
    prop::collection::vec((any::<prop::sample::Index>(), any::<bool>(), 0u8..4), 1..24).prop_map(
        |edits| {
            // node i: (parent index or none, rev)
            let mut nodes: Vec<(Option<usize>, Rev)> = vec![];
            let mut out = vec![];
            for (pick, deleted, salt) in edits {
                let parent = if nodes.is_empty() || salt == 0 {
                    None
                } else {
                    Some(pick.index(nodes.len()))
                };
                let parent_rev = parent.map(|p| nodes[p].1.clone());
                let body = format!("{{\"n\":{},\"s\":{salt}}}", nodes.len());
                let r = Rev::derive(parent_rev.as_ref(), deleted, body.as_bytes(), &[]);
                nodes.push((parent, r.clone()));
                let mut p = vec![r];
                let mut cur = parent;
                while let Some(i) = cur {
                    p.push(nodes[i].1.clone());
                    cur = nodes[i].0;
                }
                out.push((p, deleted));
            }
            out
        },
    )
}

fn build(paths: &[(Vec<Rev>, bool)]) -> RevTree {
    let mut t = RevTree::new();
    for (p, d) in paths {
        t.merge_path(p, *d).unwrap();
    }
    t
}

/// Interior revisions' deleted flags travel only with their own leaf paths (and are lost with
/// them when stemmed), so compare what replication can know: the revisions, the leaves with
/// their flags, and every leaf's ancestry.
fn same_knowledge(a: &RevTree, b: &RevTree) -> bool {
    let revs = |t: &RevTree| t.revisions().map(|(r, _)| r.clone()).collect::<Vec<_>>();
    revs(a) == revs(b)
        && a.leaves() == b.leaves()
        && a.leaves()
            .iter()
            .all(|l| a.path_to(&l.rev) == b.path_to(&l.rev))
}

proptest! {
    #[test]
    fn merge_is_order_independent(paths in arb_paths(), seed in any::<u64>()) {
        let a = build(&paths);
        let mut shuffled = paths.clone();
        // Deterministic shuffle from the seed.
        let mut s = seed | 1;
        for i in (1..shuffled.len()).rev() {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17;
            shuffled.swap(i, (s % (i as u64 + 1)) as usize);
        }
        let b = build(&shuffled);
        prop_assert_eq!(&a, &b);
        prop_assert_eq!(a.winner(), b.winner());
        prop_assert_eq!(a.conflicts(), b.conflicts());
        prop_assert_eq!(a.deleted_conflicts(), b.deleted_conflicts());
    }

    #[test]
    fn merge_is_idempotent(paths in arb_paths()) {
        let once = build(&paths);
        let mut twice = once.clone();
        for (p, d) in &paths {
            let outcome = twice.merge_path(p, *d).unwrap();
            prop_assert!(outcome.added.is_empty());
        }
        prop_assert_eq!(&once, &twice);
        let mut merged = once.clone();
        merged.merge_tree(&once);
        prop_assert_eq!(&once, &merged);
    }

    #[test]
    fn merge_tree_equals_merging_paths(paths in arb_paths(), split in any::<prop::sample::Index>()) {
        let k = split.index(paths.len() + 1);
        let mut left = build(&paths[..k]);
        let right = build(&paths[k..]);
        left.merge_tree(&right);
        prop_assert_eq!(left, build(&paths));
    }

    #[test]
    fn winner_is_a_leaf_and_conflicts_partition_leaves(paths in arb_paths()) {
        let t = build(&paths);
        let leaves = t.leaves();
        let w = t.winner().unwrap();
        prop_assert!(leaves.contains(&w));
        prop_assert_eq!(t.conflicts().len() + t.deleted_conflicts().len() + 1, leaves.len());
        for l in &leaves {
            prop_assert!((!w.deleted, &w.rev) >= (!l.deleted, &l.rev));
        }
        prop_assert_eq!(RevTree::decode(&t.encode()).unwrap(), t);
    }

    /// Stemming commutes with merging when each delivered path is complete, as replication
    /// delivers them: either every edit in causal order, or only the current leaves' paths in any
    /// order. (Re-sending a revision as a leaf after its children were stemmed away resurrects it
    /// as a leaf; CouchDB behaves the same, and replication never does that.)
    #[test]
    fn stemming_is_order_independent_for_complete_paths(paths in arb_paths(), seed in any::<u64>(), limit in 1usize..5) {
        let mut causal = RevTree::new();
        for (p, d) in &paths { causal.merge_path(p, *d).unwrap(); causal.stem(limit); }
        let mut global = build(&paths);
        global.stem(limit);
        prop_assert!(same_knowledge(&causal, &global));

        let full = build(&paths);
        let leaf_revs: Vec<Rev> = full.leaves().into_iter().map(|l| l.rev).collect();
        let mut leaf_paths: Vec<&(Vec<Rev>, bool)> =
            paths.iter().filter(|(p, _)| leaf_revs.contains(&p[0])).collect();
        let mut s = seed | 1;
        for i in (1..leaf_paths.len()).rev() {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17;
            leaf_paths.swap(i, (s % (i as u64 + 1)) as usize);
        }
        let mut shuffled = RevTree::new();
        for (p, d) in leaf_paths { shuffled.merge_path(p, *d).unwrap(); shuffled.stem(limit); }
        prop_assert!(same_knowledge(&shuffled, &global));
    }
}
