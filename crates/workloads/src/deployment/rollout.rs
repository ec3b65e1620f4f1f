//! The arithmetic of a rollout: maxSurge and maxUnavailable resolved against `replicas`
//! (rule 3.7), the rolling update's scale-up and scale-down steps (3.8, 3.9), and the
//! proportional scaling of a Deployment scaled mid-rollout (3.11).

use podvisor_core::appsv1::{Deployment, ReplicaSet};
use podvisor_core::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{
    DESIRED_REPLICAS, DeploymentPlan, MAX_REPLICAS, Sets, annotation, is_recreate, replicas, rs_replicas,
    scale,
};

/// The default of both `maxSurge` and `maxUnavailable`.
const DEFAULT_FRACTION: &str = "25%";

/// An int, or a percentage of `total` rounded up or down; `None` for a malformed value
/// (validation refuses those).
fn scaled_value(v: &IntOrString, total: i32, round_up: bool) -> Option<i32> {
    match v {
        IntOrString::Int(n) => Some(*n),
        IntOrString::String(s) => {
            let pct: i64 = s.strip_suffix('%')?.parse().ok()?;
            let num = pct * i64::from(total);
            let v = if round_up {
                (num + 99).div_euclid(100)
            } else {
                num.div_euclid(100)
            };
            i32::try_from(v).ok()
        }
    }
}

/// `ResolveFenceposts` (rule 3.7): (surge, unavailable) for `replicas`; both 0 makes
/// unavailable 1.
pub fn resolve_fenceposts(
    max_surge: Option<&IntOrString>,
    max_unavailable: Option<&IntOrString>,
    replicas: i32,
) -> (i32, i32) {
    let default = IntOrString::String(DEFAULT_FRACTION.into());
    let surge = scaled_value(max_surge.unwrap_or(&default), replicas, true).unwrap_or(0);
    let unavailable = scaled_value(max_unavailable.unwrap_or(&default), replicas, false).unwrap_or(0);
    if surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable)
    }
}

fn fenceposts(d: &Deployment) -> (i32, i32) {
    let ru = d
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    resolve_fenceposts(
        ru.and_then(|r| r.max_surge.as_ref()),
        ru.and_then(|r| r.max_unavailable.as_ref()),
        replicas(d),
    )
}

/// `MaxSurge(d)`: 0 unless RollingUpdate.
pub fn max_surge(d: &Deployment) -> i32 {
    if is_recreate(d) { 0 } else { fenceposts(d).0 }
}

/// `MaxUnavailable(d)`: 0 unless RollingUpdate with replicas, at most `replicas`.
pub fn max_unavailable(d: &Deployment) -> i32 {
    let r = replicas(d);
    if is_recreate(d) || r == 0 {
        0
    } else {
        fenceposts(d).1.min(r)
    }
}

/// `NewRSNewReplicas` for a rolling update (rule 3.8): the new ReplicaSet's size given the
/// sum of every ReplicaSet's `spec.replicas` and its own.
pub(super) fn new_rs_replicas(d: &Deployment, all: i32, new: i32) -> i32 {
    let r = replicas(d);
    let max_total = r + max_surge(d);
    if all >= max_total {
        return new;
    }
    new + (max_total - all).min(r - new)
}

/// Rule 3.8: scales the new ReplicaSet up within the surge (or down to `replicas`); whether it
/// scaled.
pub(super) fn reconcile_new(d: &Deployment, sets: &mut Sets, plan: &mut DeploymentPlan) -> bool {
    let Some(i) = sets.new else { return false };
    let r = replicas(d);
    let current = rs_replicas(&sets.all[i]);
    if current == r {
        return false;
    }
    if current > r {
        return scale(d, sets, i, r, None, plan);
    }
    let all: i32 = sets.all.iter().map(rs_replicas).sum();
    let n = new_rs_replicas(d, all, current);
    scale(d, sets, i, n, None, plan)
}

fn available(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().and_then(|s| s.available_replicas).unwrap_or(0)
}

/// Old ReplicaSets' indices, oldest first (`sets.all` is sorted so).
fn old_indices(sets: &Sets) -> Vec<usize> {
    sets.old().map(|(i, _)| i).collect()
}

/// Rule 3.9: scales old ReplicaSets down as far as availability allows; whether it scaled.
pub(super) fn reconcile_old(d: &Deployment, sets: &mut Sets, plan: &mut DeploymentPlan) -> bool {
    let olds = old_indices(sets);
    let old_count: i32 = olds.iter().map(|i| rs_replicas(&sets.all[*i])).sum();
    if old_count == 0 {
        return false;
    }
    let all: i32 = sets.all.iter().map(rs_replicas).sum();
    let min_available = replicas(d) - max_unavailable(d);
    let new_unavailable = sets.new_rs().map_or(0, |rs| rs_replicas(rs) - available(rs));
    let max_scaled_down = all - min_available - new_unavailable;
    if max_scaled_down <= 0 {
        return false;
    }
    let mut scaled = false;
    // 1. Old pods that are not available go first, within the budget.
    let mut cleaned = 0;
    for &i in &olds {
        if cleaned >= max_scaled_down {
            break;
        }
        let (spec, avail) = (rs_replicas(&sets.all[i]), available(&sets.all[i]));
        if spec == 0 || spec <= avail {
            continue;
        }
        let down = (max_scaled_down - cleaned).min(spec - avail);
        scaled |= scale(d, sets, i, spec - down, None, plan);
        cleaned += down;
    }
    // 2. Then as many as keep `minAvailable` available.
    let available_now: i32 = sets.all.iter().map(available).sum();
    if available_now > min_available {
        let total = available_now - min_available;
        let mut done = 0;
        for &i in &olds {
            if done >= total {
                break;
            }
            let spec = rs_replicas(&sets.all[i]);
            if spec == 0 {
                continue;
            }
            let down = spec.min(total - done);
            scaled |= scale(d, sets, i, spec - down, None, plan);
            done += down;
        }
    }
    scaled
}

fn annotated(rs: &ReplicaSet, key: &str) -> Option<i32> {
    annotation(&rs.metadata, key).and_then(|v| v.parse().ok())
}

/// `IsScalingEvent` (rule 3.11): an active ReplicaSet was sized for another `replicas`.
pub(super) fn is_scaling_event(d: &Deployment, all: &[ReplicaSet]) -> bool {
    let r = replicas(d);
    all.iter()
        .filter(|rs| rs_replicas(rs) > 0)
        .any(|rs| annotated(rs, DESIRED_REPLICAS).is_some_and(|want| want != r))
}

/// The sync of a paused or rescaled Deployment (rule 3.11): one active ReplicaSet takes the
/// new size; a saturated new one retires the old; otherwise the surge-bounded difference is
/// shared in proportion to each ReplicaSet's size.
pub(super) fn scale_proportionally(d: &Deployment, sets: &mut Sets, plan: &mut DeploymentPlan) {
    let r = replicas(d);
    let active: Vec<usize> = (0..sets.all.len())
        .filter(|i| rs_replicas(&sets.all[*i]) > 0)
        .collect();
    let target = match active.as_slice() {
        // The newest: the new one if there is one, else the newest old one.
        [] => sets.new.or_else(|| old_indices(sets).last().copied()),
        [only] => Some(*only),
        _ => None,
    };
    if active.len() <= 1 {
        if let Some(i) = target {
            scale(d, sets, i, r, None, plan);
        }
        return;
    }
    let saturated = sets.new_rs().is_some_and(|rs| {
        annotated(rs, DESIRED_REPLICAS) == Some(r) && rs_replicas(rs) == r && available(rs) == r
    });
    if saturated {
        for i in old_indices(sets) {
            if rs_replicas(&sets.all[i]) > 0 {
                scale(d, sets, i, 0, None, plan);
            }
        }
        return;
    }
    if is_recreate(d) {
        return;
    }
    let surge = max_surge(d);
    let allowed = if r > 0 { r + surge } else { 0 };
    let current: i32 = active.iter().map(|i| rs_replicas(&sets.all[*i])).sum();
    let to_add = allowed - current;
    // Largest first; ties newer first when adding, older first when removing (`all` is
    // oldest first).
    let mut order = active.clone();
    order.sort_by(|a, b| {
        let size = rs_replicas(&sets.all[*b]).cmp(&rs_replicas(&sets.all[*a]));
        size.then(if to_add > 0 { b.cmp(a) } else { a.cmp(b) })
    });
    let stored_replicas = d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0);
    let mut added = 0;
    let mut sizes: Vec<(usize, i32)> = Vec::new();
    for &i in &order {
        let rs = &sets.all[i];
        let n = rs_replicas(rs);
        let share = if n == 0 || to_add == 0 || to_add == added {
            0
        } else {
            let fraction = if r == 0 {
                -n
            } else {
                let a = annotated(rs, MAX_REPLICAS).unwrap_or(stored_replicas);
                if a == 0 {
                    0
                } else {
                    #[expect(clippy::cast_possible_truncation, reason = "replica counts are i32")]
                    let scaled = (f64::from(n) * f64::from(r + surge) / f64::from(a)).round() as i32;
                    scaled - n
                }
            };
            let left = to_add - added;
            if to_add > 0 {
                fraction.min(left)
            } else {
                fraction.max(left)
            }
        };
        added += share;
        sizes.push((i, n + share));
    }
    if to_add != 0
        && let Some(first) = sizes.first_mut()
    {
        first.1 = (first.1 + to_add - added).max(0);
    }
    let word = if to_add > 0 { "up" } else { "down" };
    for (i, n) in sizes {
        scale(d, sets, i, n, Some(word), plan);
    }
}
