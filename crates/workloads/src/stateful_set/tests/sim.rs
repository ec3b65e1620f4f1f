//! The simulation: pods turn ready or fail, and the user scales and changes the template; the set's invariants hold after every plan.

use super::*;

// The simulation: plans applied to a fake API while pods start after random delays, some
// fail, and the user scales and changes the template.

#[derive(Debug, Clone)]
enum Op {
    /// Advance the clock; pods started at least this long ago become Running and Ready.
    Tick(i64),
    /// The pod with this index (mod count) fails.
    Fail(usize),
    /// Scale to this many replicas.
    Scale(i32),
    /// A new template.
    Update,
    /// Terminating pods go away.
    Reap,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1i64..20).prop_map(Op::Tick),
        1 => any::<usize>().prop_map(Op::Fail),
        1 => (0i32..7).prop_map(Op::Scale),
        1 => Just(Op::Update),
        3 => Just(Op::Reap),
    ]
}

/// Checks the invariants of one plan against the world it was made from.
fn check(w: &World, plan: &StatefulSetPlan, parallel: bool, partition: i64) {
    let spec = w.set.spec.as_ref().unwrap();
    let start = i64::from(spec.ordinals.as_ref().and_then(|o| o.start).unwrap_or(0));
    let end = start + i64::from(spec.replicas.unwrap());
    let ord = |name: &str| name.strip_prefix("web-").unwrap().parse::<i64>().unwrap();
    let pod_at = |o: i64| w.pods.get(&format!("web-{o}"));
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let up = |p: &Pod| healthy(p) && pods::is_available(p, min_ready, at(w.now));
    for created in &plan.create {
        let n = ord(created.metadata.name.as_deref().unwrap());
        assert!((start..end).contains(&n));
        // Pods below the partition come back at the current revision.
        let want = if n < start + partition {
            &plan.current_revision
        } else {
            &plan.update_revision
        };
        assert_eq!(label(created, REVISION_LABEL), want);
        if !parallel {
            for lower in start..n {
                assert!(
                    pod_at(lower).is_some_and(up),
                    "web-{n} created while web-{lower} is not up"
                );
            }
        }
    }
    let updates: Vec<i64> = plan
        .delete
        .iter()
        .filter(|d| d.reason == DeleteReason::Update)
        .map(|d| ord(&d.name))
        .collect();
    for &n in &updates {
        assert!(n >= start + partition, "web-{n} is below the partition");
        // One at a time: every pod above it was replaced and is Running and Ready.
        for above in n + 1..end {
            let p = pod_at(above);
            assert!(
                p.is_some_and(healthy),
                "web-{n} replaced while web-{above} is down"
            );
            assert_eq!(
                p.map(|p| label(p, REVISION_LABEL)),
                Some(plan.update_revision.as_str())
            );
        }
    }
    // maxUnavailable is 1 with the gate off.
    assert!(updates.len() <= 1);
    let scale_downs: Vec<i64> = plan
        .delete
        .iter()
        .filter(|d| d.reason == DeleteReason::ScaleDown)
        .map(|d| ord(&d.name))
        .collect();
    for &n in &scale_downs {
        assert!(!(start..end).contains(&n));
    }
    if !parallel {
        assert!(
            plan.create.len() + plan.delete.len() <= 1,
            "one action per sync: {plan:?}"
        );
        if !updates.is_empty() {
            // Everything else is up, so at most maxUnavailable (1) pod is down after it.
            for o in start..end {
                assert!(pod_at(o).is_some_and(up), "web-{o} is down during an update");
            }
        }
        if let Some(&n) = scale_downs.first() {
            // The highest pod goes first.
            assert!(w.pods.keys().map(|k| ord(k)).all(|o| o <= n));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn simulated_population_keeps_the_ordering_and_partition_invariants(
        parallel in any::<bool>(),
        start in 0i32..3,
        replicas in 0i32..6,
        partition in 0i32..4,
        min_ready in 0i32..3,
        delays in proptest::collection::vec(0i64..15, 64),
        ops in proptest::collection::vec(op(), 1..60),
    ) {
        let mut s = set(replicas);
        let spec = spec_mut(&mut s);
        spec.ordinals = Some(StatefulSetOrdinals { start: Some(start) });
        spec.min_ready_seconds = Some(min_ready);
        spec.update_strategy.as_mut().unwrap().rolling_update.as_mut().unwrap().partition = Some(partition);
        if parallel {
            spec.pod_management_policy = Some("Parallel".into());
        }
        let mut w = World::new(s);
        let mut images = 1;
        for (step, op) in ops.into_iter().enumerate() {
            let plan = w.plan();
            check(&w, &plan, parallel, i64::from(partition));
            w.apply(&plan);
            match op {
                Op::Tick(d) => {
                    w.now += d;
                    let names: Vec<String> = w.pods.keys().cloned().collect();
                    for (i, n) in names.iter().enumerate() {
                        let p = &w.pods[n];
                        let born = p.metadata.creation_timestamp.as_ref().unwrap().0.as_second();
                        let delay = delays[(i + step) % delays.len()];
                        if pods::phase(p) == "Pending" && born + delay <= w.now {
                            w.ready(n);
                        }
                    }
                }
                Op::Fail(i) => {
                    let names: Vec<String> = w.pods.keys().cloned().collect();
                    if !names.is_empty() {
                        let n = &names[i % names.len()];
                        w.phase(n, "Failed");
                    }
                }
                Op::Scale(r) => spec_mut(&mut w.set).replicas = Some(r),
                Op::Update => {
                    images += 1;
                    update_template(&mut w, &format!("nginx:{images}"));
                }
                Op::Reap => w.reap(),
            }
        }
        // Liveness: once pods start and stay up, the set converges on its spec.
        w.settle();
        let spec = w.set.spec.clone().unwrap();
        let (start, replicas) = (i64::from(start), i64::from(spec.replicas.unwrap()));
        let want: Vec<String> = (start..start + replicas).map(|o| format!("web-{o}")).collect();
        prop_assert_eq!(w.pods.keys().cloned().collect::<Vec<_>>(), want);
        prop_assert!(w.pods.values().all(healthy));
        let status = w.set.status.clone().unwrap();
        prop_assert_eq!(i64::from(status.replicas), replicas);
        if partition == 0 {
            prop_assert_eq!(status.current_revision, status.update_revision.clone());
            let update = status.update_revision.unwrap();
            prop_assert!(w.pods.values().all(|p| label(p, REVISION_LABEL) == update));
        }
    }
}
