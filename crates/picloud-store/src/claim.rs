//! What the dispatcher may claim: how many deliveries it can start right now, in all
//! and per app. The store picks within it in turns across apps, the app with the
//! fewest deliveries running first, so one app's backlog never pushes another app's
//! deliveries back by more than a round.

use picloud_core::AppId;

/// Room for deliveries, as the executor has it free right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimPlan {
    /// Deliveries claimed at most, across apps.
    pub limit: u32,
    /// Deliveries claimed at most for an app not listed in `apps`.
    pub per_app: u32,
    /// Apps already running deliveries: their room (0: none now) and how many run.
    pub apps: Vec<AppRoom>,
}

/// An app with deliveries running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppRoom {
    pub app: AppId,
    /// Deliveries it may start now.
    pub room: u32,
    /// Deliveries it runs now: its turn comes after apps running fewer.
    pub running: u32,
}

impl ClaimPlan {
    /// No per-app bound: the oldest due deliveries, up to `limit`, still taken in turns
    /// across apps.
    pub fn any(limit: u32) -> Self {
        Self {
            limit,
            per_app: limit,
            apps: Vec::new(),
        }
    }

    /// How many of `app`'s deliveries may be claimed.
    pub fn room(&self, app: &AppId) -> u32 {
        self.apps
            .iter()
            .find(|a| &a.app == app)
            .map_or(self.per_app, |a| a.room)
            .min(self.limit)
    }

    /// How many deliveries `app` runs now.
    pub fn running(&self, app: &AppId) -> u32 {
        self.apps
            .iter()
            .find(|a| &a.app == app)
            .map_or(0, |a| a.running)
    }

    /// Whether nothing at all may be claimed.
    pub fn is_empty(&self) -> bool {
        self.limit == 0 || (self.per_app == 0 && self.apps.iter().all(|a| a.room == 0))
    }

    /// Picks from each app's oldest due deliveries (`candidates`): in turns, where an
    /// app's n-th candidate has turn `running + n` (an app running three deliveries
    /// waits for those running fewer to catch up), oldest first within a turn, at
    /// most each app's room and `limit` in all. Returns the picked ids.
    pub fn pick<I>(&self, candidates: Vec<Candidate<I>>) -> Vec<I> {
        let mut by_app: Vec<(AppId, Vec<Candidate<I>>)> = Vec::new();
        for c in candidates {
            match by_app.iter_mut().find(|(a, _)| *a == c.app_id) {
                Some((_, list)) => list.push(c),
                None => by_app.push((c.app_id.clone(), vec![c])),
            }
        }
        let mut ranked: Vec<(usize, Candidate<I>)> = Vec::new();
        for (app, mut list) in by_app {
            list.sort_by_key(|c| c.due_at);
            let room = self.room(&app) as usize;
            let running = self.running(&app) as usize;
            ranked.extend(
                list.into_iter()
                    .take(room)
                    .enumerate()
                    .map(|(n, c)| (running + n, c)),
            );
        }
        ranked.sort_by(|(ra, a), (rb, b)| ra.cmp(rb).then_with(|| a.due_at.cmp(&b.due_at)));
        ranked
            .into_iter()
            .take(self.limit as usize)
            .map(|(_, c)| c.id)
            .collect()
    }
}

/// A due delivery the store could claim.
#[derive(Debug, Clone)]
pub struct Candidate<I> {
    pub id: I,
    pub app_id: AppId,
    pub due_at: chrono::DateTime<chrono::Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, Utc};

    fn app(s: &str) -> AppId {
        AppId::from_trusted(s.to_owned())
    }

    #[test]
    fn takes_turns_across_apps_within_each_apps_room() {
        let t0 = Utc::now();
        let mut candidates = Vec::new();
        for i in 0..10 {
            candidates.push(Candidate {
                id: format!("noisy-{i}"),
                app_id: app("noisy"),
                due_at: t0 + Duration::milliseconds(i),
            });
        }
        candidates.push(Candidate {
            id: "quiet-0".to_owned(),
            app_id: app("quiet"),
            due_at: t0 + Duration::seconds(5),
        });
        candidates.push(Candidate {
            id: "full-0".to_owned(),
            app_id: app("full"),
            due_at: t0,
        });
        let plan = ClaimPlan {
            limit: 4,
            per_app: 3,
            apps: vec![AppRoom {
                app: app("full"),
                room: 0,
                running: 3,
            }],
        };
        assert_eq!(
            plan.pick(candidates.clone()),
            vec!["noisy-0", "quiet-0", "noisy-1", "noisy-2"]
        );
        // An app already running goes after one that is not, older or not.
        let plan = ClaimPlan {
            limit: 1,
            per_app: 3,
            apps: vec![AppRoom {
                app: app("noisy"),
                room: 1,
                running: 2,
            }],
        };
        assert_eq!(plan.pick(candidates), vec!["full-0"]);
    }

    #[test]
    fn an_empty_plan_claims_nothing() {
        assert!(ClaimPlan {
            limit: 3,
            per_app: 0,
            apps: vec![AppRoom {
                app: app("a"),
                room: 0,
                running: 1
            }]
        }
        .is_empty());
        assert!(!ClaimPlan::any(1).is_empty());
        assert!(ClaimPlan::any(0).is_empty());
    }
}
