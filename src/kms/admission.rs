//! Admission of a cryptographic request once its keys are resolved: authorization of each
//! action, the key-state gate of each key, then DryRun, in AWS's order. Shared by every
//! `ops_*` module of the data plane (symmetric, asymmetric, MAC, key pairs, agreement),
//! so none of them depends on another for it.

use crate::policy::actions::Action;

use super::authz::{Authz, Reuse};
use super::model::{KeyRecord, StoreState};
use super::request::Req;
use super::service::{err, Call, Service, Snapshot};
use super::{ErrorKind, KmsError};

/// The answer to a request whose checks all passed but that asked for DryRun.
pub(crate) fn dry_run() -> KmsError {
    err(
        ErrorKind::DryRunOperation,
        "The request would have succeeded, but the DryRun option is set.",
    )
}

/// [`admit`] for the filesystem's data path (no DryRun): the same checks in the same
/// order, with each decision through the decision cache (see
/// [`Service::authorize_cached`]). `snap` is the snapshot the keys come from.
pub(crate) fn admit_cached(
    svc: &Service,
    call: &mut Call,
    snap: &std::sync::Arc<Snapshot>,
    checks: Vec<(&'static Action, Authz<'_>)>,
    reuse: Reuse,
) -> Result<(), KmsError> {
    let gates: Vec<(&Action, Option<&KeyRecord>)> =
        checks.iter().map(|(op, a)| (*op, a.key)).collect();
    for (_, a) in checks {
        svc.authorize_cached(call, snap, a, reuse)?;
    }
    for (op, k) in gates {
        if let Some(k) = k {
            svc.gate(op, k, call.now)?;
        }
    }
    Ok(())
}

/// The checks every cryptographic operation makes once it has resolved its keys, in
/// AWS's order: authorize each action (recording each decision), then gate each key on
/// its state, then honour the request's DryRun (`req`; the filesystem has none).
pub(crate) fn admit(
    svc: &Service,
    call: &mut Call,
    st: &StoreState,
    checks: Vec<(&'static Action, Authz<'_>)>,
    req: Option<&Req<'_>>,
) -> Result<(), KmsError> {
    let gates: Vec<(&Action, Option<&KeyRecord>)> =
        checks.iter().map(|(op, a)| (*op, a.key)).collect();
    for (_, a) in checks {
        svc.authorize(call, st, a)?;
    }
    for (op, k) in gates {
        if let Some(k) = k {
            svc.gate(op, k, call.now)?;
        }
    }
    match req {
        Some(r) if r.flag("DryRun")? => Err(dry_run()),
        _ => Ok(()),
    }
}
