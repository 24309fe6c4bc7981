//! How a key's state gates each operation, as AWS documents it ("Key states of AWS KMS
//! keys", the key state table). One pure function over the [`Gate`] each operation
//! declares in the operation table (`operations.rs`, which tests its gates against AWS's
//! table): the service asks it before acting on a key. Never touches the store, and never
//! depends on the table that depends on it.

use super::model::{KeyState, Origin};
use super::ErrorKind;

/// The key-state rule of an operation: the rows of AWS's key state table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Works in every state (DescribeKey, PutKeyPolicy, grants, DeleteAlias, ...).
    Any,
    /// Cryptographic operations and CreateGrant: the key must be Enabled.
    Enabled,
    /// CancelKeyDeletion: only a key pending deletion.
    PendingDeletion,
    /// Any state but pending deletion (aliases, tags, description, scheduling).
    NotPendingDeletion,
    /// EnableKey, DisableKey: Enabled or Disabled.
    EnabledOrDisabled,
    /// Changing rotation: AWS_KMS keys only, Enabled.
    Rotation,
    /// Reading rotation: AWS_KMS keys only, any state.
    RotationInfo,
    /// Importing material: EXTERNAL keys only, not pending deletion.
    Import,
    /// DeleteImportedKeyMaterial: EXTERNAL keys only, any state.
    DeleteImport,
}

/// The exception (and AWS's message, after the key ARN) an operation with rule `gate`
/// gets on a key in `state`, or `None` when the state allows it.
pub fn gate(gate: Gate, state: KeyState, origin: Origin) -> Option<(ErrorKind, &'static str)> {
    use ErrorKind::{KmsInvalidState, UnsupportedOperation};
    use KeyState::{Enabled, PendingDeletion, PendingImport};
    const DISABLED_EXC: ErrorKind = ErrorKind::Disabled;
    const DISABLED: &str = "is disabled.";
    const PENDING_DELETION: &str = "is pending deletion.";
    const NOT_PENDING_DELETION: &str = "is not pending deletion.";
    const PENDING_IMPORT: &str = "is pending import.";
    const EXTERNAL: &str = "origin is EXTERNAL which is not valid for this operation.";
    const NOT_EXTERNAL: &str = "origin is AWS_KMS which is not valid for this operation.";
    let external = origin == Origin::External;
    match gate {
        Gate::Enabled => match state {
            Enabled => None,
            KeyState::Disabled => Some((DISABLED_EXC, DISABLED)),
            PendingImport => Some((KmsInvalidState, PENDING_IMPORT)),
            PendingDeletion => Some((KmsInvalidState, PENDING_DELETION)),
        },
        Gate::PendingDeletion => match state {
            PendingDeletion => None,
            _ => Some((KmsInvalidState, NOT_PENDING_DELETION)),
        },
        Gate::NotPendingDeletion => match state {
            PendingDeletion => Some((KmsInvalidState, PENDING_DELETION)),
            _ => None,
        },
        Gate::EnabledOrDisabled => match state {
            Enabled | KeyState::Disabled => None,
            PendingImport => Some((KmsInvalidState, PENDING_IMPORT)),
            PendingDeletion => Some((KmsInvalidState, PENDING_DELETION)),
        },
        Gate::Rotation => {
            if external {
                return Some((UnsupportedOperation, EXTERNAL));
            }
            match state {
                Enabled => None,
                KeyState::Disabled => Some((DISABLED_EXC, DISABLED)),
                PendingImport => Some((UnsupportedOperation, EXTERNAL)),
                PendingDeletion => Some((KmsInvalidState, PENDING_DELETION)),
            }
        }
        Gate::RotationInfo => {
            if external {
                return Some((UnsupportedOperation, EXTERNAL));
            }
            None
        }
        Gate::Import => {
            if !external {
                return Some((UnsupportedOperation, NOT_EXTERNAL));
            }
            match state {
                PendingDeletion => Some((KmsInvalidState, PENDING_DELETION)),
                _ => None,
            }
        }
        Gate::DeleteImport => {
            if !external {
                return Some((UnsupportedOperation, NOT_EXTERNAL));
            }
            None
        }
        Gate::Any => None,
    }
}
