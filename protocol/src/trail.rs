//! Hash-chained trails (归档留痕): the device's audit trail and a case's
//! timeline on the server. Each entry carries the hash of the entry before
//! it and its own hash over its facts and that link, so an entry edited,
//! removed or slipped in afterwards breaks the chain from there on, and
//! verification names the first entry that does not hold. (Whoever can
//! rewrite every entry after an edit can hide it; the chain makes an edit
//! evident, not impossible.) Both sides hash the same way, here.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The link before the first entry of a chain.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The hash of an entry: SHA-256 over the previous entry's hash and the
/// entry's facts as a JSON array (one fixed order per trail), in hex.
pub fn entry_hash(prev_hash: &str, facts: &serde_json::Value) -> String {
    let mut hasher = Sha256::new();
    hasher.update(prev_hash.as_bytes());
    hasher.update(b"\n");
    hasher.update(facts.to_string().as_bytes());
    hex::encode(hasher.finalize())
}

/// One entry as stored: its position, facts, link and hash (absent for
/// entries written before the trail was chained).
pub struct Sealed {
    pub seq: i64,
    pub facts: serde_json::Value,
    pub prev_hash: Option<String>,
    pub hash: Option<String>,
}

/// What walking a chain found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrailCheck {
    /// Entries walked.
    pub entries: u64,
    /// Entries from before the trail was chained (at its start only).
    pub unsealed: u64,
    /// The first entry that does not hold (its `seq`): edited, moved, or
    /// not linked to the one before; nothing after it can be trusted.
    pub broken_at: Option<i64>,
    /// The last entry's hash: quote it to anchor the trail elsewhere.
    pub head: String,
}

impl TrailCheck {
    pub fn intact(&self) -> bool {
        self.broken_at.is_none()
    }
}

/// Walk entries in order. Unchained entries may only come first (a trail
/// from before chaining); one after the chain began breaks it.
pub fn verify(entries: impl IntoIterator<Item = Sealed>) -> TrailCheck {
    let mut check = TrailCheck { head: GENESIS.to_owned(), ..TrailCheck::default() };
    let mut began = false;
    for entry in entries {
        check.entries += 1;
        let Some(hash) = entry.hash.as_deref() else {
            if began {
                check.broken_at = Some(entry.seq);
                return check;
            }
            check.unsealed += 1;
            continue;
        };
        began = true;
        if entry.prev_hash.as_deref() != Some(check.head.as_str()) || entry_hash(&check.head, &entry.facts) != hash {
            check.broken_at = Some(entry.seq);
            return check;
        }
        check.head = hash.to_owned();
    }
    check
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn chain(facts: &[serde_json::Value]) -> Vec<(String, String)> {
        let mut prev = GENESIS.to_owned();
        facts
            .iter()
            .map(|f| {
                let hash = entry_hash(&prev, f);
                let link = (prev.clone(), hash.clone());
                prev = hash;
                link
            })
            .collect()
    }

    fn walk(facts: &[serde_json::Value], links: &[(String, String)]) -> TrailCheck {
        verify(facts.iter().zip(links).enumerate().map(|(i, (f, (p, h)))| Sealed {
            seq: i as i64 + 1,
            facts: f.clone(),
            prev_hash: Some(p.clone()),
            hash: Some(h.clone()),
        }))
    }

    #[test]
    fn an_edit_breaks_the_chain_at_the_edited_entry() {
        let mut facts = vec![json!(["report", "worker1", 1]), json!(["submit", "worker1", 2]), json!(["sync", "system", 3])];
        let links = chain(&facts);
        let whole = walk(&facts, &links);
        assert!(whole.intact());
        assert_eq!((whole.entries, whole.head.as_str()), (3, links[2].1.as_str()));
        facts[1] = json!(["submit", "worker2", 2]);
        assert_eq!(walk(&facts, &links).broken_at, Some(2));
        // Dropping an entry breaks the link of the next one.
        let (mut facts, mut links) = (facts, links);
        facts.remove(0);
        links.remove(0);
        assert_eq!(walk(&facts, &links).broken_at, Some(1));
    }

    #[test]
    fn unchained_entries_only_at_the_start() {
        let facts = json!(["x"]);
        let hash = entry_hash(GENESIS, &facts);
        let legacy = || Sealed { seq: 1, facts: json!(["old"]), prev_hash: None, hash: None };
        let sealed = |seq| Sealed { seq, facts: facts.clone(), prev_hash: Some(GENESIS.to_owned()), hash: Some(hash.clone()) };
        let check = verify([legacy(), sealed(2)]);
        assert_eq!((check.intact(), check.unsealed), (true, 1));
        let late = Sealed { seq: 3, facts: json!(["late"]), prev_hash: None, hash: None };
        assert_eq!(verify([sealed(1), late]).broken_at, Some(3));
    }
}
