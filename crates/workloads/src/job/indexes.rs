//! Completion indexes (rules 6.3, 6.10): the annotation a pod carries, and the interval lists
//! `status.completedIndexes`, `status.failedIndexes` and `successPolicy` rules are written in
//! (`1,3-5,7`: ascending, runs of three or more as `a-b`).

use std::fmt;

use podvisor_core::corev1::Pod;

/// The annotation (and, with `PodIndexLabel`, the label) naming an Indexed Job pod's index.
pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";

/// The pod's completion index: the annotation's value as a non-negative integer, else `None`.
pub fn completion_index(pod: &Pod) -> Option<usize> {
    pod.metadata
        .annotations
        .as_ref()?
        .get(COMPLETION_INDEX)?
        .parse::<i64>()
        .ok()
        .and_then(|i| usize::try_from(i).ok())
}

/// A sorted list of disjoint, non-adjacent closed intervals of indexes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Intervals(Vec<(usize, usize)>);

impl Intervals {
    /// Parses `s` as upstream's `parseIndexesFromString`: intervals that do not parse are
    /// skipped, parsing stops at the first interval starting at or above `completions`, and an
    /// interval's end is clipped to `completions − 1`.
    pub fn parse(s: &str, completions: usize) -> Self {
        let mut out: Vec<(usize, usize)> = Vec::new();
        if s.is_empty() {
            return Intervals(out);
        }
        for part in s.split(',') {
            let mut limits = part.split('-');
            let Some(Ok(first)) = limits.next().map(str::parse::<usize>) else {
                continue;
            };
            if first >= completions {
                break;
            }
            let last = match limits.next() {
                None => first,
                Some(l) => match l.parse::<usize>() {
                    Ok(l) => l.min(completions - 1),
                    Err(_) => continue,
                },
            };
            match out.last_mut() {
                Some(prev) if prev.1 + 1 == first => prev.1 = last,
                _ => out.push((first, last)),
            }
        }
        Intervals(out)
    }

    /// The union with `other` (`merge`).
    pub fn merge(&self, other: &Intervals) -> Intervals {
        let mut all: Vec<(usize, usize)> = self.0.iter().chain(&other.0).copied().collect();
        all.sort_unstable();
        let mut out: Vec<(usize, usize)> = Vec::with_capacity(all.len());
        for (first, last) in all {
            match out.last_mut() {
                Some(prev) if first <= prev.1 + 1 => prev.1 = prev.1.max(last),
                _ => out.push((first, last)),
            }
        }
        Intervals(out)
    }

    /// The union with the single indexes `ixs` (`withOrderedIndexes`).
    pub fn with(&self, ixs: impl IntoIterator<Item = usize>) -> Intervals {
        self.merge(&Intervals(ixs.into_iter().map(|i| (i, i)).collect()))
    }

    /// How many indexes the intervals hold.
    pub fn total(&self) -> usize {
        self.0.iter().map(|(f, l)| l - f + 1).sum()
    }

    /// Whether `ix` is in one of the intervals.
    pub fn has(&self, ix: usize) -> bool {
        let pos = self.0.partition_point(|(_, last)| *last < ix);
        self.0.get(pos).is_some_and(|(first, _)| *first <= ix)
    }

    /// Whether there are no indexes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The intervals, ascending.
    pub fn iter(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.0.iter().copied()
    }

    /// How many indexes of `rule` are also here (`matchSucceededIndexesRule`'s overlap).
    pub fn overlap(&self, rule: &Intervals) -> usize {
        let (mut i, mut j, mut n) = (0, 0, 0);
        while let (Some(a), Some(b)) = (rule.0.get(i), self.0.get(j)) {
            let lo = a.0.max(b.0);
            let hi = a.1.min(b.1);
            if hi >= lo {
                n += hi - lo + 1;
            }
            match b.1.cmp(&a.1) {
                std::cmp::Ordering::Less => j += 1,
                std::cmp::Ordering::Greater => i += 1,
                std::cmp::Ordering::Equal => {
                    i += 1;
                    j += 1;
                }
            }
        }
        n
    }
}

impl fmt::Display for Intervals {
    /// `1,3-5,7`; a run of two is written `3,4`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, (first, last)) in self.0.iter().enumerate() {
            if n > 0 {
                f.write_str(",")?;
            }
            write!(f, "{first}")?;
            if last > first {
                let sep = if *last == first + 1 { "," } else { "-" };
                write!(f, "{sep}{last}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_print_as_upstream_writes_them() {
        let i = Intervals::default().with([7, 1, 3, 4, 5]);
        assert_eq!(i.to_string(), "1,3-5,7");
        assert_eq!(Intervals::default().with([3, 4]).to_string(), "3,4");
        assert_eq!(i.total(), 5);
        assert!(i.has(4) && !i.has(2) && !i.has(8) && i.has(7));
        assert_eq!(Intervals::default().to_string(), "");
    }

    #[test]
    fn parsing_skips_garbage_and_clips_at_completions() {
        assert_eq!(Intervals::parse("1,3-5,7", 10).to_string(), "1,3-5,7");
        assert_eq!(Intervals::parse("0-2,3,x,5-y,8-20", 10).to_string(), "0-3,8,9");
        assert_eq!(Intervals::parse("1,12,3", 10).to_string(), "1");
        assert_eq!(Intervals::parse("", 10).total(), 0);
        let a = Intervals::parse("0-2,6", 10);
        let b = Intervals::parse("3,5", 10);
        assert_eq!(a.merge(&b).to_string(), "0-3,5,6");
        assert_eq!(a.overlap(&Intervals::parse("1-7", 10)), 3);
    }
}
