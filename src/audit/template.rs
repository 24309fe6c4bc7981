//! Record templates: the bytes of a record that a caller writes again and again with
//! only its event id, time, caller pid and chain members (`prevHash`, `seq`, `hash`)
//! differing, e.g. the filesystem's open of one file by one principal, answered from
//! the decision cache with the same shared values each time. The first such record is
//! built field by field ([`record::build_unspliced`]), and its constant bytes are kept;
//! a later record of an equal event copies them and writes only the varying members.
//! No template is kept for an event whose shared values nothing else holds (a file's
//! first open, whose values the caches do not keep): no later event can match it.
//!
//! The line is byte for byte the one [`record::build_into`] writes (tested against it
//! for every kind of event), so logs, hashes and `kmsfs audit verify` are unchanged:
//! this saves formatting (escaping, canonical ordering, the bound checks of each
//! caller-supplied value), never the SHA-256 link, which covers every byte as before.
//!
//! When two events are "equal": every field but the identity's pid, with the shared
//! values (`requestParameters`, `decision`, `fs`) compared by address. A template holds
//! its own reference to each, so an address cannot be reused by another value while
//! the template exists, and a shared value is never changed in place (it is shared).

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::canonical::write_string;
use super::record::{
    self, with_event_time, write_number, Marks, HASH_CLOSE, HASH_HEX_LEN, HASH_MEMBER_LEN,
    HASH_OPEN,
};
use super::Event;

/// Templates kept at most; past it the cache starts again empty (a bound, not an LRU:
/// a working set is a few principals × the files they reopen). About 1.5 KB each.
const MAX_TEMPLATES: usize = 256;

/// Templates kept per (shared values, uid): two principals opening the same file with
/// equal decisions share the values but not the identity.
const MAX_PER_SLOT: usize = 4;

/// One record's constant bytes and where its varying members go.
struct Template {
    /// The event it was built from, with pid 0 (it holds the shared values).
    event: Event,
    /// The line without its varying members and without the `hash` member.
    bytes: Vec<u8>,
    /// Offsets in `bytes` where the id, time, hash member, pid, prevHash and seq go.
    cuts: [usize; 6],
}

/// The slot of an event: the addresses of its shared values and its uid.
type SlotKey = (usize, usize, usize, u32);

fn slot_of(e: &Event) -> SlotKey {
    let addr = |v: Option<&Arc<Value>>| v.map_or(0, |a| Arc::as_ptr(a) as usize);
    (
        addr(Some(&e.request_parameters)),
        addr(e.decision.as_ref()),
        addr(e.fs.as_ref()),
        e.identity.uid,
    )
}

/// The templates of one log (kept under the log's mutex).
#[derive(Default)]
pub(crate) struct Templates {
    slots: HashMap<SlotKey, Vec<Template>>,
    len: usize,
}

impl Templates {
    /// Appends the record line of `event` (compact JSON, without newline) to `out` and
    /// returns its hash: the same bytes and hash as [`record::build_into`], from a
    /// template when an equal event was written before (and kept as one otherwise).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn build_into(
        &mut self,
        event: &Event,
        now: i64,
        default_region: &str,
        seq: u64,
        prev_hash: &str,
        event_id: &str,
        out: &mut Vec<u8>,
    ) -> [u8; HASH_HEX_LEN] {
        let slot = slot_of(event);
        if let Some(t) = self
            .slots
            .get(&slot)
            .and_then(|ts| ts.iter().find(|t| same_but_varying(&t.event, event)))
        {
            return t.render(event, now, seq, prev_hash, event_id, out);
        }
        if !may_come_again(event) {
            return record::build_into(event, now, default_region, seq, prev_hash, event_id, out);
        }
        let start = out.len();
        let (hash, marks) =
            record::build_unspliced(event, now, default_region, seq, prev_hash, event_id, out);
        if let Some(t) = Template::new(event, out.get(start..).unwrap_or_default(), &marks) {
            if self.len >= MAX_TEMPLATES {
                self.slots.clear();
                self.len = 0;
            }
            let ts = self.slots.entry(slot).or_default();
            if ts.len() >= MAX_PER_SLOT {
                ts.remove(0);
                self.len -= 1;
            }
            ts.push(t);
            self.len += 1;
        }
        let at = start + marks.hash_at;
        out.splice(
            at..at,
            HASH_OPEN.iter().chain(&hash).chain(HASH_CLOSE).copied(),
        );
        hash
    }

    /// Templates held (for tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.len
    }
}

impl Template {
    /// The template of `line` (the unspliced line of `event`, with `marks`), or None if
    /// the marks are not in the order the record writes them (never, by construction).
    fn new(event: &Event, line: &[u8], marks: &Marks) -> Option<Template> {
        let varying = [
            marks.id,
            marks.time,
            (marks.hash_at, marks.hash_at),
            marks.pid,
            marks.prev,
            marks.seq,
        ];
        let mut bytes = Vec::with_capacity(line.len());
        let mut cuts = [0usize; 6];
        let mut from = 0;
        for (cut, (a, b)) in cuts.iter_mut().zip(varying) {
            bytes.extend_from_slice(line.get(from..a)?);
            *cut = bytes.len();
            if b < a {
                return None;
            }
            from = b;
        }
        bytes.extend_from_slice(line.get(from..)?);
        let mut event = event.clone();
        event.identity.pid = 0;
        Some(Template { event, bytes, cuts })
    }

    /// Writes the line of `event` (equal to the template's but for the varying members)
    /// and returns its hash.
    fn render(
        &self,
        event: &Event,
        now: i64,
        seq: u64,
        prev_hash: &str,
        event_id: &str,
        out: &mut Vec<u8>,
    ) -> [u8; HASH_HEX_LEN] {
        let [c_id, c_time, c_hash, c_pid, c_prev, c_seq] = self.cuts;
        let part = |a: usize, b: usize| self.bytes.get(a..b).unwrap_or_default();
        let start = out.len();
        out.reserve(self.bytes.len() + HASH_MEMBER_LEN + 160);
        out.extend_from_slice(part(0, c_id));
        write_string(event_id, out);
        out.extend_from_slice(part(c_id, c_time));
        with_event_time(now, |t| write_string(t, out));
        out.extend_from_slice(part(c_time, c_hash));
        // The hash member's place, filled once the rest is hashed.
        let gap = out.len();
        out.extend_from_slice(&[0u8; HASH_MEMBER_LEN]);
        out.extend_from_slice(part(c_hash, c_pid));
        // As the record writes it: a network caller's pid is null.
        match event.remote {
            Some(_) => out.extend_from_slice(b"null"),
            None => write_number(u64::from(event.identity.pid), out),
        }
        out.extend_from_slice(part(c_pid, c_prev));
        write_string(prev_hash, out);
        out.extend_from_slice(part(c_prev, c_seq));
        write_number(seq, out);
        out.extend_from_slice(part(c_seq, self.bytes.len()));

        let mut sha = Sha256::new();
        sha.update(out.get(start..gap).unwrap_or_default());
        sha.update(out.get(gap + HASH_MEMBER_LEN..).unwrap_or_default());
        let mut hash = [0u8; HASH_HEX_LEN];
        // 32 bytes always fit 64 hex digits.
        let _ = hex::encode_to_slice(sha.finalize(), &mut hash);
        if let Some(slot) = out.get_mut(gap..gap + HASH_MEMBER_LEN) {
            let member = HASH_OPEN.iter().chain(&hash).chain(HASH_CLOSE);
            for (dst, src) in slot.iter_mut().zip(member) {
                *dst = *src;
            }
        }
        hash
    }
}

/// False when a shared value of `event` is held by the event alone: nothing else can
/// hand that value to a later event (an `Arc` is only ever cloned from a holder), and a
/// template answers only events with the very same values, so a template of this one
/// could never be used. That is an open whose values the caches did not keep (a file
/// opened for the first time, see `kms::ops_crypto`'s open values and the decision
/// cache, which keep them from the second open on): its record is built as any other,
/// and no template is made (and none dropped to make room for it).
fn may_come_again(event: &Event) -> bool {
    let held = |v: Option<&Arc<Value>>| v.is_none_or(|a| Arc::strong_count(a) > 1);
    held(Some(&event.request_parameters))
        && held(event.decision.as_ref())
        && held(event.fs.as_ref())
}

/// True when `a` and `b` give the same record but for the event id, time, pid and
/// chain members: every field but the pid, the shared values by address.
fn same_but_varying(a: &Event, b: &Event) -> bool {
    fn same(a: Option<&Arc<Value>>, b: Option<&Arc<Value>>) -> bool {
        match (a, b) {
            (None, None) => true,
            (Some(x), Some(y)) => Arc::ptr_eq(x, y),
            _ => false,
        }
    }
    let (ia, ib) = (&a.identity, &b.identity);
    ia.uid == ib.uid
        && ia.gid == ib.gid
        && ia.kind == ib.kind
        && ia.arn == ib.arn
        && ia.account_id == ib.account_id
        && ia.principal_id == ib.principal_id
        && a.event_name == b.event_name
        && a.read_only == b.read_only
        && same(Some(&a.request_parameters), Some(&b.request_parameters))
        && same(a.decision.as_ref(), b.decision.as_ref())
        && same(a.fs.as_ref(), b.fs.as_ref())
        && a.resources == b.resources
        && a.via_service == b.via_service
        && a.error_code == b.error_code
        && a.error_message == b.error_message
        && a.remote == b.remote
        && a.response_elements == b.response_elements
}

#[cfg(test)]
#[path = "template_tests.rs"]
mod tests;
