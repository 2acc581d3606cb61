//! Identity's write model on the shared engine: the state rebuilt from identity's log, plus the
//! signing keys opened with the master key to mint tokens once their issue is recorded.

use std::collections::HashMap;
use std::ops::Deref;

use chrono::{DateTime, Utc};
use kubegate_events::Envelope;
use kubegate_events::identity::IdentityEvent;
use kubegate_eventstore::EventStore;
use kubegate_eventstore::engine::{self, Decision, Model, NoSide};
use kubegate_token::{Claims, Scope, SigningKey};

use crate::crypto::{MasterKey, Purpose};
use crate::domain::{Command, DomainError, IdentityState, Outcome, decide};

pub use kubegate_eventstore::engine::Origin;

pub type Engine = engine::Engine<IdentityModel>;
pub type EngineError = engine::EngineError<ModelError>;
pub type Executed = engine::Executed<Outcome>;

/// Why a command failed inside identity.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error("cannot use the signing key: {0}")]
    Key(String),
}

/// The state, and what minting needs.
pub struct IdentityModel {
    pub state: IdentityState,
    master: MasterKey,
    signers: HashMap<String, SigningKey>,
}

impl Deref for IdentityModel {
    type Target = IdentityState;
    fn deref(&self) -> &IdentityState {
        &self.state
    }
}

/// Replays identity's log and starts its engine.
pub async fn start(store: EventStore, master: MasterKey) -> Result<Engine, EngineError> {
    let model = IdentityModel { state: IdentityState::default(), master, signers: HashMap::new() };
    Engine::start(store, model, NoSide).await
}

impl Model for IdentityModel {
    type Event = IdentityEvent;
    type Command = Command;
    type Outcome = Outcome;
    type Error = ModelError;

    fn position(&self) -> u64 {
        self.state.position
    }

    fn set_position(&mut self, position: u64) {
        self.state.position = position;
    }

    fn reset(&mut self) {
        self.state = IdentityState::default();
        self.signers.clear();
    }

    fn apply(&mut self, event: &Envelope<IdentityEvent>) {
        self.state.apply(event);
    }

    fn decide(&self, command: &Command, now: DateTime<Utc>) -> Result<Outcome, ModelError> {
        Ok(decide(&self.state, command.clone(), now)?)
    }

    fn decisions(outcome: &Outcome) -> &[Decision<IdentityEvent>] {
        &outcome.decisions
    }

    /// Mints the token a command asked for (kubeconfig or session), with the active key.
    fn committed(&mut self, command: &Command, outcome: &mut Outcome) -> Result<(), ModelError> {
        let (jti, user_id, scope) = match command {
            Command::IssueKubeconfigToken { token_id, user_id, .. } => {
                (token_id.clone(), *user_id, Scope::Kubeconfig)
            }
            Command::RecordSignIn { session_id, user_id, .. } => {
                (session_id.clone(), *user_id, Scope::Session)
            }
            _ => return Ok(()),
        };
        let Some((iat, exp)) = outcome.token_times else { return Ok(()) };
        let name = self.state.users.get(&user_id).map(|u| u.username.clone()).unwrap_or_default();
        let claims = Claims { sub: user_id.to_string(), name, jti, iat, exp, scope };
        let kid =
            outcome.signing_kid.clone().ok_or_else(|| ModelError::Key("no active signing key".into()))?;
        let issued = DateTime::from_timestamp(iat, 0).unwrap_or_else(Utc::now);
        let token = self.signer(&kid, issued)?.mint(&claims).map_err(|e| ModelError::Key(e.to_string()))?;
        outcome.token = Some(token);
        Ok(())
    }
}

impl IdentityModel {
    /// The signer of key `kid` (the one the decision chose), its seed unsealed once. Should a
    /// later command of the same batch have retired that key, the key active at `issued` signs.
    fn signer(&mut self, kid: &str, issued: DateTime<Utc>) -> Result<&SigningKey, ModelError> {
        let record = match self.state.keys.iter().find(|k| k.kid == kid && !k.retired) {
            Some(record) => record,
            None => self
                .state
                .active_key(issued)
                .ok_or_else(|| ModelError::Key("no active signing key".into()))?,
        };
        let kid = record.kid.clone();
        if !self.signers.contains_key(&kid) {
            let seed = self
                .master
                .open(Purpose::SigningKey, &record.private_key)
                .map_err(|e| ModelError::Key(e.to_string()))?;
            let seed: [u8; 32] = seed
                .as_slice()
                .try_into()
                .map_err(|_| ModelError::Key("sealed seed has the wrong length".into()))?;
            let key =
                SigningKey::from_seed(kid.clone(), &seed).map_err(|e| ModelError::Key(e.to_string()))?;
            self.signers.insert(kid.clone(), key);
        }
        self.signers.get(&kid).ok_or_else(|| ModelError::Key("signing key vanished".into()))
    }
}
