//! Events of the identity service (stream `KUBEGATE_IDENTITY`, subjects `kubegate.identity.>`).

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::envelope::SealedSecret;
use crate::macros::domain_events;

/// A user's global role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum GlobalRole {
    /// environment-admin everywhere, and the admin API.
    Admin,
    /// Reaches what access policies grant.
    User,
}

impl GlobalRole {
    pub fn as_str(self) -> &'static str {
        match self {
            GlobalRole::Admin => "admin",
            GlobalRole::User => "user",
        }
    }
}

/// The admin's kubeconfig expiry setting. Baked into each token at issue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema, Default)]
pub enum KubeconfigExpiry {
    #[serde(rename = "24h")]
    Day,
    #[serde(rename = "168h")]
    Week,
    #[default]
    #[serde(rename = "720h")]
    Month,
    #[serde(rename = "8760h")]
    Year,
    #[serde(rename = "0")]
    Never,
}

impl KubeconfigExpiry {
    pub const ALL: [KubeconfigExpiry; 5] = [
        KubeconfigExpiry::Day,
        KubeconfigExpiry::Week,
        KubeconfigExpiry::Month,
        KubeconfigExpiry::Year,
        KubeconfigExpiry::Never,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            KubeconfigExpiry::Day => "24h",
            KubeconfigExpiry::Week => "168h",
            KubeconfigExpiry::Month => "720h",
            KubeconfigExpiry::Year => "8760h",
            KubeconfigExpiry::Never => "0",
        }
    }

    pub fn parse(s: &str) -> Option<KubeconfigExpiry> {
        Self::ALL.into_iter().find(|e| e.as_str() == s)
    }

    /// The lifetime in seconds, or `None` for tokens that never expire.
    pub fn seconds(self) -> Option<i64> {
        match self {
            KubeconfigExpiry::Day => Some(24 * 3600),
            KubeconfigExpiry::Week => Some(168 * 3600),
            KubeconfigExpiry::Month => Some(720 * 3600),
            KubeconfigExpiry::Year => Some(8760 * 3600),
            KubeconfigExpiry::Never => None,
        }
    }

    /// How a person reads it: "expires in 30 days", "never expires".
    pub fn describe(self) -> &'static str {
        match self {
            KubeconfigExpiry::Day => "expires in 1 day",
            KubeconfigExpiry::Week => "expires in 7 days",
            KubeconfigExpiry::Month => "expires in 30 days",
            KubeconfigExpiry::Year => "expires in 1 year",
            KubeconfigExpiry::Never => "never expires",
        }
    }
}

/// Why all of a user's earlier tokens stopped being valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RevocationReason {
    Requested,
    PasswordChanged,
    RoleChanged,
    Disabled,
    Deleted,
}

/// Why a sign-in failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SignInFailure {
    BadCredentials,
    Disabled,
    Throttled,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserCreated {
    pub user_id: u64,
    pub username: String,
    pub role: GlobalRole,
    /// The argon2id hash, sealed with identity's master key.
    pub password: SealedSecret,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserRoleChanged {
    pub user_id: u64,
    pub role: GlobalRole,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPasswordChanged {
    pub user_id: u64,
    pub password: SealedSecret,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserDisabled {
    pub user_id: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserEnabled {
    pub user_id: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserDeleted {
    pub user_id: u64,
    pub username: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TeamCreated {
    pub team_id: u64,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TeamRenamed {
    pub team_id: u64,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TeamDeleted {
    pub team_id: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TeamMemberAdded {
    pub team_id: u64,
    pub user_id: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TeamMemberRemoved {
    pub team_id: u64,
    pub user_id: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KubeconfigExpiryChanged {
    pub expiry: KubeconfigExpiry,
    pub previous: KubeconfigExpiry,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SigningKeyAdded {
    pub kid: String,
    /// Ed25519 public key, base64url of its 32 bytes.
    pub public_key: String,
    /// The private key's seed, sealed with identity's master key.
    pub private_key: SealedSecret,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SigningKeyRetired {
    pub kid: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KubeconfigTokenIssued {
    /// The token's `jti`.
    pub token_id: String,
    pub user_id: u64,
    pub username: String,
    pub environment_ids: Vec<u64>,
    pub issued_at: DateTime<Utc>,
    /// Absent for tokens that never expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KubeconfigTokenRevoked {
    pub token_id: String,
    pub user_id: u64,
    /// Copied from the token so a verifier can forget the revocation once the token has expired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserTokensRevoked {
    pub user_id: u64,
    /// Every token of the user issued before this instant (its `iat`, in whole seconds, is
    /// smaller than this instant's seconds) is revoked.
    pub valid_after: DateTime<Utc>,
    pub reason: RevocationReason,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SignInSucceeded {
    pub user_id: u64,
    pub username: String,
    pub client_address: String,
    /// The session token's `jti`.
    pub session_id: String,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SignInFailed {
    /// As typed (truncated to 128 characters); may name no user.
    pub username: String,
    pub client_address: String,
    pub reason: SignInFailure,
}

domain_events! {
    /// Every fact the identity service records.
    pub enum IdentityEvent, service "identity", stream "KUBEGATE_IDENTITY" {
        UserCreated(UserCreated) = "user.created" v 1,
        UserRoleChanged(UserRoleChanged) = "user.role-changed" v 1,
        UserPasswordChanged(UserPasswordChanged) = "user.password-changed" v 1,
        UserDisabled(UserDisabled) = "user.disabled" v 1,
        UserEnabled(UserEnabled) = "user.enabled" v 1,
        UserDeleted(UserDeleted) = "user.deleted" v 1,
        TeamCreated(TeamCreated) = "team.created" v 1,
        TeamRenamed(TeamRenamed) = "team.renamed" v 1,
        TeamDeleted(TeamDeleted) = "team.deleted" v 1,
        TeamMemberAdded(TeamMemberAdded) = "team.member-added" v 1,
        TeamMemberRemoved(TeamMemberRemoved) = "team.member-removed" v 1,
        KubeconfigExpiryChanged(KubeconfigExpiryChanged) = "settings.kubeconfig-expiry-changed" v 1,
        SigningKeyAdded(SigningKeyAdded) = "signing-key.added" v 1,
        SigningKeyRetired(SigningKeyRetired) = "signing-key.retired" v 1,
        KubeconfigTokenIssued(KubeconfigTokenIssued) = "token.issued" v 1,
        KubeconfigTokenRevoked(KubeconfigTokenRevoked) = "token.revoked" v 1,
        UserTokensRevoked(UserTokensRevoked) = "user.tokens-revoked" v 1,
        SignInSucceeded(SignInSucceeded) = "signin.succeeded" v 1,
        SignInFailed(SignInFailed) = "signin.failed" v 1,
    }
}
