//! Names of users, teams and environments by id, learned from the events that give them (and
//! kept after a deletion, so old records still read well). Built once from the streams before a
//! replay, then kept current by the replay itself.

use std::collections::{BTreeMap, HashMap};
use std::sync::{PoisonError, RwLock};

use kubegate_bus::Bus;
use kubegate_events::DomainEvent;
use kubegate_events::environments::EnvironmentEvent;
use kubegate_events::identity::IdentityEvent;

use crate::AuditError;
use crate::source::{Start, read_to_end};

#[derive(Debug, Default)]
struct Names {
    users: HashMap<u64, String>,
    teams: HashMap<u64, String>,
    environments: BTreeMap<u64, String>,
}

/// Shared by the readers of one replay: each stream's reader learns what its events name.
#[derive(Debug, Default)]
pub struct Directory {
    names: RwLock<Names>,
}

impl Directory {
    pub fn new() -> Directory {
        Directory::default()
    }

    fn read<R>(&self, f: impl FnOnce(&Names) -> R) -> R {
        f(&self.names.read().unwrap_or_else(PoisonError::into_inner))
    }

    fn write(&self, f: impl FnOnce(&mut Names)) {
        f(&mut self.names.write().unwrap_or_else(PoisonError::into_inner))
    }

    pub fn learn_identity(&self, event: &IdentityEvent) {
        match event {
            IdentityEvent::UserCreated(e) => self.write(|n| {
                n.users.insert(e.user_id, e.username.clone());
            }),
            IdentityEvent::TeamCreated(e) => self.write(|n| {
                n.teams.insert(e.team_id, e.name.clone());
            }),
            IdentityEvent::TeamRenamed(e) => self.write(|n| {
                n.teams.insert(e.team_id, e.name.clone());
            }),
            _ => {}
        }
    }

    pub fn learn_environment(&self, event: &EnvironmentEvent) {
        match event {
            EnvironmentEvent::EnvironmentRegistered(e) => self.write(|n| {
                n.environments.insert(e.environment_id, e.name.clone());
            }),
            EnvironmentEvent::EnvironmentRenamed(e) => self.write(|n| {
                n.environments.insert(e.environment_id, e.name.clone());
            }),
            _ => {}
        }
    }

    pub fn user(&self, id: u64) -> Option<String> {
        self.read(|n| n.users.get(&id).cloned())
    }

    pub fn team(&self, id: u64) -> Option<String> {
        self.read(|n| n.teams.get(&id).cloned())
    }

    pub fn environment(&self, id: u64) -> Option<String> {
        self.read(|n| n.environments.get(&id).cloned())
    }

    /// The user's name, or `#<id>`.
    pub fn user_label(&self, id: u64) -> String {
        self.user(id).unwrap_or_else(|| format!("#{id}"))
    }

    pub fn team_label(&self, id: u64) -> String {
        self.team(id).unwrap_or_else(|| format!("#{id}"))
    }

    pub fn environment_label(&self, id: u64) -> String {
        self.environment(id).unwrap_or_else(|| format!("#{id}"))
    }

    /// Every user id that has had this name (any letter case): a name can be reused after a
    /// deletion, ids never are.
    pub fn users_named(&self, name: &str) -> Vec<u64> {
        let mut ids: Vec<u64> = self.read(|n| {
            n.users.iter().filter(|(_, u)| u.eq_ignore_ascii_case(name)).map(|(id, _)| *id).collect()
        });
        ids.sort_unstable();
        ids
    }

    /// The environment named `name` (any letter case), the latest one if several had it.
    pub fn environment_named(&self, name: &str) -> Option<u64> {
        self.read(|n| {
            n.environments
                .iter()
                .rev()
                .find(|(_, e)| e.to_lowercase() == name.to_lowercase())
                .map(|(id, _)| *id)
        })
    }

    /// Reads every name the streams hold now: users from `user.created`, teams, environments.
    pub async fn load(bus: &Bus) -> Result<Directory, AuditError> {
        let directory = Directory::new();
        let users = read_to_end(
            bus,
            IdentityEvent::STREAM,
            "kubegate.identity.user.created",
            Start::Beginning,
            |raw| {
                if let Ok(env) = raw.decode::<IdentityEvent>() {
                    directory.learn_identity(&env.event);
                }
            },
        );
        let teams =
            read_to_end(bus, IdentityEvent::STREAM, "kubegate.identity.team.>", Start::Beginning, |raw| {
                if let Ok(env) = raw.decode::<IdentityEvent>() {
                    directory.learn_identity(&env.event);
                }
            });
        let environments = read_to_end(
            bus,
            EnvironmentEvent::STREAM,
            "kubegate.environments.environment.>",
            Start::Beginning,
            |raw| {
                if let Ok(env) = raw.decode::<EnvironmentEvent>() {
                    directory.learn_environment(&env.event);
                }
            },
        );
        let (u, t, e) = futures::join!(users, teams, environments);
        u?;
        t?;
        e?;
        Ok(directory)
    }
}
