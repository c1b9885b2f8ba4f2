//! The nemesis schedule: which faults, when, for how long — all drawn from
//! one seed before the run starts, so a seed names a schedule.
//!
//! A schedule is a list of [`Step`]s. Each step injects one or more
//! [`Fault`]s at `start_ms` (milliseconds since the workload started),
//! holds them for `hold_ms`, then heals all of them (restarts killed nodes,
//! resumes paused ones, removes every cut) before the next step starts.
//!
//! Which node a fault hits often depends on the cluster at that moment
//! (the leader), so a fault carries a random `pick` drawn in advance and the
//! runner resolves it with [`pick_node`] and [`partition_cuts`]: the same
//! seed and the same cluster state give the same choice.
//!
//! The first steps inject every kind of fault once, one at a time, in a
//! seeded order (the disk faults first when enabled), so that a run long
//! enough for them covers every kind;
//! later steps draw kinds at random and sometimes combine several (kills,
//! pauses and one partition).

use serde::{Deserialize, Serialize};

use crate::limits;
use crate::net::{cut_between, Cuts};
use crate::rng::Rng;

/// What one fault does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// SIGKILL a random node; restart it (same data) when healing.
    KillRandom,
    /// SIGKILL the leader; restart it when healing.
    KillLeader,
    /// SIGSTOP the leader; SIGCONT when healing.
    PauseLeader,
    /// SIGSTOP a random node; SIGCONT when healing.
    PauseRandom,
    /// Cut the leader off from every other node, both ways.
    IsolateLeader,
    /// Split the nodes into a minority and a majority, both ways.
    MajorityMinority,
    /// Two halves that cannot talk, and one node that talks to both.
    Bridge,
    /// Drop packets in one direction only, between the leader and the rest.
    OneWay,
    /// Remove a node, wipe its data, restart it empty, add it back as a
    /// learner and promote it.
    Membership,
    /// Ask the leader to hand leadership to another node.
    TransferLeader,
    /// Replace a voter's disk: SIGKILL it (not the leader when another
    /// voter can be chosen), wipe its data dir; when healing restart it with
    /// its usual flags (`--bootstrap`), which must be refused, then without
    /// `--bootstrap` as docs/operations.md says. Opt-in (`--disk-faults`).
    ReplaceDisk,
    /// SIGKILL a random node, cut its newest WAL segment at a random offset
    /// past the header, restart it when healing. Opt-in (`--disk-faults`).
    TruncateWal,
    /// SIGKILL a random node and start its data dir with another `--id`:
    /// that start must fail naming both ids; restart it normally when
    /// healing. Opt-in (`--disk-faults`).
    WrongId,
}

impl FaultKind {
    /// Every kind, in a fixed order.
    pub const ALL: [FaultKind; 13] = [
        FaultKind::KillRandom,
        FaultKind::KillLeader,
        FaultKind::PauseLeader,
        FaultKind::PauseRandom,
        FaultKind::IsolateLeader,
        FaultKind::MajorityMinority,
        FaultKind::Bridge,
        FaultKind::OneWay,
        FaultKind::Membership,
        FaultKind::TransferLeader,
        FaultKind::ReplaceDisk,
        FaultKind::TruncateWal,
        FaultKind::WrongId,
    ];

    /// Whether the fault damages or misuses a node's data dir (only with
    /// `--disk-faults`; left out otherwise, so that older seeds keep their
    /// schedules).
    pub fn is_disk(self) -> bool {
        matches!(
            self,
            FaultKind::ReplaceDisk | FaultKind::TruncateWal | FaultKind::WrongId
        )
    }

    /// The kinds a run may draw: partitions only with the firewall, disk
    /// faults only when asked for.
    pub fn enabled(network: bool, disk: bool) -> Vec<FaultKind> {
        FaultKind::ALL
            .into_iter()
            .filter(|k| (network || !k.is_partition()) && (disk || !k.is_disk()))
            .collect()
    }

    /// Whether the fault needs the firewall.
    pub fn is_partition(self) -> bool {
        matches!(
            self,
            FaultKind::IsolateLeader
                | FaultKind::MajorityMinority
                | FaultKind::Bridge
                | FaultKind::OneWay
        )
    }

    /// Whether the fault must run alone in its step (it changes the
    /// membership, which the other faults resolve their targets against,
    /// or it leaves a node that must be repaired before another node may
    /// go down: a wiped or cut log makes the node *recovering*, without a
    /// vote, so a second node down at once would leave no majority).
    pub fn is_exclusive(self) -> bool {
        matches!(
            self,
            FaultKind::Membership | FaultKind::ReplaceDisk | FaultKind::TruncateWal
        )
    }

    /// The kind's name as printed in summaries.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::KillRandom => "kill-random",
            FaultKind::KillLeader => "kill-leader",
            FaultKind::PauseLeader => "pause-leader",
            FaultKind::PauseRandom => "pause-random",
            FaultKind::IsolateLeader => "isolate-leader",
            FaultKind::MajorityMinority => "majority-minority",
            FaultKind::Bridge => "bridge",
            FaultKind::OneWay => "one-way",
            FaultKind::Membership => "membership",
            FaultKind::TransferLeader => "transfer-leader",
            FaultKind::ReplaceDisk => "replace-disk",
            FaultKind::TruncateWal => "truncate-wal",
            FaultKind::WrongId => "wrong-id",
        }
    }
}

/// One fault with its pre-drawn random choice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    pub kind: FaultKind,
    /// Resolves the fault's random choices at run time (which node, which
    /// split).
    pub pick: u64,
}

/// Faults injected together, held, then healed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// When to inject, in ms since the workload started.
    pub start_ms: u64,
    /// How long the faults stay in force.
    pub hold_ms: u64,
    pub faults: Vec<Fault>,
}

/// A whole run's nemesis plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    pub seed: u64,
    pub duration_ms: u64,
    pub steps: Vec<Step>,
}

/// Timing of generated schedules (milliseconds).
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// Quiet time before the first fault.
    pub warmup_ms: u64,
    pub hold_ms_min: u64,
    pub hold_ms_max: u64,
    /// Quiet time after healing a step, before the next.
    pub gap_ms_min: u64,
    pub gap_ms_max: u64,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            warmup_ms: 1_500,
            hold_ms_min: 1_500,
            hold_ms_max: 4_000,
            gap_ms_min: 1_000,
            gap_ms_max: 2_000,
        }
    }
}

/// The schedule for `seed` over `duration_ms`. With `network` false the
/// partition kinds are left out (no firewall); with `disk` false the disk
/// faults are (and the schedule is the one older versions drew for the
/// seed).
pub fn generate(
    seed: u64,
    duration_ms: u64,
    network: bool,
    disk: bool,
    timing: Timing,
) -> Schedule {
    let mut rng = Rng::stream(seed, 0x5eed_0001);
    let kinds = FaultKind::enabled(network, disk);
    // The disk faults (when enabled) come first, so that short runs cover
    // them; without them the draws are those of older versions.
    let (mut coverage, mut rest): (Vec<FaultKind>, Vec<FaultKind>) =
        kinds.iter().partition(|k| k.is_disk());
    rng.shuffle(&mut coverage);
    rng.shuffle(&mut rest);
    coverage.extend(rest);
    let mut coverage = coverage.into_iter();

    let mut steps = Vec::new();
    let mut t = timing.warmup_ms;
    while steps.len() < limits::schedule_steps_max {
        let hold_ms = rng.between(timing.hold_ms_min, timing.hold_ms_max);
        if t + hold_ms > duration_ms {
            break;
        }
        let faults = match coverage.next() {
            Some(kind) => vec![Fault {
                kind,
                pick: rng.next_u64(),
            }],
            None => random_faults(&mut rng, &kinds),
        };
        steps.push(Step {
            start_ms: t,
            hold_ms,
            faults,
        });
        t += hold_ms + rng.between(timing.gap_ms_min, timing.gap_ms_max);
    }
    Schedule {
        seed,
        duration_ms,
        steps,
    }
}

/// One to `faults_per_step_max` compatible faults: an exclusive kind alone,
/// at most one partition, at most one transfer.
fn random_faults(rng: &mut Rng, kinds: &[FaultKind]) -> Vec<Fault> {
    let count = if rng.percent(30) {
        rng.between(2, limits::faults_per_step_max as u64) as usize
    } else {
        1
    };
    let mut faults: Vec<Fault> = Vec::new();
    // Bounded: a few draws per wanted fault.
    for _ in 0..count * 8 {
        if faults.len() == count {
            break;
        }
        let kind = kinds[rng.below(kinds.len() as u64) as usize];
        let pick = rng.next_u64();
        let clashes = faults.iter().any(|f| {
            f.kind.is_exclusive()
                || kind.is_exclusive()
                || (f.kind.is_partition() && kind.is_partition())
                || (f.kind == FaultKind::TransferLeader && kind == FaultKind::TransferLeader)
        });
        if !clashes {
            faults.push(Fault { kind, pick });
        }
    }
    faults
}

/// The node `pick` chooses among `ids` (sorted for determinism), avoiding
/// `avoid` when another choice exists.
pub fn pick_node(ids: &[u64], pick: u64, avoid: &[u64]) -> Option<u64> {
    let mut sorted: Vec<u64> = ids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let preferred: Vec<u64> = sorted
        .iter()
        .copied()
        .filter(|id| !avoid.contains(id))
        .collect();
    let from = if preferred.is_empty() {
        &sorted
    } else {
        &preferred
    };
    if from.is_empty() {
        return None;
    }
    Some(from[(pick % from.len() as u64) as usize])
}

/// The cuts of a partition fault over the nodes `ids`, given the leader
/// (when one is known). Empty for a kind that is not a partition or when
/// the leader is needed and unknown.
pub fn partition_cuts(kind: FaultKind, ids: &[u64], leader: Option<u64>, pick: u64) -> Cuts {
    let mut ids: Vec<u64> = ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    let mut rng = Rng::new(pick);
    match kind {
        FaultKind::IsolateLeader => match leader {
            Some(l) => cut_between(&[l], &others(&ids, l)),
            None => Cuts::new(),
        },
        FaultKind::MajorityMinority => {
            rng.shuffle(&mut ids);
            let minority = (ids.len().saturating_sub(1)) / 2;
            let (a, b) = ids.split_at(minority.max(1).min(ids.len()));
            cut_between(a, b)
        }
        FaultKind::Bridge => {
            if ids.len() < 3 {
                return Cuts::new();
            }
            rng.shuffle(&mut ids);
            // ids[0] is the bridge; the rest split in two halves that each
            // see only the bridge.
            let rest = &ids[1..];
            let (a, b) = rest.split_at(rest.len() / 2);
            cut_between(a, b)
        }
        FaultKind::OneWay => match leader {
            Some(l) => {
                let rest = others(&ids, l);
                let inbound = rng.percent(50);
                rest.iter()
                    .map(|&o| if inbound { (o, l) } else { (l, o) })
                    .collect()
            }
            None => Cuts::new(),
        },
        _ => Cuts::new(),
    }
}

fn others(ids: &[u64], id: u64) -> Vec<u64> {
    ids.iter().copied().filter(|&x| x != id).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_schedule_other_seed_other_schedule() {
        let a = generate(42, 60_000, true, false, Timing::default());
        let b = generate(42, 60_000, true, false, Timing::default());
        let c = generate(43, 60_000, true, false, Timing::default());
        assert_eq!(a, b);
        assert_ne!(a, c);
        let json = serde_json::to_string(&a).unwrap_or_default();
        let back: Schedule = serde_json::from_str(&json).unwrap_or(c);
        assert_eq!(back, a);
    }

    #[test]
    fn sixty_seconds_cover_every_kind_and_fit_the_duration() {
        for seed in 0..20 {
            let s = generate(seed, 60_000, true, false, Timing::default());
            let mut seen: Vec<FaultKind> = s
                .steps
                .iter()
                .flat_map(|st| st.faults.iter().map(|f| f.kind))
                .collect();
            seen.sort();
            seen.dedup();
            assert_eq!(seen, FaultKind::enabled(true, false), "seed {seed}");
            let mut last_end = 0;
            for st in &s.steps {
                assert!(st.start_ms >= last_end, "steps overlap");
                last_end = st.start_ms + st.hold_ms;
                assert!(last_end <= 60_000);
                assert!(!st.faults.is_empty() && st.faults.len() <= limits::faults_per_step_max);
                let partitions = st.faults.iter().filter(|f| f.kind.is_partition()).count();
                assert!(partitions <= 1);
                if st.faults.iter().any(|f| f.kind.is_exclusive()) {
                    assert_eq!(st.faults.len(), 1);
                }
            }
        }
    }

    #[test]
    fn without_network_no_partitions() {
        let s = generate(9, 120_000, false, false, Timing::default());
        assert!(s.steps.len() > 10);
        assert!(s
            .steps
            .iter()
            .all(|st| st.faults.iter().all(|f| !f.kind.is_partition())));
    }

    #[test]
    fn some_steps_combine_faults() {
        let s = generate(5, 600_000, true, false, Timing::default());
        assert!(s.steps.iter().any(|st| st.faults.len() > 1));
    }

    #[test]
    fn disk_faults_only_when_asked_and_without_them_the_old_schedule() {
        for seed in 0..20 {
            let off = generate(seed, 120_000, true, false, Timing::default());
            assert!(off
                .steps
                .iter()
                .all(|st| st.faults.iter().all(|f| !f.kind.is_disk())));
            let on = generate(seed, 120_000, false, true, Timing::default());
            // The first three steps are the three disk faults.
            assert!(on.steps[..3].iter().all(|st| st.faults[0].kind.is_disk()));
            for kind in [
                FaultKind::ReplaceDisk,
                FaultKind::TruncateWal,
                FaultKind::WrongId,
            ] {
                assert!(
                    on.steps
                        .iter()
                        .any(|st| st.faults.iter().any(|f| f.kind == kind)),
                    "seed {seed}: {kind:?} never drawn"
                );
            }
            // A disk fault that leaves a recovering node runs alone.
            for st in &on.steps {
                if st.faults.iter().any(|f| f.kind.is_exclusive()) {
                    assert_eq!(st.faults.len(), 1, "seed {seed}");
                }
            }
        }
        // Without disk faults the kinds drawn from are the ten of before,
        // in the same order: the same seed draws the same schedule.
        assert_eq!(
            FaultKind::enabled(true, false),
            FaultKind::ALL[..10].to_vec()
        );
        assert!(FaultKind::ALL[10..].iter().all(|k| k.is_disk()));
    }

    #[test]
    fn pick_node_avoids_when_it_can() {
        assert_eq!(pick_node(&[3, 1, 2], 0, &[]), Some(1));
        assert_eq!(pick_node(&[1, 2, 3], 4, &[]), Some(2));
        assert_eq!(pick_node(&[1, 2, 3], 0, &[1]), Some(2));
        assert_eq!(pick_node(&[1], 7, &[1]), Some(1));
        assert_eq!(pick_node(&[], 7, &[]), None);
    }

    #[test]
    fn partitions_have_the_promised_shapes() {
        let ids = [1, 2, 3, 4, 5];
        let iso = partition_cuts(FaultKind::IsolateLeader, &ids, Some(3), 1);
        assert_eq!(iso, cut_between(&[3], &[1, 2, 4, 5]));
        assert!(partition_cuts(FaultKind::IsolateLeader, &ids, None, 1).is_empty());

        for pick in 0..50 {
            // Majority/minority: 2 | 3, every cut symmetric, the minority
            // side cut from all of the majority.
            let mm = partition_cuts(FaultKind::MajorityMinority, &ids, None, pick);
            assert_eq!(mm.len(), 2 * 2 * 3);
            assert!(mm.iter().all(|&(a, b)| mm.contains(&(b, a))));

            // Bridge: one node has no cut at all, the others are cut from
            // exactly the nodes of the other half.
            let br = partition_cuts(FaultKind::Bridge, &ids, None, pick);
            let free: Vec<u64> = ids
                .iter()
                .copied()
                .filter(|&n| !br.iter().any(|&(a, b)| a == n || b == n))
                .collect();
            assert_eq!(free.len(), 1, "pick {pick}: {br:?}");
            assert_eq!(br.len(), 2 * 2 * 2);

            // One way: only the leader's edges, in one direction.
            let ow = partition_cuts(FaultKind::OneWay, &ids, Some(2), pick);
            assert_eq!(ow.len(), 4);
            assert!(ow.iter().all(|&(a, b)| a == 2 || b == 2));
            assert!(ow.iter().all(|&(a, b)| !ow.contains(&(b, a))));
        }
        let three = partition_cuts(FaultKind::Bridge, &[1, 2, 3], None, 3);
        assert_eq!(three.len(), 2);
        assert!(partition_cuts(FaultKind::KillLeader, &ids, Some(1), 0).is_empty());
    }
}
